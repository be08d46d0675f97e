#!/usr/bin/env bash
# Runs as the anchor of a node's mount + UTS namespace (started by node_up with
# `unshare --mount --uts --propagation slave`): mounts the node's own
# directories over the machine's, hides Python, then becomes the pause process
# that keeps the namespace alive. Mounts made here never reach the machine.
set -euo pipefail
name=$1 dir=$2 pause=$3 mounts=$4
mount --make-rshared /
hostname "$name"
mount -t tmpfs -o mode=0755 "run-$name" /run
mkdir -p /run/netns /run/containerd /run/cni-render /run/lock
for m in $mounts; do mount --bind "$dir/root$m" "$m"; done
mount --bind "$dir/machine-id" /etc/machine-id
# Nodes have no Python (kind's node image has none): what cni-render puts on a
# node must run without it.
for f in /usr/bin/python3*; do [ -f "$f" ] && mount --bind /dev/null "$f"; done
for d in /usr/lib/python3* /root/.pyenv; do [ -d "$d" ] && mount -t tmpfs -o ro,size=4k none "$d"; done
touch "$dir/namespace-ready"
exec "$pause"
