# The underlay (a bridge in a namespace of its own), the outside host, and the
# control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# all in the underlay namespace, in the cgroup crk-control.
# shellcheck shell=bash

in_underlay() { nsenter --net="/run/netns/$UNDERLAY_NS" "$@"; }

underlay_up() {
    ip netns list | grep -qw "$UNDERLAY_NS" && return 0
    ip netns add "$UNDERLAY_NS"
    in_underlay ip link set lo up
    in_underlay ip link add "$BRIDGE" type bridge
    in_underlay ip addr add "$V4_UNDERLAY.1/24" dev "$BRIDGE"
    in_underlay ip addr add "${V6_UNDERLAY}:1/64" dev "$BRIDGE" nodad
    in_underlay ip link set "$BRIDGE" up
    # The outside host: sees only the underlay, answers HTTP with the caller's address.
    ip netns add "$EXTERNAL_NS"
    attach_to_underlay "$EXTERNAL_NS" ext "$V4_UNDERLAY.254" "${V6_UNDERLAY}:254"
}

# attach_to_underlay NETNS SHORTNAME V4 V6: a veth from the bridge into NETNS.
attach_to_underlay() {
    local ns=$1 short=$2 v4=$3 v6=$4
    in_underlay ip link add "u-$short" type veth peer name eth0 netns "/run/netns/$ns"
    in_underlay ip link set "u-$short" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$v4/24" dev eth0
    ip -n "$ns" addr add "$v6/64" dev eth0 nodad
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$V4_UNDERLAY.1"
    ip -n "$ns" -6 route add default via "${V6_UNDERLAY}:1"
}

external_host_up() {
    local www=$STATE/external
    mkdir -p "$www/cgi-bin"
    install -m 0755 "$CONFIG/whoami.cgi" "$www/cgi-bin/whoami"
    echo "outside the cluster" > "$www/index.html"
    spawn external-httpd "${CGROUP_PREFIX}control" \
        nsenter --net="/run/netns/$EXTERNAL_NS" /bin/busybox httpd -f -p 80 -h "$www"
}

controlplane_up() {
    local bin=$1 group=${CGROUP_PREFIX}control
    spawn etcd "$group" nsenter --net="/run/netns/$UNDERLAY_NS" "$bin/etcd" \
        --name local --data-dir "$STATE/etcd" --unsafe-no-fsync \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster local=http://127.0.0.1:2380 --log-level warn
    wait_for 60 etcd in_underlay curl -sf http://127.0.0.1:2379/health
    spawn kube-apiserver "$group" nsenter --net="/run/netns/$UNDERLAY_NS" "$bin/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 \
        --advertise-address="$(api_address)" --bind-address=:: --secure-port=6443 \
        --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
        --client-ca-file="$PKI/ca.crt" \
        --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
        --kubelet-preferred-address-types=InternalIP \
        --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-cluster-ip-range="$(join_families "$V4_SERVICES" "$V6_SERVICES")" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true --endpoint-reconciler-type=lease --v=1
    wait_for 120 kube-apiserver in_underlay curl -sf --max-time 2 \
        --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$(api_url)/readyz"
    controller_manager_start "$bin"
    spawn kube-scheduler "$group" nsenter --net="/run/netns/$UNDERLAY_NS" "$bin/kube-scheduler" \
        --kubeconfig="$STATE/scheduler.kubeconfig" \
        --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
        --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
        --leader-elect=false --v=1
}

# controller_manager_start BIN [",-x,-y"]: the second argument names more controllers
# to leave out (cluster/restart-controller-manager.sh).
controller_manager_start() {
    local bin=$1 group=${CGROUP_PREFIX}control
    local masks=()  # a mask for a family the cluster lacks stops the node IPAM controller
    has_v4 && masks+=(--node-cidr-mask-size-ipv4=24)
    has_v6 && masks+=(--node-cidr-mask-size-ipv6=64)
    spawn kube-controller-manager "$group" nsenter --net="/run/netns/$UNDERLAY_NS" "$bin/kube-controller-manager" \
        --kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
        --allocate-node-cidrs=true --cluster-cidr="$(join_families "$V4_PODS" "$V6_PODS")" \
        "${masks[@]}" \
        --service-cluster-ip-range="$(join_families "$V4_SERVICES" "$V6_SERVICES")" \
        --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
        --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
        --use-service-account-credentials=true --leader-elect=false \
        --controllers="*,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller${2:-}" \
        --node-monitor-grace-period=20s --v=1
}
