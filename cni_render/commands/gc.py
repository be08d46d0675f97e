"""GC: release everything of this network that belongs to no valid attachment.

``cni.dev/valid-attachments`` (or the older ``cni.dev/attachments``) lists
the live (containerID, ifname) pairs. Absent key: nothing is collected, but
GC is still forwarded to a delegated IPAM. Stale attachments are found two
ways: IPAM allocations, and node links whose alias names this network.

GC follows DEL's rules. Each stale attachment is torn down under its own
lock, taken without waiting: a busy lock means an ADD (or DEL) of it is
running, and it is left for the next GC. Under the lock GC checks that the
attachment is still what it saw (the same addresses, the same node end), so
one re-added meanwhile is left alone. Then, as DEL does: the state keyed by
its addresses, the node end, and the addresses only once the node end is
gone. A delegated IPAM is asked to collect last, told to keep every
attachment that still has a node end. Errors are collected and reported
together.

Every GC, with or without the list, also drops cni-render-ipam's orphaned
index entries (a SIGKILL in the middle of an ADD or DEL leaves a record
naming an address its attachment no longer holds, see ipam.store): the
owner file decides, so no address is released by it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cni_render.cni.errors import CniError
from cni_render.cni.request import Request
from cni_render.commands import Invocation, attachment_lock_path, delegated_gc_lock
from cni_render.commands.teardown import detach
from cni_render.datapath.plan import TeardownPlan, build_teardown, host_link
from cni_render.host import system
from cni_render.host.locking import try_file_lock
from cni_render.ipam import DelegatedIpam, LocalIpam
from cni_render.ipam.attachments import Attachment, is_valid, valid_attachments

ALIAS_PREFIX = "cni-render/"


@dataclass(frozen=True)
class Seen:
    """What GC saw of an attachment before taking its lock."""

    addresses: frozenset[str]
    link_index: int | None


def aliased_attachments(network: str) -> set[Attachment]:
    """(containerID, ifname) of node links this network's templates created."""
    found = set()
    for alias in system.link_aliases().values():
        parts = alias.split("/")
        if len(parts) == 4 and parts[0] + "/" == ALIAS_PREFIX and parts[1] == network:
            found.add((parts[2], parts[3]))
    return found


def _node_end_index(inv: Invocation, attachment: Attachment) -> int | None:
    return system.link_index(host_link(inv.config.name, *attachment).ifname)


def _held(ipam: LocalIpam | DelegatedIpam, attachment: Attachment) -> frozenset[str]:
    if isinstance(ipam, LocalIpam):
        return frozenset(replace(ipam, container_id=attachment[0], ifname=attachment[1]).held())
    return frozenset()


def stale_attachments(
    inv: Invocation, ipam: LocalIpam | DelegatedIpam, valid: set[Attachment]
) -> dict[Attachment, Seen]:
    candidates = aliased_attachments(inv.config.name)
    if isinstance(ipam, LocalIpam):
        candidates |= {(cid, ifname) for _, cid, ifname in ipam.allocations()}
    return {
        attachment: Seen(_held(ipam, attachment), _node_end_index(inv, attachment))
        for attachment in sorted(candidates)
        if not is_valid(attachment, valid)
    }


def _teardown_plan(inv: Invocation, attachment: Attachment, addresses: frozenset[str]) -> TeardownPlan:
    """DEL's plan for a stale attachment: GC has no pod namespace and no CNI_ARGS."""
    container_id, ifname = attachment
    request = Request(command="GC", container_id=container_id, ifname=ifname)
    return build_teardown(request, inv.config, sorted(addresses))


def collect(
    inv: Invocation, ipam: LocalIpam | DelegatedIpam, attachment: Attachment, seen: Seen
) -> tuple[bool, list[CniError]]:
    """Tear one stale attachment down under its lock; (gone, problems)."""
    lock = attachment_lock_path(inv.config.state_dir, inv.config.name, *attachment)
    with try_file_lock(lock) as held:
        if not held:
            inv.log.info(f"GC: {attachment[0]}/{attachment[1]} is busy (an ADD or DEL runs); left for later")
            return False, []
        now = Seen(_held(ipam, attachment), _node_end_index(inv, attachment))
        if now != seen:
            inv.log.info(f"GC: {attachment[0]}/{attachment[1]} changed while GC ran; left for later")
            return False, []
        release = None
        if isinstance(ipam, LocalIpam):
            release = replace(ipam, container_id=attachment[0], ifname=attachment[1]).delete
        released, problems = detach(inv, _teardown_plan(inv, attachment, now.addresses), release=release)
    if not problems:
        inv.log.info(f"GC: collected {attachment[0]}/{attachment[1]} {' '.join(released)}".rstrip())
    return not problems, problems


def _forward(inv: Invocation, ipam: DelegatedIpam, valid: set[Attachment] | None, kept: set[Attachment]) -> None:
    """GC for the delegate, after the node ends: it keeps whatever still has
    one, and no ADD runs meanwhile (they hold the lock shared)."""
    with delegated_gc_lock(inv, exclusive=True):
        if valid is None:
            ipam.gc(None)
            return
        ipam.gc(valid | kept | aliased_attachments(inv.config.name))


def run(inv: Invocation) -> None:
    valid = valid_attachments(inv.config.document)
    ipam = inv.ipam()
    problems: list[CniError] = []
    kept: set[Attachment] = set()
    if valid is None:
        inv.log.info("GC: no valid-attachments list given; nothing to collect")
    else:
        for attachment, seen in stale_attachments(inv, ipam, valid).items():
            gone, trouble = collect(inv, ipam, attachment, seen)
            problems.extend(trouble)
            if not gone:
                kept.add(attachment)
    if isinstance(ipam, LocalIpam):
        try:
            swept = ipam.sweep_records()
        except CniError as exc:
            problems.append(exc)
        else:
            if swept:
                inv.log.info(f"GC: dropped {swept} orphaned attachment record entries")
    if isinstance(ipam, DelegatedIpam):
        try:
            _forward(inv, ipam, valid, kept)
        except CniError as exc:
            problems.append(exc)
    for problem in problems[1:]:
        inv.log.error(f"GC: {problem}")
    if problems:
        raise problems[0]
