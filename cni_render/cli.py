"""``cni-render`` run by a person (no CNI_COMMAND in the environment)."""

from __future__ import annotations

import argparse
from typing import Sequence, TextIO

from . import __version__

DESCRIPTION = """\
cni-render is a CNI plugin: a container runtime runs it with CNI_COMMAND set
and the network config on stdin. Run by hand, it offers operator commands."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cni-render", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"cni-render {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def cli_main(argv: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(stdout)
        return 2
    return 0
