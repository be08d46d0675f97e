#!/usr/bin/env bash
# `make down`: removes the cluster and every trace of it from the machine
# (processes, namespaces, mounts, links, cgroups, nft tables); keeps
# .cluster/logs for a look after a failure. Exit 1 if anything is left behind.
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"

provider_down
