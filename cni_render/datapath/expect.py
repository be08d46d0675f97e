"""What CHECK expects to find, and whether it is there (pure functions).

Expectations come from two places: the previous result (interfaces, addresses,
routes) and the ADD batches re-rendered from it, whose ``addr add`` and
``route add`` lines say what the template set created. So an operator's extra
route is checked without any Python change.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Sequence


@dataclass(frozen=True)
class ExpectedAddress:
    cidr: str
    dev: str


@dataclass(frozen=True)
class ExpectedMaster:
    dev: str
    master: str


@dataclass(frozen=True)
class ExpectedRoute:
    dst: str
    dev: str | None = None
    gw: str | None = None
    table: str = "main"


_ROUTE_KEYWORDS_WITH_VALUE = {
    "via", "dev", "table", "metric", "priority", "preference", "src", "mtu", "advmss",
    "scope", "proto", "protocol", "realm", "realms", "weight", "nexthop",
    "initcwnd", "initrwnd", "window", "rtt", "rttvar", "congctl", "features", "quickack",
    "expires", "pref", "type", "tos", "dsfield", "hoplimit", "reordering", "ssthresh", "cwnd",
    "fastopen_no_cookie", "nhid", "encap",
}
_TABLE_NAMES = {"254": "main", "255": "local", "253": "default"}
_ROUTE_TYPES = {
    "unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit",
    "blackhole", "nat", "anycast",
}


def _normalize_table(table: str) -> str:
    return _TABLE_NAMES.get(table, table)


@dataclass
class Expectations:
    addresses: list[ExpectedAddress]
    routes: list[ExpectedRoute]
    masters: list[ExpectedMaster]


def expectations(batch: str) -> Expectations:
    """The addresses, routes and bridge ports a rendered ``ip -batch`` creates."""
    addresses, routes, masters = [], [], []
    for raw in batch.splitlines():
        words = raw.split("#", 1)[0].split()
        if len(words) >= 4 and words[:2] == ["link", "set"] and "master" in words:
            device = words[words.index("dev") + 1] if "dev" in words else words[2]
            masters.append(ExpectedMaster(dev=device, master=words[words.index("master") + 1]))
            continue
        if len(words) < 3 or words[1] not in ("add", "replace", "append"):
            continue
        if words[0] in ("addr", "address", "a") and "dev" in words:
            addresses.append(ExpectedAddress(cidr=words[2], dev=words[words.index("dev") + 1]))
        elif words[0] in ("route", "r", "ro"):
            route = _expected_route(words[2:])
            if route is not None:
                routes.append(route)
    return Expectations(addresses, routes, masters)


def _expected_route(words: Sequence[str]) -> ExpectedRoute | None:
    """A unicast route line's destination, device, gateway and table; None otherwise."""
    options: dict[str, str] = {}
    dst = None
    index = 0
    while index < len(words):
        word = words[index]
        if word in _ROUTE_KEYWORDS_WITH_VALUE and index + 1 < len(words):
            options[word] = words[index + 1]
            index += 2
            continue
        if word in _ROUTE_TYPES:
            if word != "unicast":
                return None
        elif dst is None:
            dst = word
        index += 1
    gw = options.get("via")
    if dst in (None, "default"):
        dst = "::/0" if gw and ":" in gw else "0.0.0.0/0"
    try:
        ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return None
    return ExpectedRoute(
        dst=str(ipaddress.ip_network(dst, strict=False)),
        dev=options.get("dev"),
        gw=gw,
        table=_normalize_table(options.get("table", "main")),
    )


def _route_dst(route: dict[str, Any]) -> str | None:
    dst: Any = route.get("dst")  # whatever `ip -j route` gave; not a network -> None below
    if dst == "default":
        gateway = route.get("gateway", "")
        return "::/0" if ":" in gateway or route.get("family") == "inet6" else "0.0.0.0/0"
    try:
        return str(ipaddress.ip_network(dst, strict=False))
    except (TypeError, ValueError):
        return None


def route_present(expected: ExpectedRoute, routes: Iterable[dict[str, Any]]) -> bool:
    for route in routes:
        if route.get("type", "unicast") != "unicast":
            continue
        dst = _route_dst(route)
        if dst != expected.dst and not (
            route.get("dst") == "default" and expected.dst in ("0.0.0.0/0", "::/0")
        ):
            continue
        if _normalize_table(str(route.get("table", "main"))) != expected.table:
            continue
        if expected.dev and route.get("dev") != expected.dev:
            continue
        if expected.gw and route.get("gateway") != str(ipaddress.ip_address(expected.gw)):
            continue
        return True
    return False


def address_present(expected: ExpectedAddress, links: Iterable[dict[str, Any]]) -> bool:
    wanted = ipaddress.ip_interface(expected.cidr)
    for link in links:
        if link.get("ifname") != expected.dev:
            continue
        for info in link.get("addr_info", []):
            try:
                have = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            except (KeyError, ValueError):
                continue
            if have == wanted:
                return True
    return False


def master_present(expected: ExpectedMaster, links: Iterable[dict[str, Any]]) -> bool:
    link = find_link(links, expected.dev)
    return link is not None and link.get("master") == expected.master


def find_link(links: Iterable[dict[str, Any]], ifname: str) -> dict[str, Any] | None:
    return next((link for link in links if link.get("ifname") == ifname), None)
