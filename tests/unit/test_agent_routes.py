"""Host-gw route planning and rendering: other nodes only, per family, not on-link
skipped, deleted nodes' routes removed, and only routes with our protocol touched;
routes are only added (never replaced), the default route is read like any other,
and a Node's pod CIDR is believed only inside the cluster's, not too short, not
over a node address and not over an earlier Node's."""

from __future__ import annotations

from cni_render.node.nodeinfo import NodeInfo, admit_pod_cidrs, cluster_bounds, node_from_dict
from cni_render.node.routes import (
    ROUTE_PROTOCOL,
    CurrentRoute,
    Route,
    current_routes,
    not_on_link_reason,
    plan_routes,
    render_routes,
    uninstall_plan,
)

A = NodeInfo("a", ("10.244.0.0/24", "fd00:10:244::/64"), ("192.0.2.10", "2001:db8::10"))
B = NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64"), ("192.0.2.11", "2001:db8::11"))
C = NodeInfo("c", ("10.244.2.0/24",), ("192.0.2.12",))


def on_link(address):
    return None


def test_a_route_per_pod_cidr_of_every_other_node_via_its_address_of_the_same_family():
    plan = plan_routes("a", [A, B, C], [], on_link)
    assert plan.add == [
        Route("10.244.1.0/24", "192.0.2.11", "b"),
        Route("fd00:10:244:1::/64", "2001:db8::11", "b"),
        Route("10.244.2.0/24", "192.0.2.12", "c"),
    ]
    assert plan.delete == [] and plan.warnings == []
    assert render_routes(plan) == (
        f"route add 10.244.1.0/24 via 192.0.2.11 proto {ROUTE_PROTOCOL}\n"
        f"route add fd00:10:244:1::/64 via 2001:db8::11 proto {ROUTE_PROTOCOL}\n"
        f"route add 10.244.2.0/24 via 192.0.2.12 proto {ROUTE_PROTOCOL}\n"
    )


def test_a_pod_cidr_without_an_address_of_its_family_is_skipped_with_a_warning():
    ipv4_only = NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64"), ("192.0.2.11",))
    plan = plan_routes("a", [A, ipv4_only], [], on_link)
    assert plan.add == [Route("10.244.1.0/24", "192.0.2.11", "b")]
    assert plan.warnings == ["node b: no IPv6 InternalIP for pod CIDR fd00:10:244:1::/64; no route"]


def test_a_node_that_is_not_on_link_is_skipped_with_a_warning():
    def gateway(address):
        return "the kernel routes it via 192.0.2.1" if address == "192.0.2.12" else None

    plan = plan_routes("a", [A, B, C], [], gateway)
    assert Route("10.244.2.0/24", "192.0.2.12", "c") not in plan.add
    assert plan.warnings == [
        "node c: 192.0.2.12 is not on-link (the kernel routes it via 192.0.2.1); no route to 10.244.2.0/24"
    ]


def test_nothing_to_do_when_the_table_already_holds_the_routes():
    current = [
        CurrentRoute("10.244.1.0/24", "192.0.2.11", ROUTE_PROTOCOL),
        CurrentRoute("fd00:10:244:1::/64", "2001:db8::11", ROUTE_PROTOCOL),
    ]
    plan = plan_routes("a", [A, B], current, on_link)
    assert not plan.changes and render_routes(plan) == ""
    assert len(plan.desired) == 2


def test_a_changed_node_address_deletes_our_route_then_adds_it_again():
    current = [CurrentRoute("10.244.1.0/24", "192.0.2.99", ROUTE_PROTOCOL)]
    moved = NodeInfo("b", ("10.244.1.0/24",), ("192.0.2.11",))
    plan = plan_routes("a", [A, moved], current, on_link)
    assert plan.add == [Route("10.244.1.0/24", "192.0.2.11", "b")]
    assert plan.delete == [Route("10.244.1.0/24", "192.0.2.99")]
    assert render_routes(plan) == (
        f"route del 10.244.1.0/24 proto {ROUTE_PROTOCOL}\n"
        f"route add 10.244.1.0/24 via 192.0.2.11 proto {ROUTE_PROTOCOL}\n"
    )


def test_the_routes_of_a_deleted_node_are_removed_and_only_ours():
    current = [
        CurrentRoute("10.244.1.0/24", "192.0.2.11", ROUTE_PROTOCOL),
        CurrentRoute("10.244.2.0/24", "192.0.2.12", ROUTE_PROTOCOL),  # node c is gone
        CurrentRoute("10.99.0.0/24", "192.0.2.1", 4),  # someone else's (static)
    ]
    plan = plan_routes("a", [A, B], current, on_link)
    assert plan.delete == [Route("10.244.2.0/24", "192.0.2.12")]
    assert f"route del 10.244.2.0/24 proto {ROUTE_PROTOCOL}\n" in render_routes(plan)
    assert "10.99.0.0" not in render_routes(plan)


def test_someone_elses_route_to_the_same_place_is_left_alone():
    current = [CurrentRoute("10.244.1.0/24", "192.0.2.50", 4)]
    plan = plan_routes("a", [A, B], current, on_link)
    assert all(route.dst != "10.244.1.0/24" for route in plan.add)
    assert plan.warnings == ["node b: a route to 10.244.1.0/24 (protocol 4) exists and is not ours; it is left alone"]


def test_uninstall_deletes_every_route_of_ours_and_nothing_else():
    current = [
        CurrentRoute("10.244.1.0/24", "192.0.2.11", ROUTE_PROTOCOL),
        CurrentRoute("fd00:10:244:1::/64", "2001:db8::11", ROUTE_PROTOCOL),
        CurrentRoute("10.99.0.0/24", "192.0.2.1", 4),
    ]
    assert render_routes(uninstall_plan(current)) == (
        f"route del 10.244.1.0/24 proto {ROUTE_PROTOCOL}\nroute del fd00:10:244:1::/64 proto {ROUTE_PROTOCOL}\n"
    )


def test_reading_the_kernels_answers():
    entries = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0", "protocol": "2"},
        {"dst": "10.244.1.0/24", "gateway": "192.0.2.11", "dev": "eth0", "protocol": str(ROUTE_PROTOCOL)},
        {"dst": "10.244.0.5", "dev": "cr0123", "protocol": "4"},
    ]
    assert current_routes(entries, 4) == [
        CurrentRoute("0.0.0.0/0", "192.0.2.1", 0),  # the default route, read like any other
        CurrentRoute("192.0.2.0/24", None, 2),
        CurrentRoute("10.244.1.0/24", "192.0.2.11", ROUTE_PROTOCOL),
        CurrentRoute("10.244.0.5", None, 4),
    ]
    assert not_on_link_reason([{"dst": "192.0.2.11", "dev": "eth0"}]) is None
    assert not_on_link_reason([{"dst": "8.8.8.8", "gateway": "192.0.2.1"}]) == "the kernel routes it via 192.0.2.1"


def test_nodes_from_their_json_form():
    node = node_from_dict({
        "metadata": {"name": "b"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
        "status": {"addresses": [
            {"type": "Hostname", "address": "b"},
            {"type": "InternalIP", "address": "192.0.2.11"},
            {"type": "ExternalIP", "address": "203.0.113.11"},
        ]},
    })
    assert node == NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64"), ("192.0.2.11",))
    dated = node_from_dict({"metadata": {"name": "b", "uid": "u-b", "creationTimestamp": "2026-01-02T03:04:05Z"}})
    assert (dated.uid, dated.created) == ("u-b", "2026-01-02T03:04:05Z")
    assert node_from_dict({"metadata": {"name": "new"}, "spec": {}}) == NodeInfo("new")
    assert node_from_dict({"metadata": {"name": "old"}, "spec": {"podCIDR": "10.244.3.0/24"}}).pod_cidrs == (
        "10.244.3.0/24",
    )


# --- which pod CIDRs are believed -------------------------------------------------------

EVIL = NodeInfo("evil", ("0.0.0.0/0", "::/0"), ("192.0.2.66",))


def test_the_default_route_is_never_replaced_even_when_a_node_claims_it():
    current = current_routes([{"dst": "default", "gateway": "192.0.2.1", "protocol": "4"}], 4)
    current += current_routes([{"dst": "default", "gateway": "fe80::1", "protocol": "3"}], 6)
    plan = plan_routes("a", [A, EVIL], current, on_link)  # even without the admission below
    assert plan.add == [] and plan.delete == []
    assert "replace" not in render_routes(plan)
    assert any("a route to 0.0.0.0/0 (protocol 4) exists and is not ours" in w for w in plan.warnings)


def test_the_default_route_of_ours_is_deleted_by_protocol_only():
    current = current_routes([{"dst": "default", "gateway": "192.0.2.66", "protocol": str(ROUTE_PROTOCOL)}], 4)
    assert render_routes(plan_routes("a", [A], current, on_link)) == f"route del 0.0.0.0/0 proto {ROUTE_PROTOCOL}\n"


def test_a_node_claiming_everything_is_refused_and_not_routed():
    admission = admit_pod_cidrs("a", [A, B, EVIL])
    assert [(r.node.name, r.cidr, r.reason) for r in admission.refused] == [
        ("evil", "0.0.0.0/0", "shorter than /8"),
        ("evil", "::/0", "shorter than /32"),
    ]
    assert "not routed, not exempt from masquerade" in admission.refused[0].message
    believed = {node.name: node.pod_cidrs for node in admission.nodes}
    assert believed == {"a": A.pod_cidrs, "b": B.pod_cidrs, "evil": ()}
    plan = plan_routes("a", admission.nodes, [], on_link)
    assert [route.node for route in plan.add] == ["b", "b"]


def test_the_shortest_prefix_is_a_setting():
    wide = NodeInfo("w", ("10.0.0.0/9",), ("192.0.2.70",))
    assert admit_pod_cidrs("a", [A, wide], ("10.0.0.0/8",)).refused == ()
    refused = admit_pod_cidrs("a", [A, wide], ("10.0.0.0/8",), {4: 16, 6: 32}).refused
    assert [(r.cidr, r.reason) for r in refused] == [("10.0.0.0/9", "shorter than /16")]


def test_pod_cidrs_outside_the_cluster_cidrs_are_refused():
    stray = NodeInfo("s", ("172.16.0.0/24",), ("192.0.2.71",))
    admission = admit_pod_cidrs("a", [A, B, stray], ("10.244.0.0/16", "fd00:10:244::/56"))
    assert [(r.node.name, r.reason) for r in admission.refused] == [
        ("s", "not inside the cluster's pod CIDRs (10.244.0.0/16)")
    ]


def test_without_cluster_cidrs_they_are_learned_from_this_nodes_own_widened_to_the_bound():
    assert [str(n) for n in cluster_bounds("a", [A, B], (), {4: 8, 6: 32})] == ["10.0.0.0/8", "fd00:10::/32"]
    stray = NodeInfo("s", ("172.16.0.0/24",), ("192.0.2.71",))
    admission = admit_pod_cidrs("a", [A, stray])
    assert [r.reason for r in admission.refused] == ["not inside the cluster's pod CIDRs (10.0.0.0/8)"]
    # this node claiming everything teaches nothing; its own CIDR is refused too
    assert cluster_bounds("evil", [EVIL, B], (), {4: 8, 6: 32}) == ()


def test_while_this_node_has_no_pod_cidr_and_no_cluster_cidrs_nothing_is_routed_nor_blamed():
    admission = admit_pod_cidrs("new", [NodeInfo("new", (), ("192.0.2.9",)), B])
    assert admission.refused == ()
    assert {node.name: node.pod_cidrs for node in admission.nodes} == {"new": (), "b": ()}
    assert any("are not known" in line for line in admission.unknown)


def test_a_pod_cidr_holding_a_node_address_is_refused():
    lan = NodeInfo("lan", ("10.0.0.0/16",), ("10.0.0.5",))
    admission = admit_pod_cidrs("a", [A, lan], ("10.0.0.0/8",))
    assert [r.reason for r in admission.refused] == ["it contains the node address 10.0.0.5"]
    other = NodeInfo("o", ("192.0.2.0/24",), ("198.51.100.1",))  # holds node a's address
    assert [r.reason for r in admit_pod_cidrs("a", [A, other], ("192.0.2.0/24", "10.0.0.0/8")).refused] == [
        "it contains the node address 192.0.2.10"
    ]


def test_an_overlapping_pod_cidr_is_refused_and_the_earlier_node_keeps_its_own():
    first = NodeInfo("z-first", ("10.244.1.0/24",), ("192.0.2.11",), created="2026-01-01T00:00:00Z")
    later = NodeInfo("a-later", ("10.244.0.0/16",), ("192.0.2.12",), created="2026-06-01T00:00:00Z")
    admission = admit_pod_cidrs("z-first", [later, first], ("10.244.0.0/16",))
    assert [(r.node.name, r.reason) for r in admission.refused] == [
        ("a-later", "it overlaps 10.244.1.0/24, a pod CIDR of a node created earlier")
    ]
    assert [node.name for node in admission.nodes] == ["a-later", "z-first"]  # the order given
