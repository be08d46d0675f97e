"""What the DaemonSet put on every node: a static shim (nodes have no Python)
and a conflist whose ranges are the node's own pod CIDRs."""

from __future__ import annotations

import ipaddress
import json

from cluster import nodes, on_node, pod_cidrs


def test_each_node_has_a_static_shim_and_a_conflist_of_its_pod_cidrs() -> None:
    for node in nodes():
        name = node["metadata"]["name"]
        assert on_node(name, "sh", "-c", "command -v python3 || echo none").strip() == "none", f"{name} has Python"
        elf = on_node(name, "file", "-b", "/opt/cni/bin/cni-render")
        assert "statically linked" in elf, f"{name}: {elf}"
        version = on_node(name, "sh", "-c", "echo '{}' | CNI_COMMAND=VERSION /opt/cni/bin/cni-render")
        assert "1.1.0" in json.loads(version)["supportedVersions"]
        conflist = json.loads(on_node(name, "cat", "/etc/cni/net.d/10-cni-render.conflist"))
        plugin = conflist["plugins"][0]
        assert plugin["type"] == "cni-render"
        ranges = {ipaddress.ip_network(r[0]["subnet"]) for r in plugin["ipam"]["ranges"]}
        assert ranges == set(pod_cidrs(node)), f"{name}: {ranges}"
