"""ADD: allocate → plan → render → apply; any failure rolls everything back."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from cni_render.cni.errors import ApplyFailed, InterfaceConflict, InvalidEnvironment, LostNamespace
from cni_render.commands import Invocation, attachment_lock, delegated_gc_lock
from cni_render.commands.teardown import detach
from cni_render.datapath.plan import Plan, build_plan, build_teardown, host_link
from cni_render.datapath.render import Rendered
from cni_render.datapath.template_sets import ADD_HOST, ADD_NFT, ADD_POD, ADD_SYSCTL, SETUP_HOST
from cni_render.host import system
from cni_render.host.locking import file_lock

if TYPE_CHECKING:
    from cni_render.ipam import Ipam


def run(inv: Invocation) -> dict[str, Any]:
    request, config = inv.request, inv.config
    problem = system.netns_problem(request.netns)
    if problem:
        raise InvalidEnvironment(problem)
    renderer = inv.renderer()
    ipam = inv.ipam()
    with attachment_lock(inv), _unless_gc_runs(inv, ipam):
        host = host_link(config.name, request.container_id, request.ifname)
        if system.link_exists(host.ifname):
            raise InterfaceConflict(
                f"node interface {host.ifname} for container {request.container_id} interface "
                f"{request.ifname} already exists: the attachment was added before without a DEL"
            )
        ipam_result = ipam.add()  # all or nothing: a failed allocation holds nothing
        try:
            plan = build_plan(request, config, ipam_result, config.mtu or system.default_route_mtu())
            rendered = renderer.render_add(plan)
            inv.log.debug("node batch:\n" + rendered.host_batch.rstrip())
            inv.log.debug("pod batch:\n" + rendered.pod_batch.rstrip())
            apply(rendered, plan, config.state_dir)
        except LostNamespace:
            raise  # the thread is parked elsewhere: a rollback from there would free addresses still in use
        except BaseException as exc:
            inv.log.error(f"ADD {request.container_id}/{request.ifname} failed, rolling back: {exc}")
            addresses = [ip["address"] for ip in ipam_result.get("ips", [])]
            _, problems = detach(inv, build_teardown(request, config, addresses), release=ipam.delete)
            for failure in problems:
                inv.log.error(f"rollback: {failure}")
            raise
    inv.log.info(
        f"ADD {request.container_id}/{request.ifname}: "
        + ", ".join(a.cidr for a in plan.addresses)
        + f" on {plan.host.ifname}"
    )
    assert rendered.result is not None
    return rendered.result


def _unless_gc_runs(inv: Invocation, ipam: Ipam) -> AbstractContextManager[object]:
    """A delegated IPAM's GC sees no ADD in flight (cni-render-ipam's GC goes
    by the attachment lock alone)."""
    return nullcontext() if ipam.knows_owners else delegated_gc_lock(inv, exclusive=False)


def apply(rendered: Rendered, plan: Plan, state_dir: str) -> None:
    """Node setup (shared, locked, idempotent), node batch, pod batch, node
    sysctls, nftables: in this order."""
    if rendered.setup_batch.strip():
        with file_lock(os.path.join(state_dir, "locks", "setup.lock")):
            _guard_shared_bridge(rendered, plan)
            system.run_ip_batch(
                rendered.setup_batch,
                where=f"node setup, {rendered.source(SETUP_HOST)}",
                tolerate=system.EXISTS_MESSAGES,
            )
    try:
        system.run_ip_batch(rendered.host_batch, where=f"node, {rendered.source(ADD_HOST)}")
    except ApplyFailed as exc:
        # The node end's name was checked free under the attachment lock, so
        # an existing link here is the pod's interface.
        if "File exists" in exc.reason and exc.line.startswith("link add"):
            raise InterfaceConflict(
                f"interface {plan.pod.ifname} already exists in {plan.netns}"
            ) from exc
        raise
    system.run_ip_batch(rendered.pod_batch, netns=plan.netns, where=f"pod, {rendered.source(ADD_POD)}")
    system.write_sysctls(rendered.host_sysctls, where=f"node, {rendered.source(ADD_SYSCTL)}")
    system.run_nft_batch(rendered.host_nft, where=f"node, {rendered.source(ADD_NFT)}")


def _guard_shared_bridge(rendered: Rendered, plan: Plan) -> None:
    """The setup batch reconciles a shared bridge; never let it take over a
    link of that name that is not a bridge (an uplink, say)."""
    if f"name {plan.bridge.ifname} type bridge" not in rendered.setup_batch:
        return
    links, _ = system.read_state()
    existing = next((link for link in links if link["ifname"] == plan.bridge.ifname), None)
    kind = (existing or {}).get("linkinfo", {}).get("info_kind")
    if existing is not None and kind != "bridge":
        raise InterfaceConflict(
            f"node interface {plan.bridge.ifname} exists and is a {kind or 'plain'} link, not a bridge; "
            "set another name with the config key bridge"
        )
