"""GC: release everything of this network that belongs to no valid attachment.

``cni.dev/valid-attachments`` (or the older ``cni.dev/attachments``) lists
the live (containerID, ifname) pairs. Absent key: nothing is collected, but
GC is still forwarded to a delegated IPAM. Stale attachments are found two
ways: IPAM allocations, and node links whose alias names this network.
Every stale one is torn down; errors are collected and reported together.
"""

from __future__ import annotations

from typing import Any

from .. import system
from ..errors import CniError, InvalidConfig
from ..plan import TeardownPlan, bridge_link, host_link
from . import Invocation
from .teardown import detach

VALID_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
ALIAS_PREFIX = "cni-render/"


def valid_attachments(document: dict[str, Any]) -> set[tuple[str, str]] | None:
    key = next((k for k in VALID_KEYS if k in document), None)
    if key is None:
        return None
    entries = document[key] or []
    if not isinstance(entries, list):
        raise InvalidConfig(f"$.{key}: expected a list of {{containerID, ifname}}")
    valid = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise InvalidConfig(f"$.{key}[{index}]: expected {{containerID, ifname}}")
        valid.add((entry["containerID"], str(entry.get("ifname", ""))))
    return valid


def _aliased_attachments(network: str) -> set[tuple[str, str]]:
    """(containerID, ifname) of node links this network's templates created."""
    found = set()
    for alias in system.link_aliases().values():
        parts = alias.split("/")
        if len(parts) == 4 and parts[0] + "/" == ALIAS_PREFIX and parts[1] == network:
            found.add((parts[2], parts[3]))
    return found


def run(inv: Invocation) -> None:
    config = inv.config
    valid = valid_attachments(config.document)
    ipam = inv.ipam()
    problems: list[CniError] = []
    stale: dict[tuple[str, str], list[str]] = {}
    if valid is None:
        inv.log.info("GC: no valid-attachments list given; nothing to collect")
    try:
        for ip, container_id, ifname in ipam.gc(valid if valid is not None else _everything()):
            stale.setdefault((container_id, ifname), []).append(ip)
    except CniError as exc:
        problems.append(exc)
    if valid is not None:
        for attachment in _aliased_attachments(config.name) - valid:
            stale.setdefault(attachment, [])
    for (container_id, ifname), released in sorted(stale.items()):
        plan = TeardownPlan(
            command="GC",
            network=config.name,
            cni_version=config.cni_version,
            container_id=container_id,
            ifname=ifname,
            netns="",
            host=host_link(config.name, container_id, ifname),
            bridge=bridge_link(config),
            released=tuple(released),
            ip_masq=config.ip_masq,
        )
        problems.extend(detach(inv, plan)[1])
        inv.log.info(f"GC: collected {container_id}/{ifname} {' '.join(released)}".rstrip())
    for problem in problems[1:]:
        inv.log.error(f"GC: {problem}")
    if problems:
        raise problems[0]


class _everything(set):  # type: ignore[type-arg]
    """The valid set when GC got no list: contains every attachment."""

    def __contains__(self, item: object) -> bool:
        return True
