#!/usr/bin/env bash
# Every component's log into .cluster/logs (make e2e runs it when the suite fails).
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"

need_cluster
mkdir -p "$LOGS"
k get pods -A -o wide > "$LOGS/pods.txt" 2>&1 || true
k get events -A --sort-by=.lastTimestamp > "$LOGS/events.txt" 2>&1 || true
provider_logs
