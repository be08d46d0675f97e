#!/usr/bin/env bash
# cluster/add-node.sh N: add node N (named nodeN, address .1N on the underlay) to
# the running local cluster, with the images every node has, including the
# project's newest image archive. cluster/remove-node.sh takes it away again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
. "$here/lib/pki.sh"
. "$here/lib/controlplane.sh"
. "$here/lib/node.sh"
[ $# -eq 1 ] && [ "$1" -ge 1 ] 2>/dev/null || die "usage: cluster/add-node.sh NUMBER"
[ -f "$STATE/cluster.env" ] || die "no cluster: run make cluster first"
. "$STATE/cluster.env"
i=$1 name=$(node_name "$1")
pki_cert "kubelet-$name" "system:node:$name" system:nodes
pki_kubeconfig "$STATE/kubelet-$name.kubeconfig" "kubelet-$name"
node_up "$i" "$BIN"
archive=$(ls -t "$CACHE_ROOT"/images/cni-render-*.tar 2>/dev/null | head -n 1)
[ -n "$archive" ] && in_node "$name" ctr --address /run/containerd/containerd.sock -n k8s.io images import "$archive" >/dev/null
log "$name added"
