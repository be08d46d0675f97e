// libcni-client: the test driver that runs CNI plugins through libcni, the
// library containerd and CRI-O use. Built offline against Debian's libcni
// source (golang-github-appc-cni-dev) in GOPATH mode by tests/test_real_clients.py.
//
// Usage:
//
//	libcni-client -conflist FILE -netns PATH -id CONTAINERID -ifname eth0 \
//	  -bin-dirs DIR1:DIR2 -cache-dir DIR -cap-args JSON \
//	  -ops validate,add,check,del [-check-conflist FILE] [-args K=V;K=V]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func fail(op string, err error) {
	fmt.Fprintf(os.Stderr, "FAIL %s: %v\n", op, err)
	os.Exit(1)
}

func main() {
	conflist := flag.String("conflist", "", "network configuration list file (.conflist)")
	checkConflist := flag.String("check-conflist", "", "optional different conflist (same network name) used only for the check op")
	netns := flag.String("netns", "", "container network namespace path, e.g. /var/run/netns/POD")
	id := flag.String("id", "", "container ID")
	ifname := flag.String("ifname", "eth0", "interface name inside the container")
	binDirs := flag.String("bin-dirs", "/usr/lib/cni", "colon-separated plugin directories")
	cacheDir := flag.String("cache-dir", "", "libcni result cache directory (required; use a temp dir)")
	capArgs := flag.String("cap-args", "{}", "JSON object of capability args (runtimeConfig), e.g. {\"portMappings\":[...]}")
	cniArgs := flag.String("args", "IgnoreUnknown=1;K8S_POD_NAME=web-0;K8S_POD_NAMESPACE=default", "CNI_ARGS as K=V;K=V")
	ops := flag.String("ops", "validate,add,check,del", "comma-separated ops: validate,add,check,del")
	flag.Parse()

	if *conflist == "" || *cacheDir == "" {
		fmt.Fprintln(os.Stderr, "usage: -conflist and -cache-dir are required")
		flag.Usage()
		os.Exit(2)
	}

	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail("load", err)
	}
	checkList := list
	if *checkConflist != "" {
		checkList, err = libcni.ConfListFromFile(*checkConflist)
		if err != nil {
			fail("load check-conflist", err)
		}
		if checkList.Name != list.Name {
			fail("load check-conflist", fmt.Errorf("network name %q differs from %q (cached result is keyed by name)", checkList.Name, list.Name))
		}
	}

	caps := map[string]interface{}{}
	if err := json.Unmarshal([]byte(*capArgs), &caps); err != nil {
		fail("cap-args", err)
	}

	var args [][2]string
	for _, kv := range strings.Split(*cniArgs, ";") {
		if kv == "" {
			continue
		}
		p := strings.SplitN(kv, "=", 2)
		if len(p) != 2 {
			fail("args", fmt.Errorf("bad K=V pair %q", kv))
		}
		args = append(args, [2]string{p[0], p[1]})
	}

	rt := &libcni.RuntimeConf{
		ContainerID:    *id,
		NetNS:          *netns,
		IfName:         *ifname,
		Args:           args,
		CapabilityArgs: caps,
	}

	cni := libcni.NewCNIConfigWithCacheDir(strings.Split(*binDirs, ":"), *cacheDir, nil)
	ctx := context.Background()

	for _, op := range strings.Split(*ops, ",") {
		op = strings.TrimSpace(op)
		switch op {
		case "":
			continue
		case "validate":
			capsOut, err := cni.ValidateNetworkList(ctx, list)
			if err != nil {
				fail(op, err)
			}
			b, _ := json.Marshal(capsOut)
			fmt.Fprintf(os.Stderr, "capabilities: %s\n", b)
		case "add":
			res, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail(op, err)
			}
			conv, err := res.GetAsVersion(list.CNIVersion)
			if err != nil {
				fail(op, fmt.Errorf("convert result to %s: %v", list.CNIVersion, err))
			}
			b, err := json.MarshalIndent(conv, "", "  ")
			if err != nil {
				fail(op, err)
			}
			fmt.Println(string(b))
		case "check":
			if err := cni.CheckNetworkList(ctx, checkList, rt); err != nil {
				fail(op, err)
			}
		case "del":
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				fail(op, err)
			}
		default:
			fail(op, fmt.Errorf("unknown op (want validate,add,check,del)"))
		}
		fmt.Fprintf(os.Stderr, "OK %s\n", op)
	}
}
