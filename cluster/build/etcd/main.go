// Command etcd is etcd's own server entry point (go.etcd.io/etcd/server/v3's
// main.go), rebuilt here because that module's replace directives keep
// `go install` from building it directly.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
