"""``cni-render`` run by a person (no CNI_COMMAND in the environment): the
operator's commands. Each command's work lives in its own module."""

from __future__ import annotations

import argparse
from typing import Sequence, TextIO

from cni_render import __version__

DESCRIPTION = """\
cni-render is a CNI plugin: a container runtime runs it with CNI_COMMAND set
and the network config on stdin. Run by hand, it offers these commands."""


def _add_template_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--templates", metavar="DIR", help="operator templates that replace built-in ones of the same name (instead of the config's templateDir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cni-render", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cni-render {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    render = commands.add_parser(
        "render",
        help="print what ADD, DEL or CHECK would run for a pod, touching nothing",
        description="Render the batches and the result exactly as the plugin would run them, "
        "without allocating an address or changing anything. IPAM's answer is simulated: "
        "the --ip addresses, else the first address of every range of an empty node.",
    )
    render.add_argument("--config", required=True, metavar="FILE", help="a conflist or a single network config")
    render.add_argument("--command", dest="cni_command", choices=("ADD", "DEL", "CHECK"), default="ADD", help="which call to render (default ADD)")
    render.add_argument("--container-id", default="render-preview", metavar="ID")
    render.add_argument("--netns", default="/var/run/netns/preview", metavar="PATH")
    render.add_argument("--ifname", default="eth0", metavar="NAME")
    render.add_argument("--ip", action="append", default=[], metavar="ADDR", help="the pod's address (repeat for dual-stack)")
    render.add_argument("--cni-args", metavar="ARGS", help="CNI_ARGS as the runtime sends them (K=V;K=V)")
    render.add_argument("--mtu", type=int, default=1500, help="MTU when the config has none (default 1500)")
    render.add_argument("--json", action="store_true", help="print the batches and the result as one JSON document")
    _add_template_option(render)

    validate = commands.add_parser(
        "validate",
        help="check a config and its templates; with --apply, run ADD, CHECK and DEL for a sample pod",
        description="Schema-check the config (every error with its JSON path), compile every template, "
        "render them for a sample pod in every spec version, and with --apply run ADD, CHECK and DEL "
        "inside throwaway network namespaces. Exit 0 only when all pass.",
    )
    validate.add_argument("config", metavar="FILE", help="a conflist or a single network config")
    validate.add_argument("--apply", action="store_true", help="also run the sample pod for real in throwaway namespaces (root)")
    _add_template_option(validate)

    templates = commands.add_parser("templates", help="work with the built-in templates")
    template_commands = templates.add_subparsers(dest="templates_command", metavar="SUBCOMMAND", required=True)
    export = template_commands.add_parser(
        "export",
        help="write the built-in templates into a directory, for editing",
        description="Write the built-in templates of a set (its own and the common ones) into DIR, "
        "ready to be a network's templateDir; with --set all, one directory per set.",
    )
    export.add_argument("directory", metavar="DIR")
    export.add_argument("--set", choices=("routed", "bridge", "all"), default="routed")
    export.add_argument("--force", action="store_true", help="overwrite files that exist")

    from cni_render.cli.node_command import add_node_parser  # the node agent: cni-render node ...

    add_node_parser(commands)

    status = commands.add_parser(
        "status",
        help="show what cni-render has allocated on this node",
        description="List the attachments cni-render's IPAM holds on this node: network, container, "
        "interface, addresses and node interface (and whether it exists).",
    )
    status.add_argument("--config", metavar="FILE", help="only this network (a conflist or a single config)")
    status.add_argument("--data-dir", metavar="DIR", help="the IPAM data directory (default /run/cni-render/ipam)")
    status.add_argument("--json", action="store_true")

    daemon = commands.add_parser(
        "daemon",
        help="run the node daemon that serves CNI calls with everything loaded",
        description="Serve CNI calls for the cni-render executables of this node over a unix "
        "socket (root only). Without it, every call does its work in-process, more slowly.",
    )
    daemon.add_argument("--socket", default=None, help="socket path (default /run/cni-render/daemon.sock)")
    daemon.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU, 2 to 4; at most 8)")
    daemon.add_argument("--stop-seconds", type=float, default=20.0, help="on SIGTERM, how long calls in flight may take (default 20)")

    install = commands.add_parser(
        "install",
        help="write the cni-render and cni-render-ipam executables into a CNI bin directory",
        description="Write the node's plugin executables into the runtime's plugin directory, "
        "atomically (temporary name, then rename): the C shim when a compiler is present, "
        "else a Python launcher. With --shim, only that prebuilt static shim (a node without Python).",
    )
    install.add_argument("--bin-dir", default="/opt/cni/bin", help="default /opt/cni/bin")
    install.add_argument("--no-shim", action="store_true", help="write the Python launcher even when a C compiler is present")
    install.add_argument("--shim", metavar="PATH", help="copy this prebuilt static shim as cni-render and write nothing else")
    install.add_argument("--build-static-shim", metavar="OUT", help="only compile the static node shim (no Python, never executes anything) into OUT")
    return parser


def cli_main(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(stdout)
        return 2
    from cni_render.cni.errors import CniError

    if args.command == "node":
        from cni_render.cli.node_command import run as node

        return node(args, stdout, stderr)
    try:
        return _run(args, stdout)
    except CniError as exc:
        stderr.write(f"cni-render {args.command}: {exc.details} (code {exc.code})\n")
        return 1


def _run(args: argparse.Namespace, stdout: TextIO) -> int:
    if args.command == "render":
        from cni_render.cli.render_command import run

        return run(args, stdout)
    if args.command == "validate":
        from cni_render.cli.validate_command import run as validate

        return validate(args, stdout)
    if args.command == "templates":
        from cni_render.cli.export_command import run as export

        return export(args, stdout)
    if args.command == "status":
        from cni_render.cli.status_command import run as status

        return status(args, stdout)
    if args.command == "daemon":
        from cni_render.fastpath.daemon import serve
        from cni_render.fastpath.wire import DEFAULT_SOCKET

        return serve(args.socket or DEFAULT_SOCKET, workers=args.workers, stop_seconds=args.stop_seconds)
    from cni_render.fastpath.install import run_install

    return run_install(args, stdout)
