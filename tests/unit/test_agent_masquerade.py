"""The egress masquerade table: every believed pod CIDR and cluster CIDR, collapsed, both
families; a refused pod CIDR (0.0.0.0/0) never exempts anything from masquerade."""

from __future__ import annotations

from cni_render.node.masquerade import TABLE, cluster_networks, render_masquerade
from cni_render.node.nodeinfo import NodeInfo
from cni_render.node.settings import Settings
from cni_render.node.state import NodeFacts, desired_state

NODES = [
    NodeInfo("a", ("10.244.0.0/24", "fd00:10:244::/64")),
    NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64")),
    NodeInfo("c", ("10.244.3.0/24",)),
]


def test_every_nodes_pod_cidrs_collapsed_per_family():
    assert cluster_networks(NODES, ()) == {
        4: ["10.244.0.0/23", "10.244.3.0/24"],
        6: ["fd00:10:244::/63"],
    }


def test_cluster_cidrs_are_added_and_overlaps_merged():
    # an nft interval set refuses overlapping elements: a node CIDR inside the cluster CIDR
    assert cluster_networks(NODES, ("10.244.0.0/16", "fd00:99::/64")) == {
        4: ["10.244.0.0/16"],
        6: ["fd00:10:244::/63", "fd00:99::/64"],
    }


def test_the_table_is_replaced_whole_and_masquerades_what_leaves_the_cluster():
    batch = render_masquerade(True, cluster_networks(NODES, ()))
    assert batch.startswith(f"table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n")
    assert "elements = { 10.244.0.0/23,10.244.3.0/24 }" in batch
    assert "elements = { fd00:10:244::/63 }" in batch
    assert "type nat hook postrouting priority srcnat; policy accept;" in batch
    assert "ip saddr @cluster4 ip daddr != @cluster4 fib daddr type != local masquerade" in batch
    assert "ip6 saddr @cluster6 ip6 daddr != @cluster6 fib daddr type != local masquerade" in batch


def test_an_empty_family_has_an_empty_set():
    batch = render_masquerade(True, cluster_networks([NodeInfo("a", ("10.244.0.0/24",))], ()))
    ipv6_set = batch[batch.index("set cluster6"):batch.index("chain postrouting")]
    assert "elements" not in ipv6_set  # `elements = { }` is a syntax error in nft


def test_disabled_only_removes_the_table():
    assert render_masquerade(False, cluster_networks(NODES, ())) == (
        f"table inet {TABLE}\ndelete table inet {TABLE}\n"
    )


def test_a_node_claiming_everything_does_not_turn_masquerade_off():
    nodes = [
        NodeInfo("a", ("10.244.0.0/24",), ("192.0.2.10",)),
        NodeInfo("b", ("10.244.1.0/24",), ("192.0.2.11",)),
        NodeInfo("evil", ("0.0.0.0/0", "10.244.0.0/16"), ("192.0.2.66",)),
    ]
    facts = NodeFacts(uplink_mtu=1500, portmap=False, template_dir="/run/cni-render/templates")
    state = desired_state("a", nodes, Settings(), facts, [], lambda address: None)
    assert "elements = { 10.244.0.0/23 }" in state.masquerade_batch
    assert "0.0.0.0/0" not in state.masquerade_batch and "10.244.0.0/16" not in state.masquerade_batch
    assert {(r.cidr, r.node.name) for r in state.refused} == {("0.0.0.0/0", "evil"), ("10.244.0.0/16", "evil")}
    assert "0.0.0.0/0" not in state.routes_batch


def test_this_nodes_own_refused_pod_cidr_gives_no_conflist():
    nodes = [NodeInfo("a", ("192.0.2.0/24",), ("192.0.2.10",))]
    facts = NodeFacts(uplink_mtu=1500, portmap=False, template_dir="/t")
    state = desired_state("a", nodes, Settings(cluster_cidrs=("192.0.0.0/8",)), facts, [], lambda address: None)
    assert state.conflist is None
    assert "contains the node address 192.0.2.10" in (state.conflist_problem or "")
