"""``cni-render`` run by a person (no CNI_COMMAND in the environment)."""

from __future__ import annotations

import argparse
from typing import Sequence, TextIO

from . import __version__

DESCRIPTION = """\
cni-render is a CNI plugin: a container runtime runs it with CNI_COMMAND set
and the network config on stdin. Run by hand, it offers these commands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cni-render", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cni-render {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    daemon = commands.add_parser(
        "daemon",
        help="run the node daemon that serves CNI calls with everything loaded",
        description="Serve CNI calls for the cni-render executables of this node over a unix "
        "socket (root only). Without it, every call does its work in-process, more slowly.",
    )
    daemon.add_argument("--socket", default=None, help="socket path (default /run/cni-render/daemon.sock)")
    daemon.add_argument("--workers", type=int, default=0, help="worker processes (default: one per CPU, at least 2)")

    install = commands.add_parser(
        "install",
        help="write the cni-render and cni-render-ipam executables into a CNI bin directory",
        description="Write fast launchers for cni-render and cni-render-ipam into the runtime's "
        "plugin directory, atomically (temporary name, then rename).",
    )
    install.add_argument("--bin-dir", default="/opt/cni/bin", help="default /opt/cni/bin")
    install.add_argument(
        "--no-shim", action="store_true", help="write the Python launcher even when a C compiler is present"
    )
    return parser


def cli_main(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "daemon":
        from .client import DEFAULT_SOCKET
        from .daemon import serve

        return serve(args.socket or DEFAULT_SOCKET, workers=args.workers)
    if args.command == "install":
        from .install import install

        for path in install(args.bin_dir, shim=not args.no_shim):
            stdout.write(f"wrote {path}\n")
        return 0
    parser.print_help(stdout)
    return 2
