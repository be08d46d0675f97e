# The local provider: a multi-node Kubernetes built from source (build.sh,
# images.sh) and run on this machine, the way hack/local-up-cluster.sh runs one.
# The control plane runs in the underlay namespace (a bridge); every node is a
# network namespace on that bridge plus a mount + UTS namespace of its own
# (lib/node.sh); processes are grouped by cgroup (lib/cgroups.sh). The verbs
# are listed in lib/env.sh.
# shellcheck shell=bash

UNDERLAY_NS=crk-net            # the underlay: bridge, control plane
EXTERNAL_NS=crk-ext            # a host outside the cluster, on the underlay
BRIDGE=crk0
CGROUP_PREFIX=crk-
V4_UNDERLAY=10.200.0           # .1 control plane, .1N node N, .254 the outside host
V6_UNDERLAY=fd00:200:          # ::1, ::1N, ::254 (/64)
V4_PODS=10.244.0.0/16
V6_PODS=fd00:10:244::/56
V4_SERVICES=10.96.0.0/16
V6_SERVICES=fd00:10:96::/112
V4_DNS=10.96.0.10
V6_DNS=fd00:10:96::a
DAEMONS="kubelet kube-apiserver kube-controller kube-scheduler kube-proxy etcd containerd"  # comm names

node_name() { echo "node$1"; }
node_netns() { echo "crk-$1"; }
node_dir() { echo "$STATE/nodes/$1"; }
node_v4() { echo "$V4_UNDERLAY.$((10 + $1))"; }
node_v6() { echo "${V6_UNDERLAY}:$((10 + $1))"; }
# The apiserver's address: IPv4 first where there is IPv4.
api_address() { if has_v4; then echo "$V4_UNDERLAY.1"; else echo "${V6_UNDERLAY}:1"; fi; }
api_url() { if has_v4; then echo "https://$V4_UNDERLAY.1:6443"; else echo "https://[${V6_UNDERLAY}:1]:6443"; fi; }
join_families() {  # v4 v6 -> the family list for IPFAMILY, comma separated
    if [ "$IPFAMILY" = ipv4 ]; then echo "$1"; elif [ "$IPFAMILY" = ipv6 ]; then echo "$2"; else echo "$1,$2"; fi
}

# shellcheck source=cgroups.sh
. "$CLUSTER_SRC/lib/cgroups.sh"
# shellcheck source=pki.sh
. "$CLUSTER_SRC/lib/pki.sh"
# shellcheck source=controlplane.sh
. "$CLUSTER_SRC/lib/controlplane.sh"
# shellcheck source=node.sh
. "$CLUSTER_SRC/lib/node.sh"

cluster_bin() { echo "${BIN:-$(cluster_bin_dir)}"; }
pid_alive() { [ -f "$STATE/pids/$1" ] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }

# Builds what is missing, then starts the underlay, the control plane and
# NODES nodes; waits for every node to register; routes the pod CIDRs from the
# control plane; installs CoreDNS. A running cluster is left as it is.
provider_up() {
    [ "$(id -u)" -eq 0 ] || die "run as root: the cluster is made of namespaces, mounts and cgroups"
    local tool
    for tool in nsenter unshare ip containerd ctr runc nft openssl curl; do
        command -v "$tool" >/dev/null || die "$tool is missing (make deps installs the Debian packages)"
    done
    BIN=$("$CLUSTER_SRC/build.sh" | tail -n 1)
    "$CLUSTER_SRC/images.sh" >/dev/null
    mkdir -p "$STATE/pids" "$LOGS"
    [ -f "$STATE/cluster.env" ] || cluster_env_write BIN   # the binaries kubectl and the e2e binary use
    sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576
    pki_all
    underlay_up
    pid_alive kube-apiserver || controlplane_up "$BIN"
    pid_alive external-httpd || external_host_up
    local i
    for i in $(seq "$NODES"); do node_up "$i" "$BIN"; done
    wait_for 180 "every node to register" nodes_at_least "$NODES"
    wait_for 60 "pod CIDRs for every node" pod_cidrs_at_least "$NODES"
    route_pod_cidrs
    coredns_up
}

nodes_at_least() { [ "$(k get nodes --no-headers | wc -l)" -ge "$1" ]; }
pod_cidrs_at_least() {
    [ "$(k get nodes -o jsonpath='{range .items[*]}{.spec.podCIDRs}{"\n"}{end}' | grep -c .)" -ge "$1" ]
}

# The control plane is not a node, so no CNI routes its traffic to pods: route
# every node's pod CIDRs via that node, as a control-plane node would have them
# (the apiserver reaches pods for its proxy, webhooks and aggregated APIs).
route_pod_cidrs() {
    local i cidr via
    for i in $(seq "$NODES"); do
        for cidr in $(k get node "$(node_name "$i")" -o jsonpath='{.spec.podCIDRs[*]}'); do
            case "$cidr" in *:*) via=$(node_v6 "$i") ;; *) via=$(node_v4 "$i") ;; esac
            in_underlay ip route replace "$cidr" via "$via"
        done
    done
}

# The cluster's DNS (CoreDNS); its pods start once a CNI is installed.
# shellcheck disable=SC2034  # render reads the locals by name
coredns_up() {
    local DNS_IP DNS_IPS DNS_POLICY=SingleStack
    DNS_IPS=$(join_families "$V4_DNS" "$V6_DNS"); DNS_IPS=${DNS_IPS/,/, }
    DNS_IP=${DNS_IPS%%,*}
    [ "$IPFAMILY" = dual ] && DNS_POLICY=RequireDualStack
    render "$CONFIG/coredns.yaml.in" DNS_IP DNS_IPS DNS_POLICY COREDNS_IMAGE | k apply -f - >/dev/null
}

provider_kubectl() {
    local bin
    bin=$(cluster_bin)
    [ -x "$bin/kubectl" ] || die "kubectl is not built yet: run make cluster"
    in_underlay "$bin/kubectl" --kubeconfig "$KUBECONFIG_FILE" "$@"
}

provider_exec() {  # NODE CMD...
    node_alive "$1" || die "no running node '$1' (nodes: $(cd "$STATE/nodes" 2>/dev/null && echo -- *))"
    in_node "$@"
}

provider_load_image() { load_image "$1"; }

# Every component writes its log into $LOGS as it runs: nothing to collect.
provider_logs() { log "component logs: $LOGS"; }

provider_run() { in_underlay "$@"; }

# Stops the cluster and removes every trace of it from the machine: processes
# (by cgroup: every node's daemons, containers and shims, and the control
# plane), namespaces (and with them every link, route, mount and nft table
# inside), cgroups, and the mount-point directories provider_up created. Keeps
# $LOGS. Fails if anything is left behind.
provider_down() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    local group ns dir
    for group in $(cluster_cgroups); do
        [ "$group" = "${CGROUP_PREFIX}control" ] || cgroup_destroy "$group"
    done
    cgroup_destroy "${CGROUP_PREFIX}control"
    for ns in $(ip netns list | awk '{print $1}' | grep "^crk-" || true); do
        ip netns pids "$ns" | xargs -r kill -KILL 2>/dev/null || true
        ip netns del "$ns"
    done
    if [ -f "$STATE/created-dirs" ]; then
        sort -ru "$STATE/created-dirs" | while read -r dir; do rmdir "$dir" 2>/dev/null || true; done
        # and their parents that were made for them, when empty (/opt/cni, /var/lib/...)
        for dir in /opt/cni /var/log/containers /var/log/pods; do rmdir "$dir" 2>/dev/null || true; done
    fi
    if [ -d "$STATE" ]; then find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +; fi
    # A killed process leaves its cgroup before its parent (by then init) has
    # reaped it: give the process table a moment.
    local _
    for _ in $(seq 50); do daemons_running || break; sleep 0.2; done
    left_behind
}

cluster_cgroups() {
    local h
    for h in $(cgroup_hierarchies); do ls -d "$h/${CGROUP_PREFIX}"* 2>/dev/null || true; done | xargs -rn1 basename | sort -u
}

daemons_running() {
    local p
    for p in $DAEMONS; do pgrep -x "$p" >/dev/null && return 0; done
    return 1
}

left_behind() {
    local left=() p
    for p in $DAEMONS; do pgrep -x "$p" >/dev/null && left+=("process $p"); done
    ip netns list | grep -q "^crk-" && left+=("namespaces: $(ip netns list | grep '^crk-' | tr '\n' ' ')")
    grep -q "crk-\|$STATE" /proc/self/mountinfo && left+=("mounts: $(grep -c "crk-\|$STATE" /proc/self/mountinfo)")
    [ -n "$(cluster_cgroups)" ] && left+=("cgroups: $(cluster_cgroups | tr '\n' ' ')")
    ip -o link show | grep -q "crk" && left+=("links: $(ip -o link show | grep crk | awk -F': ' '{print $2}')")
    if [ ${#left[@]} -gt 0 ]; then
        printf '[cluster] left behind: %s\n' "${left[@]}" >&2
        return 1
    fi
    log "cluster down; nothing left behind"
}
