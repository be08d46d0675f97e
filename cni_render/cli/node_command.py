"""``cni-render node``: the node agent (the DaemonSet's command) and its tools.

* ``cni-render node``            run the agent (see :mod:`cni_render.node.agent`);
* ``cni-render node render``     print the conflist, the route batch and the nft batch
                                 the agent would apply on this node, touching nothing;
* ``cni-render node ready``      exit 0 when the daemon answers STATUS for the node's
                                 conflist (the readiness probe);
* ``cni-render node uninstall``  remove the conflist, the shim, the agent's routes and
                                 its nft table from this node.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

DESCRIPTION = """\
The node agent run by the cni-render DaemonSet: installs the shim, starts the
daemon, writes the conflist from the Node's spec.podCIDRs, keeps host-gw routes
to the other nodes and the egress masquerade, applies template overrides from
the ConfigMap cni-render-templates, serves metrics. Without a subcommand it runs
the agent (NODE_NAME must be set)."""


def add_node_parser(commands: Any) -> None:
    node = commands.add_parser("node", help="the node agent (the DaemonSet's command) and its tools",
                               description=DESCRIPTION)
    tools = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND")
    render = tools.add_parser(
        "render",
        help="print what the agent would apply on this node, touching nothing",
        description="Print the conflist, the ip batch of host-gw routes and the nft masquerade batch "
        "the agent would apply on this node now. Reads the Nodes and the settings from the API "
        "(or --nodes / --settings files) and the node's routing table; changes nothing.",
    )
    render.add_argument("--node", help="the node (default: $NODE_NAME)")
    render.add_argument("--nodes", metavar="FILE", help="the Nodes as `kubectl get nodes -o json` prints them, instead of the API")
    render.add_argument("--settings", metavar="FILE", help="the settings ConfigMap as `kubectl get cm -o json` prints it")
    render.add_argument("--from-scratch", action="store_true", help="plan against an empty routing table, every node on-link")
    tools.add_parser("ready", help="exit 0 when the daemon answers STATUS for the node's conflist (readiness probe)")
    uninstall = tools.add_parser(
        "uninstall",
        help="remove the conflist, the shim, the agent's routes and its nft table from this node",
        description="Remove what the agent put on this node and nothing else (IPAM state stays). "
        "A running agent on the node stops restoring them until it restarts.",
    )
    uninstall.add_argument("--check", action="store_true", help="only report what is left; exit 0 when nothing is")
    uninstall.add_argument("--stay", action="store_true", help="after removing, wait for SIGTERM (a one-shot DaemonSet's container)")


def run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    from cni_render.node.settings import SettingsError, paths_from_environment

    try:
        paths = paths_from_environment(_environment(args))
    except SettingsError as exc:
        stderr.write(f"cni-render node: {exc}\n")
        return 2
    command = args.node_command
    if command == "ready":
        return _ready(paths, stdout)
    if command == "uninstall":
        return _uninstall(paths, args, stdout)
    if command == "render":
        return _render(paths, args, stdout)
    from cni_render.node.agent import Agent
    from cni_render.node.cluster import Cluster

    return Agent(paths, Cluster(paths.namespace, reporter=paths.node_name)).run()


def _environment(args: argparse.Namespace) -> dict[str, str]:
    environ = dict(os.environ)
    if getattr(args, "node", None):
        environ["NODE_NAME"] = args.node
    if args.node_command in ("ready", "uninstall") and not environ.get("NODE_NAME"):
        environ["NODE_NAME"] = "-"  # neither needs to know which node it is on
    return environ


def _ready(paths: Any, stdout: TextIO) -> int:
    from cni_render.node.daemon_child import daemon_status
    from cni_render.node.files import read_bytes

    content = read_bytes(paths.conflist)
    if content is None:
        stdout.write(f"not ready: no conflist at {paths.conflist} yet\n")
        return 1
    try:
        document = json.loads(content)
        from cni_render.node.conflist import plugin_config

        config = plugin_config(document)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        stdout.write(f"not ready: {paths.conflist} is not a cni-render conflist ({exc})\n")
        return 1
    problem = daemon_status(paths.socket, config)
    stdout.write(f"not ready: {problem}\n" if problem else "ready\n")
    return 1 if problem else 0


def _uninstall(paths: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    from cni_render.node.uninstall import leftovers, uninstall

    if not args.check:
        for line in uninstall(paths) or ["nothing of cni-render's was on this node"]:
            stdout.write(line + "\n")
    left = leftovers(paths)
    for item in left:
        stdout.write(f"left: {item}\n")
    stdout.flush()
    if args.stay:
        import signal

        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(3600)
    return 1 if left else 0


def _render(paths: Any, args: argparse.Namespace, stdout: TextIO) -> int:
    from cni_render.node.agent import node_facts
    from cni_render.node.nodeinfo import node_from_dict
    from cni_render.node.routes import kernel_not_on_link, read_current_routes
    from cni_render.node.settings import SETTINGS_CONFIGMAP, parse_settings
    from cni_render.node.state import desired_state

    if args.nodes:
        nodes = _items(args.nodes)
        data = _items(args.settings, key="data") if args.settings else {}
    else:
        from cni_render.node.cluster import Cluster

        cluster = Cluster(paths.namespace)
        nodes = cluster.list_nodes()
        data = cluster.get_config_map(SETTINGS_CONFIGMAP) if not args.settings else _items(args.settings, key="data")
    settings = parse_settings(data)
    current = [] if args.from_scratch else read_current_routes()
    on_link = (lambda address: None) if args.from_scratch else kernel_not_on_link
    state = desired_state(
        paths.node_name, [node_from_dict(n) for n in nodes], settings, node_facts(paths), current, on_link
    )
    stdout.write(f"# conflist {paths.conflist}\n")
    stdout.write(state.conflist_bytes.decode() if state.conflist_bytes else f"# none: {state.conflist_problem}\n")
    stdout.write("# routes: ip -batch - (in the node's namespace)\n")
    for warning in state.routes.warnings:
        stdout.write(f"# skipped: {warning}\n")
    stdout.write(state.routes_batch or "# no change\n")
    stdout.write("# masquerade: nft -f -\n")
    stdout.write(state.masquerade_batch)
    for refusal in state.refused:
        stdout.write(f"# refused: {refusal.message}\n")
    return 0


def _items(path: str, key: str = "items") -> Any:
    with open(path) as handle:
        document = json.load(handle)
    return document.get(key) or ({} if key == "data" else [])
