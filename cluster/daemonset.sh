#!/usr/bin/env bash
# `make daemonset`: build the project's image from its Dockerfile
# (lib/project-image.sh), load it into every node, apply deploy/cni-render.yaml
# (or MANIFEST), and wait until the DaemonSet is rolled out and every node is
# Ready. Prints the time from apply to all nodes Ready.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_cluster

provider_load_image "$("$CLUSTER_SRC/lib/project-image.sh" | tail -n 1)"
manifest=${MANIFEST:-$REPO/deploy/cni-render.yaml}
installed=$(k -n kube-system get ds cni-render -o name 2>/dev/null || true)
start=$(date +%s.%N)
k apply -f "$manifest" >&2
# The tag is the package's version: a rebuilt image of the same version
# reaches running pods only through a restart (a rolling one).
if [ -n "$installed" ]; then k -n kube-system rollout restart ds/cni-render >&2; fi
k -n kube-system rollout status ds/cni-render --timeout=300s >&2
k wait --for=condition=Ready node --all --timeout=300s >&2
ready=$(date +%s.%N)
awk -v a="$start" -v b="$ready" 'BEGIN { printf "[cluster] every node Ready %.1f s after kubectl apply\n", b - a }' >&2
k get nodes -o wide
