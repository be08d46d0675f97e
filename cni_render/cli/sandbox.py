"""A throwaway node: what ``make demo``, ``validate --apply``, the namespace
tests and the benchmarks run the plugin in.

A :class:`Sandbox` is a network namespace standing in for a node, named
``cnir-<purpose>-<pid>-<random>`` (the pid of the process that made it, so a
leftover check can tell its own from a concurrent run's); its pods are
further namespaces named after it.
State, IPAM and daemon files live in one temporary directory. The plugin runs
inside the node as a runtime runs it (CNI_* variables, the config on stdin,
the result on stdout): from a plugin directory (the launchers ``cni-render
install`` writes, or any executable), else in-process through this Python
(``python -I -m cni_render``), optionally with the node's daemon running
(``cni-render daemon --socket``). A small HTTP/1.0 server and client (Python
only) prove connectivity; traffic only goes to addresses configured inside
the sandbox's own namespaces. :meth:`Sandbox.close` (or leaving the ``with``
block) removes every namespace, process and file it made, also after a
failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, Sequence

from cni_render.cni.config import DEFAULT_BRIDGE

NETNS_PREFIX = "cnir-"
BIN_DIR = Path(sys.executable).parent  # the console scripts of this Python
CLI = (sys.executable, "-I", "-m", "cni_render")  # -I: never the package of the working directory
REFERENCE_PLUGINS = "/usr/lib/cni"
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(RuntimeError):
    """A step of building, using or checking a sandbox failed; says which."""


def run(argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run a command (text, captured, bounded); with ``check`` a failure raises
    :class:`SandboxError` with its output."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    proc = subprocess.run(list(argv), check=False, **kwargs)
    if check and proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
    return proc


def namespaces(prefix: str = NETNS_PREFIX) -> list[str]:
    """Network namespaces under /var/run/netns whose name starts with ``prefix``."""
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def install_launchers(bin_dir: str | Path) -> str:
    """``cni-render install --bin-dir``: a node's plugin directory; what it printed."""
    return str(run([*CLI, "install", "--bin-dir", str(bin_dir)]).stdout)


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc, threads excluded)."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def kill_tree(root: int) -> int:
    """SIGKILL ``root`` and all below it at once: frozen first (SIGSTOP, again
    until no new process appears) so nothing forks or finishes a step in
    between, as a cgroup kill does. The number of processes killed."""
    frozen: set[int] = set()
    for _ in range(20):
        new = [pid for pid in descendants(root) if pid not in frozen]
        if not new:
            break
        for pid in new:
            _signal(pid, signal.SIGSTOP)
            frozen.add(pid)
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    return len(frozen)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


@dataclass
class CniCall:
    """One plugin process: exit code, stdout, stderr and its wall time."""

    exit_code: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def problem(self) -> str:
        """The CNI error as ``code N: details``, else the raw output."""
        try:
            error = json.loads(self.stdout)
            return f"code {error['code']}: {error.get('details') or error.get('msg', '')}"
        except (ValueError, KeyError, TypeError):
            return f"exit {self.exit_code}: {(self.stdout + self.stderr).strip()}"

    def ok(self) -> CniCall:
        if self.exit_code != 0:
            raise SandboxError(f"CNI call failed: {self.problem()}\n{self.stderr}")
        return self


# An HTTP/1.0 server (IPv6 socket, IPv4 too) answering every GET with one
# body, and a client retrying until a deadline: Python only, so that curl and
# busybox are not needed, and still speaking HTTP, so that curl, busybox
# httpd and a container's server interoperate.
SERVER = r"""
import socket, sys, threading
port, body = int(sys.argv[1]), sys.argv[2].encode()
try:
    server = socket.socket(socket.AF_INET6)
    server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("::", port))
except OSError:  # no IPv6 in this namespace
    server = socket.socket(socket.AF_INET)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
server.listen(64)
print("ready", flush=True)
head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"

def answer(connection):
    with connection:
        connection.settimeout(5)
        request = b""
        try:
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                request += chunk
            connection.sendall(head % len(body) + body)
        except OSError:
            pass

while True:
    connection, _ = server.accept()
    threading.Thread(target=answer, args=(connection,), daemon=True).start()
"""

CLIENT = r"""
import socket, sys, time
address, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host = "[%s]" % address if ":" in address else address
deadline = time.monotonic() + seconds
while True:
    try:
        timeout = max(0.5, min(3.0, deadline - time.monotonic()))
        with socket.create_connection((address, port), timeout=timeout) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\nHost: %s\r\n\r\n" % host.encode())
            response = b""
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                response += chunk
        break
    except OSError as exc:
        if time.monotonic() >= deadline:
            sys.exit("no answer from %s port %d: %s" % (address, port, exc))
        time.sleep(0.1)
head, _, body = response.partition(b"\r\n\r\n")
status = head.split(b"\r\n", 1)[0].decode(errors="replace")
if status.split()[1:2] != ["200"]:
    sys.exit("%s port %d answered %r" % (address, port, status))
sys.stdout.buffer.write(body)
"""


@dataclass
class Pod:
    """A pod's network namespace on a sandbox node, and the IDs a runtime
    passes for it."""

    node: Sandbox
    name: str
    container_id: str
    ifname: str = "eth0"

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.name}"

    def exec(self, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, **kwargs)

    def serve_http(self, body: str = "It works!\n", port: int = 80) -> subprocess.Popen[str]:
        """An HTTP server inside the pod answering ``body`` on every address;
        returns once it listens. It ends with the sandbox."""
        return self.node.serve_http(self.name, body, port)


class Sandbox:
    """A throwaway node namespace, its pods, and the plugin run inside it.

    ``purpose`` names the namespaces (``cnir-<purpose>-<pid>-…``) and the temporary
    directory. The plugin is ``<plugin_dir>/cni-render``; with ``install`` the
    launchers ``cni-render install`` writes into the sandbox; with neither,
    ``python -I -m cni_render``. With ``daemon`` the node's daemon runs from
    the start. ``data_dir`` puts the IPAM data elsewhere (a small tmpfs, say);
    ``search_path`` is the rest of CNI_PATH (delegated IPAM, chained plugins).
    """

    def __init__(
        self,
        purpose: str = "sandbox",
        *,
        plugin_dir: str | None = None,
        install: bool = False,
        daemon: bool = False,
        tmp_parent: str | None = None,
        data_dir: str | None = None,
        search_path: Sequence[str] = (REFERENCE_PLUGINS,),
    ) -> None:
        self.name = f"{NETNS_PREFIX}{purpose}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cni-render-{purpose}-", dir=tmp_parent))
        self.plugin_dir = plugin_dir
        self.search_path = list(search_path)
        self.state_dir = str(self.tmp / "state")
        self.data_dir = data_dir or str(self.tmp / "ipam")
        self.socket_path = str(self.tmp / "daemon.sock")
        self.socket = ""  # what plugin calls are told: empty until a daemon is started
        self.pods: list[Pod] = []
        self.processes: list[subprocess.Popen[Any]] = []
        self.daemon: subprocess.Popen[bytes] | None = None  # the current one
        self.daemons: list[subprocess.Popen[bytes]] = []  # every one started
        self.refused_starts = 0  # daemon starts refused because the previous one still listened
        self.installed = ""
        self._made = 0
        try:
            run(["ip", "netns", "add", self.name])
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        try:
            self.exec(["ip", "link", "set", "lo", "up"])
            if install:
                self.install()
            if daemon:
                self.start_daemon()
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()  # nobody holds this sandbox yet: leave nothing behind
            raise

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.name}"

    def exec(self, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run a command inside the node."""
        return run(["ip", "netns", "exec", self.name, *argv], check=check, **kwargs)

    def spawn(self, namespace: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside ``namespace`` (the node's or a pod's); it
        is killed when the sandbox closes."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", namespace, *argv], **kwargs)
        self.processes.append(proc)
        return proc

    def install(self) -> str:
        """Write the node's launchers into the sandbox (``cni-render install``)
        and run the plugin from there; what install printed."""
        self.plugin_dir = str(self.tmp / "bin")
        self.installed = install_launchers(self.plugin_dir)
        return self.installed

    # --- pods --------------------------------------------------------------

    def add_pod(self, ifname: str = "eth0", container_id: str | None = None) -> Pod:
        """A new pod namespace (lo up), named after the node."""
        name = f"{self.name}-p{self._made}"
        self._made += 1
        run(["ip", "netns", "add", name])
        pod = Pod(node=self, name=name, container_id=container_id or uuid.uuid4().hex * 2, ifname=ifname)
        self.pods.append(pod)
        pod.exec(["ip", "link", "set", "lo", "up"])
        return pod

    def remove_pod(self, pod: Pod) -> None:
        """Delete a pod's namespace (and with it its end of every veth)."""
        run(["ip", "netns", "del", pod.name], check=False)
        self.pods.remove(pod)

    def contain(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` with its stateDir and its IPAM's dataDir inside this sandbox."""
        contained = dict(config, stateDir=self.state_dir)
        if isinstance(contained.get("ipam"), dict):
            contained["ipam"] = dict(contained["ipam"], dataDir=self.data_dir)
        return contained

    # --- the plugin, as a runtime runs it --------------------------------------

    @property
    def plugin(self) -> list[str]:
        return [f"{self.plugin_dir}/cni-render"] if self.plugin_dir else list(CLI)

    def cni_env(
        self,
        command: str,
        pod: Pod | None = None,
        *,
        container_id: str | None = None,
        netns: str | None = None,
        ifname: str | None = None,
        cni_args: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The environment of one plugin call: a pod's IDs, then the
        explicit values, then ``extra_env``."""
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH), "CNI_COMMAND": command}
        if pod is not None:
            env.update(CNI_CONTAINERID=pod.container_id, CNI_NETNS=pod.netns, CNI_IFNAME=pod.ifname)
        for key, value in (("CNI_CONTAINERID", container_id), ("CNI_NETNS", netns), ("CNI_IFNAME", ifname),
                           ("CNI_ARGS", cni_args)):
            if value is not None:
                env[key] = value
        env["CNI_PATH"] = os.pathsep.join([self.plugin_dir or str(BIN_DIR), *self.search_path])
        env["CNI_RENDER_DAEMON_SOCKET"] = self.socket
        env.update(extra_env or {})
        return env

    def start(
        self,
        command: str,
        config: Mapping[str, Any] | bytes,
        pod: Pod | None = None,
        *,
        plugin: str | Sequence[str] | None = None,
        **env: Any,
    ) -> subprocess.Popen[bytes]:
        """Start one plugin process inside the node with ``config`` written to
        its stdin; its stdout and stderr are pipes. ``ip netns exec`` execs in
        place: the pid is the plugin's. ``env`` as for :meth:`cni_env`."""
        proc = self._popen(command, pod, plugin, env)
        assert proc.stdin is not None
        try:
            proc.stdin.write(_stdin(config))
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended before reading: its exit status says how
        proc.stdin = None  # written: communicate() reads stdout and stderr only
        return proc

    def cni(
        self,
        command: str,
        config: Mapping[str, Any] | bytes,
        pod: Pod | None = None,
        *,
        plugin: str | Sequence[str] | None = None,
        timeout: float = 60,
        **env: Any,
    ) -> CniCall:
        """Run the plugin inside the node, as a runtime would, and wait for it.
        ``env`` as for :meth:`cni_env` (container_id, netns, ifname, cni_args,
        extra_env)."""
        started = time.perf_counter()
        proc = self._popen(command, pod, plugin, env)
        try:
            out, err = proc.communicate(_stdin(config), timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return CniCall(proc.returncode, out.decode(), err.decode(), time.perf_counter() - started)

    def _popen(self, command: str, pod: Pod | None, plugin: str | Sequence[str] | None,
               env: Mapping[str, Any]) -> subprocess.Popen[bytes]:
        argv = [plugin] if isinstance(plugin, str) else list(plugin or self.plugin)
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=self.cni_env(command, pod, **env),
        )

    # --- connectivity ----------------------------------------------------------

    def serve_http(self, namespace: str, body: str = "It works!\n", port: int = 80) -> subprocess.Popen[str]:
        """An HTTP server in ``namespace`` answering ``body``; returns once it listens."""
        server: subprocess.Popen[str] = self.spawn(
            namespace, [sys.executable, "-I", "-c", SERVER, str(port), body],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 15)
        if not ready or server.stdout.readline().strip() != "ready":
            server.kill()
            _, err = server.communicate()
            raise SandboxError(f"the HTTP server on port {port} in {namespace} did not start: {err.strip()}")
        return server

    def http_get(self, address: str, source: Pod | None = None, port: int = 80, seconds: float = 5.0) -> str:
        """The body of ``GET /`` from ``address``, asked from the node or a pod,
        retried until ``seconds`` have passed."""
        namespace = source.name if source is not None else self.name
        proc = run(["ip", "netns", "exec", namespace, sys.executable, "-I", "-c", CLIENT, address, str(port),
                    str(seconds)], check=False, timeout=seconds + 10)
        if proc.returncode != 0:
            where = source.name if source is not None else "the node"
            raise SandboxError(f"GET http://{address}:{port}/ from {where}: {proc.stderr.strip()}")
        return str(proc.stdout)

    # --- what is there -------------------------------------------------------------

    def links(self) -> list[str]:
        return [link["ifname"] for link in json.loads(self.exec(["ip", "-j", "link", "show"]).stdout)]

    def pod_links(self, bridge: str = DEFAULT_BRIDGE) -> list[str]:
        """The node's links besides lo and the bridge set's shared bridge (kept by design)."""
        return [name for name in self.links() if name not in ("lo", bridge)]

    def routes(self, family: str = "-4") -> list[dict[str, Any]]:
        routes: list[dict[str, Any]] = json.loads(self.exec(["ip", "-j", family, "route", "show", "table", "all"]).stdout)
        return routes

    def allocations(self, network: str) -> list[str]:
        """Every file in the network's IPAM directory but its lock, cursors and
        temporary files: the addresses held."""
        directory = Path(self.data_dir) / network
        if not directory.is_dir():
            return []
        return sorted(
            p.name for p in directory.iterdir() if p.name != "lock" and not p.name.startswith(("last_reserved_ip.", "."))
        )

    # --- the node's daemon -----------------------------------------------------------

    def start_daemon(self, *args: str, seconds: float = 30.0, retry_refused: bool = False) -> subprocess.Popen[bytes]:
        """Start a daemon inside the node on :attr:`socket_path` (plugin calls are
        told about it from now on) and return once it listens. Its output goes
        to daemon.log. With ``retry_refused``, a start refused because the
        previous daemon still listens is tried again (as the kubelet restarts
        a container) until ``seconds`` have passed."""
        self.socket = self.socket_path
        deadline = time.monotonic() + seconds
        log_path = self.tmp / "daemon.log"
        env = {key: value for key, value in os.environ.items() if key != "CNI_COMMAND"}
        while True:
            offset = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                self.daemon = subprocess.Popen(
                    ["ip", "netns", "exec", self.name, *CLI, "daemon", "--socket", self.socket_path, *args],
                    stdout=log, stderr=log, env=env,
                )
            self.daemons.append(self.daemon)
            text = self._await_listening(self.daemon, log_path, offset, deadline)
            if text is None:
                return self.daemon
            if not retry_refused or "already listening" not in text or time.monotonic() > deadline:
                raise SandboxError(f"the daemon did not start: {text}")
            self.refused_starts += 1
            time.sleep(0.05)

    def _await_listening(self, daemon: subprocess.Popen[bytes], log_path: Path, offset: int,
                         deadline: float) -> str | None:
        """None once ``daemon`` listens, else what it logged before it ended."""
        while True:
            with open(log_path, "rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            if "listening on" in text:
                return None
            if daemon.poll() is not None:
                return text
            if time.monotonic() > deadline:
                return f"not listening after the deadline: {text}"
            time.sleep(0.02)

    def daemon_log(self) -> str:
        path = self.tmp / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def daemon_pids(self) -> list[int]:
        """The current daemon's processes: its master and every worker."""
        return descendants(self.daemon.pid) if self.daemon is not None else []

    def stop_daemon(self, seconds: float = 15.0) -> None:
        """SIGTERM to the current daemon; its whole tree is killed past ``seconds``."""
        if self.daemon is not None:
            _stop(self.daemon, seconds)
            self.daemon = None

    def stop_daemons(self, seconds: float = 30.0) -> None:
        """Every daemon started that still runs: SIGTERM to all at once, then
        each one's tree killed past ``seconds``."""
        running = [daemon for daemon in self.daemons if daemon.poll() is None]
        for daemon in running:
            daemon.send_signal(signal.SIGTERM)
        for daemon in running:
            _stop(daemon, seconds)
        self.daemon = None

    # --- the end -----------------------------------------------------------------------

    def close(self) -> None:
        """Remove every process, namespace and file of the sandbox; every step
        runs even when an earlier one failed."""
        failures: list[str] = []
        for step in (self._kill_processes, self.stop_daemons, self._delete_namespaces):
            try:
                step()
            except Exception as exc:  # the next steps still run
                failures.append(f"{step.__name__}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        if failures:
            raise SandboxError(f"closing {self.name}: {'; '.join(failures)}")

    def _kill_processes(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    def _delete_namespaces(self) -> None:
        for pod in list(self.pods):
            self.remove_pod(pod)
        run(["ip", "netns", "del", self.name], check=False)
        if os.path.exists(self.netns):
            raise SandboxError(f"{self.netns} is still there")


def _stop(proc: subprocess.Popen[bytes], seconds: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()


def pod_addresses(result: Mapping[str, Any]) -> list[str]:
    """The addresses of a CNI result, without their prefix lengths."""
    return [ip["address"].split("/")[0] for ip in result.get("ips", [])]


def _stdin(config: Mapping[str, Any] | bytes) -> bytes:
    return config if isinstance(config, bytes) else json.dumps(config).encode()
