"""Deterministic names and MAC addresses for a pod's attachment.

Everything is derived from (network, container ID, ifname), so DEL, CHECK and
GC find the host interface without any state, and the plugin sets the MACs
itself instead of reading them back.
"""

from __future__ import annotations

import hashlib
import ipaddress

HOST_IFNAME_PREFIX = "cr"
HOST_IFNAME_LENGTH = 15  # IFNAMSIZ - 1


def _digest(network: str, container_id: str, ifname: str) -> bytes:
    return hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).digest()


def host_ifname(network: str, container_id: str, ifname: str) -> str:
    """``cr`` + 13 hex digits of sha256(network, container ID, ifname)."""
    digits = HOST_IFNAME_LENGTH - len(HOST_IFNAME_PREFIX)
    return HOST_IFNAME_PREFIX + _digest(network, container_id, ifname).hex()[:digits]


def _mac(raw: bytes) -> str:
    first = (raw[0] & 0xFC) | 0x02  # locally administered, unicast
    return ":".join(f"{b:02x}" for b in (first, *raw[1:6]))


def host_mac(network: str, container_id: str, ifname: str) -> str:
    return _mac(_digest(network, container_id, ifname)[8:14])


def pod_mac(network: str, container_id: str, ifname: str) -> str:
    return _mac(_digest(network, container_id, ifname)[16:22])


def bridge_mac(bridge: str) -> str:
    """The MAC the bridge set gives its bridge: stable, so results can name it,
    and the same for every network that shares the bridge."""
    return _mac(hashlib.sha256(f"bridge\0{bridge}".encode()).digest()[:6])


def link_local(mac: str) -> str:
    """The EUI-64 IPv6 link-local address of ``mac``, with /64."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = octets[:3] + [0xFF, 0xFE] + octets[3:]
    interface_id = int.from_bytes(bytes(eui), "big")
    return f"{ipaddress.IPv6Address((0xFE80 << 112) | interface_id)}/64"


def normalize_mac(mac: str) -> str | None:
    """``mac`` in lower-case colon form, or None when it is not a unicast MAC."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        return None
    try:
        octets = [int(p, 16) for p in parts]
    except ValueError:
        return None
    if octets[0] & 0x01:
        return None
    return ":".join(f"{o:02x}" for o in octets)
