"""Undoing an attachment; shared by DEL, GC and ADD's rollback.

Order: the node side (which needs no namespace): first what is keyed by
the attachment's addresses (masquerade elements), then the node end; then
the addresses, but only once the node end is gone (an address must not be
handed out while a route or link still claims it); then the pod side, only
when its namespace still exists. ``plan.released`` holds only addresses the
attachment still owns (see commands.delete.owned_addresses), so nothing of
another pod that got the same address since is touched.

Forgiving by design: "already gone" is success, a broken teardown template
still gets the node end deleted, and every problem is collected instead of
stopping the others.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from cni_render.cni.errors import CniError
from cni_render.commands import Invocation
from cni_render.datapath.plan import TeardownPlan
from cni_render.datapath.render import Rendered
from cni_render.datapath.template_sets import DEL_HOST, DEL_NFT, DEL_POD
from cni_render.host import system


def _attempt(problems: list[CniError], step: Callable[[], object]) -> bool:
    try:
        step()
    except CniError as exc:
        problems.append(exc)
        return False
    except Exception as exc:  # still a teardown to finish, and one JSON error to print
        problems.append(CniError(f"internal error during teardown: {exc!r}"))
        return False
    return True


def detach(
    inv: Invocation, plan: TeardownPlan, release: Callable[[], list[str]] | None = None
) -> tuple[list[str], list[CniError]]:
    """Tear down ``plan``; ``release`` frees the addresses. Returns (released, problems)."""
    if plan.netns and system.netns_problem(plan.netns):
        plan = replace(plan, netns="")
    problems: list[CniError] = []
    rendered: Rendered | None = None

    def render() -> None:
        nonlocal rendered
        rendered = inv.renderer().render_teardown(plan)

    if _attempt(problems, render):
        assert rendered is not None
        gone = system.GONE_MESSAGES
        # State keyed by address first, while the node end still proves that
        # this attachment holds plan.released: a retry after a failure here
        # finds the link and the addresses again and redoes it.
        node_ok = _attempt(problems, lambda: system.run_nft_batch(
            rendered.host_nft, where=f"node, {rendered.source(DEL_NFT)}", tolerate=gone
        )) and _attempt(problems, lambda: system.run_ip_batch(
            rendered.host_batch, where=f"node, {rendered.source(DEL_HOST)}", tolerate=gone
        ))
    else:  # the safety net: the node end is known without any template
        node_ok = _attempt(problems, lambda: system.delete_link(plan.host.ifname))
    released: list[str] = []
    if release is not None:
        if node_ok:
            _attempt(problems, lambda: released.extend(release()))
        else:
            inv.log.error(
                f"{plan.command} {plan.container_id}/{plan.ifname}: addresses kept, "
                f"the node end {plan.host.ifname} could not be removed"
            )
    if rendered is not None and plan.netns:
        _attempt(problems, lambda: system.run_ip_batch(
            rendered.pod_batch, netns=plan.netns, where=f"pod, {rendered.source(DEL_POD)}",
            tolerate=system.GONE_MESSAGES,
        ))
    return released, problems
