"""DEL: release the addresses first (no namespace needed), then tear down.

Succeeds when things are already gone: twice, without ADD, without
prevResult, with CNI_NETNS empty or pointing at a deleted namespace.
"""

from __future__ import annotations

import ipaddress

from ..errors import CniError
from ..plan import build_teardown
from ..versions import parse_result
from . import Invocation
from .teardown import teardown


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
    problems: list[CniError] = []
    released: list[str] = []
    try:
        released = inv.ipam().delete()
    except CniError as exc:
        problems.append(exc)
    plan = build_teardown(request, inv.config, released or _addresses_from_prev_result(inv))
    problems.extend(teardown(inv, plan))
    for problem in problems[1:]:
        inv.log.error(f"DEL {request.container_id}/{request.ifname}: {problem}")
    if problems:
        raise problems[0]
    inv.log.info(
        f"DEL {request.container_id}/{request.ifname}: released {', '.join(released) or 'nothing'}"
    )
