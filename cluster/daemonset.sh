#!/usr/bin/env bash
# `make daemonset` on the local cluster: build the project's image from its
# Dockerfile (cluster/lib/project-image.sh), load it into every node's
# containerd (what `kind load docker-image` does), apply deploy/cni-render.yaml,
# and wait until the DaemonSet is rolled out and every node is Ready. Prints
# the time from apply to all nodes Ready.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
. "$here/lib/node.sh"
[ -f "$STATE/cluster.env" ] || die "no cluster: run make cluster first"
. "$STATE/cluster.env"
k() { "$here/kubectl" "$@"; }

archive=$("$here/lib/project-image.sh" | tail -n 1)
load_image "$archive"
manifest=${MANIFEST:-$REPO/deploy/cni-render.yaml}
installed=$(k -n kube-system get ds cni-render -o name 2>/dev/null || true)
start=$(date +%s.%N)
k apply -f "$manifest" >&2
# The tag is the package's version: a rebuilt image of the same version
# reaches running pods only through a restart (a rolling one).
[ -n "$installed" ] && k -n kube-system rollout restart ds/cni-render >&2
k -n kube-system rollout status ds/cni-render --timeout=300s >&2
k wait --for=condition=Ready node --all --timeout=300s >&2
ready=$(date +%s.%N)
awk -v a="$start" -v b="$ready" 'BEGIN { printf "[cluster] every node Ready %.1f s after kubectl apply\n", b - a }' >&2
k get nodes -o wide
