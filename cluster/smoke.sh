#!/usr/bin/env bash
# `make smoke`: the seed's "test" on a real multi-node cluster. A test pod on
# every node, `kubectl get pods -o wide`, then HTTP from a node to each pod and
# from each pod to a pod on another node; prints "It works!" when all answer.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_cluster

fail() { echo "smoke: $*" >&2; exit 1; }
url() { case "$1" in *:*) echo "http://[$1]:8080/" ;; *) echo "http://$1:8080/" ;; esac; }
pod_ips() { k get pod "smoke-$1" -o jsonpath='{range .status.podIPs[*]}{.ip}{" "}{end}'; }
expect_it_works() {  # what CMD...: CMD's output must be "It works!"
    local what=$1 body; shift
    printf '%s: ' "$what"
    body=$("$@") || fail "$what: no answer"
    echo "$body"
    [ "$body" = "It works!" ] || fail "$what: unexpected answer"
    answers=$((answers + 1))
}

mapfile -t nodes < <(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[ ${#nodes[@]} -gt 0 ] || fail "the cluster has no nodes"
for node in "${nodes[@]}"; do
    NODE_NAME=$node render "$CONFIG/smoke-pod.yaml.in" NODE_NAME TEST_IMAGE | k apply -f - >/dev/null
done
k wait --for=condition=Ready pod -l app=cni-render-smoke --timeout=120s >/dev/null
echo; echo "------"; echo
k get pods -l app=cni-render-smoke -o wide
echo; echo "------"; echo

answers=0
for node in "${nodes[@]}"; do
    for ip in $(pod_ips "$node"); do
        expect_it_works "$node -> pod smoke-$node ($ip)" provider_exec "$node" curl -s --max-time 5 "$(url "$ip")"
    done
done
first=${nodes[0]}
for node in "${nodes[@]:1}"; do
    for ip in $(pod_ips "$node"); do
        expect_it_works "pod smoke-$first -> pod smoke-$node ($ip)" \
            k exec "smoke-$first" -- timeout 5 wget -qO- "$(url "$ip")"
    done
done
echo; echo "It works! ($answers answers, ${#nodes[@]} nodes)"
