#!/usr/bin/env bash
# `make clean`: removes the smoke test's pods, then uninstalls cni-render the
# documented way (docs/kubernetes.md, "Uninstall"): the DaemonSet goes, the
# uninstall DaemonSet cleans every node (conflist, shim, routes, nft table) and
# goes too.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_cluster

k delete pod -l app=cni-render-smoke --ignore-not-found --wait=true --timeout=120s
k delete -f "$REPO/deploy/cni-render.yaml" --ignore-not-found --wait=true --timeout=120s
k apply -f "$REPO/deploy/cni-render-uninstall.yaml"
k -n kube-system rollout status ds/cni-render-uninstall --timeout=180s
k delete -f "$REPO/deploy/cni-render-uninstall.yaml" --wait=true --timeout=120s
echo "cni-render uninstalled from every node"
