# What every cluster script starts with (`. "$(dirname "$0")/lib/env.sh"`):
# the pinned versions, the paths, logging and waiting, the template renderer,
# the build cache, the running cluster's shape (.cluster/cluster.env), and the
# provider that runs the cluster with the verbs every script uses:
#
#   provider_up                 start the cluster (NODES, IPFAMILY) and write cluster.env
#   provider_down               remove it without a trace
#   provider_kubectl ARGS...    kubectl against it (k ARGS... for short)
#   provider_exec NODE CMD...   a command on a node, in all its namespaces
#   provider_load_image ARCHIVE a docker-archive into every node's containerd
#   provider_logs               every component's log into $LOGS
#   provider_run CMD...         a command where the apiserver is reachable
#
# The provider is the running cluster's (cluster.env), else CLUSTER_PROVIDER,
# else kind where kind and a Docker engine answer, else local (nodes are
# namespaces on this machine: lib/provider-local.sh).
# shellcheck shell=bash disable=SC2034  # the names set here are for the scripts that source it

CLUSTER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REPO=$(cd "$CLUSTER_SRC/.." && pwd)
STATE=${CLUSTER_STATE:-$REPO/.cluster}
CACHE_ROOT=${CNI_RENDER_CACHE:-/var/cache/cni-render}
IMAGES=$CACHE_ROOT/images
LOGS=$STATE/logs
KUBECONFIG_FILE=$STATE/kubeconfig
CONFIG=$CLUSTER_SRC/config
# shellcheck source=../versions.env
. "$CLUSTER_SRC/versions.env"
# The project's version, read here once: the image tag and the archive name.
PROJECT_VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/cni_render/__init__.py")
PROJECT_IMAGE=localhost/cni-render:$PROJECT_VERSION
CLUSTER_IMAGES="pause testimg busybox agnhost coredns"   # images.sh builds them; every local node has them

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

wait_for() {  # seconds description command...
    local seconds=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${seconds}s waiting for $what (logs: $LOGS)"
        sleep 0.5
    done
}

# render TEMPLATE NAME...: TEMPLATE with every @NAME@ replaced by the value of
# $NAME. Fails on a value sed would misread and on a placeholder left over.
render() {
    local template=$1 name value text
    shift
    local script=()
    for name in "$@"; do
        value=${!name}
        case $value in *'|'* | *'&'* | *\\* | *$'\n'*) die "render $template: $name has a character sed would misread: $value" ;; esac
        script+=(-e "s|@$name@|$value|g")
    done
    text=$(sed "${script[@]}" "$template")
    if grep -q '@[A-Z0-9_]*@' <<<"$text"; then
        die "render $template: no value for $(grep -o '@[A-Z0-9_]*@' <<<"$text" | sort -u | tr '\n' ' ')"
    fi
    printf '%s\n' "$text"
}

# The Go that builds Kubernetes: the machine's own (newer than Debian's
# golang-go, which must not shadow it).
need_go() {
    local go
    for go in /usr/local/go/bin/go "$(command -v go 2>/dev/null)"; do
        if [ -x "$go" ] && "$go" version >/dev/null 2>&1; then
            PATH="$(dirname "$go"):$PATH"
            export PATH
            return 0
        fi
    done
    die "no Go toolchain: this machine cannot build Kubernetes (install Go 1.24 or newer as /usr/local/go)"
}

# Bin directory for the current pins: a hash of what decides the binaries
# (versions.env, the go.mod/go.sum files and Go sources, the pause source),
# not of the scripts that drive the build.
cluster_bin_dir() {
    local key
    key=$(cat "$CLUSTER_SRC/versions.env" "$CLUSTER_SRC/images/pause.c" \
        "$CLUSTER_SRC"/build/*/go.mod "$CLUSTER_SRC"/build/*/go.sum "$CLUSTER_SRC"/build/*/*.go | sha256sum | cut -c1-16)
    echo "$CACHE_ROOT/cluster/$K8S_VERSION-$key/bin"
}

# --- the cluster's shape: the running one's, else what the caller asks for ---
NODES=${NODES:-3}
IPFAMILY=${IPFAMILY:-ipv4}
# shellcheck source=/dev/null
[ -f "$STATE/cluster.env" ] && . "$STATE/cluster.env"
case "$IPFAMILY" in ipv4|ipv6|dual) ;; *) die "IPFAMILY must be ipv4, ipv6 or dual (not '$IPFAMILY')" ;; esac
has_v4() { [ "$IPFAMILY" != ipv6 ]; }
has_v6() { [ "$IPFAMILY" != ipv4 ]; }

# cluster_env_write NAME...: record the cluster's shape for every later script.
cluster_env_write() {
    local name
    mkdir -p "$STATE"
    for name in CLUSTER_PROVIDER NODES IPFAMILY "$@"; do printf '%s=%s\n' "$name" "${!name}"; done > "$STATE/cluster.env"
}
need_cluster() { [ -f "$STATE/cluster.env" ] || die "no cluster: run make cluster first"; }

kind_available() { command -v kind >/dev/null 2>&1 && docker info >/dev/null 2>&1; }
if [ -z "${CLUSTER_PROVIDER:-}" ]; then
    if kind_available; then CLUSTER_PROVIDER=kind; else CLUSTER_PROVIDER=local; fi
fi
case "$CLUSTER_PROVIDER" in
    local) . "$CLUSTER_SRC/lib/provider-local.sh" ;;
    kind) . "$CLUSTER_SRC/lib/provider-kind.sh" ;;
    *) die "CLUSTER_PROVIDER must be local or kind (not '$CLUSTER_PROVIDER')" ;;
esac
need_provider() {  # NAME: for the scripts only one provider can serve
    [ "$CLUSTER_PROVIDER" = "$1" ] || die "$(basename "$0") needs the $1 cluster (this one is $CLUSTER_PROVIDER)"
}

k() { provider_kubectl "$@"; }
