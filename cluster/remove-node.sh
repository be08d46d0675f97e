#!/usr/bin/env bash
# cluster/remove-node.sh NAME: stop a node of the local cluster (its daemons and
# containers, by cgroup), remove its namespaces and state, and delete its Node.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_provider local
[ $# -eq 1 ] || die "usage: cluster/remove-node.sh NAME"

name=$1
cgroup_destroy "${CGROUP_PREFIX}$name"
ip netns del "$(node_netns "$name")" 2>/dev/null || true
rm -rf "$(node_dir "$name")" "$STATE/pids/$name"-*
k delete node "$name" --ignore-not-found --wait=true --timeout=60s >/dev/null
log "$name removed"
