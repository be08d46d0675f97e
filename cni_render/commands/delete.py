"""DEL: undo ADD, and succeed when things are already gone.

Twice, without ADD, without (or with a corrupt) prevResult, with CNI_NETNS
empty or pointing at a deleted namespace: none of it needs the pod's
namespace until the node end and the addresses are dealt with.
"""

from __future__ import annotations

import ipaddress

from ..errors import CniError
from ..plan import build_teardown
from ..versions import parse_result
from . import Invocation, attachment_lock
from .teardown import detach


def _addresses_from_prev_result(inv: Invocation) -> list[str]:
    if not inv.config.prev_result:
        return []
    try:
        result = parse_result(inv.config.prev_result, "prevResult")
        return [str(ipaddress.ip_interface(ip["address"])) for ip in result["ips"]]
    except (CniError, ValueError, KeyError):
        inv.log.info("DEL: ignoring a prevResult that cannot be parsed")
        return []


def run(inv: Invocation) -> None:
    request = inv.request
    ipam = inv.ipam()
    with attachment_lock(inv):
        addresses = ipam.held() or _addresses_from_prev_result(inv)
        plan = build_teardown(request, inv.config, addresses)
        released, problems = detach(inv, plan, release=ipam.delete)
    for problem in problems[1:]:
        inv.log.error(f"DEL {request.container_id}/{request.ifname}: {problem}")
    if problems:
        raise problems[0]
    inv.log.info(
        f"DEL {request.container_id}/{request.ifname}: released {', '.join(released) or 'nothing'}"
    )
