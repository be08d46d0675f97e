"""``cni-render validate``: is this config, with these templates, ready for pods?

Prints the checks of :func:`cni_render.datapath.validate.validate` (schema,
IPAM ranges, templates compile, render for every spec version), one line
each; with ``--apply`` then ADD, CHECK and DEL of a sample pod, run by the
plugin itself inside throwaway namespaces, with a TCP connection from the
node to the pod in between, and nothing left after DEL.

Exit 0 only when every step passes.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TextIO

from cni_render.cli.configfile import plugin_document
from cni_render.cli.sandbox import REFERENCE_PLUGINS, Pod, Sandbox, SandboxError, pod_addresses
from cni_render.cni.config import DEFAULT_BRIDGE
from cni_render.cni.errors import CniError
from cni_render.datapath.validate import SAMPLE_CONTAINER, Check, validate


class Report:
    def __init__(self, stdout: TextIO):
        self.stdout = stdout
        self.failed = False

    def step(self, name: str, action: Callable[[], str | None]) -> bool:
        try:
            detail = action()
        except CniError as exc:
            self.line("FAIL", name, f"{exc.details} (code {exc.code})")
            return False
        except Exception as exc:  # a report, not a traceback
            self.line("FAIL", name, str(exc))
            return False
        self.line("ok", name, detail or "")
        return True

    def check(self, check: Check) -> None:
        self.line("ok" if check.passed else "FAIL", check.step, check.detail if check.passed else str(check.problem))

    def line(self, status: str, name: str, detail: str) -> None:
        if status == "FAIL":
            self.failed = True
        self.stdout.write(f"{status:4}  {name}{': ' + detail if detail else ''}\n")
        self.stdout.flush()


def run(args: Any, stdout: TextIO) -> int:
    report = Report(stdout)
    document = plugin_document(args.config)
    validation = validate(document, args.templates)
    for check in validation.checks:
        report.check(check)
    if args.apply and validation.passed:
        if args.templates:
            document["templateDir"] = os.path.abspath(args.templates)
        apply_sample(args, document, report)
    stdout.write("all checks passed\n" if not report.failed else "validation failed\n")
    return 1 if report.failed else 0


# --- --apply ----------------------------------------------------------------------


def apply_sample(args: Any, document: dict[str, Any], report: Report) -> None:
    """ADD, CHECK and DEL of a sample pod by the plugin itself (in-process)
    inside a throwaway node, an HTTP request from the node to the pod in
    between, and nothing left after DEL."""
    if os.geteuid() != 0:
        report.line("FAIL", "apply", "--apply creates network namespaces: run it as root")
        return
    try:
        sandbox = Sandbox("validate", search_path=("/opt/cni/bin", REFERENCE_PLUGINS))
    except (SandboxError, OSError) as exc:
        report.line("FAIL", "apply: throwaway namespaces", str(exc))
        return
    with sandbox:
        pod = sandbox.add_pod(container_id=SAMPLE_CONTAINER)
        sample = sandbox.contain(dict(document, cniVersion=_apply_version(document)))
        report.line("ok", "apply: throwaway namespaces", f"node {sandbox.name}, pod {pod.name} (state in {sandbox.tmp})")
        result: dict[str, Any] = {}

        def add() -> str:
            result.update(_cni(sandbox, pod, "ADD", sample))
            return ", ".join(ip["address"] for ip in result["ips"])

        if not report.step("apply: ADD", add):
            return
        report.step("apply: node reaches the pod", lambda: _reach(sandbox, pod, pod_addresses(result)[0]))
        report.step("apply: CHECK", lambda: _cni(sandbox, pod, "CHECK", dict(sample, prevResult=result)) or "no drift")
        report.step("apply: DEL", lambda: _cni(sandbox, pod, "DEL", dict(sample, prevResult=result)) or "done")
        report.step("apply: nothing left", lambda: _residue(sandbox, sample))


def _apply_version(document: dict[str, Any]) -> str:
    version = document.get("cniVersion", "1.1.0")
    return version if version in ("0.4.0", "1.0.0", "1.1.0") else "1.0.0"  # CHECK needs 0.4.0+


def _cni(sandbox: Sandbox, pod: Pod, command: str, config: dict[str, Any]) -> Any:
    call = sandbox.cni(command, config, pod, timeout=120)
    if call.exit_code != 0:
        raise SandboxError(call.problem())
    return call.json if call.stdout.strip() else None


def _reach(sandbox: Sandbox, pod: Pod, address: str) -> str:
    pod.serve_http("cni-render\n", port=7777)
    answer = sandbox.http_get(address, port=7777)
    if answer != "cni-render\n":
        raise SandboxError(f"{address}:7777 answered {answer!r}, not the pod's server")
    return f"HTTP to {address}:7777 answered"


def _residue(sandbox: Sandbox, sample: dict[str, Any]) -> str:
    bridge = str(sample.get("bridge", DEFAULT_BRIDGE)) if sample.get("mode") == "bridge" else ""
    left = sandbox.pod_links(bridge=bridge)
    if left:
        raise SandboxError(f"links left on the node: {', '.join(left)}")
    held = sandbox.allocations(str(sample.get("name")))
    if held:
        raise SandboxError(f"addresses still allocated: {', '.join(held)}")
    return "no link, no allocation"
