"""CNI spec versions: the supported set, what each allows, and result conversion.

Results are handled internally in the current (1.1.0) shape and converted to
the version the network config asked for only when printed.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cni_render.cni.errors import DecodeFailure, IncompatibleVersion
from cni_render.cni.spec import SUPPORTED_VERSIONS

_ORDER = {v: i for i, v in enumerate(SUPPORTED_VERSIONS)}

# Fields that the 1.1.0 spec added to interfaces and routes.
_INTERFACE_1_1_FIELDS = ("mtu", "socketPath", "pciID")
_ROUTE_1_1_FIELDS = ("mtu", "advmss", "priority", "table", "scope")


def require_supported(version: str) -> str:
    if version not in _ORDER:
        raise IncompatibleVersion(
            f"cniVersion {version!r} is not supported; supported versions are "
            + ", ".join(SUPPORTED_VERSIONS)
        )
    return version


def at_least(version: str, minimum: str) -> bool:
    return _ORDER[version] >= _ORDER[minimum]


def has_check(version: str) -> bool:
    return at_least(version, "0.4.0")


def has_status(version: str) -> bool:
    return at_least(version, "1.1.0")


def has_gc(version: str) -> bool:
    return at_least(version, "1.1.0")


def has_interfaces(version: str) -> bool:
    """0.3.0 introduced interfaces, ips[] and chaining."""
    return at_least(version, "0.3.0")


def has_ip_version_field(version: str) -> bool:
    return version in ("0.3.0", "0.3.1", "0.4.0")


def has_1_1_fields(version: str) -> bool:
    return at_least(version, "1.1.0")


def _family(cidr: str) -> int:
    return ipaddress.ip_interface(cidr).version


def convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """Convert a current-shape result to ``version``'s wire format."""
    if not has_interfaces(version):
        return _to_legacy(result, version)
    interfaces = [dict(i) for i in result.get("interfaces", [])]
    ips = [dict(ip) for ip in result.get("ips", [])]
    routes = [dict(r) for r in result.get("routes", [])]
    if not has_1_1_fields(version):
        for iface in interfaces:
            for key in _INTERFACE_1_1_FIELDS:
                iface.pop(key, None)
        for route in routes:
            for key in _ROUTE_1_1_FIELDS:
                route.pop(key, None)
    if has_ip_version_field(version):
        for ip in ips:
            ip["version"] = str(_family(ip["address"]))
    converted: dict[str, Any] = {"cniVersion": version}
    if interfaces:
        converted["interfaces"] = interfaces
    converted["ips"] = ips
    if routes:
        converted["routes"] = routes
    dns = result.get("dns")
    if dns:
        converted["dns"] = dns
    return converted


def _to_legacy(result: dict[str, Any], version: str) -> dict[str, Any]:
    """0.1.0/0.2.0: the first IPv4 and the first IPv6 address, routes split by family."""
    converted: dict[str, Any] = {"cniVersion": version}
    routes = [
        {k: v for k, v in r.items() if k in ("dst", "gw")} for r in result.get("routes", [])
    ]
    for family, key in ((4, "ip4"), (6, "ip6")):
        ip = next((ip for ip in result.get("ips", []) if _family(ip["address"]) == family), None)
        if ip is None:
            continue
        entry: dict[str, Any] = {"ip": ip["address"]}
        if ip.get("gateway"):
            entry["gateway"] = ip["gateway"]
        family_routes = [r for r in routes if _family(r["dst"]) == family]
        if family_routes:
            entry["routes"] = family_routes
        converted[key] = entry
    converted["dns"] = result.get("dns") or {}
    return converted


def parse_result(document: Any, what: str = "result") -> dict[str, Any]:
    """Bring a result of any supported version into the current shape."""
    if not isinstance(document, dict):
        raise DecodeFailure(f"{what} is not a JSON object")
    try:
        if "ip4" in document or "ip6" in document:
            return _from_legacy(document)
        result: dict[str, Any] = {
            "interfaces": [dict(i) for i in document.get("interfaces") or []],
            "ips": [
                {k: v for k, v in ip.items() if k != "version"} for ip in document.get("ips") or []
            ],
            "routes": [dict(r) for r in document.get("routes") or []],
        }
        for ip in result["ips"]:
            ipaddress.ip_interface(ip["address"])
            if ip.get("gateway"):
                ipaddress.ip_address(ip["gateway"])
        for route in result["routes"]:
            ipaddress.ip_network(route["dst"], strict=False)
            if route.get("gw"):
                ipaddress.ip_address(route["gw"])
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise DecodeFailure(f"{what} is not a valid CNI result: {exc}") from exc
    if document.get("dns"):
        result["dns"] = document["dns"]
    return result


def _from_legacy(document: dict[str, Any]) -> dict[str, Any]:
    ips: list[dict[str, Any]] = []
    routes: list[dict[str, Any]] = []
    for key in ("ip4", "ip6"):
        entry = document.get(key)
        if not entry:
            continue
        ipaddress.ip_interface(entry["ip"])
        ip: dict[str, Any] = {"address": entry["ip"]}
        if entry.get("gateway"):
            ip["gateway"] = entry["gateway"]
        ips.append(ip)
        routes.extend(dict(r) for r in entry.get("routes") or [])
    result: dict[str, Any] = {"interfaces": [], "ips": ips, "routes": routes}
    if document.get("dns"):
        result["dns"] = document["dns"]
    return result
