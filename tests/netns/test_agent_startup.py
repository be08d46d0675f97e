"""The agent's order on a node, run for real inside a throwaway node namespace with
a fake API: the shim first, then the daemon, and the conflist only once the daemon
answers STATUS for it; a node without pod CIDRs gets an Event and no conflist; an
agent whose API server never answers leaves the node's routes, masquerade table and
conflist as they are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from throwaway import PLUGIN, Node

AGENT_ROUND = """
import json, sys
from cni_render.node.agent import Agent
from cni_render.node.settings import Paths

class FakeCluster:
    def __init__(self):
        self.events = []
    def node_event(self, node, reason, message, warning=True):
        self.events.append([reason, message])

root, nodes = sys.argv[1], json.loads(sys.argv[2])  # nodes None: the API server never answers
paths = Paths(node_name="a", cni_bin_dir=root + "/bin", cni_conf_dir=root + "/net.d",
              shim=root + "/image-shim", state_dir=root + "/run", persistent_dir=root + "/var")
cluster = FakeCluster()
agent = Agent(paths, cluster, log=sys.stderr)
if nodes is not None:
    agent.nodes_listed(nodes)
    agent.settings_changed(None)
    agent.templates_changed({})
agent.overrides.ensure()
agent.daemon.start()
try:
    agent.reconcile()
finally:
    agent.daemon.stop()
agent.events.flush(5)
print(json.dumps({"events": cluster.events, "daemon_started": agent.daemon.started}))
"""


def node_json(name, cidrs, address):
    return {
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"podCIDRs": cidrs},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


@pytest.fixture(scope="module")
def static_shim(tmp_path_factory):
    out = tmp_path_factory.mktemp("image") / "cni-render"
    proc = subprocess.run([PLUGIN, "install", "--build-static-shim", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture
def node_root(plain_node, tmp_path, static_shim):
    for argv in (["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"],
                 ["ip", "link", "set", "uplink1", "up"],
                 ["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink0"], ["ip", "link", "set", "uplink0", "up"],
                 ["ip", "route", "add", "default", "via", "192.0.2.1"]):
        plain_node.exec(argv)
    (tmp_path / "image-shim").write_bytes(static_shim.read_bytes())
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "portmap").write_bytes(b"#!/bin/false\n")
    (tmp_path / "bin" / "portmap").chmod(0o755)
    return tmp_path


def agent_round(node: Node, root: Path, nodes: list | None) -> dict:
    proc = node.exec([sys.executable, "-c", AGENT_ROUND, str(root), json.dumps(nodes)], check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "log": proc.stderr}


def test_without_pod_cidrs_the_shim_is_installed_but_no_conflist_is_written(plain_node, node_root):
    outcome = agent_round(plain_node, node_root, [node_json("a", [], "192.0.2.10")])
    assert (node_root / "bin" / "cni-render").read_bytes() == (node_root / "image-shim").read_bytes()
    assert not (node_root / "net.d" / "10-cni-render.conflist").exists()
    reasons = {reason: message for reason, message in outcome["events"]}
    assert "--allocate-node-cidrs" in reasons["NoPodCIDR"], outcome
    assert "controller manager must allocate node CIDRs" in outcome["log"]


def test_the_conflist_comes_after_the_daemon_answers_and_routes_follow(plain_node, node_root):
    nodes = [node_json("a", ["10.244.0.0/24"], "192.0.2.10"), node_json("b", ["10.244.1.0/24"], "192.0.2.11")]
    outcome = agent_round(plain_node, node_root, nodes)
    conflist = json.loads((node_root / "net.d" / "10-cni-render.conflist").read_text())
    plugin = conflist["plugins"][0]
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]
    assert plugin["templateDir"] == str(node_root / "run" / "templates")
    assert [p["type"] for p in conflist["plugins"]] == ["cni-render", "portmap"]  # the node has portmap
    log = outcome["log"]
    assert log.index("installed the shim") < log.index("listening") < log.index("wrote "), log
    routes = json.loads(plain_node.exec(["ip", "-j", "route", "show", "proto", "245"]).stdout)
    assert [(r["dst"], r["gateway"]) for r in routes] == [("10.244.1.0/24", "192.0.2.11")]
    table = plain_node.exec(["nft", "list", "table", "inet", "cni-render-node"]).stdout
    assert "10.244.0.0/23" in table

    second = agent_round(plain_node, node_root, nodes)  # a restarted agent: nothing to rewrite
    assert "wrote " not in second["log"] and "installed the shim" not in second["log"]


def test_an_api_server_that_never_answers_removes_nothing(plain_node, node_root):
    nodes = [node_json("a", ["10.244.0.0/24"], "192.0.2.10"), node_json("b", ["10.244.1.0/24"], "192.0.2.11")]
    agent_round(plain_node, node_root, nodes)

    def node_state():
        return (
            plain_node.exec(["ip", "-j", "route", "show", "table", "main"]).stdout,
            plain_node.exec(["nft", "list", "table", "inet", "cni-render-node"]).stdout,
            (node_root / "net.d" / "10-cni-render.conflist").read_bytes(),
        )

    before = node_state()
    assert "10.244.1.0/24" in before[0] and "10.244.0.0/23" in before[1]
    outcome = agent_round(plain_node, node_root, None)  # a restarted agent: nothing ever listed
    assert node_state() == before
    assert "waiting for the first listing of Nodes" in outcome["log"]
