#!/usr/bin/env bash
# `make smoke`: the seed's "test" on a real multi-node cluster. A test pod on
# every node, `kubectl get pods -o wide`, then HTTP from a node to each pod and
# from each pod to a pod on another node; prints "It works!" when all answer.
#   KUBECTL   how to run kubectl (default: cluster/kubectl)
#   NODE_EXEC how to run a command on a node, followed by the node's name
#             (default: cluster/node; for kind: "docker exec")
#   SMOKE_IMAGE the test image (an HTTP server on :8080 answering "It works!")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
KUBECTL=${KUBECTL:-$here/kubectl}
NODE_EXEC=${NODE_EXEC:-$here/node}
IMAGE=${SMOKE_IMAGE:-$TEST_IMAGE}
k() { $KUBECTL "$@"; }
fail() { echo "smoke: $*" >&2; exit 1; }

nodes=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
[ -n "$nodes" ] || fail "the cluster has no nodes"
for node in $nodes; do
    k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: smoke-$node
  labels: {app: cni-render-smoke}
spec:
  nodeName: $node
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: $IMAGE
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 8080}]
YAML
done
k wait --for=condition=Ready pod -l app=cni-render-smoke --timeout=120s >/dev/null
echo; echo "------"; echo
k get pods -l app=cni-render-smoke -o wide
echo; echo "------"; echo

url() { case "$1" in *:*) echo "http://[$1]:8080/" ;; *) echo "http://$1:8080/" ;; esac; }
answers=0
set -- $nodes
for node in "$@"; do
    for ip in $(k get pod "smoke-$node" -o jsonpath='{range .status.podIPs[*]}{.ip}{" "}{end}'); do
        printf '%s -> pod smoke-%s (%s): ' "$node" "$node" "$ip"
        body=$($NODE_EXEC "$node" curl -s --max-time 5 "$(url "$ip")") || fail "node $node cannot reach $ip"
        echo "$body"; [ "$body" = "It works!" ] || fail "unexpected answer from $ip"
        answers=$((answers + 1))
    done
done
first=$1; shift || true
for node in "$@"; do
    for ip in $(k get pod "smoke-$node" -o jsonpath='{range .status.podIPs[*]}{.ip}{" "}{end}'); do
        printf 'pod smoke-%s -> pod smoke-%s (%s): ' "$first" "$node" "$ip"
        body=$(k exec "smoke-$first" -- timeout 5 wget -qO- "$(url "$ip")") || fail "pod on $first cannot reach $ip on $node"
        echo "$body"; [ "$body" = "It works!" ] || fail "unexpected answer from $ip"
        answers=$((answers + 1))
    done
done
echo; echo "It works! ($answers answers, $(echo $nodes | wc -w) nodes)"
