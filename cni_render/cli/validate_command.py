"""``cni-render validate``: is this config, with these templates, ready for pods?

1. the config against the JSON Schema: every error, with its JSON path;
2. every template of the set compiles (with the operator's overrides);
3. every template renders for a sample pod in every spec version, and the
   result is a valid CNI result for that version;
4. with ``--apply``: ADD, CHECK and DEL of a sample pod, run by the plugin
   itself inside throwaway namespaces, with a TCP connection from the node to
   the pod in between, and nothing left after DEL.

Exit 0 only when every step passes.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, TextIO

from .. import schema
from ..config import IN_PROCESS_IPAM
from ..errors import CniError
from ..ipam.model import parse_ipam_config
from ..ipam.store import Store
from ..preview import preview, request_for
from ..render import Renderer, result_shape_problem
from ..spec import SUPPORTED_VERSIONS
from ..versions import convert_result
from .configfile import load_file, plugin_document

SAMPLE_CONTAINER = "cni-render-validate"


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

    def line(self, status: str, name: str, detail: str) -> None:
        if status == "FAIL":
            self.failed = True
        self.stdout.write(f"{status:4}  {name}{': ' + detail if detail else ''}\n")
        self.stdout.flush()


def run(args: Any, stdout: TextIO) -> int:
    report = Report(stdout)
    document = plugin_document(args.config)
    if args.templates:
        document["templateDir"] = os.path.abspath(args.templates)
    errors = schema.schema_errors(schema.static_part(document), schema.PLUGIN_SCHEMA)
    if errors:
        for error in errors:
            report.line("FAIL", "schema", error.details)
        return 1
    report.step("schema", lambda: "the config is valid")
    config = load_file(args.config, args.templates, cache=False)
    if config.ipam_type == IN_PROCESS_IPAM and not report.step("IPAM ranges", lambda: _ipam(config)):
        return 1
    renderer = Renderer(config.mode, override_dir=config.template_dir)
    if not report.step("templates compile", lambda: _compile(renderer)):
        return 1
    for version in SUPPORTED_VERSIONS:
        report.step(f"render for cniVersion {version}", functools.partial(_render, args, version))
    if args.apply and not report.failed:
        apply_sample(args, document, report)
    stdout.write("all checks passed\n" if not report.failed else "validation failed\n")
    return 1 if report.failed else 0


def _ipam(config: Any) -> str:
    ipam = parse_ipam_config(config.ipam)
    return ", ".join(str(r) for range_set in ipam.range_sets for r in range_set)


def _compile(renderer: Renderer) -> str:
    names = renderer.loader.list_templates()
    for name in names:
        renderer.compile(name)
    override = renderer.loader.override_dir
    overridden = [n for n in names if override and renderer.path_of(n).startswith(override)]
    detail = f"{len(names)} templates of set {renderer.loader.template_set}"
    return detail + (f", {len(overridden)} from {renderer.loader.override_dir}" if overridden else "")


def _render(args: Any, version: str) -> str:
    config = load_file(args.config, args.templates, cache=False, cniVersion=version)
    renderer = Renderer(config.mode, override_dir=config.template_dir)
    shown = preview(request_for(SAMPLE_CONTAINER, "/var/run/netns/sample", "eth0"), config, renderer)
    problem = result_shape_problem(shown.add.result)
    if problem:
        raise ValueError(f"the result is not a CNI result: {problem}")
    convert_result(shown.add.result or {}, version)
    lines = sum(batch.count("\n") for batch in (shown.add.setup_batch, shown.add.host_batch, shown.add.pod_batch))
    return f"{lines} batch lines; pod {', '.join(a.cidr for a in shown.plan.addresses)}"


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
