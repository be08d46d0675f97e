"""Reading links, addresses and routes over rtnetlink, without executing anything.

CHECK, GC and MTU detection only read state; a netlink dump answers in well
under a millisecond where ``ip -j`` costs a process. Changes are never made
here: they go through the rendered ``ip -batch`` files.

The dicts returned mirror ``ip -j -d addr show`` and ``ip -j route show table
all`` closely enough for :mod:`cni_render.datapath.expect`: links have ``ifname``,
``address`` (MAC), ``mtu``, ``flags`` (``"UP"``), ``ifalias``, ``master``,
``linkinfo`` and ``addr_info``; routes have ``dst``, ``gateway``, ``dev``, ``table``,
``type`` and ``family``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from typing import Any, Iterator

NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 20, 24
RTM_DELLINK, RTM_DELROUTE = 17, 25
RTMGRP_LINK, RTMGRP_IPV4_ROUTE, RTMGRP_IPV6_ROUTE = 0x1, 0x40, 0x400

IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_IFALIAS = 1, 3, 4, 10, 18, 20
IFLA_INFO_KIND = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE = 1, 4, 5, 6, 15
IFF_UP = 0x1

_NLMSGHDR = struct.Struct("=IHHII")
_RTATTR = struct.Struct("=HH")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_TABLE_NAMES = {253: "default", 254: "main", 255: "local"}
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}


def _attributes(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < 4:
            break
        found[kind & 0x7FFF] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def _string(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode(errors="replace")


class Netlink:
    """One rtnetlink socket, bound to the network namespace it was opened in."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _dump(self, message_type: int, body: bytes) -> Iterator[tuple[int, bytes]]:
        self.seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), message_type, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, seq, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    return
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return
                    if kind == NLMSG_ERROR:
                        (error,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                        if error:
                            raise OSError(-error, os.strerror(-error))
                        return
                    yield kind, data[offset + _NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3

    def links(self) -> list[dict[str, Any]]:
        links = []
        for kind, payload in self._dump(RTM_GETLINK, _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if kind != RTM_NEWLINK:
                continue
            _, _, index, flags, _ = _IFINFOMSG.unpack_from(payload)
            attrs = _attributes(payload, _IFINFOMSG.size)
            link: dict[str, Any] = {
                "ifindex": index,
                "ifname": _string(attrs.get(IFLA_IFNAME, b"")),
                "flags": ["UP"] if flags & IFF_UP else [],
                "addr_info": [],
            }
            if IFLA_ADDRESS in attrs:
                link["address"] = ":".join(f"{b:02x}" for b in attrs[IFLA_ADDRESS])
            if IFLA_MTU in attrs:
                (link["mtu"],) = struct.unpack("=I", attrs[IFLA_MTU])
            if IFLA_MASTER in attrs:
                (link["master_index"],) = struct.unpack("=I", attrs[IFLA_MASTER])
            if attrs.get(IFLA_IFALIAS):
                link["ifalias"] = _string(attrs[IFLA_IFALIAS])
            if IFLA_LINKINFO in attrs:
                info = _attributes(attrs[IFLA_LINKINFO], 0)
                if IFLA_INFO_KIND in info:
                    link["linkinfo"] = {"info_kind": _string(info[IFLA_INFO_KIND])}
            links.append(link)
        return links

    def addresses(self) -> list[tuple[int, dict[str, Any]]]:
        """(link index, {family, local, prefixlen}) of every address."""
        found = []
        for kind, payload in self._dump(RTM_GETADDR, _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)):
            if kind != RTM_NEWADDR:
                continue
            family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(payload)
            attrs = _attributes(payload, _IFADDRMSG.size)
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            if raw is None:
                continue
            found.append((index, {
                "family": "inet" if family == socket.AF_INET else "inet6",
                "local": str(ipaddress.ip_address(raw)),
                "prefixlen": prefixlen,
            }))
        return found

    def routes(self, names: dict[int, str]) -> list[dict[str, Any]]:
        routes = []
        for kind, payload in self._dump(RTM_GETROUTE, _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)):
            if kind != RTM_NEWROUTE:
                continue
            family, dst_len, _, _, table, _, _, route_type, _ = _RTMSG.unpack_from(payload)
            attrs = _attributes(payload, _RTMSG.size)
            if RTA_TABLE in attrs:
                (table,) = struct.unpack("=I", attrs[RTA_TABLE])
            any_address = "0.0.0.0" if family == socket.AF_INET else "::"
            dst = str(ipaddress.ip_address(attrs[RTA_DST])) if RTA_DST in attrs else any_address
            route: dict[str, Any] = {
                "family": "inet" if family == socket.AF_INET else "inet6",
                "type": _ROUTE_TYPES.get(route_type, str(route_type)),
                "dst": "default" if dst_len == 0 else f"{dst}/{dst_len}",
                "table": _TABLE_NAMES.get(table, str(table)),
            }
            if RTA_GATEWAY in attrs:
                route["gateway"] = str(ipaddress.ip_address(attrs[RTA_GATEWAY]))
            if RTA_OIF in attrs:
                (oif,) = struct.unpack("=i", attrs[RTA_OIF])
                route["dev"] = names.get(oif, str(oif))
            if RTA_PRIORITY in attrs:
                (route["metric"],) = struct.unpack("=I", attrs[RTA_PRIORITY])
            routes.append(route)
        return routes

    def state(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(links with their addresses, routes of every table)."""
        links = self.links()
        by_index = {link["ifindex"]: link for link in links}
        for link in links:
            if "master_index" in link:
                link["master"] = by_index.get(link.pop("master_index"), {}).get("ifname", "?")
        for index, info in self.addresses():
            if index in by_index:
                by_index[index]["addr_info"].append(info)
        return links, self.routes({index: link["ifname"] for index, link in by_index.items()})


class Changes:
    """A socket the kernel tells of link and route changes in the namespace it
    was opened in. Reading never blocks: :meth:`touched` drains what arrived
    since the last call."""

    def __init__(self) -> None:
        self.sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, NETLINK_ROUTE
        )
        self.sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE))

    def close(self) -> None:
        self.sock.close()

    def touched(self, link_index: int | None) -> bool:
        """Whether, since the last call, link ``link_index`` changed (or went),
        a default route came or went, or notifications were lost (the
        socket's buffer overflowed): then the caller reads the state again."""
        touched = False
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                return touched
            except OSError:  # ENOBUFS: some were dropped, so anything may have changed
                touched = True
                continue
            offset = 0
            while offset + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
                if length < _NLMSGHDR.size:
                    break
                payload = data[offset + _NLMSGHDR.size : offset + length]
                if kind in (RTM_NEWLINK, RTM_DELLINK) and len(payload) >= _IFINFOMSG.size:
                    touched |= link_index is not None and _IFINFOMSG.unpack_from(payload)[2] == link_index
                elif kind in (RTM_NEWROUTE, RTM_DELROUTE) and len(payload) >= _RTMSG.size:
                    touched |= _RTMSG.unpack_from(payload)[1] == 0  # dst_len 0: a default route
                offset += (length + 3) & ~3
