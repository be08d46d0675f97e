#!/usr/bin/env bash
# `make down`: stops the local cluster and removes every trace of it from the
# machine: processes (by cgroup: every node's daemons, containers and shims, and
# the control plane), namespaces (and with them every link, route, mount and nft
# table inside), cgroups, and the mount-point directories `make cluster`
# created. Keeps .cluster/logs for a look after a failure. Exit 1 if anything
# is left behind.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
[ "$(id -u)" -eq 0 ] || die "run as root"

for group in $(cgroup_hierarchies | while read -r h; do ls -d "$h/${CGROUP_PREFIX}"* 2>/dev/null; done \
        | xargs -rn1 basename | sort -u); do
    [ "$group" = "${CGROUP_PREFIX}control" ] && continue
    cgroup_destroy "$group"
done
cgroup_destroy "${CGROUP_PREFIX}control"

for ns in $(ip netns list | awk '{print $1}' | grep "^crk-" || true); do
    ip netns pids "$ns" | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$ns"
done

if [ -f "$STATE/created-dirs" ]; then
    sort -ru "$STATE/created-dirs" | while read -r dir; do rmdir "$dir" 2>/dev/null || true; done
    # and their parents that were made for them, when empty (/opt/cni, /var/lib/...)
    for dir in /opt/cni /var/log/containers /var/log/pods; do [ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true; done
fi
if [ -d "$STATE" ]; then
    find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
fi

# What must be gone. A killed process leaves its cgroup before its parent (by
# then init) has reaped it: give the process table a moment.
cluster_processes() {
    local p
    for p in kubelet kube-apiserver kube-controller kube-scheduler kube-proxy etcd containerd; do pgrep -x "$p"; done
}
for _ in $(seq 50); do cluster_processes >/dev/null || break; sleep 0.2; done
left=()
for p in kubelet kube-apiserver kube-controller kube-scheduler kube-proxy etcd containerd; do  # comm names (15 chars)
    pgrep -x "$p" >/dev/null && left+=("process $p")
done
ip netns list | grep -q "^crk-" && left+=("namespaces: $(ip netns list | grep '^crk-' | tr '\n' ' ')")
grep -q "crk-\|$STATE" /proc/self/mountinfo && left+=("mounts: $(grep -c "crk-\|$STATE" /proc/self/mountinfo)")
for h in $(cgroup_hierarchies); do ls -d "$h/${CGROUP_PREFIX}"* >/dev/null 2>&1 && left+=("cgroups in $h"); done
ip -o link show | grep -q "crk" && left+=("links: $(ip -o link show | grep crk | awk -F': ' '{print $2}')")
if [ ${#left[@]} -gt 0 ]; then
    printf '[cluster] left behind: %s\n' "${left[@]}" >&2
    exit 1
fi
log "cluster down; nothing left behind"
