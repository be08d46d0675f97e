# The kind provider, where kind and a Docker engine answer: a cluster from
# kind.yaml (one control plane, two workers, dual-stack, no default CNI); nodes
# are containers named as their Nodes. The images come as docker-archives, as
# on the local cluster: the test image from images.sh, the project's from
# lib/project-image.sh. The verbs are listed in lib/env.sh.
# shellcheck shell=bash

KIND_CLUSTER=cni-render

provider_up() {
    if ! kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
        kind create cluster --config "$REPO/kind.yaml" --name "$KIND_CLUSTER"
    fi
    mkdir -p "$LOGS"
    kind get kubeconfig --name "$KIND_CLUSTER" > "$KUBECONFIG_FILE"
    NODES=$(k get nodes --no-headers | wc -l) IPFAMILY=dual cluster_env_write   # kind.yaml's shape
    provider_load_image "$("$CLUSTER_SRC/images.sh" testimg)"
}

provider_kubectl() { kubectl --kubeconfig "$KUBECONFIG_FILE" "$@"; }
provider_exec() { local node=$1; shift; docker exec "$node" "$@"; }
provider_load_image() { kind load image-archive "$1" --name "$KIND_CLUSTER"; }
provider_logs() { kind export logs "$LOGS" --name "$KIND_CLUSTER"; }
provider_run() { "$@"; }

provider_down() {
    kind delete cluster --name "$KIND_CLUSTER"
    if [ -d "$STATE" ]; then find "$STATE" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +; fi
}
