#!/usr/bin/env bash
# cluster/reboot-node.sh NAME: a node of the local cluster reboots. Every
# process of the node (containerd, kubelet, kube-proxy, its pods) is killed by
# cgroup; its tmpfs /run and its network namespace (links, routes, nft tables)
# are gone; its disk (/var/lib/*, /etc/cni/net.d, /opt/cni/bin) stays. Then the
# node starts again as it did the first time, with its Node object kept.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_provider local
need_cluster
[ $# -eq 1 ] || die "usage: cluster/reboot-node.sh NAME"

name=$1
number=${name#node}
case "$number" in [1-9] | [1-9][0-9]) ;; *) die "$name is not a node of the local cluster (node1 to node99)" ;; esac
[ -d "$(node_dir "$name")" ] || die "$name is not a node of the local cluster"
cgroup_destroy "${CGROUP_PREFIX}$name"
ip netns del "$(node_netns "$name")" 2>/dev/null || true
rm -f "$(node_dir "$name")/namespace-ready" "$STATE/pids/$name"-*
log "$name is down (processes, /run and its network gone; its disk kept)"
node_up "$number" "$BIN"
log "$name is up again"
