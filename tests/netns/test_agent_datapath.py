"""The node agent's routes and masquerade applied for real, inside throwaway node
namespaces: routes carry the agent's protocol, uninstall removes exactly its own
(a foreign route survives), a Node claiming 0.0.0.0/0 leaves the node's default
route alone, and traffic shows masquerade to the outside while pod-to-pod
traffic between nodes keeps its source."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from cni_render.host import system
from cni_render.node.masquerade import TABLE, apply_masquerade, cluster_networks, render_masquerade
from cni_render.node.nodeinfo import NodeInfo
from cni_render.node.routes import (
    ROUTE_PROTOCOL,
    apply_routes,
    kernel_not_on_link,
    plan_routes,
    read_current_routes,
)
from cni_render.node.settings import Paths, Settings
from cni_render.node.state import NodeFacts, desired_state
from cni_render.node.uninstall import leftovers, uninstall
from throwaway import Node

A = NodeInfo("a", ("10.244.0.0/24", "fd00:10:244::/64"), ("192.0.2.10", "2001:db8::10"))
B = NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64"), ("192.0.2.20", "2001:db8::20"))
FAR = NodeInfo("far", ("10.244.2.0/24",), ("198.51.100.5",))  # behind a router: not on-link
TAKEN = NodeInfo("taken", ("10.244.5.0/24",), ("192.0.2.30",))  # someone else routes its CIDR


def uplink(node: Node) -> None:
    """An uplink with the node's addresses and a default route, all inside the namespace."""
    for argv in (
        ["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"],
        ["ip", "link", "set", "uplink1", "up"],
        ["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink0"],
        ["ip", "-6", "addr", "add", "2001:db8::10/64", "dev", "uplink0", "nodad"],
        ["ip", "link", "set", "uplink0", "up"],
        ["ip", "route", "add", "default", "via", "192.0.2.1"],
    ):
        node.exec(argv)


def reconcile(node: Node, nodes: list[NodeInfo]):
    with system.in_netns(node.netns):
        plan = plan_routes("a", nodes, read_current_routes(), kernel_not_on_link)
        apply_routes(plan)
    return plan


def routes(node: Node, *selector: str) -> dict[str, dict]:
    found = {}
    for family in ("-4", "-6"):
        for route in json.loads(node.exec(["ip", "-j", "-N", family, "route", "show", *selector]).stdout):
            found[route["dst"]] = route
    return found


def test_routes_carry_the_protocol_and_uninstall_removes_exactly_ours(plain_node, tmp_path):
    node = plain_node
    uplink(node)
    node.exec(["ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.1", "proto", "static"])
    node.exec(["ip", "route", "add", "10.244.5.0/24", "via", "192.0.2.1", "proto", "static"])

    plan = reconcile(node, [A, B, FAR, TAKEN])
    ours = routes(node, "proto", str(ROUTE_PROTOCOL))
    assert set(ours) == {"10.244.1.0/24", "fd00:10:244:1::/64"}
    assert ours["10.244.1.0/24"]["gateway"] == "192.0.2.20"
    assert ours["fd00:10:244:1::/64"]["gateway"] == "2001:db8::20"
    assert any("far: 198.51.100.5 is not on-link" in warning for warning in plan.warnings)
    assert any("10.244.5.0/24 (protocol 4) exists and is not ours" in warning for warning in plan.warnings)
    assert not reconcile(node, [A, B, FAR, TAKEN]).changes  # idempotent

    moved = NodeInfo("b", B.pod_cidrs, ("192.0.2.21", "2001:db8::21"))
    reconcile(node, [A, moved])
    assert routes(node, "proto", str(ROUTE_PROTOCOL))["10.244.1.0/24"]["gateway"] == "192.0.2.21"
    reconcile(node, [A])  # node b deleted
    assert routes(node, "proto", str(ROUTE_PROTOCOL)) == {}

    reconcile(node, [A, B])
    paths = node_paths(tmp_path)
    Path(paths.saved_templates).parent.mkdir(parents=True, exist_ok=True)
    Path(paths.saved_templates).write_text('{"digest": "x", "templates": {}}')
    with system.in_netns(node.netns):
        assert paths.saved_templates in leftovers(paths)
        done = uninstall(paths)
        assert leftovers(paths) == []
    assert "removed route 10.244.1.0/24 via 192.0.2.20 proto 245" in done
    assert f"removed {paths.saved_templates}" in done
    assert routes(node, "proto", str(ROUTE_PROTOCOL)) == {}
    remaining = routes(node, "proto", "static")
    assert set(remaining) == {"10.99.0.0/24", "10.244.5.0/24"}  # the foreign routes survive


EVIL = NodeInfo("evil", ("0.0.0.0/0", "::/0"), ("192.0.2.66", "2001:db8::66"))


def test_a_node_claiming_every_address_leaves_the_default_route_alone(plain_node):
    node = plain_node
    uplink(node)
    node.exec(["ip", "-6", "route", "add", "default", "via", "2001:db8::1"])
    before = routes(node)
    assert before["default"]["gateway"] in ("192.0.2.1", "2001:db8::1")
    facts = NodeFacts(uplink_mtu=1500, portmap=False, template_dir="/run/cni-render/templates")

    with system.in_netns(node.netns):  # the agent's path: the claim is refused
        state = desired_state("a", [A, B, EVIL], Settings(), facts, read_current_routes(), kernel_not_on_link)
        apply_routes(state.routes)
    assert {refusal.cidr for refusal in state.refused} == {"0.0.0.0/0", "::/0"}
    assert "0.0.0.0/0" not in state.masquerade_batch
    reconcile(node, [A, B, EVIL])  # and even unchecked, a route is added, never replaced
    reconcile(node, [A, B])  # the Node is deleted
    for family, gateway in (("-4", "192.0.2.1"), ("-6", "2001:db8::1")):
        default = json.loads(node.exec(["ip", "-j", "-N", family, "route", "show", "default"]).stdout)
        assert [r["gateway"] for r in default] == [gateway], default
        assert default[0].get("protocol") != str(ROUTE_PROTOCOL), default
    assert set(routes(node, "proto", str(ROUTE_PROTOCOL))) == {"10.244.1.0/24", "fd00:10:244:1::/64"}


def node_paths(tmp_path: Path) -> Paths:
    for directory in ("bin", "net.d", "run"):
        (tmp_path / directory).mkdir(exist_ok=True)
    return Paths(
        node_name="a",
        cni_bin_dir=str(tmp_path / "bin"),
        cni_conf_dir=str(tmp_path / "net.d"),
        state_dir=str(tmp_path / "run"),
        persistent_dir=str(tmp_path / "var"),
    )


def test_masquerade_table_both_families_and_uninstall(plain_node, tmp_path):
    node = plain_node
    batch = render_masquerade(True, cluster_networks([A, B], ["10.244.0.0/16"]))
    with system.in_netns(node.netns):
        apply_masquerade(batch)
        apply_masquerade(batch)  # replacing the table is atomic and idempotent
    table = json.loads(node.exec(["nft", "-j", "list", "table", "inet", TABLE]).stdout)["nftables"]
    sets = {item["set"]["name"]: item["set"].get("elem") for item in table if "set" in item}
    assert sets["cluster4"] == [{"prefix": {"addr": "10.244.0.0", "len": 16}}]
    assert sets["cluster6"] == [{"prefix": {"addr": "fd00:10:244::", "len": 63}}]
    assert sum(1 for item in table if "rule" in item) == 2

    paths = node_paths(tmp_path)
    (tmp_path / "net.d" / "10-cni-render.conflist").write_text("{}")
    (tmp_path / "net.d" / "99-other.conflist").write_text("{}")
    (tmp_path / "bin" / "cni-render").write_bytes(b"shim")
    (tmp_path / "bin" / "portmap").write_bytes(b"other plugin")
    with system.in_netns(node.netns):
        done = uninstall(paths)
        assert leftovers(paths) == []
    assert f"removed nft table inet {TABLE}" in done
    assert node.exec(["nft", "list", "table", "inet", TABLE], check=False).returncode != 0
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == ["99-other.conflist"]
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["portmap"]
    assert (tmp_path / "run" / "uninstalled").is_file()  # a running agent stops restoring


PEER_SERVER = """
import socket, sys
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("0.0.0.0", 8080)); server.listen(8)
print("ready", flush=True)
while True:
    connection, peer = server.accept(); connection.sendall(peer[0].encode()); connection.close()
"""
ASK = """
import socket, sys
with socket.create_connection((sys.argv[1], 8080), timeout=3) as connection:
    sys.stdout.write(connection.recv(64).decode())
"""


@pytest.fixture
def outside(netns_ok):
    """Another namespace: node b's address and a pod address of node b, or the internet."""
    other = Node()
    try:
        yield other
    finally:
        other.close()


def test_egress_is_masqueraded_and_pod_to_pod_keeps_its_source(plain_node, outside):
    node = plain_node
    pod = node.add_pod()
    node.exec(["ip", "link", "add", "vp0", "type", "veth", "peer", "name", "eth0", "netns", pod.name])
    node.exec(["ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0", "netns", outside.name])
    for argv in (["ip", "addr", "add", "10.244.0.1/24", "dev", "vp0"], ["ip", "link", "set", "vp0", "up"],
                 ["ip", "addr", "add", "192.0.2.10/24", "dev", "up0"], ["ip", "link", "set", "up0", "up"],
                 ["sysctl", "-qw", "net.ipv4.ip_forward=1"]):
        node.exec(argv)
    for argv in (["ip", "addr", "add", "10.244.0.5/24", "dev", "eth0"], ["ip", "link", "set", "eth0", "up"],
                 ["ip", "route", "add", "default", "via", "10.244.0.1"]):
        pod.exec(argv)
    for argv in (["ip", "addr", "add", "192.0.2.20/24", "dev", "up0"], ["ip", "link", "set", "up0", "up"],
                 ["ip", "addr", "add", "10.244.1.2/32", "dev", "lo"],
                 ["ip", "route", "add", "10.244.0.0/24", "via", "192.0.2.10"]):
        outside.exec(argv)
    b = NodeInfo("b", ("10.244.1.0/24",), ("192.0.2.20",))
    a = NodeInfo("a", ("10.244.0.0/24",), ("192.0.2.10",))
    reconcile(node, [a, b])  # 10.244.1.0/24 via 192.0.2.20, by the agent's own batch
    with system.in_netns(node.netns):
        apply_masquerade(render_masquerade(True, cluster_networks([a, b], ())))

    import subprocess

    server = subprocess.Popen(["ip", "netns", "exec", outside.name, sys.executable, "-c", PEER_SERVER],
                              stdout=subprocess.PIPE, text=True)
    outside.processes.append(server)
    assert server.stdout.readline().strip() == "ready"
    assert ask(pod, "192.0.2.20") == "192.0.2.10"  # to the outside: the node's address
    assert ask(pod, "10.244.1.2") == "10.244.0.5"  # to a pod of node b: the pod's own


def ask(pod, address: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        proc = pod.exec([sys.executable, "-c", ASK, address], check=False)
        if proc.returncode == 0:
            return proc.stdout
        assert time.monotonic() < deadline, proc.stderr
        time.sleep(0.1)

