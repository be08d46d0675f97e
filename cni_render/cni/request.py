"""The CNI request: the ``CNI_*`` environment, validated.

The runtime passes its whole environment; only ``CNI_*`` variables are read.
Grammars come from the spec (container ID, interface name) and libcni.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from cni_render.cni.errors import InvalidEnvironment, UnknownContainer

COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# spec: "must start with an alphanumeric character, optionally followed by any
# combination of one or more alphanumeric characters, underscore, dot or hyphen"
CONTAINER_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
NAME_RE = CONTAINER_ID_RE
# Characters a netns path may hold: it is passed to iproute2 inside a batch line.
NETNS_PATH_RE = re.compile(r"/[A-Za-z0-9_.\-/:@+=,]*")

# What each command needs from the environment (spec section 2 "Parameters").
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"),
    "STATUS": (),
    "GC": (),
    "VERSION": (),
}


@dataclass(frozen=True)
class Request:
    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    cni_path: tuple[str, ...] = ()
    # CNI_ARGS as a mapping; unknown keys are kept, order does not matter.
    args: Mapping[str, str] = field(default_factory=dict)
    raw_env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


def validate_ifname(ifname: str) -> str:
    """Linux interface name rules, as libcni's ValidateInterfaceName."""
    if not ifname:
        raise InvalidEnvironment("CNI_IFNAME is empty")
    if len(ifname) > 15:
        raise InvalidEnvironment(f"CNI_IFNAME {ifname!r} is longer than 15 characters")
    if ifname in (".", ".."):
        raise InvalidEnvironment(f"CNI_IFNAME {ifname!r} is not a valid interface name")
    for char in ifname:
        if char in "/:" or char.isspace() or not char.isprintable():
            raise InvalidEnvironment(
                f"CNI_IFNAME {ifname!r} contains {char!r}; interface names cannot hold '/', ':', "
                "whitespace or control characters"
            )
    return ifname


def validate_container_id(container_id: str) -> str:
    if not container_id:
        raise UnknownContainer("CNI_CONTAINERID is empty")
    if not CONTAINER_ID_RE.fullmatch(container_id):
        raise InvalidEnvironment(
            f"CNI_CONTAINERID {container_id!r} is invalid: it must match {CONTAINER_ID_RE.pattern}"
        )
    return container_id


def validate_netns(netns: str) -> str:
    if netns and not NETNS_PATH_RE.fullmatch(netns):
        raise InvalidEnvironment(
            f"CNI_NETNS {netns!r} is not an absolute path made of letters, digits and "
            "'_.-/:@+=,'"
        )
    return netns


def parse_cni_args(raw: str) -> dict[str, str]:
    """``K=V;K=V`` in any order; unknown keys kept, malformed pairs refused."""
    args: dict[str, str] = {}
    for pair in raw.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidEnvironment(f"CNI_ARGS pair {pair!r} is not KEY=VALUE")
        args[key.strip()] = value.strip()
    return args


def duplicated_variables(block: bytes) -> list[str]:
    """CNI_* names set more than once in a NUL-separated environment block."""
    seen: set[bytes] = set()
    duplicated: list[str] = []
    for entry in block.split(b"\0"):
        name, sep, _ = entry.partition(b"=")
        if not sep or not name.startswith(b"CNI_"):
            continue
        if name in seen and name.decode(errors="replace") not in duplicated:
            duplicated.append(name.decode(errors="replace"))
        seen.add(name)
    return duplicated


def _own_duplicates(environ: Mapping[str, str]) -> list[str]:
    """Duplicates in this process's own environment block, when the request
    is this process's environment (the in-process plugin, cni-render-ipam).

    A mapping cannot show a name set twice, and readers disagree on which
    copy counts (Python, glibc and Go take the first, a dict built from the
    block the last), so the block itself is read. The daemon, whose own
    environment is not the request, refuses duplicates when it decodes the
    block the client sent.
    """
    command = os.environ.get("CNI_COMMAND")
    if command is None or environ.get("CNI_COMMAND") != command:
        return []
    try:
        with open("/proc/self/environ", "rb") as handle:
            return duplicated_variables(handle.read())
    except OSError:
        return []


def parse_request(environ: Mapping[str, str]) -> Request:
    duplicated = _own_duplicates(environ)
    if duplicated:
        raise InvalidEnvironment(
            f"the environment sets {', '.join(duplicated)} more than once; "
            "a CNI variable must be set exactly once"
        )
    command = environ.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise InvalidEnvironment(
            f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}"
        )
    missing = [name for name in _REQUIRED[command] if name not in environ]
    if command in ("ADD", "CHECK") and not environ.get("CNI_NETNS"):
        missing = sorted(set(missing) | {"CNI_NETNS"})
    if missing:
        raise InvalidEnvironment(f"{command} needs {', '.join(missing)} set")
    container_id = environ.get("CNI_CONTAINERID", "")
    ifname = environ.get("CNI_IFNAME", "")
    if command in ("ADD", "DEL", "CHECK"):
        validate_container_id(container_id)
        validate_ifname(ifname)
    cni_path = tuple(p for p in environ.get("CNI_PATH", "").split(":") if p)
    netns = environ.get("CNI_NETNS", "")
    if command == "DEL" and not NETNS_PATH_RE.fullmatch(netns):
        netns = ""  # DEL never needs the namespace; it must not fail over it
    return Request(
        command=command,
        container_id=container_id,
        netns=validate_netns(netns),
        ifname=ifname,
        cni_path=cni_path,
        args=parse_cni_args(environ.get("CNI_ARGS", "")),
        raw_env=environ,
    )
