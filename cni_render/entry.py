"""Console-script entry points: ``cni-render`` and ``cni-render-ipam``.

The one decision made here: ``CNI_COMMAND`` set means a runtime is calling the
plugin (:mod:`cni_render.fastpath.client`); unset means an operator is running
the CLI (:mod:`cni_render.cli`). Both take their world from the process (environment, stdin, stdout, stderr)
and return the exit code. stdout carries exactly one JSON document: the
result, or an error. The heavy lifting is imported only when a command needs
it; VERSION imports nothing.
"""

from __future__ import annotations

import os
import sys


def plugin_main() -> int:
    if "CNI_COMMAND" not in os.environ:
        from cni_render.cli.main import cli_main

        return cli_main(sys.argv[1:], sys.stdout, sys.stderr)
    from cni_render.fastpath.client import main

    return main()


def ipam_main() -> int:
    from cni_render.fastpath.wire import version_reply

    raw = sys.stdin.buffer.read()
    if os.environ.get("CNI_COMMAND") == "VERSION":
        sys.stdout.write(version_reply(raw) + "\n")
        return 0
    from cni_render.ipam.executable import handle_ipam

    outcome = handle_ipam(os.environ, raw, sys.stderr)
    if outcome.stdout:
        sys.stdout.write(outcome.stdout + "\n")
        sys.stdout.flush()
    return outcome.exit_code
