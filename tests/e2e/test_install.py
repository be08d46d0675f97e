"""What the DaemonSet put on every node: a static shim (nodes have no Python)
and a conflist whose ranges are the node's own pod CIDRs."""

from __future__ import annotations

import ipaddress
import json

from cluster import eventually, nodes, on_node, pod_cidrs


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


def test_the_shim_without_its_daemon_asks_the_runtime_to_retry() -> None:
    """On a real node, the static shim with no daemon answering waits a bounded
    time, then fails with code 11 in the request's cniVersion; nothing is run."""
    name = nodes()[0]["metadata"]["name"]
    script = (
        "echo '{\"cniVersion\": \"1.0.0\", \"name\": \"n\", \"type\": \"cni-render\"}' | "
        "CNI_COMMAND=ADD CNI_CONTAINERID=e2e-no-daemon CNI_NETNS=/proc/1/ns/net CNI_IFNAME=eth0 CNI_PATH=/opt/cni/bin "
        "CNI_RENDER_DAEMON_SOCKET=/run/cni-render/e2e-nothing-here.sock CNI_RENDER_WAIT_SECONDS=2 "
        "/opt/cni/bin/cni-render; echo \"exit=$?\""
    )
    out = on_node(name, "sh", "-c", script, timeout=30)
    document, _, status = out.rpartition("exit=")
    error = json.loads(document)
    assert status.strip() != "0"
    assert error["code"] == 11 and error["cniVersion"] == "1.0.0", error
    assert "not ready" in error["msg"] + error.get("details", ""), error


def test_a_removed_shim_and_conflist_come_back() -> None:
    """A host package upgrade can wipe them: the agent re-checks and restores both."""
    name = nodes()[-1]["metadata"]["name"]
    on_node(name, "rm", "-f", "/opt/cni/bin/cni-render", "/etc/cni/net.d/10-cni-render.conflist")
    eventually(
        f"{name}'s shim and conflist to be restored",
        lambda: on_node(name, "sh", "-c", "test -x /opt/cni/bin/cni-render && test -s /etc/cni/net.d/10-cni-render.conflist && echo yes").strip() == "yes",
        timeout=90, interval=3,
    )
