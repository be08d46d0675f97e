#!/usr/bin/env bash
# Builds the local cluster's binaries from source, pinned in cluster/versions.env
# and cluster/build/*/go.{mod,sum}: Kubernetes (kube-apiserver, -controller-manager,
# -scheduler, kubelet, kube-proxy, kubectl, the e2e test binary, agnhost), etcd,
# CoreDNS for the cluster's DNS, and the pause program. The output lives in a
# per-machine cache keyed by those pins (cluster_bin_dir in lib/env.sh), outside
# the checkout, so a second run and CI's fresh clone rebuild nothing; Go's own
# module and build caches stay in their usual places.
#
#   cluster/build.sh          # prints the bin directory on its last line
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
here=$CLUSTER_SRC

need_go
bin=$(cluster_bin_dir)
if [ -f "$bin/.complete" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$bin"
start=$(date +%s)

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
stamp="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
stamp+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
stamp+=" -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
stamp+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local

log "building Kubernetes $K8S_VERSION (a cold build takes a while on a small machine)"
(cd "$here/build/k8s" && go build -trimpath -tags selinux,notest -ldflags "-s -w $stamp" -o "$bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/test/images/agnhost)
log "building etcd $ETCD_VERSION"
(cd "$here/build/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
log "building CoreDNS $COREDNS_VERSION"
(cd "$here/build/coredns" && go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .)
log "building the Kubernetes e2e test binary"
(cd "$here/build/k8s" && go test -c -trimpath -tags selinux -ldflags "-s -w $stamp" -o "$bin/e2e.test" k8s.io/kubernetes/test/e2e)
log "building pause"
cc -static -Os -o "$bin/pause" "$here/images/pause.c"

touch "$bin/.complete"
log "built in $(( $(date +%s) - start )) s: $bin"
echo "$bin"
