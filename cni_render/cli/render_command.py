"""``cni-render render``: what ADD, DEL or CHECK would run, touching nothing.

No address is reserved (IPAM's answer is simulated: the requested addresses,
else the first free one of an empty node), no link is created, nothing is
read from the system.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from cni_render.cli.configfile import load_file
from cni_render.cni.request import (
    Request,
    parse_cni_args,
    validate_container_id,
    validate_ifname,
    validate_netns,
)
from cni_render.cni.versions import convert_result
from cni_render.datapath.expect import expectations
from cni_render.datapath.preview import Preview, preview
from cni_render.datapath.render import Renderer
from cni_render.datapath.template_sets import (
    ADD_HOST,
    ADD_NFT,
    ADD_POD,
    ADD_SYSCTL,
    DEL_HOST,
    DEL_NFT,
    DEL_POD,
    RESULT,
    SETUP_HOST,
)


def run(args: Any, stdout: TextIO) -> int:
    config = load_file(args.config, args.templates)
    request = Request(
        command="ADD",
        container_id=validate_container_id(args.container_id),
        netns=validate_netns(args.netns),
        ifname=validate_ifname(args.ifname),
        args=parse_cni_args(args.cni_args or ""),
    )
    renderer = Renderer(config.mode, override_dir=config.template_dir)
    shown = preview(request, config, renderer, requested=args.ip, mtu=args.mtu)
    if args.json:
        stdout.write(json.dumps(as_json(shown, config.cni_version, args.cni_command), indent=2) + "\n")
        return 0
    stdout.write(
        f"# cni-render render: {args.cni_command} of container {request.container_id}, "
        f"interface {request.ifname}, network {config.name} (set {config.mode}, "
        f"MTU {shown.plan.mtu}); nothing is applied\n"
    )
    write_sections(stdout, sections(shown, config.cni_version, args.cni_command))
    return 0


def sections(shown: Preview, version: str, command: str) -> list[tuple[str, str]]:
    add, teardown, plan = shown.add, shown.teardown, shown.plan
    if command == "DEL":
        return [
            (f"node: ip -force -batch -   ({teardown.source(DEL_HOST)})", teardown.host_batch),
            (f"pod: ip -force -batch -, inside {plan.netns}   ({teardown.source(DEL_POD)})", teardown.pod_batch),
            (f"node: nft -f -   ({teardown.source(DEL_NFT)})", teardown.host_nft),
            ("IPAM", f"release {', '.join(a.cidr for a in plan.addresses)}\n"),
        ]
    if command == "CHECK":
        lines = []
        for where, batch in (("node", add.setup_batch + add.host_batch), ("pod", add.pod_batch)):
            expected = expectations(batch)
            lines += [f"{where}: address {a.cidr} on {a.dev}" for a in expected.addresses]
            lines += [
                f"{where}: route {r.dst}{' via ' + r.gw if r.gw else ''} dev {r.dev} table {r.table}"
                for r in expected.routes
            ]
            lines += [f"{where}: {m.dev} is a port of {m.master}" for m in expected.masters]
        return [
            ("CHECK compares the live state with the previous result and with:", "\n".join(lines) + "\n"),
        ]
    result = convert_result(add.result or {}, version)
    return [
        (f"node setup: ip -force -batch -, under the setup lock   ({add.source(SETUP_HOST)})", add.setup_batch),
        (f"node: ip -batch -   ({add.source(ADD_HOST)})", add.host_batch),
        (f"pod: ip -batch -, inside {plan.netns}   ({add.source(ADD_POD)})", add.pod_batch),
        (
            f"node sysctls   ({add.source(ADD_SYSCTL)})",
            "".join(f"{key} = {value}\n" for key, value in add.host_sysctls),
        ),
        (f"node: nft -f -   ({add.source(ADD_NFT)})", add.host_nft),
        (f"result, cniVersion {version}   ({add.source(RESULT)})", json.dumps(result, indent=2) + "\n"),
    ]


def write_sections(stdout: TextIO, parts: list[tuple[str, str]]) -> None:
    for title, body in parts:
        if body.strip():
            stdout.write(f"\n# {title}\n{body}")


def as_json(shown: Preview, version: str, command: str) -> dict[str, Any]:
    add, teardown = shown.add, shown.teardown
    if command == "DEL":
        return {"node": teardown.host_batch, "pod": teardown.pod_batch, "nft": teardown.host_nft}
    return {
        "setup": add.setup_batch,
        "node": add.host_batch,
        "pod": add.pod_batch,
        "sysctls": dict(add.host_sysctls),
        "nft": add.host_nft,
        "result": convert_result(add.result or {}, version),
        "templates": dict(add.sources),
    }

