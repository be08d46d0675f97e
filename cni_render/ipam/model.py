"""cni-render-ipam configuration: ranges, range sets and routes, checked across fields.

The JSON Schema checks each value's shape; this module checks what a schema
cannot: that addresses lie in their subnet, that ranges do not overlap, and
fills host-local's defaults.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Union

from cni_render.cni.errors import InvalidConfig

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

DEFAULT_DATA_DIR = "/run/cni-render/ipam"
ROUTE_EXTRAS = ("mtu", "advmss", "priority", "table", "scope")


@dataclass(frozen=True)
class AddressRange:
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    def __contains__(self, ip: object) -> bool:
        return (
            isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address))
            and ip.version == self.subnet.version
            and self.start <= ip <= self.end  # type: ignore[operator]
        )

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    @property
    def size(self) -> int:
        return int(self.end) - int(self.start) + 1


RangeSet = tuple[AddressRange, ...]


@dataclass(frozen=True)
class RouteSpec:
    dst: IPNetwork
    gw: IPAddress | None = None
    extras: tuple[tuple[str, int], ...] = ()

    def to_result(self) -> dict[str, Any]:
        route: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            route["gw"] = str(self.gw)
        route.update(self.extras)
        return route


@dataclass(frozen=True)
class IpamConfig:
    range_sets: tuple[RangeSet, ...]
    routes: tuple[RouteSpec, ...] = ()
    data_dir: str = DEFAULT_DATA_DIR
    families: frozenset[int] = field(default=frozenset())


def parse_ipam_config(ipam: dict[str, Any], path: str = "$.ipam") -> IpamConfig:
    raw_sets = ipam.get("ranges")
    if raw_sets is None:
        legacy = {k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}
        raw_sets = [[legacy]]
    range_sets = tuple(
        tuple(
            parse_range(raw, f"{path}.ranges[{i}][{j}]" if "ranges" in ipam else path)
            for j, raw in enumerate(raw_set)
        )
        for i, raw_set in enumerate(raw_sets)
    )
    _check_range_sets(range_sets, path)
    routes = tuple(
        parse_route(raw, f"{path}.routes[{i}]") for i, raw in enumerate(ipam.get("routes", []))
    )
    return IpamConfig(
        range_sets=range_sets,
        routes=routes,
        data_dir=ipam.get("dataDir", DEFAULT_DATA_DIR),
        families=frozenset(rs[0].subnet.version for rs in range_sets),
    )


def _address(value: str, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError as exc:
        raise InvalidConfig(f"{where}: {exc}") from exc


def parse_range(raw: dict[str, Any], path: str) -> AddressRange:
    try:
        subnet = ipaddress.ip_network(raw["subnet"], strict=True)
    except (KeyError, ValueError) as exc:
        raise InvalidConfig(f"{path}.subnet: {exc}") from exc
    host_bits = subnet.max_prefixlen - subnet.prefixlen
    if host_bits < 2:
        raise InvalidConfig(
            f"{path}.subnet: {subnet} is too small; it needs room for a gateway and pods "
            f"(at most /{subnet.max_prefixlen - 2})"
        )
    first = subnet.network_address + 1
    # IPv4 keeps the broadcast address out; IPv6 has no broadcast.
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    gateway = _address(raw["gateway"], f"{path}.gateway") if "gateway" in raw else first
    start = _address(raw["rangeStart"], f"{path}.rangeStart") if "rangeStart" in raw else first
    end = _address(raw["rangeEnd"], f"{path}.rangeEnd") if "rangeEnd" in raw else last
    for key, value in (("gateway", gateway), ("rangeStart", start), ("rangeEnd", end)):
        if value not in subnet:
            raise InvalidConfig(f"{path}.{key}: {value} is not in subnet {subnet}")
    if start > end:  # type: ignore[operator]
        raise InvalidConfig(f"{path}: rangeStart {start} is after rangeEnd {end}")
    return AddressRange(subnet=subnet, start=start, end=end, gateway=gateway)


def parse_route(raw: dict[str, Any], path: str) -> RouteSpec:
    try:
        dst = ipaddress.ip_network(raw["dst"], strict=True)
    except (KeyError, ValueError) as exc:
        raise InvalidConfig(f"{path}.dst: {exc}") from exc
    gw = _address(raw["gw"], f"{path}.gw") if "gw" in raw else None
    if gw is not None and gw.version != dst.version:
        raise InvalidConfig(f"{path}: gw {gw} and dst {dst} are of different address families")
    extras = tuple((k, int(raw[k])) for k in ROUTE_EXTRAS if k in raw)
    return RouteSpec(dst=dst, gw=gw, extras=extras)


def _check_range_sets(range_sets: tuple[RangeSet, ...], path: str) -> None:
    seen: list[tuple[str, AddressRange]] = []
    for i, range_set in enumerate(range_sets):
        families = {r.subnet.version for r in range_set}
        if len(families) > 1:
            raise InvalidConfig(
                f"{path}.ranges[{i}]: a range set mixes IPv4 and IPv6; put each family in its "
                "own range set"
            )
        for j, rng in enumerate(range_set):
            where = f"{path}.ranges[{i}][{j}]"
            for other_where, other in seen:
                if rng.subnet.version == other.subnet.version and not (
                    rng.end < other.start or other.end < rng.start  # type: ignore[operator]
                ):
                    raise InvalidConfig(f"{where}: range {rng} overlaps {other_where} ({other})")
            seen.append((where, rng))
