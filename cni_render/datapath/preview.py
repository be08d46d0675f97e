"""Rendering exactly what ADD and DEL would run, touching nothing.

No address is reserved, no link created: IPAM's answer is simulated (the
requested addresses, else the first address of every range set), the MTU is
the configured one or a given default. Golden tests and the operator's
``render`` command both use this.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cni_render.cni.config import IN_PROCESS_IPAM, NetworkConfig
from cni_render.cni.errors import InvalidConfig
from cni_render.cni.request import Request
from cni_render.datapath.plan import Plan, build_plan, build_teardown
from cni_render.datapath.render import Rendered, Renderer
from cni_render.ipam.local import LocalIpam, requested_addresses
from cni_render.ipam.model import parse_ipam_config
from cni_render.ipam.store import MemoryStore

PREVIEW_MTU = 1500


@dataclass(frozen=True)
class Preview:
    plan: Plan
    add: Rendered
    teardown: Rendered


def simulated_ipam_result(
    config: NetworkConfig, request: Request, requested: Sequence[str] = ()
) -> dict[str, Any]:
    """What IPAM would answer on an empty node (or with ``requested``), reserving nothing."""
    wanted = [ipaddress.ip_interface(ip).ip for ip in requested]
    if config.ipam_type != IN_PROCESS_IPAM:
        if not wanted:
            raise InvalidConfig(
                f"IPAM type {config.ipam_type!r} is delegated; give the pod's addresses to preview"
            )
        return {"ips": [{"address": f"{ip}/{ip.max_prefixlen}"} for ip in wanted], "routes": []}
    wanted += requested_addresses(request.args, config.args, config.runtime_config)
    return LocalIpam(
        config=parse_ipam_config(config.ipam),
        network=config.name,
        container_id=request.container_id,
        ifname=request.ifname,
        requested=tuple(dict.fromkeys(wanted)),
        store=MemoryStore(),
    ).add()


def preview(
    request: Request,
    config: NetworkConfig,
    renderer: Renderer,
    requested: Sequence[str] = (),
    mtu: int = PREVIEW_MTU,
) -> Preview:
    ipam_result = simulated_ipam_result(config, request, requested)
    plan = build_plan(request, config, ipam_result, config.mtu or mtu)
    released = [ip["address"] for ip in ipam_result["ips"]]
    teardown_request = Request(
        command="DEL",
        container_id=request.container_id,
        netns=request.netns,
        ifname=request.ifname,
        args=request.args,
    )
    return Preview(
        plan=plan,
        add=renderer.render_add(plan),
        teardown=renderer.render_teardown(build_teardown(teardown_request, config, released)),
    )


def request_for(
    container_id: str, netns: str, ifname: str, args: Mapping[str, str] | None = None
) -> Request:
    return Request(
        command="ADD", container_id=container_id, netns=netns, ifname=ifname, args=dict(args or {})
    )
