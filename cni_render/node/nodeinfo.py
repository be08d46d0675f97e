"""What the agent needs to know about a Node, independent of the API client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """The valid CIDRs as networks (an invalid one is left out)."""
    found = []
    for cidr in cidrs:
        try:
            found.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return tuple(found)


@dataclass(frozen=True)
class NodeInfo:
    """A Node's name, pod CIDRs (as the API gave them, and parsed once, here)
    and InternalIPs."""

    name: str
    pod_cidrs: tuple[str, ...] = ()
    internal_ips: tuple[str, ...] = ()
    uid: str = field(default="", compare=False)
    created: str = field(default="", compare=False)  # metadata.creationTimestamp (RFC 3339: sorts as text)
    pod_networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pod_networks", parse_networks(self.pod_cidrs))

    def internal_ip(self, version: int) -> str | None:
        """The node's first InternalIP of IP ``version`` (4 or 6)."""
        for address in self.internal_ips:
            try:
                if ipaddress.ip_address(address).version == version:
                    return address
            except ValueError:
                continue
        return None

    def with_pod_networks(self, networks: Sequence[Network]) -> NodeInfo:
        """The same Node holding only ``networks`` as its pod CIDRs."""
        return NodeInfo(self.name, tuple(str(n) for n in networks), self.internal_ips, self.uid, self.created)


def node_from_dict(node: Mapping[str, Any]) -> NodeInfo:
    """A NodeInfo from a Node in its JSON form (``kubectl get node -o json``,
    or the client's ``ApiClient().sanitize_for_serialization``)."""
    spec = node.get("spec") or {}
    cidrs: Sequence[str] = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    addresses = (node.get("status") or {}).get("addresses") or []
    metadata = node.get("metadata") or {}
    return NodeInfo(
        name=str(metadata.get("name", "")),
        pod_cidrs=tuple(str(c) for c in cidrs),
        internal_ips=tuple(str(a.get("address")) for a in addresses if a.get("type") == "InternalIP"),
        uid=str(metadata.get("uid") or ""),
        created=str(metadata.get("creationTimestamp") or ""),
    )


# --- which pod CIDRs the agent believes ---------------------------------------------

DEFAULT_MIN_PREFIX = {4: 8, 6: 32}  # a node's pod CIDR is no shorter than this


@dataclass(frozen=True)
class Refusal:
    """A pod CIDR of a Node the agent does not believe, and why."""

    node: NodeInfo
    cidr: str
    reason: str

    @property
    def message(self) -> str:
        return f"pod CIDR {self.cidr} of node {self.node.name} refused: {self.reason}; not routed, not exempt from masquerade"


@dataclass(frozen=True)
class Admission:
    """The Nodes holding only their believed pod CIDRs, the refusals (each the
    Node's own fault: an Event on it), and the pod CIDRs left out only because
    the cluster's pod CIDRs of their family are not known yet (logged)."""

    nodes: tuple[NodeInfo, ...]
    refused: tuple[Refusal, ...] = ()
    unknown: tuple[str, ...] = ()


def cluster_bounds(
    own: str, nodes: Sequence[NodeInfo], cluster_cidrs: Sequence[str], min_prefix: Mapping[int, int]
) -> tuple[Network, ...]:
    """The cluster's pod CIDRs: ``clusterCIDRs`` when given; else learned from
    this node's own pod CIDRs, each widened to the shortest allowed prefix
    (10.244.0.0/24 -> 10.0.0.0/8 by default), when it is itself acceptable."""
    if cluster_cidrs:
        return parse_networks(cluster_cidrs)
    mine = next((node for node in nodes if node.name == own), None)
    if mine is None:
        return ()
    addresses = _node_addresses(nodes)
    learned = []
    for network in mine.pod_networks:
        shortest = min_prefix[network.version]
        if network.prefixlen >= shortest and not any(address in network for address in addresses):
            learned.append(network.supernet(new_prefix=shortest))
    return tuple(learned)


def admit_pod_cidrs(
    own: str,
    nodes: Sequence[NodeInfo],
    cluster_cidrs: Sequence[str] = (),
    min_prefix: Mapping[int, int] = DEFAULT_MIN_PREFIX,
) -> Admission:
    """Every Node with only the pod CIDRs that lie inside the cluster's pod
    CIDRs (:func:`cluster_bounds`), are no shorter than ``min_prefix``, contain
    no node's InternalIP and overlap no pod CIDR of a Node created earlier
    (spec.podCIDRs cannot change once set, so the first claim wins)."""
    bounds = cluster_bounds(own, nodes, cluster_cidrs, min_prefix)
    addresses = _node_addresses(nodes)
    believed: list[Network] = []
    admitted, refused, unknown = [], [], []
    for node in sorted(nodes, key=lambda n: (n.created, n.name)):
        kept = []
        for network in node.pod_networks:
            if not any(bound.version == network.version for bound in bounds):
                unknown.append(f"pod CIDR {network} of node {node.name}: the cluster's IPv{network.version} pod "
                               "CIDRs are not known (set clusterCIDRs, or this node has none yet); not routed")
                continue
            reason = _refusal(network, bounds, addresses, believed, min_prefix[network.version])
            if reason:
                refused.append(Refusal(node, str(network), reason))
                continue
            believed.append(network)
            kept.append(network)
        admitted.append(node.with_pod_networks(kept))
    order = {node.name: index for index, node in enumerate(nodes)}
    admitted.sort(key=lambda n: order[n.name])
    return Admission(tuple(admitted), tuple(refused), tuple(unknown))


def _refusal(
    network: Network, bounds: Sequence[Network], addresses: Sequence[Address], believed: Sequence[Network],
    shortest: int,
) -> str | None:
    if network.prefixlen < shortest:
        return f"shorter than /{shortest}"
    if not any(bound.version == network.version and network.subnet_of(bound) for bound in bounds):  # type: ignore[arg-type]
        inside = ", ".join(str(bound) for bound in bounds if bound.version == network.version)
        return f"not inside the cluster's pod CIDRs ({inside})"
    address = next((a for a in addresses if a in network), None)
    if address is not None:
        return f"it contains the node address {address}"
    other = next((b for b in believed if b.overlaps(network)), None)
    if other is not None:
        return f"it overlaps {other}, a pod CIDR of a node created earlier"
    return None


def _node_addresses(nodes: Sequence[NodeInfo]) -> list[Address]:
    found = []
    for node in nodes:
        for address in node.internal_ips:
            try:
                found.append(ipaddress.ip_address(address))
            except ValueError:
                continue
    return found
