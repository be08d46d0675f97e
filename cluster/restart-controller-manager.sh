#!/usr/bin/env bash
# cluster/restart-controller-manager.sh [CONTROLLER...]: restart the local
# cluster's kube-controller-manager, leaving out the named controllers (none:
# back to normal). The end-to-end suite leaves out node-ipam-controller to let a
# node join without a pod CIDR.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_provider local
need_cluster

pid=$(cat "$STATE/pids/kube-controller-manager")
kill "$pid" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
without=""
for controller in "$@"; do without+=",-$controller"; done
controller_manager_start "$BIN" "$without"
log "kube-controller-manager restarted${without:+ without ${without#,}}"
