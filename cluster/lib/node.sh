# One node: a network namespace on the underlay, and a mount + UTS namespace
# (held by a pause process, "the anchor") in which the node's own /run,
# /etc/cni/net.d, /opt/cni/bin, /var/lib/{cni,kubelet,containerd}, /var/log/pods
# and machine-id are mounted over the machine's; containerd, kubelet and
# kube-proxy run there, in the cgroup crk-<node>. Python is hidden on nodes, as
# on kind's node image: only the static shim may run on the node itself.
# shellcheck shell=bash

# Directories a node mounts over (created on the machine as empty mount points
# when missing, and removed again by `make down`).
NODE_MOUNTS="/etc/cni/net.d /opt/cni/bin /var/lib/cni /var/lib/kubelet /var/lib/containerd /var/log/pods /var/log/containers"
REFERENCE_PLUGINS="loopback portmap host-local ptp bandwidth tuning"

anchor_pid() { cat "$(node_dir "$1")/anchor.pid" 2>/dev/null; }
in_node() {  # NAME CMD...: run in the node's namespaces
    local pid
    pid=$(anchor_pid "$1") || die "node $1 is not running"
    shift
    nsenter --target "$pid" --mount --uts --net "$@"
}

node_alive() { local pid; pid=$(anchor_pid "$1") && kill -0 "$pid" 2>/dev/null; }

node_up() {
    local i=$1 bin=$2
    local name dir ns
    name=$(node_name "$i"); dir=$(node_dir "$name"); ns=$(node_netns "$name")
    node_alive "$name" && return 0
    mkdir -p "$dir" "$STATE/pids"
    for m in $NODE_MOUNTS; do
        if [ ! -d "$m" ]; then mkdir -p "$m"; echo "$m" >> "$STATE/created-dirs"; fi
        mkdir -p "$dir/root$m"
    done
    for p in $REFERENCE_PLUGINS; do cp "/usr/lib/cni/$p" "$dir/root/opt/cni/bin/"; done
    [ -f "$dir/machine-id" ] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$dir/machine-id"
    printf 'nameserver %s\n' "$V4_UNDERLAY.1" > "$dir/resolv.conf"

    ip netns add "$ns"
    attach_to_underlay "$ns" "n$i" "$(node_v4 "$i")" "$(node_v6 "$i")"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
        net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

    local group=${CGROUP_PREFIX}$name
    cgroup_create "$group/daemons"
    spawn "$name-anchor" "$group/daemons" nsenter --net="/run/netns/$ns" \
        unshare --mount --uts --propagation slave -- \
        /bin/bash "$CLUSTER_SRC/lib/node-namespace.sh" "$name" "$dir" "$bin/pause" "$NODE_MOUNTS"
    cp "$STATE/pids/$name-anchor" "$dir/anchor.pid"
    wait_for 20 "$name's namespaces" test -f "$dir/namespace-ready"

    node_config "$i"
    spawn "$name-containerd" "$group/daemons" nsenter --target "$(anchor_pid "$name")" --mount --uts --net \
        containerd --config "$dir/containerd.toml"
    wait_for 60 "$name's containerd" in_node "$name" ctr --address /run/containerd/containerd.sock version
    local image
    for image in $CLUSTER_IMAGES; do node_import "$name" "$IMAGES/$image.tar"; done
    kubelet_start "$i" "$bin"
    spawn "$name-kube-proxy" "$group/daemons" nsenter --target "$(anchor_pid "$name")" --mount --uts --net \
        "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=1
}

kubelet_start() {  # node number, bin dir
    local name
    name=$(node_name "$1")
    spawn "$name-kubelet" "${CGROUP_PREFIX}$name/daemons" nsenter --target "$(anchor_pid "$name")" --mount --uts --net \
        "$2/kubelet" --config="$(node_dir "$name")/kubelet.yaml" --kubeconfig="$STATE/kubelet-$name.kubeconfig" \
        --hostname-override="$name" --node-ip="$(join_families "$(node_v4 "$1")" "$(node_v6 "$1")")" --v=1
}

# node_config N: the node's containerd, kubelet and kube-proxy configurations,
# rendered from cluster/config/*.in.
# shellcheck disable=SC2034  # render reads the locals by name
node_config() {
    local NODE_NAME NODE_DIR NODE_CGROUP POD_CIDRS DNS_IP
    NODE_NAME=$(node_name "$1"); NODE_DIR=$(node_dir "$NODE_NAME")
    NODE_CGROUP=${CGROUP_PREFIX}$NODE_NAME
    POD_CIDRS=$(join_families "$V4_PODS" "$V6_PODS")
    DNS_IP=$(join_families "$V4_DNS" "$V6_DNS"); DNS_IP=${DNS_IP%%,*}   # IPv4 first where there is IPv4
    render "$CONFIG/containerd.toml.in" PAUSE_IMAGE > "$NODE_DIR/containerd.toml"
    render "$CONFIG/kubelet.yaml.in" PKI NODE_CGROUP NODE_DIR DNS_IP > "$NODE_DIR/kubelet.yaml"
    render "$CONFIG/kube-proxy.yaml.in" STATE NODE_NAME POD_CIDRS > "$NODE_DIR/kube-proxy.yaml"
}

# node_import NAME ARCHIVE: a docker-archive into the node's containerd.
node_import() {
    in_node "$1" ctr --address /run/containerd/containerd.sock -n k8s.io images import "$2" >/dev/null \
        || die "importing $2 into $1 failed"
}

# load_image ARCHIVE: import a docker-archive into every running node's
# containerd (what `kind load image-archive` does).
load_image() {
    local dir name
    for dir in "$STATE"/nodes/*/; do
        name=$(basename "$dir")
        if node_alive "$name"; then node_import "$name" "$1"; fi
    done
}
