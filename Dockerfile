# cni-render in an image. For now it carries the plugin and its example
# conflist; the node installer (DaemonSet) comes with the deployment work.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv iproute2 util-linux nftables \
    && rm -rf /var/lib/apt/lists/*
COPY . /src
RUN python3 -m venv /opt/cni-render \
    && /opt/cni-render/bin/pip install --no-cache-dir /src \
    && rm -rf /src
COPY deploy/10-cni-render.conflist /opt/cni-render/share/10-cni-render.conflist
ENV PATH=/opt/cni-render/bin:$PATH
ENTRYPOINT ["cni-render"]
