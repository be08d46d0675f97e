#!/usr/bin/env bash
# `make cluster`: a real Kubernetes of NODES nodes (IPFAMILY=ipv4|ipv6|dual) from
# the provider (lib/env.sh: the local cluster, or kind), then prints the nodes.
# Idempotent: a running cluster is left as it is. cluster/kubectl talks to it.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"

start=$(date +%s)
provider_up
log "cluster up in $(( $(date +%s) - start )) s ($CLUSTER_PROVIDER, $NODES nodes, $IPFAMILY); kubeconfig: $KUBECONFIG_FILE"
k get nodes -o wide
