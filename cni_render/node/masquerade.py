"""Egress masquerade for the whole node, both families, in one nft table.

The set of "cluster" addresses is every node's believed pod CIDRs (a refused
one, 0.0.0.0/0 say, never: :func:`cni_render.node.nodeinfo.admit_pod_cidrs`)
plus the configured cluster CIDRs, collapsed (an nft interval set refuses overlapping elements,
e.g. a cluster CIDR and a node CIDR inside it). Traffic from that set to
anything outside it that is not local to the node is masqueraded; traffic
between pods, on this node or another, keeps its source address. Turning
masquerade off (or ``uninstall``) removes the table.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from cni_render.host import system
from cni_render.node.nodeinfo import NodeInfo
from cni_render.node.templates import MASQUERADE, render_node_template

TABLE = "cni-render-node"
_FAMILIES = {4: ("ip", "ipv4_addr", "cluster4"), 6: ("ip6", "ipv6_addr", "cluster6")}


def cluster_networks(nodes: Iterable[NodeInfo], cluster_cidrs: Iterable[str]) -> dict[int, list[str]]:
    """{4: [...], 6: [...]}: every pod CIDR and cluster CIDR, collapsed per family."""
    networks: dict[int, list[Any]] = {4: [], 6: []}
    for node in nodes:
        for network in node.pod_networks:
            networks[network.version].append(network)
    for cidr in cluster_cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        networks[network.version].append(network)
    return {
        version: [str(n) for n in ipaddress.collapse_addresses(found)] for version, found in networks.items()
    }


def render_masquerade(enabled: bool, networks: dict[int, list[str]]) -> str:
    """The ``nft -f`` transaction replacing the table (only deleting it when disabled)."""
    families = []
    for version, (match, kind, set_name) in sorted(_FAMILIES.items()):
        families.append({"match": match, "type": kind, "set": set_name, "cidrs": networks.get(version, [])})
    return render_node_template(MASQUERADE, {"table": TABLE, "enabled": enabled, "families": families})


def apply_masquerade(batch: str) -> None:
    system.run_nft_batch(batch, where="node masquerade")
