"""The node-local cni-render daemon: the plugin with everything already loaded.

A fresh Python process per CNI call spends most of its time importing Jinja2
and jsonschema. The daemon keeps them loaded, with compiled templates and
validated configs cached, and runs each call in a thread through the very
same :func:`cni_render.commands.dispatch.handle` the plugin would run in-process. The
``cni-render`` executable becomes a thin client (the C shim or
:mod:`cni_render.fastpath.client`); the protocol is in :mod:`cni_render.fastpath.wire`.

Who it acts for, decided from what the kernel says before a byte is read: the
peer process (SO_PEERCRED, pinned with a pidfd) must be root with
CAP_NET_ADMIN and CAP_SYS_ADMIN, in the daemon's user and network namespace.
Its filesystem may be another (the daemon runs in a DaemonSet pod, the caller
is the node's container runtime): the daemon opens the caller's ``CNI_NETNS``
inside the caller's root (/proc/<pid>/root), checks it is the file the caller
saw (dev:ino), and the call acts on that descriptor only. Anyone else is
turned away at once and costs nothing.

A call is acknowledged before it runs, so a client can tell "never started"
from "died during it". SIGTERM stops accepting at once; calls in flight finish
within a deadline or are answered with code 11.
"""

from __future__ import annotations

import errno
import io
import os
import re
import select
import signal
import socket
import stat
import struct
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from cni_render.cni.request import NETNS_PATH_RE
from cni_render.commands.dispatch import handle
from cni_render.fastpath.wire import (
    ACK,
    BUSY,
    MAX_LINE,
    MAX_PAYLOAD,
    PROTOCOL,
    REFUSED,
    error_document,
    identity,
)
from cni_render.host.procfs import memory_pss_kib

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux 6.5+
REQUEST_SECONDS = 5.0  # a caller sends its whole request at once
SEND_SECONDS = 30.0
STOP_SECONDS = 20.0  # below Kubernetes' default 30 s grace period
RETIRE_SECONDS = 240.0  # a retiring worker lets its other calls finish
MAX_WORKERS = 8
DEFAULT_WORKERS = 4
MAX_CALLS = 128  # per worker: calls being read or run
MAX_CALLS_PER_CALLER = 4  # per caller process (a runtime starts one plugin process per call)
LISTEN_BACKLOG = 256
NETNS_COMMANDS = ("ADD", "CHECK", "DEL")
PSS_LOG_SECONDS = 3600.0


class RequestError(Exception):
    pass


class NamespaceLost(Exception):
    pass


def _credentials(sock: socket.socket) -> tuple[int, int]:
    """(pid, uid) of the connected process, from the kernel."""
    credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", credentials)
    return pid, uid


def _same(path: str, mine: str) -> bool:
    theirs = identity(path)
    return theirs != "-" and theirs == identity(mine)


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
        if not _same(f"/proc/{pid}/ns/{kind}", f"/proc/thread-self/ns/{kind}"):
            return f"the caller is in another {label}"
    return None


@dataclass
class Peer:
    """The calling process, pinned: its pid cannot be reused while ``pidfd`` is open
    and :meth:`alive` says it is still the process that connected."""

    pid: int
    pidfd: int

    def alive(self) -> bool:
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        os.close(self.pidfd)


def _pidfd(sock: socket.socket, pid: int) -> int:
    """A pidfd of the peer: the one the kernel took at connect() where it can
    (SO_PEERPIDFD), else pidfd_open right after accept()."""
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as exc:
        if exc.errno not in (errno.ENOPROTOOPT, errno.EOPNOTSUPP):
            raise
        pidfd = os.pidfd_open(pid)
    os.set_inheritable(pidfd, False)
    return pidfd


def pin_peer(sock: socket.socket) -> Peer | str:
    """The authenticated caller, or why it is turned away; nothing is read."""
    pid, uid = _credentials(sock)
    if uid != 0:
        return "only root may use the cni-render daemon"
    try:
        peer = Peer(pid, _pidfd(sock, pid))
    except OSError:
        return "the caller is gone"
    problem = "the caller is gone" if not peer.alive() else peer_problem(pid, uid)
    if problem is None and not peer.alive():  # what /proc said was about the caller
        problem = "the caller is gone"
    if problem is not None:
        peer.close()
        return problem
    return peer


# -- CNI_NETNS, opened in the caller's filesystem ----------------------------

_RESOLVE_IN_ROOT = 0x10
_SYS_OPENAT2 = 437  # the same number on every architecture
_LIBC: list[Any] = []


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    import ctypes

    if not _LIBC:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _LIBC.append(libc)
    how = ctypes.create_string_buffer(struct.pack("QQQ", flags, 0, resolve), 24)
    fd = _LIBC[0].syscall(
        ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), ctypes.c_char_p(os.fsencode(path)), how, ctypes.c_size_t(24)
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return int(fd)


def open_in_root(root: int, path: str) -> int:
    """Open ``path`` as the process whose root directory is ``root`` would:
    symlinks and ``..`` resolve inside that root. A final magic link
    (``/proc/PID/ns/net``) is followed from its directory inside the root."""
    flags = os.O_RDONLY | os.O_CLOEXEC
    try:
        return _openat2(root, path, flags, _RESOLVE_IN_ROOT)
    except OSError as exc:
        if exc.errno == errno.ENOSYS:  # before Linux 5.6: the dev:ino check still guards
            return os.open(f"/proc/self/fd/{root}/{path.lstrip('/')}", flags)
        if exc.errno not in (errno.ELOOP, errno.EXDEV):
            raise
    parent, name = os.path.split(path)
    directory = _openat2(root, parent or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, _RESOLVE_IN_ROOT)
    try:
        return os.open(name, flags, dir_fd=directory)
    finally:
        os.close(directory)


def open_caller_netns(peer: Peer, netns: str, claimed: str) -> int:
    """A descriptor of the caller's ``CNI_NETNS``, checked to be the file it saw."""
    try:
        root = os.open(f"/proc/{peer.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise RequestError(f"the caller's filesystem root cannot be opened: {exc.strerror}") from None
    try:
        fd = open_in_root(root, netns)
    except OSError as exc:
        raise RequestError(f"CNI_NETNS {netns} cannot be opened in the caller's filesystem: {exc.strerror}") from None
    finally:
        os.close(root)
    st = os.fstat(fd)
    if f"{st.st_dev}:{st.st_ino}" != claimed or not peer.alive():
        os.close(fd)
        raise RequestError("the caller and the daemon see different CNI_NETNS files")
    return fd


# -- one request --------------------------------------------------------------


@dataclass
class Request:
    netns_identity: str
    environ: dict[str, str]
    stdin: bytes


def _strict_size(field: bytes) -> int:
    if not field.isdigit() or (len(field) > 1 and field[:1] == b"0") or len(field) > 9:
        raise RequestError("unknown protocol")
    size = int(field)
    if size > MAX_PAYLOAD:
        raise RequestError("request too large")
    return size


def decode_environment(data: bytes) -> dict[str, str]:
    environ: dict[str, str] = {}
    for pair in data.split(b"\0"):
        if not pair:
            continue
        key, sep, value = pair.partition(b"=")
        if not sep:
            continue
        name = key.decode("utf-8", "surrogateescape")
        if name in environ and name.startswith("CNI_"):
            raise RequestError(f"the environment sets {name} twice")
        environ[name] = value.decode("utf-8", "surrogateescape")
    return environ


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


def read_request(sock: socket.socket, seconds: float = REQUEST_SECONDS) -> Request:
    deadline = time.monotonic() + seconds
    received = _receive(sock, deadline, lambda data: b"\n" in data, MAX_LINE)
    line, _, rest = received.partition(b"\n")
    header = line.split(b" ")
    if len(header) != 4 or header[0] != PROTOCOL:
        raise RequestError("unknown protocol")
    _, claimed, env_field, stdin_field = header
    env_length, stdin_length = _strict_size(env_field), _strict_size(stdin_field)
    total = env_length + stdin_length
    body = rest + (_receive(sock, deadline, lambda data: len(data) >= total - len(rest), total) if len(rest) < total else b"")
    if len(body) != total:
        raise RequestError("the request is longer than its header says")
    environ = decode_environment(body[:env_length])
    return Request(claimed.decode(errors="replace"), environ, body[env_length:])


@dataclass
class Prepared:
    """What dispatch gets: the environment with CNI_NETNS pointing at the open
    descriptor, and how to say the caller's path again in the answer."""

    environ: dict[str, str]
    netns_fd: int | None = None
    stand_in: str = ""
    original: str = ""
    note: str = ""

    def restore(self, text: bytes) -> bytes:
        if not self.stand_in:
            return text
        pattern = re.escape(self.stand_in.encode()) + rb"(?![0-9])"
        return re.sub(pattern, self.original.encode().replace(b"\\", b"\\\\"), text)

    def close(self) -> None:
        if self.netns_fd is not None:
            os.close(self.netns_fd)
            self.netns_fd = None


def prepare(peer: Peer, request: Request) -> Prepared:
    environ = dict(request.environ)
    netns = environ.get("CNI_NETNS", "")
    if environ.get("CNI_COMMAND") not in NETNS_COMMANDS or not netns or not NETNS_PATH_RE.fullmatch(netns):
        return Prepared(environ)  # nothing to open: dispatch judges the value itself
    if request.netns_identity == "-":  # gone for the caller too: a path that does not exist
        stand_in = f"/proc/{os.getpid()}/fd/-1"
        return Prepared(dict(environ, CNI_NETNS=stand_in), None, stand_in, netns)
    try:
        fd = open_caller_netns(peer, netns, request.netns_identity)
    except RequestError as exc:
        if environ["CNI_COMMAND"] != "DEL":
            raise
        stand_in = f"/proc/{os.getpid()}/fd/-1"  # DEL works without the namespace
        note = f"cni-render daemon: {exc}; DEL goes on without the pod's namespace\n"
        return Prepared(dict(environ, CNI_NETNS=stand_in), None, stand_in, netns, note)
    stand_in = f"/proc/{os.getpid()}/fd/{fd}"  # alive as long as the call: ip opens it too
    return Prepared(dict(environ, CNI_NETNS=stand_in), fd, stand_in, netns)


# -- the worker ---------------------------------------------------------------


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
            self.send(_answer(1, error_document(self.stdin, 11, "Try again later", details), b""), final=True)
        with self.lock:
            self.answered = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _turn_away(sock: socket.socket, word: bytes, reason: str) -> None:
    """Say why in one non-blocking write and close: nothing is read, nothing waits."""
    try:
        sock.send(word + b" " + reason.encode(errors="replace")[:MAX_LINE - 16] + b"\n", socket.MSG_DONTWAIT)
    except OSError:
        pass
    sock.close()


def _answer(code: int, stdout: bytes, stderr: bytes) -> bytes:
    return f"{code} {len(stdout)} {len(stderr)}\n".encode() + stdout + stderr


class Worker:
    """One worker process: accepts, authenticates, and runs calls in threads."""

    def __init__(self, listener: socket.socket, log: Any = sys.stderr, stop_seconds: float = STOP_SECONDS):
        self.listener = listener
        self.log = log
        self.stop_seconds = stop_seconds
        self.home = identity("/proc/thread-self/ns/net")
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
        """Serve until stopped; 0 after a stop, 3 after retiring."""
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
        return 3 if self.retiring else 0

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
            call.send(REFUSED + b" " + str(exc).encode() + b"\n", final=True)
            return
        try:
            if self.stopping.is_set():
                call.send(BUSY + b" the daemon is stopping\n", final=True)
                return
            if not call.send(ACK + b"\n"):
                return  # the caller is gone before the call started: nothing runs
            call.acknowledged = True
            started = time.perf_counter()
            code, stdout, stderr = self._execute(prepared, request)
        finally:
            prepared.close()
        call.send(_answer(code, prepared.restore(stdout), prepared.restore(stderr)), final=True)
        self.note(request.environ, code, time.perf_counter() - started)

    def _execute(self, prepared: Prepared, request: Request) -> tuple[int, bytes, bytes]:
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


# -- the master ---------------------------------------------------------------


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
        retired = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 3
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
