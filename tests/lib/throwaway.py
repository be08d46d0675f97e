"""Throwaway nodes and pods as network namespaces, and running the plugin in them.

A :class:`Node` is a network namespace standing in for a Kubernetes node; its
pods are further namespaces. The plugin always runs inside the node
(``ip netns exec``), so the machine's own links and routes are never touched.
Traffic only goes to addresses configured inside these namespaces. ``close``
removes every namespace, process and file the node made, also after failures.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

BIN_DIR = Path(sys.executable).parent  # the virtualenv: console scripts
PLUGIN = str(BIN_DIR / "cni-render")
IPAM_PLUGIN = str(BIN_DIR / "cni-render-ipam")
REFERENCE_PLUGINS = "/usr/lib/cni"
NETNS_PREFIX = "crt-"
MODES = ("in-process", "daemon")
TEMPLATE_SETS = ("routed", "bridge")
BRIDGE = "cni-render0"


def run(argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    proc = subprocess.run(argv, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc


@dataclass
class CniCall:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def ok(self) -> CniCall:
        assert self.exit_code == 0, f"CNI call failed: {self.stdout} {self.stderr}"
        return self


@dataclass
class Pod:
    node: Node
    name: str
    container_id: str
    ifname: str = "eth0"

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.name}"

    def exec(self, argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, **kwargs)

    def serve_http(self, body: str = "It works!\n", port: int = 80) -> None:
        """busybox httpd inside the pod, answering ``body`` on every address."""
        root = self.node.tmp / f"www-{self.name}"
        root.mkdir(exist_ok=True)
        (root / "index.html").write_text(body)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "busybox", "httpd", "-f", "-p", str(port), "-h", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.node.processes.append(proc)
        time.sleep(0.05)


@dataclass
class Node:
    """A throwaway node namespace with a private state and IPAM directory.

    In ``daemon`` mode a cni-render daemon runs inside the node and the plugin
    reaches it through the node's own socket; in ``in-process`` mode the
    plugin is told not to look for a daemon.
    """

    mode: str = "in-process"
    plugin_dir: str = str(BIN_DIR)
    template_set: str = "routed"
    name: str = field(default_factory=lambda: NETNS_PREFIX + uuid.uuid4().hex[:10])
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cni-render-test-")))
    pods: list[Pod] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)
    daemon: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        try:
            run(["ip", "netns", "add", self.name])
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        try:
            self.exec(["ip", "link", "set", "lo", "up"])
            if self.mode == "daemon":
                self.start_daemon()
        except BaseException:
            self.close()  # nobody else holds this node yet: leave nothing behind
            raise

    @property
    def plugin(self) -> str:
        return f"{self.plugin_dir}/cni-render"

    @property
    def socket(self) -> str:
        return str(self.tmp / "daemon.sock") if self.mode == "daemon" else ""

    def start_daemon(self) -> None:
        log = open(self.tmp / "daemon.log", "ab")
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.name, PLUGIN, "daemon", "--socket", str(self.tmp / "daemon.sock")],
            stdout=log,
            stderr=log,
            env={k: v for k, v in os.environ.items() if k != "CNI_COMMAND"},
        )
        deadline = time.monotonic() + 30
        while not self._daemon_answers():
            assert self.daemon.poll() is None, (self.tmp / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.05)

    def _daemon_answers(self) -> bool:
        import socket

        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.tmp / "daemon.sock"))
            except OSError:
                return False
        return True

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            try:
                self.daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
            self.daemon = None

    def daemon_log(self) -> str:
        path = self.tmp / "daemon.log"
        return path.read_text() if path.exists() else ""

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.name}"

    @property
    def state_dir(self) -> str:
        return str(self.tmp / "state")

    @property
    def data_dir(self) -> str:
        return str(self.tmp / "ipam")

    def exec(self, argv: list[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, **kwargs)

    def add_pod(self, ifname: str = "eth0") -> Pod:
        name = f"{self.name}-p{len(self.pods)}"
        run(["ip", "netns", "add", name])
        run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"])
        pod = Pod(node=self, name=name, container_id=uuid.uuid4().hex * 2, ifname=ifname)
        self.pods.append(pod)
        return pod

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A routed cni-render network config whose state stays in this node's tmp dir."""
        config: dict[str, Any] = {
            "cniVersion": "1.0.0",
            "name": "testnet",
            "type": "cni-render",
            "mode": self.template_set,
            "stateDir": self.state_dir,
            "ipam": {
                "type": "cni-render-ipam",
                "dataDir": self.data_dir,
                "ranges": [[{"subnet": "10.244.1.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        }
        config.update(overrides)
        return config

    def cni(
        self,
        command: str,
        config: Mapping[str, Any] | bytes,
        pod: Pod | None = None,
        *,
        container_id: str | None = None,
        netns: str | None = None,
        ifname: str | None = None,
        cni_args: str | None = None,
        plugin: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> CniCall:
        """Run the plugin inside the node, as a runtime would."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_PATH": f"{self.plugin_dir}:{REFERENCE_PLUGINS}",
            "CNI_RENDER_DAEMON_SOCKET": self.socket,
        }
        if pod is not None:
            env.update(CNI_CONTAINERID=pod.container_id, CNI_NETNS=pod.netns, CNI_IFNAME=pod.ifname)
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname)):
            if value is not None:
                env[key] = value
        if cni_args is not None:
            env["CNI_ARGS"] = cni_args
        env.update(extra_env or {})
        stdin = config if isinstance(config, bytes) else json.dumps(config).encode()
        proc = subprocess.run(
            ["ip", "netns", "exec", self.name, plugin or self.plugin],
            input=stdin,
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        return CniCall(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def http_get(self, address: str, source: Pod | None = None, port: int = 80) -> str:
        """Fetch / from ``address`` (one bounded request) from the node or a pod."""
        host = f"[{address}]" if ":" in address else address
        runner = source.exec if source is not None else self.exec
        proc = runner(["curl", "-sS", "-m", "3", f"http://{host}:{port}/"], check=False)
        assert proc.returncode == 0, f"GET {address} from {source.name if source else 'node'}: {proc.stderr}"
        return proc.stdout

    def links(self) -> list[str]:
        out = self.exec(["ip", "-j", "link", "show"]).stdout
        return [link["ifname"] for link in json.loads(out)]

    def pod_links(self) -> list[str]:
        """Links besides lo and the bridge set's shared bridge (kept by design)."""
        return [name for name in self.links() if name not in ("lo", BRIDGE)]

    def routes(self, family: str = "-4") -> list[dict[str, Any]]:
        return json.loads(self.exec(["ip", "-j", family, "route", "show", "table", "all"]).stdout)

    def allocations(self, network: str = "testnet") -> list[str]:
        directory = Path(self.data_dir) / network
        if not directory.is_dir():
            return []
        return sorted(
            p.name for p in directory.iterdir() if p.name != "lock" and not p.name.startswith(("last_reserved_ip.", "."))
        )

    def close(self) -> None:
        self.stop_daemon()
        for proc in self.processes:
            proc.kill()
            proc.wait(timeout=10)
        for pod in self.pods:
            run(["ip", "netns", "del", pod.name], check=False)
        run(["ip", "netns", "del", self.name], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def host_interface(result: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's node end in a result (either template set)."""
    return next(i for i in result["interfaces"] if i["name"].startswith("cr") and not i.get("sandbox"))


def pod_interface(result: Mapping[str, Any]) -> dict[str, Any]:
    return next(i for i in result["interfaces"] if i.get("sandbox"))


def leftover_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]


def root_links() -> set[str]:
    return {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]).stdout)}


def with_prev_result(config: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(config)
    merged["prevResult"] = dict(result)
    return merged


def pod_addresses(result: Mapping[str, Any]) -> list[str]:
    return [ip["address"].split("/")[0] for ip in result.get("ips", [])]
