# Certificates for one cluster, made fresh by `make cluster` with openssl:
# a CA, the apiserver's serving certificate, client certificates for every
# component, the service-account key pair, and kubeconfigs.
# shellcheck shell=bash

PKI=$STATE/pki

pki_ca() {
    [ -f "$PKI/ca.crt" ] && return 0
    mkdir -p "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cni-render-local-cluster-ca" \
        -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# pki_cert NAME CN [ORG] [SAN list "DNS:a,IP:b"]: a key and a CA-signed certificate.
pki_cert() {
    local name=$1 cn=$2 org=${3:-} san=${4:-}
    [ -f "$PKI/$name.crt" ] && return 0
    local subject="/CN=$cn"
    [ -n "$org" ] && subject="/O=$org$subject"
    local ext
    ext=$(mktemp)
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"
        else echo "extendedKeyUsage=clientAuth"; fi
    } > "$ext"
    openssl req -newkey rsa:2048 -nodes -subj "$subject" -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 30 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$ext" "$PKI/$name.csr"
}

# pki_kubeconfig FILE CERTNAME: a kubeconfig for the apiserver with a client certificate.
# shellcheck disable=SC2034  # render reads the locals by name
pki_kubeconfig() {
    local API_URL CERT_NAME=$2
    API_URL=$(api_url)
    render "$CONFIG/kubeconfig.in" API_URL PKI CERT_NAME > "$1"
}

# pki_node NAME: the kubelet's certificate and kubeconfig for node NAME.
pki_node() {
    pki_cert "kubelet-$1" "system:node:$1" system:nodes
    pki_kubeconfig "$STATE/kubelet-$1.kubeconfig" "kubelet-$1"
}

pki_all() {
    pki_ca
    local san="DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1"
    san+=",IP:$V4_UNDERLAY.1,IP:${V6_UNDERLAY}:1,IP:10.96.0.1,IP:fd00:10:96::1"
    pki_cert apiserver kube-apiserver "" "$san"
    pki_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    pki_cert admin kubernetes-admin system:masters
    pki_cert controller-manager system:kube-controller-manager
    pki_cert scheduler system:kube-scheduler
    pki_cert kube-proxy system:kube-proxy
    pki_kubeconfig "$KUBECONFIG_FILE" admin
    pki_kubeconfig "$STATE/controller-manager.kubeconfig" controller-manager
    pki_kubeconfig "$STATE/scheduler.kubeconfig" scheduler
    pki_kubeconfig "$STATE/kube-proxy.kubeconfig" kube-proxy
    local i
    for i in $(seq "$NODES"); do pki_node "$(node_name "$i")"; done
}
