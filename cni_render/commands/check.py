"""CHECK: the pod and node still hold what ADD created, as prevResult says.

Read-only. Compares prevResult's interfaces, addresses and routes, plus the
addresses and routes of the ADD batches re-rendered from prevResult, with the
live state of the pod and the node, and asks IPAM whether it still holds the
addresses.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cni_render.cni.errors import InvalidConfig, InvalidEnvironment, StateMismatch
from cni_render.cni.versions import parse_result
from cni_render.commands import Invocation
from cni_render.datapath.expect import (
    ExpectedRoute,
    address_present,
    expectations,
    find_link,
    master_present,
    route_present,
)
from cni_render.datapath.plan import build_plan
from cni_render.host import system


def run(inv: Invocation) -> None:
    request, config = inv.request, inv.config
    if config.prev_result is None:
        raise InvalidConfig("CHECK needs prevResult in the network config, and it is missing")
    prev = parse_result(config.prev_result, "prevResult")
    problem = system.netns_problem(request.netns)
    if problem:
        raise InvalidEnvironment(problem)
    pod_index, pod_iface = _pod_interface(prev, request.ifname)
    pod_ips = [ip for ip in prev["ips"] if ip.get("interface") in (None, pod_index)]
    inv.ipam().check(str(ipaddress.ip_interface(ip["address"]).ip) for ip in pod_ips)

    ipam_view = {"ips": pod_ips, "routes": prev.get("routes", [])}
    plan = build_plan(request, config, ipam_view, config.mtu or system.default_route_mtu())
    rendered = inv.renderer().render_add(plan, with_result=False)

    pod_links, pod_routes = system.read_state(request.netns)
    _check_link(pod_links, request.ifname, pod_iface.get("mac"), "pod")
    _check_side(rendered.pod_batch, pod_links, pod_routes, "pod")
    _check_prev_routes(prev, pod_ips, pod_routes, request.ifname)

    node_links, node_routes = system.read_state()
    ours = {plan.host.ifname, plan.bridge.ifname}
    for iface in prev["interfaces"]:
        if not iface.get("sandbox") and iface.get("name") in ours:
            _check_link(node_links, iface["name"], iface.get("mac"), "node")
    _check_link(node_links, plan.host.ifname, None, "node")
    _check_side(rendered.setup_batch + rendered.host_batch, node_links, node_routes, "node")


def _pod_interface(prev: dict[str, Any], ifname: str) -> tuple[int, dict[str, Any]]:
    for index, iface in enumerate(prev["interfaces"]):
        if iface.get("name") == ifname and iface.get("sandbox"):
            return index, iface
    raise StateMismatch(f"prevResult lists no interface {ifname} inside a sandbox")


def _check_link(links: list[dict[str, Any]], ifname: str, mac: str | None, where: str) -> None:
    link = find_link(links, ifname)
    if link is None:
        raise StateMismatch(f"interface {ifname} is missing in the {where}")
    if mac and link.get("address", "").lower() != mac.lower():
        raise StateMismatch(
            f"interface {ifname} in the {where} has MAC {link.get('address')}, prevResult says {mac}"
        )
    if "UP" not in link.get("flags", []):
        raise StateMismatch(f"interface {ifname} in the {where} is down")


def _check_side(batch: str, links: list[dict[str, Any]], routes: list[dict[str, Any]], where: str) -> None:
    expected = expectations(batch)
    for address in expected.addresses:
        if not address_present(address, links):
            raise StateMismatch(f"address {address.cidr} is missing on {address.dev} in the {where}")
    for route in expected.routes:
        if not route_present(route, routes):
            via = f" via {route.gw}" if route.gw else ""
            raise StateMismatch(f"route {route.dst}{via} dev {route.dev} is missing in the {where}")
    for port in expected.masters:
        if not master_present(port, links):
            raise StateMismatch(f"{port.dev} is not a port of {port.master} in the {where}")


def _check_prev_routes(
    prev: dict[str, Any], pod_ips: list[dict[str, Any]], routes: list[dict[str, Any]], ifname: str
) -> None:
    gateways = {
        ipaddress.ip_interface(ip["address"]).version: ip.get("gateway") for ip in pod_ips
    }
    for route in prev.get("routes", []):
        dst = ipaddress.ip_network(route["dst"], strict=False)
        table = route.get("table")
        expected = ExpectedRoute(
            dst=str(dst),
            gw=route.get("gw") or gateways.get(dst.version),
            dev=None,
            table="main" if table in (None, 254) else str(table),
        )
        if not route_present(expected, routes):
            raise StateMismatch(f"route {dst} from prevResult is missing in the pod ({ifname})")
