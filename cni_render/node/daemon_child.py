"""The node daemon as the agent's child process.

The agent starts ``cni-render daemon --socket /run/cni-render/daemon.sock``,
relays its stderr (one line per CNI call, counted in :mod:`.metrics`), asks
it STATUS for the node's network the way a runtime would, restarts it if it
dies, and on SIGTERM lets it finish the calls in flight before it goes.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

from cni_render.fastpath.client import SOCKET_VARIABLE, ask_daemon
from cni_render.host import system
from cni_render.node.metrics import Metrics

STOP_SECONDS = 25.0  # within the pod's terminationGracePeriodSeconds (30)


def daemon_status(socket_path: str, plugin_config: bytes) -> str | None:
    """None when the daemon at ``socket_path`` answers STATUS with success for
    ``plugin_config``; else why not (no daemon, a refusal, its CNI error)."""
    environ = {"CNI_COMMAND": "STATUS", SOCKET_VARIABLE: socket_path, "CNI_PATH": "/opt/cni/bin"}
    answer = ask_daemon(environ, plugin_config)
    if not isinstance(answer, tuple):
        return str(getattr(answer, "reason", answer))
    code, stdout, stderr = answer
    if code == 0:
        return None
    return f"STATUS failed (exit {code}): {(stdout or stderr).decode(errors='replace').strip()}"


class DaemonChild:
    def __init__(self, socket_path: str, metrics: Metrics, log: TextIO = sys.stderr):
        self.socket_path = socket_path
        self.metrics = metrics
        self.log = log
        self.process: system.Process | None = None
        self.started = 0

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "cni_render", "daemon", "--socket", self.socket_path]

    def start(self) -> None:
        os.makedirs(os.path.dirname(self.socket_path), mode=0o755, exist_ok=True)
        self.process = system.start_process(self.argv())
        self.started += 1
        threading.Thread(target=self._relay, args=(self.process,), name="daemon-log", daemon=True).start()

    def _relay(self, process: system.Process) -> None:
        assert process.stderr is not None  # start_process gives it a pipe
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            self.metrics.count_daemon_line(line)
            self.log.write(line)
            self.log.flush()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ensure_running(self) -> bool:
        """Start the daemon again if it died; True when it had to."""
        if self.alive():
            return False
        if self.process is not None:
            self.log.write(f"cni-render node: the daemon exited ({self.process.returncode}); starting it again\n")
            self.metrics.daemon_restarts.inc()
        self.start()
        return True

    def wait_until_status(self, plugin_config: bytes, timeout: float) -> str | None:
        """Wait for a successful STATUS; None, or the last reason it failed."""
        deadline = time.monotonic() + timeout
        while True:
            problem = daemon_status(self.socket_path, plugin_config)
            if problem is None:
                return None
            if not self.alive():
                return f"the daemon exited ({self.process.returncode if self.process else 'never started'})"
            if time.monotonic() >= deadline:
                return problem
            time.sleep(0.2)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGTERM: the daemon finishes its calls in flight and removes its socket."""
        process = self.process
        if process is None or not self.alive():
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except Exception:  # subprocess.TimeoutExpired, without importing subprocess here
            process.kill()
            process.wait()
