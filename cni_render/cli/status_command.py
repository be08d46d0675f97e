"""``cni-render status``: what cni-render has allocated on this node.

Reads the IPAM store (one directory per network) and, read-only over netlink,
whether each attachment's node interface exists. Readable by a person, or as
JSON with ``--json``.
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

from cni_render.cli.configfile import load_file
from cni_render.cni.config import IN_PROCESS_IPAM
from cni_render.datapath.naming import host_ifname
from cni_render.ipam.model import DEFAULT_DATA_DIR, parse_ipam_config
from cni_render.ipam.store import Store


def attachments(data_dir: str, networks: list[str], node_links: set[str]) -> list[dict[str, Any]]:
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for network in networks:
        for ip, container_id, ifname in Store(data_dir, network).allocations():
            key = (network, container_id, ifname)
            if key not in found:
                name = host_ifname(network, container_id, ifname)
                found[key] = {
                    "network": network,
                    "containerID": container_id,
                    "ifname": ifname,
                    "addresses": [],
                    "hostInterface": name,
                    "hostInterfacePresent": name in node_links,
                }
            found[key]["addresses"].append(ip)
    return list(found.values())


def _sources(args: Any) -> tuple[str, list[str]]:
    if args.config:
        config = load_file(args.config)
        if config.ipam_type != IN_PROCESS_IPAM:
            raise SystemExit(f"network {config.name} delegates IPAM to {config.ipam_type}; nothing to show")
        return parse_ipam_config(config.ipam).data_dir, [config.name]
    data_dir = args.data_dir or DEFAULT_DATA_DIR
    networks = sorted(n for n in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, n))) if os.path.isdir(data_dir) else []
    return data_dir, networks


def run(args: Any, stdout: TextIO) -> int:
    from cni_render.host import system

    data_dir, networks = _sources(args)
    links, _ = system.read_state()
    rows = attachments(data_dir, networks, {link["ifname"] for link in links})
    if args.json:
        stdout.write(json.dumps({"dataDir": data_dir, "attachments": rows}, indent=2) + "\n")
        return 0
    stdout.write(f"cni-render allocations in {data_dir}: {len(rows)} attachment(s)\n")
    if not rows:
        return 0
    header = ("NETWORK", "CONTAINER", "IFNAME", "ADDRESSES", "NODE INTERFACE")
    table = [
        (
            r["network"],
            r["containerID"][:20] + ("…" if len(r["containerID"]) > 20 else ""),
            r["ifname"] or "-",
            ",".join(r["addresses"]),
            r["hostInterface"] + ("" if r["hostInterfacePresent"] else " (missing)"),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        stdout.write("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    return 0
