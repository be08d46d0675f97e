"""The plan: every fact a template needs, computed in Python.

A plan is pure data built from the request, the config and the IPAM result.
Templates read it; they never compute addresses, names or routes themselves.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cni_render.cni.config import NetworkConfig
from cni_render.cni.errors import InvalidConfig
from cni_render.cni.request import Request
from cni_render.datapath import naming

IPV6_MIN_MTU = 1280


@dataclass(frozen=True)
class Link:
    ifname: str
    mac: str


@dataclass(frozen=True)
class PodAddress:
    cidr: str  # 10.244.0.5/24: the pod address with its subnet prefix
    ip: str  # 10.244.0.5
    prefixlen: int
    family: int  # 4 or 6
    subnet: str  # 10.244.0.0/24
    host_cidr: str  # 10.244.0.5/32: the address alone, for host routes
    gateway: str  # 10.244.0.1
    gateway_cidr: str  # 10.244.0.1/32: the gateway alone, for the host end


@dataclass(frozen=True)
class PodRoute:
    dst: str
    gw: str
    family: int
    mtu: int | None = None
    advmss: int | None = None
    priority: int | None = None
    table: int | None = None
    scope: int | None = None


@dataclass(frozen=True)
class AttachmentPlan:
    """What every command knows about an attachment (container ID, ifname) of
    a network: the fields ADD's and the teardown's plans share."""

    command: str
    network: str
    cni_version: str
    container_id: str
    ifname: str
    netns: str
    host: Link
    bridge: Link  # the node bridge of the bridge set
    ip_masq: bool
    args: Mapping[str, str]
    runtime_config: Mapping[str, Any]

    def context(self) -> dict[str, Any]:
        """The template context: the plan's fields as top-level variables."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class Plan(AttachmentPlan):
    """ADD's plan (and CHECK's expectations): the attachment and its addresses."""

    mtu: int
    pod: Link
    addresses: tuple[PodAddress, ...]
    routes: tuple[PodRoute, ...]
    dns: Mapping[str, Any]
    ipv4: bool
    ipv6: bool
    pod_link_local: str | None
    host_link_local: str | None  # the node end's (routed) or the bridge's (bridge set)


@dataclass(frozen=True)
class TeardownPlan(AttachmentPlan):
    """What DEL and GC know about an attachment: no addresses are needed."""

    released: tuple[str, ...]  # addresses this attachment holds and this call releases (bare IPs)


def pod_mac(request: Request, config: NetworkConfig) -> str:
    """The runtime's MAC (capability ``mac`` or CNI_ARGS ``MAC=``), else a derived one."""
    wanted = config.runtime_config.get("mac") or request.args.get("MAC")
    if wanted:
        mac = naming.normalize_mac(str(wanted))
        if mac is None:
            raise InvalidConfig(f"requested MAC {wanted!r} is not a unicast MAC address")
        return mac
    return naming.pod_mac(config.name, request.container_id, request.ifname)


def host_link(network: str, container_id: str, ifname: str) -> Link:
    return Link(
        ifname=naming.host_ifname(network, container_id, ifname),
        mac=naming.host_mac(network, container_id, ifname),
    )


def bridge_link(config: NetworkConfig) -> Link:
    return Link(ifname=config.bridge, mac=naming.bridge_mac(config.bridge))


def _pod_address(ip: Mapping[str, Any]) -> PodAddress:
    interface = ipaddress.ip_interface(ip["address"])
    network = interface.network
    gateway_text = ip.get("gateway")
    if gateway_text:
        gateway = ipaddress.ip_address(gateway_text)
    elif network.num_addresses > 2:
        gateway = network.network_address + 1
    else:
        raise InvalidConfig(
            f"IPAM gave {interface} without a gateway; the routed datapath needs one "
            "(set gateway in the IPAM ranges)"
        )
    if gateway == interface.ip:
        raise InvalidConfig(f"IPAM gave {interface}, which is its own gateway")
    host_bits = interface.max_prefixlen
    return PodAddress(
        cidr=str(interface),
        ip=str(interface.ip),
        prefixlen=network.prefixlen,
        family=interface.version,
        subnet=str(network),
        host_cidr=f"{interface.ip}/{host_bits}",
        gateway=str(gateway),
        gateway_cidr=f"{gateway}/{host_bits}",
    )


def _pod_route(route: Mapping[str, Any], addresses: Sequence[PodAddress]) -> PodRoute:
    dst = ipaddress.ip_network(route["dst"], strict=False)
    gw = route.get("gw")
    if not gw:
        same_family = [a for a in addresses if a.family == dst.version]
        if not same_family:
            raise InvalidConfig(f"route to {dst} has no gateway and the pod has no IPv{dst.version} address")
        gw = same_family[0].gateway
    return PodRoute(
        dst=str(dst),
        gw=str(ipaddress.ip_address(gw)),
        family=dst.version,
        **{k: route[k] for k in ("mtu", "advmss", "priority", "table", "scope") if k in route},
    )


def build_plan(
    request: Request, config: NetworkConfig, ipam_result: Mapping[str, Any], mtu: int
) -> Plan:
    if not ipam_result.get("ips"):
        raise InvalidConfig(f"IPAM plugin {config.ipam_type} returned no addresses")
    addresses = tuple(_pod_address(ip) for ip in ipam_result["ips"])
    families = {a.family for a in addresses}
    if 6 in families and mtu < IPV6_MIN_MTU:
        raise InvalidConfig(f"$.mtu: {mtu} is below IPv6's minimum of {IPV6_MIN_MTU}")
    pod = Link(ifname=request.ifname, mac=pod_mac(request, config))
    return Plan(
        **_attachment(request, config),
        mtu=mtu,
        pod=pod,
        addresses=addresses,
        routes=tuple(_pod_route(r, addresses) for r in ipam_result.get("routes") or []),
        dns=config.dns or ipam_result.get("dns") or {},
        ipv4=4 in families,
        ipv6=6 in families,
        pod_link_local=naming.link_local(pod.mac) if 6 in families else None,
        host_link_local=_host_link_local(request, config) if 6 in families else None,
    )


def _host_link_local(request: Request, config: NetworkConfig) -> str:
    """The node side's IPv6 link-local address (the bridge's in the bridge
    set), from its MAC. The kernel sends neighbour solicitations for
    forwarded packets only from a link-local address, so without one a pod is
    unreachable from other pods until the node itself has talked to it."""
    if config.mode == "bridge":
        return naming.link_local(bridge_link(config).mac)
    return naming.link_local(host_link(config.name, request.container_id, request.ifname).mac)


def build_teardown(
    request: Request, config: NetworkConfig, released: Sequence[str]
) -> TeardownPlan:
    """DEL's and GC's plan: ``released`` are the addresses the attachment
    still holds (with or without a prefix)."""
    return TeardownPlan(
        **_attachment(request, config),
        released=tuple(str(ipaddress.ip_interface(ip).ip) for ip in released),
    )


def _attachment(request: Request, config: NetworkConfig) -> dict[str, Any]:
    """What every plan knows about the attachment, whatever the command."""
    return {
        "command": request.command,
        "network": config.name,
        "cni_version": config.cni_version,
        "container_id": request.container_id,
        "ifname": request.ifname,
        "netns": request.netns,
        "host": host_link(config.name, request.container_id, request.ifname),
        "bridge": bridge_link(config),
        "ip_masq": config.ip_masq,
        "args": dict(request.args),
        "runtime_config": config.runtime_config,
    }

