#!/usr/bin/env bash
# `make conformance`: Kubernetes' own e2e test binary (built from the same
# module as the cluster) runs the [sig-network] conformance tests that need no
# DNS and no cloud: the Networking Granular Checks (intra-node and inter-node,
# http and udp) and the Services tests that need only kube-proxy. The JUnit
# report and the log go to .cluster/conformance/; the last lines are the tally.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"
[ -f "$STATE/cluster.env" ] || die "no cluster: run make cluster daemonset first"
. "$STATE/cluster.env"
bin=${BIN:-$(cluster_bin_dir)}
[ -x "$bin/e2e.test" ] || die "the e2e test binary is not built: run cluster/build.sh"

FOCUS=${FOCUS:-'\[sig-network\] (Networking Granular Checks|Services).*\[Conformance\]'}
# Left out: what needs cluster DNS (there is none here): the tests that reach
# a Service by its name (session affinity, "a functioning NodePort service")
# or resolve an ExternalName; and what needs a cloud load balancer.
SKIP=${SKIP:-'DNS|[Ee]xternal[Nn]ame|LoadBalancer|session affinity|functioning NodePort|\[Disruptive\]|\[Serial\]'}
report=$STATE/conformance
rm -rf "$report"; mkdir -p "$report"
start=$(date +%s)
status=0
nsenter --net="/run/netns/$UNDERLAY_NS" "$bin/e2e.test" \
    --kubeconfig="$KUBECONFIG_FILE" --provider=local \
    --ginkgo.focus="$FOCUS" --ginkgo.skip="$SKIP" \
    --ginkgo.no-color --ginkgo.timeout=2h --ginkgo.junit-report="$report/junit.xml" \
    --report-dir="$report" --num-nodes="$NODES" --minStartupPods=0 \
    > "$report/e2e.log" 2>&1 || status=$?
grep -E '^(Ran [0-9]+ of|PASS|FAIL)|^\s*\[FAIL\]' "$report/e2e.log" | tail -n 40 >&2 || true
log "conformance: exit $status in $(( $(date +%s) - start )) s; full log: $report/e2e.log"
exit $status
