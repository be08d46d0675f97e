"""Helpers for the daemon and shim tests: starting a node's daemon with
arguments, finding its processes, waiting with a deadline, and a scripted
stand-in daemon for the client side of the protocol."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

from throwaway import Node, run


def start_daemon(node: Node, *args: str) -> subprocess.Popen:
    """The node's daemon with extra arguments; node.socket names its socket."""
    node.mode = "daemon"
    return node.start_daemon(*args)


def wait_for(predicate: Callable[[], object], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def daemon_master(node: Node) -> int:
    """The daemon's master process (the node's daemon runs under `ip netns exec`)."""
    pids = run(["pgrep", "-f", f"daemon --socket {node.socket}"]).stdout.split()
    children = {int(p): run(["ps", "-o", "ppid=", "-p", p], check=False).stdout.strip() for p in pids}
    return next(p for p, parent in children.items() if int(parent or 0) not in children)


class FakeDaemon:
    """Listens on ``path`` (as root) and answers every whole request with
    ``script``: the bytes to write, after which it hangs up."""

    def __init__(self, path: Path, script: bytes):
        self.path = str(path)
        self.script = script
        self.requests: list[bytes] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while True:
                    chunk = connection.recv(1 << 16)
                    if not chunk:
                        break
                    request += chunk
                self.requests.append(request)
                connection.sendall(self.script)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        os.unlink(self.path)
