#!/usr/bin/env bash
# Builds the cluster's container images without a registry or a Docker engine and
# writes each as a docker-archive under the image cache:
#   pause      registry.k8s.io/pause:<v>       the static pause program, nothing else
#   agnhost    registry.k8s.io/e2e-test-images/agnhost:<v>  Kubernetes' test server
#                                              (built from source) + busybox-static
#   testimg    localhost/cni-render-testimg:1  busybox-static: httpd, nc, wget, sh
#   busybox    registry.k8s.io/e2e-test-images/busybox:<v>   busybox-static
#   coredns    registry.k8s.io/coredns/coredns:<v>             CoreDNS (built from source)
#   cni-render localhost/cni-render:<version>  the project's Dockerfile, built by
#                                              buildah on bases made with debootstrap
# Archives are cached by content; `cluster/images.sh` prints the archive paths.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib/common.sh"

bin=$(cluster_bin_dir)
[ -f "$bin/.complete" ] || die "the cluster binaries are not built: run cluster/build.sh"
images=$CACHE_ROOT/images
mkdir -p "$images"
busybox=/bin/busybox
[ -x "$busybox" ] || die "busybox-static is missing (apt-get install busybox-static)"

# A single-layer image from a directory tree, by cluster/images/archive.py.
simple_image() {  # name tag tree [--cmd ARG]... entrypoint...
    local name=$1 tag=$2 tree=$3; shift 3
    local out="$images/$name.tar"
    local cmd=()
    while [ "${1:-}" = --cmd ]; do cmd+=(--cmd "$2"); shift 2; done
    python3 "$here/images/archive.py" --tag "$tag" --tree "$tree" --output "$out" "${cmd[@]}" -- "$@"
    echo "$out"
}

busybox_tree() {  # dir: busybox-static with its applets as links, /tmp, /etc/passwd
    local dir=$1
    mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc" "$dir/www"
    cp "$busybox" "$dir/bin/busybox"
    for applet in $("$busybox" --list); do
        [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/pause"
cp "$bin/pause" "$work/pause/pause"
simple_image pause "$PAUSE_IMAGE" "$work/pause" /pause

busybox_tree "$work/testimg"
echo "It works!" > "$work/testimg/www/index.html"
mkdir -p "$work/testimg/www/cgi-bin"   # /cgi-bin/whoami: the caller's address, as this pod sees it
printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s\\n" "$REMOTE_ADDR"\n' > "$work/testimg/www/cgi-bin/whoami"
chmod +x "$work/testimg/www/cgi-bin/whoami"
simple_image testimg "$TEST_IMAGE" "$work/testimg" /bin/httpd -f -p 8080 -h /www

busybox_tree "$work/busybox"
simple_image busybox "$BUSYBOX_IMAGE" "$work/busybox" /bin/sh

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

# agnhost as the e2e tests use it: they run curl and an OpenBSD-style nc
# (-v -t -u -w) inside it, as in the upstream image.
busybox_tree "$work/agnhost"
cp "$bin/agnhost" "$work/agnhost/agnhost"
# /bin/sh is dash: busybox's shell runs its own applets (its nc) before PATH.
with_binaries "$work/agnhost" /usr/bin/curl /bin/nc.openbsd /bin/dash
ln -sf nc.openbsd "$work/agnhost/bin/nc"
ln -sf dash "$work/agnhost/bin/sh"
# agnhost porter serves TLS with the certificate and key the upstream image
# ships in its working directory (test/images/agnhost/porter/localhost.*)
need_go
porter=$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION/test/images/agnhost/porter
cp "$porter/localhost.crt" "$porter/localhost.key" "$work/agnhost/"
simple_image agnhost "$AGNHOST_IMAGE" "$work/agnhost" --cmd pause /agnhost   # as upstream: agnhost pause

mkdir -p "$work/coredns/etc/coredns"
cp "$bin/coredns" "$work/coredns/coredns"
simple_image coredns "$COREDNS_IMAGE" "$work/coredns" /coredns

"$here/lib/project-image.sh"
