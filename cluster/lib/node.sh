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
    for p in $REFERENCE_PLUGINS; do cp /usr/lib/cni/$p "$dir/root/opt/cni/bin/"; done
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
    echo "$(cat "$STATE/pids/$name-anchor")" > "$dir/anchor.pid"
    wait_for 20 "$name's namespaces" test -f "$dir/namespace-ready"

    node_config "$i" "$bin"
    spawn "$name-containerd" "$group/daemons" nsenter --target "$(anchor_pid "$name")" --mount --uts --net \
        containerd --config "$dir/containerd.toml"
    wait_for 60 "$name's containerd" in_node "$name" ctr --address /run/containerd/containerd.sock version
    local image
    for image in pause testimg busybox agnhost coredns; do
        in_node "$name" ctr --address /run/containerd/containerd.sock -n k8s.io images import \
            "$CACHE_ROOT/images/$image.tar" >/dev/null || die "importing the $image image into $name failed"
    done
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

node_config() {
    local i=$1 bin=$2
    local name dir
    name=$(node_name "$i"); dir=$(node_dir "$name")
    cat > "$dir/containerd.toml" <<TOML
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "/run/containerd/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  tolerate_missing_hugetlb_controller = true
  disable_hugetlb_controller = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
TOML
    cat > "$dir/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix:///run/containerd/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /${CGROUP_PREFIX}$name
failSwapOn: false
failCgroupV1: false
resolvConf: "$dir/resolv.conf"
clusterDomain: cluster.local
clusterDNS: [$(if has_v4; then echo 10.96.0.10; else echo fd00:10:96::a; fi)]
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
serializeImagePulls: false
port: 10250
healthzPort: 0
readOnlyPort: 0
rotateCertificates: false
serverTLSBootstrap: false
YAML
    local mode=nftables
    cat > "$dir/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
hostnameOverride: $name
mode: $mode
clusterCIDR: "$(join_families "$V4_PODS" "$V6_PODS")"
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
healthzBindAddress: "0.0.0.0:10256"
metricsBindAddress: "127.0.0.1:10249"
YAML
}

# load_image ARCHIVE: import a docker-archive into every running node's
# containerd, where it is not there yet (what `kind load docker-image` does).
load_image() {
    local archive=$1 dir name
    for dir in "$STATE"/nodes/*/; do
        name=$(basename "$dir")
        node_alive "$name" || continue
        in_node "$name" ctr --address /run/containerd/containerd.sock -n k8s.io images import \
            "$archive" >/dev/null || die "importing $archive into $name failed"
    done
}
