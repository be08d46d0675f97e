"""One daemon worker process: it accepts callers on the socket the master
shares, pins and judges each (:mod:`cni_render.fastpath.peer`), reads its
request within a deadline, acknowledges, and runs the call in a thread through
the very same :func:`cni_render.commands.dispatch.handle` the plugin would run
in-process. Calls are capped per worker and per caller.

A call is acknowledged before it runs, so a client can tell "never started"
from "died during it". On stop the worker accepts nothing more; calls in flight
finish within a deadline or are answered with code 11. A call whose thread
could not return to the node's network namespace fails with code 11 and the
worker retires (exit status 3) once its other calls are done.
"""

from __future__ import annotations

import errno
import io
import os
import select
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from cni_render.commands.dispatch import handle
from cni_render.fastpath.peer import Peer, Prepared, pin_peer, prepare
from cni_render.fastpath.wire import (
    ACK,
    BUSY,
    MAX_LINE,
    REFUSED,
    RequestError,
    WireRequest,
    decode_request,
    encode_answer,
    encode_first_line,
    error_document,
    identity,
    parse_request_header,
)
from cni_render.host import system

REQUEST_SECONDS = 5.0  # a caller sends its whole request at once
SEND_SECONDS = 30.0
STOP_SECONDS = 20.0  # below Kubernetes' default 30 s grace period
RETIRE_SECONDS = 240.0  # a retiring worker lets its other calls finish
RETIRED = 3  # the exit status the master reads as "retired", not "died"
MAX_CALLS = 128  # per worker: calls being read or run
MAX_CALLS_PER_CALLER = 4  # per caller process (a runtime starts one plugin process per call)


def _receive(sock: socket.socket, deadline: float, until: Callable[[bytes], bool], limit: int) -> bytes:
    received = b""
    while not until(received):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or len(received) > limit:
            raise RequestError("the request was cut short")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(1 << 16, limit + 1 - len(received)))
        except (socket.timeout, OSError):
            raise RequestError("the request was cut short") from None
        if not chunk:
            raise RequestError("the request was cut short")  # never act on half a request
        received += chunk
    return received


def read_request(sock: socket.socket, seconds: float = REQUEST_SECONDS) -> WireRequest:
    deadline = time.monotonic() + seconds
    received = _receive(sock, deadline, lambda data: b"\n" in data, MAX_LINE)
    line, _, rest = received.partition(b"\n")
    header = parse_request_header(line)
    _, env_length, stdin_length = header
    total = env_length + stdin_length
    body = rest + (_receive(sock, deadline, lambda data: len(data) >= total - len(rest), total) if len(rest) < total else b"")
    return decode_request(header, body)


@dataclass(eq=False)
class Call:
    sock: socket.socket
    peer: Peer
    lock: threading.Lock = field(default_factory=threading.Lock)
    stdin: bytes = b""
    acknowledged: bool = False
    answered: bool = False

    def send(self, data: bytes, final: bool = False) -> bool:
        """Write, unless the call was already answered; ``final`` ends it.
        False when nothing was written (answered before, or the caller is gone)."""
        with self.lock:
            if self.answered:
                return False
            self.answered = final
            try:
                self.sock.settimeout(SEND_SECONDS)
                self.sock.sendall(data)
            except OSError:
                return False
            return True

    def abandon(self) -> None:
        """At the stop deadline: code 11 when the call had started, then hang up."""
        if self.acknowledged:
            details = "the cni-render daemon stopped before the call finished; the call may have run"
            self.send(encode_answer(1, error_document(self.stdin, 11, "Try again later", details), b""), final=True)
        with self.lock:
            self.answered = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _turn_away(sock: socket.socket, word: bytes, reason: str) -> None:
    """Say why in one non-blocking write and close: nothing is read, nothing waits."""
    try:
        sock.send(encode_first_line(word, reason), socket.MSG_DONTWAIT)
    except OSError:
        pass
    sock.close()


class Worker:
    """One worker process: accepts, authenticates, and runs calls in threads."""

    def __init__(self, listener: socket.socket, log: Any = sys.stderr, stop_seconds: float = STOP_SECONDS):
        self.listener = listener
        self.log = log
        self.stop_seconds = stop_seconds
        self.home = identity("/proc/thread-self/ns/net")
        system.keep_uplink_mtu()  # per process: each worker has its own change feed
        self.calls: set[Call] = set()
        self.per_caller: dict[int, int] = {}
        self.changed = threading.Condition()
        self.stopping = threading.Event()
        self.retiring = ""
        self.wake_read, self.wake_write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def stop(self, retiring: str = "") -> None:
        if retiring and not self.retiring:
            self.retiring = retiring
        self.stopping.set()
        try:
            os.write(self.wake_write, b"x")
        except OSError:
            pass

    def serve(self) -> int:
        """Serve until stopped; 0 after a stop, RETIRED after retiring."""
        poller = select.poll()
        poller.register(self.wake_read, select.POLLIN)
        listening = False
        while not self.stopping.is_set():
            with self.changed:
                room = len(self.calls) < MAX_CALLS
            if room != listening:  # at the cap, leave new callers to the other workers
                if room:
                    poller.register(self.listener.fileno(), select.POLLIN)
                else:
                    poller.unregister(self.listener.fileno())
                listening = room
            for fd, _ in poller.poll(200):
                if fd == self.listener.fileno():
                    self._accept()
        self._finish()
        return RETIRED if self.retiring else 0

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # the master shut the socket: stopping
                self.stop()
            elif exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
                time.sleep(0.05)
            return
        sock.setblocking(True)
        peer = pin_peer(sock)
        if isinstance(peer, str):
            _turn_away(sock, REFUSED, peer)
            return
        call = Call(sock, peer)
        with self.changed:
            if self.per_caller.get(peer.pid, 0) >= MAX_CALLS_PER_CALLER:
                peer.close()
                _turn_away(sock, BUSY, "too many connections from this process")
                return
            self.per_caller[peer.pid] = self.per_caller.get(peer.pid, 0) + 1
            self.calls.add(call)
        threading.Thread(target=self._serve_call, args=(call,), daemon=True).start()

    def _serve_call(self, call: Call) -> None:
        try:
            self._run(call)
        except Exception:
            self.write_log(f"cni-render daemon: a call failed: {traceback.format_exc()}")
        finally:
            with self.changed:
                self.calls.discard(call)
                left = self.per_caller.get(call.peer.pid, 1) - 1
                if left:
                    self.per_caller[call.peer.pid] = left
                else:
                    self.per_caller.pop(call.peer.pid, None)
                self.changed.notify_all()
            call.peer.close()
            call.sock.close()

    def _run(self, call: Call) -> None:
        try:
            request = read_request(call.sock)
            call.stdin = request.stdin
            prepared = prepare(call.peer, request)
        except RequestError as exc:
            call.send(encode_first_line(REFUSED, str(exc)), final=True)
            return
        try:
            if self.stopping.is_set():
                call.send(encode_first_line(BUSY, "the daemon is stopping"), final=True)
                return
            if not call.send(encode_first_line(ACK)):
                return  # the caller is gone before the call started: nothing runs
            call.acknowledged = True
            started = time.perf_counter()
            code, stdout, stderr = self._execute(prepared, request)
        finally:
            prepared.close()
        call.send(encode_answer(code, prepared.restore(stdout), prepared.restore(stderr)), final=True)
        self.note(request.environ, code, time.perf_counter() - started)

    def _execute(self, prepared: Prepared, request: WireRequest) -> tuple[int, bytes, bytes]:
        log = io.StringIO()
        outcome = handle(prepared.environ, request.stdin, log)
        stdout = (outcome.stdout + "\n").encode() if outcome.stdout else b""
        if identity("/proc/thread-self/ns/net") != self.home:
            # system.in_netns could not return this thread to the node: whatever it
            # did next happened elsewhere. Fail the call; a fresh worker takes over.
            self.stop(retiring="a call could not return to the node's network namespace")
            details = "the daemon lost its network namespace during the call; a new worker takes over"
            return 1, error_document(request.stdin, 11, "Try again later", details), log.getvalue().encode()
        return outcome.exit_code, stdout, (prepared.note + log.getvalue()).encode()

    def _finish(self) -> None:
        """Stop accepting; let the calls in flight finish, answer the rest."""
        self.listener.close()
        deadline = time.monotonic() + (RETIRE_SECONDS if self.retiring else self.stop_seconds)
        with self.changed:
            while self.calls and time.monotonic() < deadline:
                self.changed.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            unfinished = list(self.calls)
        for call in unfinished:
            call.abandon()
        if self.retiring:
            self.write_log(f"cni-render daemon: worker {os.getpid()} retires: {self.retiring}\n")

    def note(self, environ: dict[str, str], exit_code: int, seconds: float) -> None:
        self.write_log(
            f"cni-render daemon: {environ.get('CNI_COMMAND')} {environ.get('CNI_CONTAINERID', '')}"
            f"/{environ.get('CNI_IFNAME', '')} -> {exit_code} in {seconds * 1000:.1f} ms\n"
        )

    def write_log(self, text: str) -> None:
        try:
            self.log.write(text)
            self.log.flush()
        except (OSError, ValueError):
            pass
