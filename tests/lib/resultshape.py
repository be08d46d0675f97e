"""An independent check of a CNI result's shape for its version (spec section 5).

Written separately from cni_render.cni.versions so the two cannot share a mistake.
"""

from __future__ import annotations

import ipaddress
from typing import Any

LEGACY = ("0.1.0", "0.2.0")
WITH_IP_VERSION = ("0.3.0", "0.3.1", "0.4.0")
INTERFACE_KEYS = {"name", "mac", "sandbox"}
INTERFACE_KEYS_1_1 = INTERFACE_KEYS | {"mtu", "socketPath", "pciID"}
ROUTE_KEYS = {"dst", "gw"}
ROUTE_KEYS_1_1 = ROUTE_KEYS | {"mtu", "advmss", "priority", "table", "scope"}
DNS_KEYS = {"nameservers", "domain", "search", "options"}


def _cidr(value: Any) -> bool:
    try:
        ipaddress.ip_interface(value)
        return "/" in value
    except (TypeError, ValueError):
        return False


def result_shape_problems(result: dict[str, Any], version: str) -> list[str]:
    problems = []
    if result.get("cniVersion") != version:
        problems.append(f"cniVersion is {result.get('cniVersion')!r}, not {version}")
    dns = result.get("dns", {})
    if set(dns) - DNS_KEYS:
        problems.append(f"unknown dns keys {set(dns) - DNS_KEYS}")
    if version in LEGACY:
        if set(result) - {"cniVersion", "ip4", "ip6", "dns"}:
            problems.append(f"unexpected keys {set(result) - {'cniVersion', 'ip4', 'ip6', 'dns'}}")
        for key, family in (("ip4", 4), ("ip6", 6)):
            if key in result:
                entry = result[key]
                if not _cidr(entry.get("ip")) or ipaddress.ip_interface(entry["ip"]).version != family:
                    problems.append(f"{key}.ip is not an IPv{family} CIDR")
                for route in entry.get("routes", []):
                    if set(route) - ROUTE_KEYS:
                        problems.append(f"{key} route has {set(route) - ROUTE_KEYS}")
        return problems
    interface_keys = INTERFACE_KEYS_1_1 if version == "1.1.0" else INTERFACE_KEYS
    route_keys = ROUTE_KEYS_1_1 if version == "1.1.0" else ROUTE_KEYS
    interfaces = result.get("interfaces", [])
    for iface in interfaces:
        if "name" not in iface or set(iface) - interface_keys:
            problems.append(f"interface {iface} has keys outside {sorted(interface_keys)}")
    ips = result.get("ips", [])
    if not ips:
        problems.append("no ips")
    for ip in ips:
        if not _cidr(ip.get("address")):
            problems.append(f"ips entry {ip} has no CIDR address")
        if version in WITH_IP_VERSION:
            if ip.get("version") != str(ipaddress.ip_interface(ip["address"]).version):
                problems.append(f"ips entry {ip} lacks the right version field")
        elif "version" in ip:
            problems.append(f"ips entry {ip} carries version, removed in 1.0.0")
        index = ip.get("interface")
        if index is not None and not 0 <= index < len(interfaces):
            problems.append(f"ips entry {ip} points outside interfaces")
    for route in result.get("routes", []):
        if "dst" not in route or set(route) - route_keys:
            problems.append(f"route {route} has keys outside {sorted(route_keys)}")
    return problems
