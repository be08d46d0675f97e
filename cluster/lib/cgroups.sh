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

# --- the cluster's shape -----------------------------------------------------
NODES=${NODES:-3}
IPFAMILY=${IPFAMILY:-ipv4}
UNDERLAY_NS=crk-net            # the underlay: bridge, control plane
EXTERNAL_NS=crk-ext            # a host outside the cluster, on the underlay
BRIDGE=crk0
CGROUP_PREFIX=crk-
KUBECONFIG_FILE=$STATE/kubeconfig
LOGS=$STATE/logs
V4_UNDERLAY=10.200.0       # .1 control plane, .1N node N, .254 the outside host
V6_UNDERLAY=fd00:200:       # ::1, ::1N, ::254 (/64)
V4_PODS=10.244.0.0/16
V6_PODS=fd00:10:244::/56
V4_SERVICES=10.96.0.0/16
V6_SERVICES=fd00:10:96::/112

node_name() { echo "node$1"; }
node_netns() { echo "crk-$1"; }
node_dir() { echo "$STATE/nodes/$1"; }
node_v4() { echo "$V4_UNDERLAY.$((10 + $1))"; }
node_v6() { echo "${V6_UNDERLAY}:$((10 + $1))"; }
has_v4() { [ "$IPFAMILY" != ipv6 ]; }
has_v6() { [ "$IPFAMILY" != ipv4 ]; }
case "$IPFAMILY" in ipv4|ipv6|dual) ;; *) die "IPFAMILY must be ipv4, ipv6 or dual (not '$IPFAMILY')" ;; esac

# The apiserver's address: IPv4 first where there is IPv4.
api_address() { if has_v4; then echo "$V4_UNDERLAY.1"; else echo "${V6_UNDERLAY}:1"; fi; }
api_url() { if has_v4; then echo "https://$V4_UNDERLAY.1:6443"; else echo "https://[${V6_UNDERLAY}:1]:6443"; fi; }
join_families() {  # v4 v6 -> the family list for IPFAMILY, comma separated
    if [ "$IPFAMILY" = ipv4 ]; then echo "$1"; elif [ "$IPFAMILY" = ipv6 ]; then echo "$2"; else echo "$1,$2"; fi
}

# Cgroup hierarchies (v1 controllers and the v2 unified one, whatever is mounted).
cgroup_hierarchies() {
    local dir
    for dir in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        [ -f "$dir/cgroup.procs" ] && echo "${dir%/}"
    done | sort -u
}

cgroup_create() {  # relative path, e.g. crk-node1/daemons
    local h
    for h in $(cgroup_hierarchies); do
        mkdir -p "$h/$1"
        if [ -f "$h/$1/cpuset.cpus" ] && [ -z "$(cat "$h/$1/cpuset.cpus")" ]; then
            local parent=$h/$1
            local chain=()
            while [ -z "$(cat "$parent/cpuset.cpus")" ]; do chain=("$parent" "${chain[@]}"); parent=$(dirname "$parent"); done
            local c
            for c in "${chain[@]}"; do
                cat "$(dirname "$c")/cpuset.cpus" > "$c/cpuset.cpus"
                cat "$(dirname "$c")/cpuset.mems" > "$c/cpuset.mems"
            done
        fi
    done
}

cgroup_join() {  # relative path, pid
    local h
    for h in $(cgroup_hierarchies); do echo "$2" > "$h/$1/cgroup.procs"; done
}

# Every process in a cgroup subtree (from the pids hierarchy, else any).
cgroup_pids() {
    local h
    for h in $(cgroup_hierarchies); do
        [ -d "$h/$1" ] && find "$h/$1" -name cgroup.procs -exec cat {} + 2>/dev/null
    done | sort -un
}

# Kill a subtree's processes (TERM, then KILL), then remove its cgroups.
cgroup_destroy() {
    local group=$1 pids tries
    pids=$(cgroup_pids "$group")
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null || true
    for tries in $(seq 50); do
        [ -z "$(cgroup_pids "$group")" ] && break
        sleep 0.2
    done
    for tries in $(seq 50); do
        pids=$(cgroup_pids "$group")
        [ -z "$pids" ] && break
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    done
    local h
    for h in $(cgroup_hierarchies); do
        [ -d "$h/$group" ] && find "$h/$group" -depth -type d -exec rmdir {} + 2>/dev/null
        [ -d "$h/$group" ] && log "warning: cgroup $h/$group is still there"
    done
    return 0
}

# Start a long-running process in the background, in a cgroup, with its log.
#   spawn NAME CGROUP CMD...   (CMD usually starts with nsenter ...)
spawn() {
    local name=$1 group=$2; shift 2
    mkdir -p "$LOGS"
    cgroup_create "$group"
    (
        cgroup_join "$group" "$BASHPID"
        exec setsid "$@" </dev/null >>"$LOGS/$name.log" 2>&1
    ) &
    echo $! > "$STATE/pids/$name"
}

wait_for() {  # seconds description command...
    local seconds=$1 what=$2; shift 2
    local deadline=$(( $(date +%s) + seconds ))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${seconds}s waiting for $what (logs: $LOGS)"
        sleep 0.5
    done
}
