"""The documented uninstall (make clean: cluster/uninstall.sh) leaves every node
clean: no conflist, no shim, none of the agent's routes, no nft table of ours.
Marked ``last`` (tests/e2e/conftest.py runs it after every other test), then
puts cni-render back for whoever runs next."""

from __future__ import annotations

import pytest

from cluster import REPO, node_names, on_node, run
from node_state import agent_routes


@pytest.mark.last
def test_uninstall_leaves_the_nodes_clean() -> None:
    nodes = node_names()
    for node in nodes:
        on_node(node, "test", "-f", "/etc/cni/net.d/10-cni-render.conflist")  # installed before
    run([str(REPO / "cluster" / "uninstall.sh")], timeout=600)
    try:
        for node in nodes:
            leftovers = on_node(node, "sh", "-c", "ls /etc/cni/net.d/ /opt/cni/bin/")
            assert "cni-render" not in leftovers, f"{node}: {leftovers}"
            assert agent_routes(node).strip() == "", f"{node} keeps routes: {agent_routes(node)}"
            tables = on_node(node, "nft", "list", "tables")
            assert "cni-render" not in tables, f"{node}: {tables}"
            # the reference plugins and the directories themselves are still there
            assert "loopback" in leftovers
    finally:
        run([str(REPO / "cluster" / "daemonset.sh")], timeout=600)
