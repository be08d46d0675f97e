#!/usr/bin/env bash
# cluster/remove-node.sh NAME: stop a node of the local cluster (its daemons and
# containers, by cgroup), remove its namespaces and state, and delete its Node.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
[ $# -eq 1 ] || die "usage: cluster/remove-node.sh NAME"
name=$1
cgroup_destroy "${CGROUP_PREFIX}$name"
ip netns del "crk-$name" 2>/dev/null || true
rm -rf "$STATE/nodes/$name" "$STATE/pids/$name"-*
"$here/kubectl" delete node "$name" --ignore-not-found --wait=true --timeout=60s >/dev/null
log "$name removed"
