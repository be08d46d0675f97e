# Processes of the local cluster, grouped by cgroup (crk-control, crk-<node>):
# spawn starts one in the background with its log, cgroup_destroy ends a group.
# shellcheck shell=bash

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
    local group=$1 pids _
    mapfile -t pids < <(cgroup_pids "$group")
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
        [ -z "$(cgroup_pids "$group")" ] && break
        sleep 0.2
    done
    for _ in $(seq 50); do
        mapfile -t pids < <(cgroup_pids "$group")
        [ ${#pids[@]} -eq 0 ] && break
        kill -KILL "${pids[@]}" 2>/dev/null || true
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
