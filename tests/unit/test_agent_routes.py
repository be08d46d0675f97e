"""Host-gw route planning and rendering: other nodes only, per family, not on-link
skipped, deleted nodes' routes removed, and only routes with our protocol touched."""

from __future__ import annotations

from cni_render.node.nodeinfo import NodeInfo, node_from_dict
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
    assert plan.replace == [
        Route("10.244.1.0/24", "192.0.2.11", "b"),
        Route("fd00:10:244:1::/64", "2001:db8::11", "b"),
        Route("10.244.2.0/24", "192.0.2.12", "c"),
    ]
    assert plan.delete == [] and plan.warnings == []
    assert render_routes(plan) == (
        f"route replace 10.244.1.0/24 via 192.0.2.11 proto {ROUTE_PROTOCOL}\n"
        f"route replace fd00:10:244:1::/64 via 2001:db8::11 proto {ROUTE_PROTOCOL}\n"
        f"route replace 10.244.2.0/24 via 192.0.2.12 proto {ROUTE_PROTOCOL}\n"
    )


def test_a_pod_cidr_without_an_address_of_its_family_is_skipped_with_a_warning():
    ipv4_only = NodeInfo("b", ("10.244.1.0/24", "fd00:10:244:1::/64"), ("192.0.2.11",))
    plan = plan_routes("a", [A, ipv4_only], [], on_link)
    assert plan.replace == [Route("10.244.1.0/24", "192.0.2.11", "b")]
    assert plan.warnings == ["node b: no IPv6 InternalIP for pod CIDR fd00:10:244:1::/64; no route"]


def test_a_node_that_is_not_on_link_is_skipped_with_a_warning():
    def gateway(address):
        return "the kernel routes it via 192.0.2.1" if address == "192.0.2.12" else None

    plan = plan_routes("a", [A, B, C], [], gateway)
    assert Route("10.244.2.0/24", "192.0.2.12", "c") not in plan.replace
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


def test_a_changed_node_address_replaces_the_route():
    current = [CurrentRoute("10.244.1.0/24", "192.0.2.99", ROUTE_PROTOCOL)]
    moved = NodeInfo("b", ("10.244.1.0/24",), ("192.0.2.11",))
    assert plan_routes("a", [A, moved], current, on_link).replace == [Route("10.244.1.0/24", "192.0.2.11", "b")]


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
    assert all(route.dst != "10.244.1.0/24" for route in plan.replace)
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
    assert current_routes(entries) == [
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
    assert node_from_dict({"metadata": {"name": "new"}, "spec": {}}) == NodeInfo("new")
    assert node_from_dict({"metadata": {"name": "old"}, "spec": {"podCIDR": "10.244.3.0/24"}}).pod_cidrs == (
        "10.244.3.0/24",
    )
