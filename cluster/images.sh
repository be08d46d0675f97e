#!/usr/bin/env bash
# Builds the cluster's container images without a registry or a Docker engine
# and writes each as a docker-archive under the image cache ($IMAGES/NAME.tar):
#   pause      registry.k8s.io/pause:<v>       the static pause program, nothing else
#   agnhost    registry.k8s.io/e2e-test-images/agnhost:<v>  Kubernetes' test server
#                                              (built from source) + busybox-static
#   testimg    localhost/cni-render-testimg:1  busybox-static: httpd, nc, wget, sh
#   busybox    registry.k8s.io/e2e-test-images/busybox:<v>   busybox-static
#   coredns    registry.k8s.io/coredns/coredns:<v>             CoreDNS (built from source)
# The project's image is lib/project-image.sh's (make daemonset).
#
#   cluster/images.sh [NAME...]   # all of them by default; prints the archives' paths
set -euo pipefail
# shellcheck source=lib/env.sh
. "$(dirname "$0")/lib/env.sh"

mkdir -p "$IMAGES"
busybox=/bin/busybox
[ -x "$busybox" ] || die "busybox-static is missing (make deps installs it)"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

built() {  # the cluster binaries (pause, agnhost, coredns come from there)
    local bin
    bin=$(cluster_bin_dir)
    [ -f "$bin/.complete" ] || die "the cluster binaries are not built: run cluster/build.sh"
    echo "$bin"
}

# A single-layer image from a directory tree, by cluster/images/archive.py.
simple_image() {  # name tag [--cmd ARG]... entrypoint...
    local name=$1 tag=$2; shift 2
    local cmd=()
    while [ "${1:-}" = --cmd ]; do cmd+=(--cmd "$2"); shift 2; done
    python3 "$CLUSTER_SRC/images/archive.py" --tag "$tag" --tree "$work/$name" --output "$IMAGES/$name.tar" \
        "${cmd[@]}" -- "$@"
    echo "$IMAGES/$name.tar"
}

busybox_tree() {  # dir: busybox-static with its applets as links, /tmp, /etc/passwd
    local dir=$1 applet
    mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc" "$dir/www"
    cp "$busybox" "$dir/bin/busybox"
    for applet in $("$busybox" --list); do
        [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
    done
    cp "$CONFIG/passwd" "$CONFIG/group" "$dir/etc/"
}

# A dynamically linked program with every library it loads (ldd's closure).
with_binaries() {  # dir program...
    local dir=$1; shift
    local program lib
    for program in "$@"; do
        cp -L "$program" "$dir/bin/$(basename "$program")"
        for lib in $(ldd "$program" | grep -o '/[^ ]*'); do
            mkdir -p "$dir$(dirname "$lib")"
            cp -L "$lib" "$dir$lib"
        done
    done
}

image_pause() {
    mkdir -p "$work/pause"
    cp "$(built)/pause" "$work/pause/pause"
    simple_image pause "$PAUSE_IMAGE" /pause
}

image_testimg() {
    busybox_tree "$work/testimg"
    echo "It works!" > "$work/testimg/www/index.html"
    mkdir -p "$work/testimg/www/cgi-bin"
    cp "$CONFIG/whoami.cgi" "$work/testimg/www/cgi-bin/whoami"
    simple_image testimg "$TEST_IMAGE" /bin/httpd -f -p 8080 -h /www
}

image_busybox() {
    busybox_tree "$work/busybox"
    simple_image busybox "$BUSYBOX_IMAGE" /bin/sh
}

# agnhost as the e2e tests use it: they run curl and an OpenBSD-style nc
# (-v -t -u -w) inside it, as in the upstream image.
image_agnhost() {
    busybox_tree "$work/agnhost"
    cp "$(built)/agnhost" "$work/agnhost/agnhost"
    # /bin/sh is dash: busybox's shell runs its own applets (its nc) before PATH.
    with_binaries "$work/agnhost" /usr/bin/curl /bin/nc.openbsd /bin/dash
    ln -sf nc.openbsd "$work/agnhost/bin/nc"
    ln -sf dash "$work/agnhost/bin/sh"
    # agnhost porter serves TLS with the certificate and key the upstream image
    # ships in its working directory (test/images/agnhost/porter/localhost.*)
    need_go
    local porter
    porter=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/test/images/agnhost/porter
    cp "$porter/localhost.crt" "$porter/localhost.key" "$work/agnhost/"
    simple_image agnhost "$AGNHOST_IMAGE" --cmd pause /agnhost   # as upstream: agnhost pause
}

image_coredns() {
    mkdir -p "$work/coredns/etc/coredns"
    cp "$(built)/coredns" "$work/coredns/coredns"
    simple_image coredns "$COREDNS_IMAGE" /coredns
}

names=("$@")
[ $# -gt 0 ] || read -ra names <<<"$CLUSTER_IMAGES"
for name in "${names[@]}"; do
    case " $CLUSTER_IMAGES " in *" $name "*) "image_$name" ;; *) die "no image '$name' (images: $CLUSTER_IMAGES)" ;; esac
done
