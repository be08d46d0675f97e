"""The node-local cni-render daemon's master: the plugin with everything already loaded.

A fresh Python process per CNI call spends most of its time importing Jinja2
and jsonschema. The daemon keeps them loaded, with compiled templates and
validated configs cached. The master claims the socket (its directory must be
root's alone; a stale socket of an earlier daemon is removed, a live one is
left alone), imports what every call needs, binds, and forks the workers
(:mod:`cni_render.fastpath.worker`), which share the socket and serve the calls;
a worker that dies or retires is replaced. The ``cni-render`` executable is a
thin client (the C shim or :mod:`cni_render.fastpath.client`); whom the daemon
acts for is :mod:`cni_render.fastpath.peer`, the protocol :mod:`cni_render.fastpath.wire`.

SIGTERM stops accepting at once (the socket is shut and removed, so a new
daemon may bind); calls in flight finish within a deadline or are answered
with code 11.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import sys
import threading
import time

from cni_render.fastpath.worker import RETIRED, STOP_SECONDS, Worker
from cni_render.host.procfs import memory_pss_kib

MAX_WORKERS = 8
DEFAULT_WORKERS = 4
LISTEN_BACKLOG = 256
PSS_LOG_SECONDS = 3600.0


def check_socket_directory(directory: str) -> None:
    """The socket's directory must be root's and writable by nobody else."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise SystemExit(f"cni-render daemon: {directory} is not a directory")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise SystemExit(
            f"cni-render daemon: {directory} must be owned by uid {os.geteuid()} and writable by nobody else "
            f"(it is uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
        )


def _claim(path: str) -> None:
    """Remove our own stale socket; refuse to start next to a live daemon or
    to touch anything that is not a socket."""
    check_socket_directory(os.path.dirname(os.path.abspath(path)))
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SystemExit(f"cni-render daemon: {path} exists and is not a socket; remove it yourself")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # a socket nobody listens on: a daemon before this one
        return
    finally:
        probe.close()
    raise SystemExit(f"cni-render daemon: another daemon is already listening on {path}")


def _listen(path: str) -> tuple[socket.socket, tuple[int, int]]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)  # the socket is born 0600: root only
    try:
        listener.bind(path)
    finally:
        os.umask(previous)
    st = os.lstat(path)
    listener.listen(LISTEN_BACKLOG)
    listener.setblocking(False)  # workers race for accept(); losers go back to waiting
    return listener, (st.st_dev, st.st_ino)


def _unlink_own(path: str, bound: tuple[int, int]) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) == bound:
        os.unlink(path)


def _warm_up() -> None:
    """Import what every call needs, before the first pod waits for it."""
    import ctypes  # noqa: F401
    import json  # noqa: F401

    import jinja2  # noqa: F401
    import jsonschema  # noqa: F401

    from cni_render.commands import add, check, delete, gc, status  # noqa: F401
    from cni_render.datapath import render  # noqa: F401
    from cni_render.host import netlink  # noqa: F401


def worker_count(requested: int = 0) -> int:
    """Workers: as asked, else one per CPU, between 2 and 4; never more than 8."""
    if requested > 0:
        return min(requested, MAX_WORKERS)
    return max(2, min(os.cpu_count() or 2, DEFAULT_WORKERS))


def _start_worker(listener: socket.socket, stop_seconds: float) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            worker = Worker(listener, stop_seconds=stop_seconds)
            signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop())
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            code = worker.serve()
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


class Master:
    """The parent of the workers: it holds the socket, replaces a worker that
    dies or retires, and on SIGTERM shuts the socket and waits for them."""

    def __init__(self, path: str, workers: int, stop_seconds: float):
        self.path = path
        self.workers = workers
        self.stop_seconds = stop_seconds
        self.stopping = threading.Event()
        self.children: set[int] = set()

    def run(self) -> int:
        _claim(self.path)
        _warm_up()
        listener, bound = _listen(self.path)
        signal.signal(signal.SIGTERM, lambda signum, frame: self.stopping.set())
        signal.signal(signal.SIGINT, lambda signum, frame: self.stopping.set())
        self.children = {_start_worker(listener, self.stop_seconds) for _ in range(self.workers)}
        log(f"listening on {self.path} (pid {os.getpid()}, {self.workers} workers)")
        try:
            self._supervise(listener)
        finally:
            self._stop(listener, bound)
        return 0

    def _supervise(self, listener: socket.socket) -> None:
        next_report = time.monotonic() + 2.0
        while not self.stopping.is_set():
            self._reap(listener)
            if time.monotonic() >= next_report:
                log(f"memory: {memory_pss_kib([os.getpid(), *self.children]) / 1024:.1f} MiB PSS in {1 + len(self.children)} processes")
                next_report = time.monotonic() + PSS_LOG_SECONDS
            self.stopping.wait(0.2)

    def _reap(self, listener: socket.socket) -> None:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid not in self.children:
            return
        self.children.discard(pid)
        if self.stopping.is_set():
            return
        retired = os.WIFEXITED(status) and os.WEXITSTATUS(status) == RETIRED
        log(f"worker {pid} {'retired' if retired else 'died'}; starting another")
        self.children.add(_start_worker(listener, self.stop_seconds))

    def _stop(self, listener: socket.socket, bound: tuple[int, int]) -> None:
        try:
            listener.shutdown(socket.SHUT_RDWR)  # connect() is refused from now on, in every worker
        except OSError:
            pass
        _unlink_own(self.path, bound)  # a new daemon may bind at once
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.stop_seconds + 3.0
        while self.children:
            for pid in list(self.children):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    self.children.discard(pid)
            if time.monotonic() > deadline:
                for pid in self.children:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                break
            time.sleep(0.05)
        listener.close()
        log("stopped")


def log(message: str) -> None:
    sys.stderr.write(f"cni-render daemon: {message}\n")
    sys.stderr.flush()


def serve(path: str, workers: int = 0, stop_seconds: float = STOP_SECONDS) -> int:
    """Listen on ``path`` with ``workers`` processes (default 2 to 4 by CPUs).

    The master imports everything, binds the socket and forks the workers,
    which share the socket and each serve calls in threads; a worker that
    dies or retires is replaced. SIGTERM: the socket refuses new callers at
    once and is removed, calls in flight get ``stop_seconds`` to finish.
    """
    return Master(path, worker_count(workers), stop_seconds).run()
