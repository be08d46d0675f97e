"""Template filters: small, pure functions on addresses (documented in docs/templates.md)."""

from __future__ import annotations

import ipaddress
from typing import Any, Callable


def ip(value: Any) -> str:
    """``10.244.0.5/24`` → ``10.244.0.5`` (an address passes through)."""
    return str(ipaddress.ip_interface(str(value)).ip)


def prefixlen(value: Any) -> int:
    """``10.244.0.5/24`` → ``24``."""
    return ipaddress.ip_interface(str(value)).network.prefixlen


def network(value: Any) -> str:
    """``10.244.0.5/24`` → ``10.244.0.0/24``."""
    return str(ipaddress.ip_interface(str(value)).network)


def host_prefix(value: Any) -> str:
    """``10.244.0.5/24`` → ``10.244.0.5/32`` (``/128`` for IPv6)."""
    address = ipaddress.ip_interface(str(value)).ip
    return f"{address}/{address.max_prefixlen}"


def ipmath(value: Any, offset: int) -> str:
    """``10.244.0.0/24 | ipmath(1)`` → ``10.244.0.1``: the address plus ``offset``."""
    return str(ipaddress.ip_interface(str(value)).ip + int(offset))


def family(value: Any) -> int:
    """``fd00::5/64`` → ``6``."""
    return ipaddress.ip_interface(str(value)).version


FILTERS: dict[str, Callable[..., Any]] = {
    "ip": ip,
    "prefixlen": prefixlen,
    "network": network,
    "host_prefix": host_prefix,
    "ipmath": ipmath,
    "family": family,
}
