"""``cni-render validate``: is this config, with these templates, ready for pods?

Prints the checks of :func:`cni_render.datapath.validate.validate` (schema,
IPAM ranges, templates compile, render for every spec version), one line
each; with ``--apply`` then ADD, CHECK and DEL of a sample pod, run by the
plugin itself inside throwaway namespaces, with a TCP connection from the
node to the pod in between, and nothing left after DEL.

Exit 0 only when every step passes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, TextIO

from cni_render.cli.configfile import plugin_document
from cni_render.cni.errors import CniError
from cni_render.datapath.validate import SAMPLE_CONTAINER, Check, validate
from cni_render.ipam.store import Store


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


def _sh(*argv: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=120, **kwargs)


def _plugin_argv() -> list[str]:
    return [sys.executable, "-m", "cni_render"]


def apply_sample(args: Any, document: dict[str, Any], report: Report) -> None:
    if os.geteuid() != 0:
        report.line("FAIL", "apply", "--apply creates network namespaces: run it as root")
        return
    tag = uuid.uuid4().hex[:8]
    node, pod = f"cnir-validate-{tag}", f"cnir-validate-{tag}-pod"
    tmp = tempfile.mkdtemp(prefix="cni-render-validate-")
    sample = dict(document, stateDir=f"{tmp}/state", cniVersion=_apply_version(document))
    if isinstance(sample.get("ipam"), dict):
        sample["ipam"] = dict(sample["ipam"], dataDir=f"{tmp}/ipam")
    listener: subprocess.Popen[str] | None = None
    try:
        for name in (node, pod):
            _sh("ip", "netns", "add", name)
            _sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        report.line("ok", "apply: throwaway namespaces", f"node {node}, pod {pod} (state in {tmp})")
        result: dict[str, Any] = {}

        def add() -> str:
            result.update(_cni(node, pod, "ADD", sample))
            return ", ".join(ip["address"] for ip in result["ips"])

        if not report.step("apply: ADD", add):
            return
        address = result["ips"][0]["address"].split("/")[0]
        listener = _listen(pod)
        report.step("apply: node reaches the pod", lambda: _connect(node, address))
        report.step("apply: CHECK", lambda: _cni(node, pod, "CHECK", dict(sample, prevResult=result)) or "no drift")
        report.step("apply: DEL", lambda: _cni(node, pod, "DEL", dict(sample, prevResult=result)) or "done")
        report.step("apply: nothing left", lambda: _residue(node, tmp, sample))
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        for name in (pod, node):
            _sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def _apply_version(document: dict[str, Any]) -> str:
    version = document.get("cniVersion", "1.1.0")
    return version if version in ("0.4.0", "1.0.0", "1.1.0") else "1.0.0"  # CHECK needs 0.4.0+


def _cni(node: str, pod: str, command: str, config: dict[str, Any]) -> Any:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": SAMPLE_CONTAINER,
        "CNI_NETNS": f"/var/run/netns/{pod}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": os.pathsep.join([os.path.dirname(sys.executable), "/opt/cni/bin", "/usr/lib/cni"]),
        "CNI_RENDER_DAEMON_SOCKET": "",
    }
    proc = subprocess.run(
        ["ip", "netns", "exec", node, *_plugin_argv()],
        input=json.dumps(config), env=env, capture_output=True, text=True, timeout=120,
    )
    if proc.returncode != 0:
        try:
            error = json.loads(proc.stdout)
            raise ValueError(f"code {error['code']}: {error['details']}")
        except (ValueError, KeyError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith("code "):
                raise
            raise ValueError(proc.stdout.strip() or proc.stderr.strip()) from None
    return json.loads(proc.stdout) if proc.stdout.strip() else None


# A TCP listener inside the pod (IPv6 socket, IPv4 too) and a client on the
# node; the traffic never leaves the throwaway namespaces.
LISTENER = """
import socket
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("::", 7777)); server.listen(4)
print("ready", flush=True)
while True:
    connection, _ = server.accept(); connection.sendall(b"cni-render"); connection.close()
"""

CONNECTOR = """
import socket, sys
with socket.create_connection((sys.argv[1], 7777), timeout=3) as connection:
    sys.stdout.write(connection.recv(64).decode())
"""


def _listen(pod: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", pod, sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def _connect(node: str, address: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        proc = _sh("ip", "netns", "exec", node, sys.executable, "-c", CONNECTOR, address, check=False)
        if proc.returncode == 0 and proc.stdout == "cni-render":
            return f"TCP to {address}:7777 answered"
        if time.monotonic() > deadline:
            raise ValueError(f"no TCP answer from {address}:7777: {proc.stderr.strip()}")
        time.sleep(0.1)


def _residue(node: str, tmp: str, sample: dict[str, Any]) -> str:
    links = json.loads(_sh("ip", "netns", "exec", node, "ip", "-j", "link", "show").stdout)
    bridge = sample.get("bridge", "cni-render0") if sample.get("mode") == "bridge" else None
    left = [link["ifname"] for link in links if link["ifname"] not in ("lo", bridge)]
    if left:
        raise ValueError(f"links left on the node: {', '.join(left)}")
    held = [ip for ip, _, _ in Store(os.path.join(tmp, "ipam"), str(sample.get("name"))).allocations()]
    if held:
        raise ValueError(f"addresses still allocated: {', '.join(held)}")
    return "no link, no allocation"
