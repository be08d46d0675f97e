#!/usr/bin/env bash
# `make cluster`: a real Kubernetes on this machine. Builds what is missing
# (cluster/build.sh, cluster/images.sh), then starts the underlay, the control
# plane and NODES nodes (IPFAMILY=ipv4|ipv6|dual), waits for the API and for
# every node to register, and prints the nodes. Idempotent: a running cluster is
# left as it is. The kubeconfig is .cluster/kubeconfig; cluster/kubectl uses it
# from inside the underlay namespace, where the apiserver listens.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
. "$here/lib/pki.sh"
. "$here/lib/controlplane.sh"
. "$here/lib/node.sh"

[ "$(id -u)" -eq 0 ] || die "run as root: the cluster is made of namespaces, mounts and cgroups"
for tool in nsenter unshare ip containerd ctr runc nft openssl curl; do
    command -v "$tool" >/dev/null || die "$tool is missing (make cluster-deps installs the Debian packages)"
done
start=$(date +%s)
bin=$("$here/build.sh" | tail -n 1)
"$here/images.sh" >/dev/null

if [ -f "$STATE/cluster.env" ]; then
    . "$STATE/cluster.env"   # a running cluster keeps its shape
else
    mkdir -p "$STATE/pids" "$LOGS"
    # the cluster's shape, and the binaries it runs (kubectl and the e2e binary use them)
    printf 'NODES=%s\nIPFAMILY=%s\nBIN=%s\n' "$NODES" "$IPFAMILY" "$bin" > "$STATE/cluster.env"
fi

sysctl -qw fs.inotify.max_user_instances=8192 fs.inotify.max_user_watches=1048576
pki_all
underlay_up
pid_alive() { [ -f "$STATE/pids/$1" ] && kill -0 "$(cat "$STATE/pids/$1")" 2>/dev/null; }
pid_alive kube-apiserver || controlplane_up "$bin"
pid_alive external-httpd || external_host_up
for i in $(seq "$NODES"); do
    node_up "$i" "$bin"
done

k() { "$here/kubectl" "$@"; }
wait_for 180 "every node to register" bash -c "[ \$('$here/kubectl' get nodes --no-headers 2>/dev/null | wc -l) -ge $NODES ]"
# The control plane is not a node, so no CNI routes its traffic to pods: route
# every node's pod CIDRs via that node, as a control-plane node would have them
# (the apiserver reaches pods for its proxy, webhooks and aggregated APIs).
wait_for 60 "pod CIDRs for every node" bash -c \
    "[ \$('$here/kubectl' get nodes -o jsonpath='{range .items[*]}{.spec.podCIDRs}{\"\\n\"}{end}' | grep -c .) -ge $NODES ]"
for i in $(seq "$NODES"); do
    for cidr in $(k get node "$(node_name "$i")" -o jsonpath='{.spec.podCIDRs[*]}'); do
        case "$cidr" in *:*) via=$(node_v6 "$i") ;; *) via=$(node_v4 "$i") ;; esac
        in_underlay ip route replace "$cidr" via "$via"
    done
done

# The cluster's DNS (CoreDNS); its pods start once a CNI is installed.
case "$IPFAMILY" in
    ipv4) dns_ips=10.96.0.10 dns_policy=SingleStack ;;
    ipv6) dns_ips=fd00:10:96::a dns_policy=SingleStack ;;
    dual) dns_ips="10.96.0.10, fd00:10:96::a" dns_policy=RequireDualStack ;;
esac
sed -e "s|@DNS_IP@|${dns_ips%%,*}|" -e "s|@DNS_IPS@|$dns_ips|" -e "s|@DNS_POLICY@|$dns_policy|" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|" \
    "$here/manifests/coredns.yaml" | k apply -f - >/dev/null
log "cluster up in $(( $(date +%s) - start )) s ($NODES nodes, $IPFAMILY); kubeconfig: $KUBECONFIG_FILE"
k get nodes -o wide
