#!/usr/bin/env bash
# cluster/add-node.sh N: add node N (named nodeN, address .1N on the underlay) to
# the running local cluster, with the images every node has, including the
# project's newest image archive. cluster/remove-node.sh takes it away again.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"
need_provider local
need_cluster
case "$#:${1:-}" in 1:[1-9] | 1:[1-9][0-9]) ;; *) die "usage: cluster/add-node.sh NUMBER (1 to 99)" ;; esac

name=$(node_name "$1")
pki_node "$name"
node_up "$1" "$BIN"
archive=$(find "$IMAGES" -maxdepth 1 -name 'cni-render-*.tar' -printf '%T@ %p\n' | sort -rn | head -n 1 | cut -d' ' -f2-)
if [ -n "$archive" ]; then node_import "$name" "$archive"; fi
log "$name added"
