"""What the agent needs to know about a Node, independent of the API client."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, Union

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


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

def node_from_dict(node: Mapping[str, Any]) -> NodeInfo:
    """A NodeInfo from a Node in its JSON form (``kubectl get node -o json``,
    or the client's ``ApiClient().sanitize_for_serialization``)."""
    spec = node.get("spec") or {}
    cidrs: Sequence[str] = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    addresses = (node.get("status") or {}).get("addresses") or []
    return NodeInfo(
        name=str((node.get("metadata") or {}).get("name", "")),
        pod_cidrs=tuple(str(c) for c in cidrs),
        internal_ips=tuple(str(a.get("address")) for a in addresses if a.get("type") == "InternalIP"),
    )
