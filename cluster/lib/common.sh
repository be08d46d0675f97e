# Shared by the cluster scripts: paths, logging, the build cache.
# shellcheck shell=bash
CLUSTER_SRC=${CLUSTER_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO=${REPO:-$(cd "$CLUSTER_SRC/.." && pwd)}
STATE=${CLUSTER_STATE:-$REPO/.cluster}
CACHE_ROOT=${CNI_RENDER_CACHE:-/var/cache/cni-render}

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }

# The Go that builds Kubernetes: the machine's own (newer than Debian's
# golang-go, which must not shadow it).
need_go() {
    local go
    for go in /usr/local/go/bin/go "$(command -v go 2>/dev/null)"; do
        if [ -x "$go" ] && "$go" version >/dev/null 2>&1; then
            export PATH="$(dirname "$go"):$PATH"
            return 0
        fi
    done
    die "no Go toolchain: this machine cannot build Kubernetes (install Go 1.24 or newer as /usr/local/go)"
}

# Bin directory for the current pins: a hash of versions.env, the go.mod/go.sum
# files, the build script and the pause source.
cluster_bin_dir() {
    local key
    key=$(cat "$CLUSTER_SRC/versions.env" "$CLUSTER_SRC/build.sh" "$CLUSTER_SRC/images/pause.c" \
        "$CLUSTER_SRC"/build/*/go.mod "$CLUSTER_SRC"/build/*/go.sum "$CLUSTER_SRC"/build/*/*.go | sha256sum | cut -c1-16)
    echo "$CACHE_ROOT/cluster/$K8S_VERSION-$key/bin"
}
