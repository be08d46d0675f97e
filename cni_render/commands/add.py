"""ADD: allocate → plan → render → apply; any failure rolls everything back."""

from __future__ import annotations

import os
from typing import Any

from .. import system
from ..errors import ApplyFailed, InterfaceConflict, InvalidEnvironment
from ..locking import file_lock
from ..plan import Plan, build_plan, build_teardown, host_link
from ..render import Rendered
from ..template_set import ADD_HOST, ADD_NFT, ADD_POD, ADD_SYSCTL, SETUP_HOST
from . import Invocation
from .teardown import teardown


def run(inv: Invocation) -> dict[str, Any]:
    request, config = inv.request, inv.config
    problem = system.netns_problem(request.netns)
    if problem:
        raise InvalidEnvironment(problem)
    host = host_link(config.name, request.container_id, request.ifname)
    if system.link_exists(host.ifname):
        raise InterfaceConflict(
            f"node interface {host.ifname} for container {request.container_id} interface "
            f"{request.ifname} already exists: the attachment was added before without a DEL"
        )
    renderer = inv.renderer()
    ipam = inv.ipam()
    ipam_result = ipam.add()
    try:
        plan = build_plan(request, config, ipam_result, config.mtu or system.default_route_mtu())
        rendered = renderer.render_add(plan)
        inv.log.debug("node batch:\n" + rendered.host_batch.rstrip())
        inv.log.debug("pod batch:\n" + rendered.pod_batch.rstrip())
        apply(rendered, plan, config.state_dir)
    except BaseException as exc:
        inv.log.error(f"ADD {request.container_id}/{request.ifname} failed, rolling back: {exc}")
        released = [ip["address"] for ip in ipam_result.get("ips", [])]
        for problem in teardown(inv, build_teardown(request, config, released)):
            inv.log.error(f"rollback: {problem}")
        try:
            ipam.delete()
        except Exception as release_error:  # keep the original error
            inv.log.error(f"rollback: releasing {', '.join(released)}: {release_error}")
        raise
    assert rendered.result is not None
    inv.log.info(
        f"ADD {request.container_id}/{request.ifname}: "
        + ", ".join(a.cidr for a in plan.addresses)
        + f" on {plan.host.ifname}"
    )
    return rendered.result


def apply(rendered: Rendered, plan: Plan, state_dir: str) -> None:
    """Node setup (shared, locked, idempotent), node batch, pod batch, node
    sysctls, nftables: in this order."""
    if rendered.setup_batch.strip():
        with file_lock(os.path.join(state_dir, "locks", f"setup-{plan.network}.lock")):
            system.run_ip_batch(
                rendered.setup_batch,
                where=f"node setup, {rendered.source(SETUP_HOST)}",
                tolerate=system.EXISTS_MESSAGES,
            )
    try:
        system.run_ip_batch(rendered.host_batch, where=f"node, {rendered.source(ADD_HOST)}")
    except ApplyFailed as exc:
        # The node end's name was checked free above, so an existing link
        # here is the pod's interface.
        if "File exists" in exc.reason and exc.line.startswith("link add"):
            raise InterfaceConflict(
                f"interface {plan.pod.ifname} already exists in {plan.netns}"
            ) from exc
        raise
    system.run_ip_batch(rendered.pod_batch, netns=plan.netns, where=f"pod, {rendered.source(ADD_POD)}")
    system.write_sysctls(rendered.host_sysctls, where=f"node, {rendered.source(ADD_SYSCTL)}")
    system.run_nft_batch(rendered.host_nft, where=f"node, {rendered.source(ADD_NFT)}")
