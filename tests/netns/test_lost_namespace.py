"""A thread that cannot return from a pod's network namespace (issue 9 item 5).

system.in_netns must never let the thread go on in the wrong namespace, and
must not end the process either (a daemon worker serves other calls): the
thread is parked in a fresh, empty namespace, where nothing it does can touch
a node or a pod, and LostNamespace (a BaseException: no ``except Exception``
and no rollback runs on it) ends the call. The call fails with a CNI error;
the daemon answers code 11 and retires the worker; the runtime's DEL cleans up.
"""

from __future__ import annotations

import ctypes
import errno
import io
import json
import os
import socket
import threading
from typing import Any, Callable

import pytest

from cni_render.cni.errors import LostNamespace
from cni_render.commands.dispatch import handle
from cni_render.fastpath.peer import Prepared
from cni_render.fastpath.wire import WireRequest
from cni_render.fastpath.worker import Worker
from cni_render.host import system
from throwaway import Node


def identity(path: str = "/proc/thread-self/ns/net") -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def enter(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert libc.setns(fd, 0x40000000) == 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(fd)


def never_back_to(monkeypatch: pytest.MonkeyPatch, home: str) -> None:
    """setns into ``home`` fails, as it might on the way back from a pod."""
    real, forbidden = system._setns, identity(home)

    def setns(fd: int) -> None:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == forbidden:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
        real(fd)

    monkeypatch.setattr(system, "_setns", setns)


def in_thread(work: Callable[[], Any]) -> Any:
    """``work``'s return value or exception, run in a thread of its own (the
    thread may end up stranded; the test's own thread never does)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - LostNamespace is one
            outcome["raised"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    if "raised" in outcome:
        raise outcome["raised"]
    return outcome["value"]


def test_a_thread_that_cannot_return_is_parked_in_an_empty_namespace(plain_node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    pod = plain_node.add_pod()

    def stranded() -> dict[str, Any]:
        enter(plain_node.netns)
        seen: dict[str, Any] = {"home": identity()}
        never_back_to(monkeypatch, plain_node.netns)
        try:
            with system.in_netns(pod.netns):
                seen["pod"] = identity()
        except LostNamespace as exc:
            seen["raised"] = exc
        seen["after"] = identity()
        seen["links"] = [name for _, name in socket.if_nameindex()]
        return seen

    seen = in_thread(stranded)
    assert not isinstance(seen["raised"], Exception)  # no `except Exception` swallows it
    assert pod.netns in str(seen["raised"]) and "Cannot allocate memory" in str(seen["raised"])
    assert seen["after"] not in (seen["home"], seen["pod"], identity("/proc/self/ns/net"))
    assert seen["links"] == ["lo"]  # a fresh namespace: nothing real to touch


def failed_add(node: Node, monkeypatch: pytest.MonkeyPatch, call: Callable[[dict[str, str], bytes], Any]) -> Any:
    """An ADD whose thread cannot return from the pod to the node."""
    pod = node.add_pod()
    environ = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": pod.container_id, "CNI_IFNAME": "eth0",
               "CNI_NETNS": pod.netns, "CNI_PATH": "/nonexistent"}
    stdin = json.dumps(node.config()).encode()

    def add() -> Any:
        enter(node.netns)
        never_back_to(monkeypatch, node.netns)
        return call(environ, stdin)

    answer = in_thread(add)
    monkeypatch.undo()
    # No rollback ran: the node end and the address stay until the runtime's DEL.
    assert any(name.startswith("cr") for name in node.links()) and node.allocations()
    node.cni("DEL", node.config(), pod).ok()
    assert node.pod_links() == [] and node.allocations() == []
    return answer


def test_in_process_the_call_fails_with_a_cni_error_and_nothing_runs_after(plain_node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = failed_add(plain_node, monkeypatch, lambda environ, stdin: handle(environ, stdin, io.StringIO()))
    error = json.loads(outcome.stdout)
    assert outcome.exit_code == 1 and error["code"] == 999 and error["cniVersion"] == "1.0.0"
    assert "cannot return to its own network namespace" in error["details"]


def test_in_the_daemon_the_call_gets_code_11_and_the_worker_retires(tmp_path: Any, plain_node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen(4)
    listener.setblocking(False)
    workers: list[Worker] = []

    def execute(environ: dict[str, str], stdin: bytes) -> Any:
        workers.append(Worker(listener, log=io.StringIO(), stop_seconds=5))  # at home in the node
        return workers[0]._execute(Prepared(environ), WireRequest("-", environ, stdin))

    code, stdout, _ = failed_add(plain_node, monkeypatch, execute)
    assert code == 1 and json.loads(stdout)["code"] == 11
    assert "lost its network namespace" in json.loads(stdout)["details"]
    assert workers[0].retiring
    assert workers[0].serve() == 3
