"""DEL: undo ADD, and succeed when things are already gone.

Twice, without ADD, without (or with a corrupt) prevResult, with CNI_NETNS
empty or pointing at a deleted namespace: none of it needs the pod's
namespace until the node end and the addresses are dealt with.

Node state keyed by a pod address (masquerade elements, whatever an
operator's teardown template does per address) is removed only for the
addresses this attachment still holds: a repeated DEL of an old sandbox,
carrying its cached prevResult, must not touch the pod that holds the same
address now.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from cni_render.cni.errors import CniError
from cni_render.cni.versions import parse_result
from cni_render.commands import Invocation, attachment_lock
from cni_render.commands.teardown import detach
from cni_render.datapath.plan import build_teardown, host_link
from cni_render.host import system

if TYPE_CHECKING:
    from cni_render.ipam import Ipam


def _addresses_from_prev_result(inv: Invocation) -> list[str]:
    if not inv.config.prev_result:
        return []
    try:
        result = parse_result(inv.config.prev_result, "prevResult")
        return [str(ipaddress.ip_interface(ip["address"])) for ip in result["ips"]]
    except (CniError, ValueError, KeyError):
        inv.log.info("DEL: ignoring a prevResult that cannot be parsed")
        return []


def owned_addresses(inv: Invocation, ipam: Ipam) -> list[str]:
    """The addresses this attachment holds, read under its lock.

    cni-render-ipam records owners, so its word is final. A delegated IPAM
    cannot be asked; prevResult's addresses count only while this
    attachment's node end exists: its ADD got them, and no other pod can
    hold them before that link is gone (DEL removes it before releasing).
    """
    if ipam.knows_owners:
        return ipam.held()
    request = inv.request
    host = host_link(inv.config.name, request.container_id, request.ifname)
    if system.link_exists(host.ifname):
        return _addresses_from_prev_result(inv)
    return []


def run(inv: Invocation) -> None:
    request = inv.request
    ipam = inv.ipam()
    with attachment_lock(inv):
        owned = owned_addresses(inv, ipam)
        plan = build_teardown(request, inv.config, owned)
        released, problems = detach(inv, plan, release=ipam.delete)
    for problem in problems[1:]:
        inv.log.error(f"DEL {request.container_id}/{request.ifname}: {problem}")
    if problems:
        raise problems[0]
    inv.log.info(
        f"DEL {request.container_id}/{request.ifname}: released "
        f"{', '.join(released or plan.released) or 'nothing'}"
    )
