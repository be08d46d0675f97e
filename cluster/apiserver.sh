#!/usr/bin/env bash
# cluster/apiserver.sh stop|start|status: stop the local cluster's
# kube-apiserver (everything else keeps running: etcd, the controllers, every
# node's kubelet and containerd, the agents) and start it again with the very
# command line it ran with. The end-to-end suite takes the API server away for
# minutes (tests/e2e/test_api_away.py). Local provider only: on kind the API
# server is a static pod of the control-plane container.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_provider local
need_cluster

saved=$STATE/kube-apiserver.cmdline   # its argv, NUL separated, kept while it is stopped

ready() {
    in_underlay curl -sf --max-time 2 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "$(api_url)/readyz"
}

case ${1:-} in
stop)
    if ! pid_alive kube-apiserver; then log "kube-apiserver is not running"; exit 0; fi
    pid=$(cat "$STATE/pids/kube-apiserver")
    cp "/proc/$pid/cmdline" "$saved"
    kill "$pid"   # its graceful termination keeps serving for a while: it gets 5 s, then goes as in a crash
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    log "kube-apiserver stopped (cluster/apiserver.sh start brings it back)"
    ;;
start)
    if pid_alive kube-apiserver; then log "kube-apiserver is running"; exit 0; fi
    [ -s "$saved" ] || die "no saved command line in $saved: was the API server stopped by cluster/apiserver.sh stop?"
    mapfile -d '' -t argv < "$saved"
    spawn kube-apiserver "${CGROUP_PREFIX}control" nsenter --net="/run/netns/$UNDERLAY_NS" "${argv[@]}"
    wait_for 120 kube-apiserver ready
    rm -f "$saved"
    log "kube-apiserver started"
    ;;
status)
    if pid_alive kube-apiserver; then echo running; else echo stopped; fi
    ;;
*)
    die "usage: $(basename "$0") stop|start|status"
    ;;
esac
