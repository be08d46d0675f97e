# cni-render's node image: the DaemonSet runs `cni-render node` from it.
#
# Build stage: a virtualenv with the pinned dependencies (requirements.lock,
# every file checked against its hash), the package itself, and the static
# node shim (NODE_MODE: no Python, never executes anything) that the agent
# copies into the host's /opt/cni/bin. Runtime stage: that virtualenv without
# pip, setuptools, wheel or packaging, the shim, python3, iproute2 and nftables; no
# compiler, and none of what the agent never reads (documentation, man pages,
# locales, apt's lists and caches, logs). The final image is that stage's tree
# copied into one layer, so what was removed is really gone (a removal in a
# layer above the base would hide files, not free them).
#
# Both bases are build arguments so the image builds offline from locally
# made bases, e.g.
#   buildah bud --network host \
#     --build-arg BUILD_IMAGE=localhost/cni-render-build:bookworm \
#     --build-arg BASE_IMAGE=localhost/cni-render-base:bookworm \
#     -t localhost/cni-render:$(python3 -c 'import cni_render; print(cni_render.__version__)') .
# A base that already has what a stage needs (python3, python3-venv, gcc,
# libc6-dev for the build; python3, iproute2, nftables, ca-certificates for
# the final image) is used as it is; only a bare Debian gets them from apt.

ARG BUILD_IMAGE=debian:bookworm
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BUILD_IMAGE} AS build
RUN need=""; \
    for package in python3 python3-venv gcc libc6-dev ca-certificates; do \
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || need="$need $package"; \
    done; \
    if [ -n "$need" ]; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need \
        && rm -rf /var/lib/apt/lists/*; \
    fi
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock /src/requirements.lock
# A build host behind a TLS-intercepting proxy passes its CA bundle for pip:
#   buildah bud --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt ...
# (the hashes in requirements.lock still decide what is installed).
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi; \
    python3 -m venv /opt/cni-render/venv \
    && /opt/cni-render/venv/bin/pip install --require-hashes --no-deps -r /src/requirements.lock
COPY pyproject.toml setup.cfg README.md /src/
COPY cni_render /src/cni_render
COPY templates /src/templates
COPY schemas /src/schemas
RUN /opt/cni-render/venv/bin/pip install --no-deps --no-build-isolation /src \
    && /opt/cni-render/venv/bin/cni-render install --build-static-shim /opt/cni-render/shim/cni-render \
    && /opt/cni-render/venv/bin/pip uninstall -y -q wheel packaging setuptools pip \
    && test ! -e /opt/cni-render/venv/bin/pip

FROM ${BASE_IMAGE} AS runtime
RUN need=""; \
    for package in python3 iproute2 nftables ca-certificates; do \
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || need="$need $package"; \
    done; \
    if [ -n "$need" ]; then \
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need \
        || exit 1; \
    fi; \
    rm -rf /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian \
        /usr/share/bash-completion /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old \
        /var/lib/dpkg/*-old /var/log/* /root/.cache /tmp/*
COPY --from=build /opt/cni-render /opt/cni-render

FROM scratch
COPY --from=runtime / /
ENV PATH=/opt/cni-render/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    CNI_RENDER_SHIM=/opt/cni-render/shim/cni-render
ENTRYPOINT ["cni-render"]
CMD ["node"]
