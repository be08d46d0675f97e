#!/usr/bin/env bash
# `make clean` on the local cluster: removes the smoke test's pods, then
# uninstalls cni-render the documented way (docs/kubernetes.md, "Uninstall"):
# the DaemonSet goes, the uninstall DaemonSet cleans every node (conflist, shim,
# routes, nft table) and goes too.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
k() { "$here/kubectl" "$@"; }
k delete pod -l app=cni-render-smoke --ignore-not-found --wait=true --timeout=120s
k delete -f "$repo/deploy/cni-render.yaml" --ignore-not-found --wait=true --timeout=120s
k apply -f "$repo/deploy/cni-render-uninstall.yaml"
k -n kube-system rollout status ds/cni-render-uninstall --timeout=180s
k delete -f "$repo/deploy/cni-render-uninstall.yaml" --wait=true --timeout=120s
echo "cni-render uninstalled from every node"
