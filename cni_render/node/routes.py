"""Host-gw routes between nodes: plan (pure), render, apply.

For every other node, each of its pod CIDRs is routed via that node's
InternalIP of the same family. A node whose address is not on-link (the
kernel's route to it has a gateway) is skipped with a warning: host-gw needs
the nodes on one L2 segment. Routes of deleted nodes are removed.

Every route the agent makes carries ``ROUTE_PROTOCOL``; only routes with that
protocol are ever replaced or deleted, so a route someone else made (another
CNI, an operator) for the same destination is left alone and reported.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from cni_render.cni.errors import CniError
from cni_render.host import system
from cni_render.node.nodeinfo import NodeInfo
from cni_render.node.templates import ROUTES, render_node_template

ROUTE_PROTOCOL = 245  # ours; /etc/iproute2/rt_protos names none with this number
FAMILIES = (4, 6)


@dataclass(frozen=True, order=True)
class Route:
    dst: str
    via: str
    node: str = ""


@dataclass(frozen=True)
class CurrentRoute:
    """A route of the node's main table, as read from the kernel."""

    dst: str
    via: str | None
    protocol: int


@dataclass
class RoutePlan:
    desired: list[Route] = field(default_factory=list)
    add: list[Route] = field(default_factory=list)
    delete: list[Route] = field(default_factory=list)  # only ever routes of ours
    warnings: list[str] = field(default_factory=list)

    @property
    def changes(self) -> bool:
        return bool(self.add or self.delete)


# gateway_of(address) -> None when the address is on-link, else why it is not
OnLink = Callable[[str], "str | None"]


def desired_routes(own: str, nodes: Iterable[NodeInfo], not_on_link: OnLink) -> tuple[list[Route], list[str]]:
    """(routes to every other node's pod CIDRs, warnings about skipped nodes)."""
    routes, warnings = [], []
    for node in sorted(nodes, key=lambda n: n.name):
        if node.name == own:
            continue
        for network in node.pod_networks:
            via = node.internal_ip(network.version)
            if via is None:
                warnings.append(
                    f"node {node.name}: no IPv{network.version} InternalIP for pod CIDR {network}; no route"
                )
                continue
            problem = not_on_link(via)
            if problem:
                warnings.append(f"node {node.name}: {via} is not on-link ({problem}); no route to {network}")
                continue
            routes.append(Route(str(network), via, node.name))
    return routes, warnings


def plan_routes(
    own: str, nodes: Iterable[NodeInfo], current: Sequence[CurrentRoute], not_on_link: OnLink
) -> RoutePlan:
    """What to delete (of ours) and add so the main table holds exactly the desired routes of ours."""
    desired, warnings = desired_routes(own, nodes, not_on_link)
    ours = {_key(r.dst): r for r in current if r.protocol == ROUTE_PROTOCOL}
    foreign = {_key(r.dst): r for r in current if r.protocol != ROUTE_PROTOCOL}
    plan = RoutePlan(warnings=warnings)
    for route in desired:
        key = _key(route.dst)
        if key in foreign:  # anyone else's route to the same place wins
            other = foreign[key]
            plan.warnings.append(
                f"node {route.node}: a route to {route.dst} (protocol {other.protocol}) exists and is "
                "not ours; it is left alone"
            )
            continue
        plan.desired.append(route)
        if key not in ours or ours[key].via != route.via:
            plan.add.append(route)
    kept = {_key(r.dst) for r in plan.desired if r not in plan.add}
    for key, present in sorted(ours.items(), key=lambda item: str(item[0])):
        if key not in kept:  # gone, or its gateway changed: deleted before it is added again
            plan.delete.append(Route(present.dst, present.via or ""))
    return plan


def _key(dst: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(dst, strict=False)


def render_routes(plan: RoutePlan) -> str:
    """The ``ip -batch`` file that turns the current table into the plan's."""
    context = {
        "protocol": ROUTE_PROTOCOL,
        "delete": [vars_of(r) for r in plan.delete],
        "add": [vars_of(r) for r in plan.add],
    }
    return render_node_template(ROUTES, context)


def vars_of(route: Route) -> dict[str, str]:
    return {"dst": route.dst, "via": route.via, "node": route.node}


def uninstall_plan(current: Sequence[CurrentRoute]) -> RoutePlan:
    """Delete every route of ours, and nothing else."""
    return plan_routes("", (), current, lambda address: None)


DEFAULT_DESTINATIONS = {4: "0.0.0.0/0", 6: "::/0"}


def current_routes(ip_json: Sequence[dict[str, Any]], version: int) -> list[CurrentRoute]:
    """Routes from ``ip -json -Numeric -<version> route show table main``;
    ``default`` is read as 0.0.0.0/0 or ::/0, like any other destination."""
    found = []
    for entry in ip_json:
        dst = entry.get("dst", "")
        if dst == "default":
            dst = DEFAULT_DESTINATIONS[version]
        if not dst:
            continue
        try:
            _key(dst)
            protocol = int(entry.get("protocol", 0))
        except ValueError:
            continue
        found.append(CurrentRoute(dst=dst, via=entry.get("gateway"), protocol=protocol))
    return found


def not_on_link_reason(route_get: Sequence[dict[str, Any]]) -> str | None:
    """None when ``ip -json route get ADDR`` says ADDR is on-link (no gateway)."""
    if not route_get:
        return "no route"
    gateway = route_get[0].get("gateway")
    return f"the kernel routes it via {gateway}" if gateway else None


# --- the node: read the table, ask the kernel, apply --------------------------------


def read_current_routes() -> list[CurrentRoute]:
    """Both families' main-table routes, with their protocol numbers."""
    found = []
    for version in FAMILIES:
        found += current_routes(system.ip_query([f"-{version}", "route", "show", "table", "main"]), version)
    return found


def kernel_not_on_link(address: str) -> str | None:
    """The kernel's answer to ``ip route get ADDRESS``: None when on-link."""
    try:
        return not_on_link_reason(system.ip_query(["route", "get", address]))
    except CniError as exc:
        return exc.details


def apply_routes(plan: RoutePlan) -> str:
    """Run the plan's batch (deleting a route that is already gone is fine); the batch run."""
    batch = render_routes(plan)
    if plan.changes:
        system.run_ip_batch(batch, where="node routes", tolerate=system.GONE_MESSAGES)
    return batch
