"""The node's desired state, computed purely from what the cluster says:
the conflist, the route plan and the masquerade batch. The agent applies it;
``cni-render node render`` prints it. Only the pod CIDRs the agent believes
(:func:`cni_render.node.nodeinfo.admit_pod_cidrs`) are used: a refused one is
neither routed, nor exempt from masquerade, nor this node's pods' range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from cni_render.node.conflist import NoPodCidr, build_conflist, conflist_bytes
from cni_render.node.masquerade import cluster_networks, render_masquerade
from cni_render.node.nodeinfo import NodeInfo, Refusal, admit_pod_cidrs, parse_networks
from cni_render.node.routes import CurrentRoute, OnLink, RoutePlan, plan_routes, render_routes
from cni_render.node.settings import Settings

SAMPLE_POD_CIDRS = ("10.244.0.0/24", "fd00:10:244::/64")  # to check templates on a node without a CIDR yet


@dataclass(frozen=True)
class NodeFacts:
    """What the agent reads from the node itself."""

    uplink_mtu: int
    portmap: bool
    template_dir: str


@dataclass(frozen=True)
class DesiredState:
    conflist: dict[str, Any] | None
    conflist_problem: str | None
    routes: RoutePlan
    routes_batch: str
    masquerade_batch: str
    refused: tuple[Refusal, ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def conflist_bytes(self) -> bytes | None:
        return conflist_bytes(self.conflist) if self.conflist else None


def desired_state(
    own: str,
    nodes: Sequence[NodeInfo],
    settings: Settings,
    facts: NodeFacts,
    current_routes: Sequence[CurrentRoute],
    not_on_link: OnLink,
) -> DesiredState:
    admission = admit_pod_cidrs(own, nodes, settings.cluster_cidrs, settings.min_prefix)
    believed = admission.nodes
    mine = next((node for node in believed if node.name == own), NodeInfo(own))
    try:
        document, problem = node_conflist(mine, settings, facts), None
    except NoPodCidr as exc:
        refusals = [refusal.message for refusal in admission.refused if refusal.node.name == own]
        document, problem = None, "; ".join(refusals) or str(exc)
    plan = plan_routes(own, believed, current_routes, not_on_link)
    networks = cluster_networks(believed, settings.cluster_cidrs)
    return DesiredState(
        conflist=document,
        conflist_problem=problem,
        routes=plan,
        routes_batch=render_routes(plan),
        masquerade_batch=render_masquerade(settings.masquerade, networks),
        refused=admission.refused,
        unknown=admission.unknown,
    )


def node_conflist(node: NodeInfo, settings: Settings, facts: NodeFacts, sample: bool = False) -> dict[str, Any]:
    """The conflist of ``node`` (NoPodCidr without one, unless ``sample``: then
    sample CIDRs stand in, for checking templates)."""
    return build_conflist(
        node.name,
        node.pod_networks or (parse_networks(SAMPLE_POD_CIDRS) if sample else ()),
        mtu=settings.mtu or facts.uplink_mtu,
        mode=settings.mode,
        template_dir=facts.template_dir,
        portmap=facts.portmap,
    )
