"""Executables: ``cni-render`` (the plugin) and ``cni-render-ipam``.

``main`` takes its world as arguments (environment, stdin, stdout, stderr) and
returns the exit code; the console scripts pass the real ones. stdout carries
exactly one JSON document: the result, or an error.

VERSION is answered here without importing anything heavy.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO, Mapping, TextIO

from .versions import CURRENT_VERSION, SUPPORTED_VERSIONS


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stdout: str


def version_reply(raw: bytes) -> str:
    """The VERSION answer; the input's cniVersion is echoed when supported."""
    requested = CURRENT_VERSION
    try:
        document = json.loads(raw) if raw.strip() else {}
        if isinstance(document, dict) and document.get("cniVersion") in SUPPORTED_VERSIONS:
            requested = document["cniVersion"]
    except ValueError:
        pass
    return json.dumps({"cniVersion": requested, "supportedVersions": list(SUPPORTED_VERSIONS)})


def plugin_main(
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    command = environ.get("CNI_COMMAND")
    if command is None:
        from .cli import cli_main

        return cli_main(sys.argv[1:], stdout, stderr)
    outcome = _plugin_outcome(command, environ, stdin, stderr)
    if outcome.stdout:
        stdout.write(outcome.stdout + "\n")
        stdout.flush()
    return outcome.exit_code


def _plugin_outcome(
    command: str, environ: Mapping[str, str], stdin: BinaryIO, stderr: TextIO
) -> Outcome:
    try:
        raw = stdin.read()
    except OSError as exc:
        from .errors import IoFailure

        return Outcome(1, IoFailure(f"reading stdin: {exc}").to_json(CURRENT_VERSION))
    if command == "VERSION":
        return Outcome(0, version_reply(raw))
    from .dispatch import handle

    return handle(environ, raw, stderr)


def ipam_main(
    environ: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    raw = stdin.read()
    if environ.get("CNI_COMMAND") == "VERSION":
        outcome = Outcome(0, version_reply(raw))
    else:
        from .ipam.executable import handle_ipam

        outcome = handle_ipam(environ, raw, stderr)
    if outcome.stdout:
        stdout.write(outcome.stdout + "\n")
        stdout.flush()
    return outcome.exit_code

