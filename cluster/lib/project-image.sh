#!/usr/bin/env bash
# The project's image, built from its Dockerfile by buildah on Debian 12 bases made
# with debootstrap (no registry, no Docker engine), written as a docker-archive:
#   localhost/cni-render-build:bookworm  python3, venv, gcc, libc6-dev, iproute2, nftables
#   localhost/cni-render-base:bookworm   python3, iproute2, nftables
#   localhost/cni-render:<version>       FROM those, by `buildah bud`
# Prints the archive's path. Bases are made once per machine.
set -euo pipefail
# shellcheck source=env.sh
. "$(dirname "$0")/env.sh"

images=$IMAGES
mkdir -p "$images"
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
RUNTIME_PACKAGES=python3,iproute2,nftables,ca-certificates
BUILD_PACKAGES=$RUNTIME_PACKAGES,python3-venv,gcc,libc6-dev

base_image() {  # name packages
    local name=$1 packages=$2
    if buildah inspect --type image "$name" >/dev/null 2>&1; then
        return 0
    fi
    local root
    root=$(mktemp -d "$images/rootfs.XXXXXX")
    log "debootstrap $name ($packages)"
    mkdir -p "$images/debs"
    if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$images/debs" \
            bookworm "$root" "$MIRROR" > "$images/debootstrap-${name##*/}.log" 2>&1; then
        rm -rf "$root"
        die "debootstrap failed; see $images/debootstrap-${name##*/}.log"
    fi
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    local container
    tar -C "$root" -cf "$root.tar" .
    container=$(buildah from scratch)
    buildah add "$container" "$root.tar" / >/dev/null
    rm -f "$root.tar"
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$container"
    buildah commit --quiet "$container" "$name" >/dev/null
    buildah rm "$container" >/dev/null
    rm -rf "$root"
}

version=$PROJECT_VERSION tag=$PROJECT_IMAGE
[ -n "$version" ] || die "no __version__ in cni_render/__init__.py"
# The archive is keyed by everything the image is built from.
key=$(cd "$REPO" && git ls-files -z Dockerfile requirements.lock setup.cfg pyproject.toml README.md \
        cni_render templates schemas 2>/dev/null | xargs -0 cat | sha256sum | cut -c1-16)
out=$images/cni-render-$version-$key.tar
if [ -f "$out" ]; then
    echo "$out"
    exit 0
fi

base_image localhost/cni-render-base:bookworm "$RUNTIME_PACKAGES"
base_image localhost/cni-render-build:bookworm "$BUILD_PACKAGES"
log "building $tag from the Dockerfile"
secret=()   # this machine's CA bundle for pip (a TLS-intercepting proxy may sit in front of PyPI)
[ -s /etc/ssl/certs/ca-certificates.crt ] && secret=(--secret "id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt")
buildah bud --quiet --network host --isolation chroot --layers=false "${secret[@]}" \
    --build-arg BASE_IMAGE=localhost/cni-render-base:bookworm \
    --build-arg BUILD_IMAGE=localhost/cni-render-build:bookworm \
    -t "$tag" -f "$REPO/Dockerfile" "$REPO" >&2
rm -f "$images"/cni-render-"$version"-*.tar
buildah push --quiet "$tag" "docker-archive:$out.tmp:$tag" >&2
mv "$out.tmp" "$out"
echo "$out"
