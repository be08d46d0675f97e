#!/usr/bin/env bash
# `make conformance`: Kubernetes' own e2e test binary (built from the same
# module as the cluster) runs the [sig-network] conformance tests that need no
# cloud: the Networking Granular Checks (intra-node and inter-node, http and
# udp), the Services tests (kube-proxy; by name through the cluster's DNS),
# the Proxy tests (the apiserver reaching pods) and HostPort (portmap, chained
# after cni-render). The JUnit report and the log go to .cluster/conformance/;
# the last lines are the tally.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_cluster
bin=${BIN:-$("$CLUSTER_SRC/build.sh" | tail -n 1)}
[ -x "$bin/e2e.test" ] || die "the e2e test binary is not built: run cluster/build.sh"

FOCUS=${FOCUS:-'\[sig-network\] (Networking Granular Checks|Services|Proxy|HostPort).*\[Conformance\]'}
# Left out: Services of type LoadBalancer (no cloud here), and what is marked
# Serial or Disruptive. The cluster's DNS (CoreDNS) serves the tests that reach
# a Service by its name or resolve an ExternalName.
SKIP=${SKIP:-'LoadBalancer|\[Serial\]|\[Disruptive\]'}
# The nodes that take pods (a kind control plane does not).
schedulable=$(k get nodes -o jsonpath='{range .items[*]}{.spec.taints}{"\n"}{end}' | grep -vc NoSchedule || true)
report=$STATE/conformance
rm -rf "$report"; mkdir -p "$report"
start=$(date +%s)
status=0
provider_run "$bin/e2e.test" \
    --kubeconfig="$KUBECONFIG_FILE" --provider=local \
    --ginkgo.focus="$FOCUS" --ginkgo.skip="$SKIP" \
    --ginkgo.no-color --ginkgo.timeout=2h --ginkgo.junit-report="$report/junit.xml" \
    --report-dir="$report" --num-nodes="$schedulable" --minStartupPods=0 \
    > "$report/e2e.log" 2>&1 || status=$?
grep -E '^(Ran [0-9]+ of|PASS|FAIL)|^\s*\[FAIL\]' "$report/e2e.log" | tail -n 40 >&2 || true
log "conformance: exit $status in $(( $(date +%s) - start )) s; full log: $report/e2e.log"
exit $status
