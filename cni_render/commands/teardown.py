"""Undoing an attachment's datapath; shared by DEL, GC and ADD's rollback.

Forgiving by design: "already gone" is success, the pod side runs only when
its namespace still exists, and a broken teardown template still gets the
node end deleted.
"""

from __future__ import annotations

from dataclasses import replace

from .. import system
from ..errors import CniError
from ..plan import TeardownPlan
from ..template_set import DEL_HOST, DEL_NFT, DEL_POD
from . import Invocation


def teardown(inv: Invocation, plan: TeardownPlan) -> list[CniError]:
    """Run the teardown templates; returns the problems instead of raising."""
    if plan.netns and system.netns_problem(plan.netns):
        plan = replace(plan, netns="")
    try:
        rendered = inv.renderer().render_teardown(plan)
    except CniError as exc:
        try:
            system.delete_link(plan.host.ifname)
        except CniError as cleanup_error:
            return [exc, cleanup_error]
        return [exc]
    problems: list[CniError] = []
    gone = system.GONE_MESSAGES
    steps = (
        lambda: system.run_ip_batch(
            rendered.host_batch, where=f"node, {rendered.source(DEL_HOST)}", tolerate=gone
        ),
        lambda: system.run_ip_batch(
            rendered.pod_batch, netns=plan.netns, where=f"pod, {rendered.source(DEL_POD)}", tolerate=gone
        ),
        lambda: system.run_nft_batch(
            rendered.host_nft, where=f"node, {rendered.source(DEL_NFT)}", tolerate=gone
        ),
    )
    for step in steps:
        try:
            step()
        except CniError as exc:
            problems.append(exc)
    return problems
