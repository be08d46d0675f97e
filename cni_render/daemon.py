"""The node-local cni-render daemon: the plugin with everything already loaded.

A fresh Python process per CNI call spends most of its time importing Jinja2
and jsonschema. The daemon keeps them loaded, with compiled templates and
validated configs cached, and runs each call in a thread through the very
same :func:`cni_render.dispatch.handle` the plugin would run in-process. The
``cni-render`` executable becomes a thin client (:mod:`cni_render.client`)
that falls back to in-process work whenever no daemon answers.

It acts only for callers the kernel vouches for: the peer process
(SO_PEERCRED) must be root with CAP_NET_ADMIN and CAP_SYS_ADMIN in the
daemon's user namespace, and its network namespace and filesystem root, read
from /proc/<pid>, must be the daemon's own; what the caller says about itself
(the request header) can only make the daemon refuse. Anyone refused works
in-process, with its own privileges.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from typing import Any

from .client import PROTOCOL, world
from .dispatch import handle

MAX_HEADER = 4096
MAX_PAYLOAD = 16 << 20


class RequestError(Exception):
    pass


CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def _peer(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the connected process, from the kernel."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", credentials)
    return pid, uid


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def peer_problem(pid: int, uid: int) -> str | None:
    """Why the daemon must not act for this peer, or None."""
    if uid != 0:
        return "only root may use the cni-render daemon"
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        effective = int(fields["CapEff"].strip(), 16)
    except (OSError, KeyError, ValueError):
        return "the caller's process cannot be inspected (another PID namespace?)"
    if not (effective >> CAP_NET_ADMIN) & 1 or not (effective >> CAP_SYS_ADMIN) & 1:
        return "the caller lacks CAP_NET_ADMIN or CAP_SYS_ADMIN"
    for kind, label in (("user", "user namespace"), ("net", "network namespace")):
        if _identity(f"/proc/{pid}/ns/{kind}") != _identity(f"/proc/thread-self/ns/{kind}"):
            return f"the caller is in another {label}"
    if _identity(f"/proc/{pid}/root") != _identity("/"):
        return "the caller has another filesystem root"
    return None


def decode_environment(data: bytes) -> dict[str, str]:
    environ = {}
    for pair in data.split(b"\0"):
        if not pair:
            continue
        key, sep, value = pair.partition(b"=")
        if sep:
            environ[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
    return environ


class Handler(socketserver.StreamRequestHandler):
    server: DaemonServer

    def handle(self) -> None:
        try:
            environ, stdin = self._read_request()
        except RequestError as exc:
            self.wfile.write(f"REFUSED {exc}\n".encode())
            self.wfile.flush()
            self._drain()  # closing with unread input would reset the connection
            return
        started = time.perf_counter()
        log = io.StringIO()
        outcome = handle(environ, stdin, log)
        stdout = (outcome.stdout + "\n").encode() if outcome.stdout else b""
        stderr = log.getvalue().encode()
        self.wfile.write(f"{outcome.exit_code} {len(stdout)} {len(stderr)}\n".encode() + stdout + stderr)
        self.server.note(environ, outcome.exit_code, time.perf_counter() - started)

    def _drain(self) -> None:
        try:
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(5)
            received = 0
            while received <= 2 * MAX_PAYLOAD:
                chunk = self.request.recv(1 << 16)
                if not chunk:
                    return
                received += len(chunk)
        except OSError:
            pass

    def _read_request(self) -> tuple[dict[str, str], bytes]:
        problem = peer_problem(*_peer(self.request))
        if problem:
            raise RequestError(problem)
        header = self.rfile.readline(MAX_HEADER).split()
        if len(header) != 6 or header[0] != PROTOCOL:
            raise RequestError("unknown protocol")
        _, net, root, netns, env_length, stdin_length = header
        try:
            sizes = int(env_length), int(stdin_length)
        except ValueError:
            raise RequestError("unknown protocol") from None
        if any(size < 0 or size > MAX_PAYLOAD for size in sizes):
            raise RequestError("request too large")
        env_bytes, stdin = self.rfile.read(sizes[0]), self.rfile.read(sizes[1])
        if (len(env_bytes), len(stdin)) != sizes:
            raise RequestError("the request was cut short")  # never act on half a request
        environ = decode_environment(env_bytes)
        mine = world(environ.get("CNI_NETNS", ""))
        theirs = (net.decode(), root.decode(), netns.decode())
        if mine[0] != theirs[0]:
            raise RequestError("the caller is in another network namespace")
        if mine[1] != theirs[1]:
            raise RequestError("the caller has another filesystem root")
        if mine[2] != theirs[2]:
            raise RequestError("the caller and the daemon see different CNI_NETNS files")
        return environ, stdin


class DaemonServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False  # a stopping worker finishes the calls in flight
    block_on_close = True
    allow_reuse_address = False
    request_queue_size = 256

    def __init__(self, path: str, log: Any = sys.stderr):
        self.path = path
        self.log = log
        previous = os.umask(0o177)  # the socket is born 0600: root only
        try:
            super().__init__(path, Handler)
        finally:
            os.umask(previous)

    def note(self, environ: dict[str, str], exit_code: int, seconds: float) -> None:
        self.log.write(
            f"cni-render daemon: {environ.get('CNI_COMMAND')} {environ.get('CNI_CONTAINERID', '')}"
            f"/{environ.get('CNI_IFNAME', '')} -> {exit_code} in {seconds * 1000:.1f} ms\n"
        )
        self.log.flush()


def _claim(path: str) -> None:
    """Remove a stale socket; refuse to start next to a live daemon."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SystemExit(f"cni-render daemon: another daemon is already listening on {path}")


def _warm_up() -> None:
    """Import what every call needs, before the first pod waits for it."""
    import jinja2  # noqa: F401
    import jsonschema  # noqa: F401

    from . import netlink, render  # noqa: F401
    from .commands import add, check, delete, gc, status  # noqa: F401


def _worker(server: DaemonServer) -> None:
    """A worker process: serve until the master tells it to stop."""
    signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=server.shutdown, daemon=True).start())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        server.serve_forever(poll_interval=0.5)
        server.server_close()  # waits for the calls in flight
    finally:
        os._exit(0)


def _start_worker(server: DaemonServer) -> int:
    pid = os.fork()
    if pid == 0:
        _worker(server)
    return pid


def serve(path: str, workers: int = 0) -> int:
    """Listen on ``path`` with ``workers`` processes (default: one per CPU).

    The master imports everything, binds the socket and forks the workers,
    which share the socket and each serve calls in threads; a worker that
    dies is replaced. SIGTERM stops them all and removes the socket.
    """
    workers = workers or max(2, os.cpu_count() or 2)
    _claim(path)
    _warm_up()
    server = DaemonServer(path)
    server.socket.setblocking(False)  # workers race for accept(); losers go back to waiting
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = {_start_worker(server) for _ in range(workers)}
    sys.stderr.write(f"cni-render daemon: listening on {path} (pid {os.getpid()}, {workers} workers)\n")
    sys.stderr.flush()
    try:
        while not stopping.is_set():
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if pid in children:
                children.discard(pid)
                if not stopping.is_set():
                    sys.stderr.write(f"cni-render daemon: worker {pid} died; starting another\n")
                    children.add(_start_worker(server))
            stopping.wait(0.2)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        server.server_close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sys.stderr.write("cni-render daemon: stopped\n")
    return 0
