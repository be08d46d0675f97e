"""The one place that changes or reads the system: ``ip`` and ``nft`` batches,
sysctls, entering a pod's network namespace, netlink reads, and executing
other CNI plugins.

Everything else in cni-render is pure: it renders text and hands it here.
A pod's batch runs in the pod's namespace by entering it (setns) for the
calling thread only and starting ``ip`` from there, which is what
``nsenter --net`` does, minus one process.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from cni_render.cni.errors import ApplyFailed, DelegateFailed, InvalidEnvironment, LostNamespace

# The runtime's PATH may lack the sbin directories.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)
_FAILED_LINE = re.compile(r"^Command failed (?:-|\S+):(\d+)\s*$")  # iproute2
_NFT_ERROR = re.compile(r"^/dev/stdin:(\d+):[\d-]+: Error: (.*)$")  # nft -f -

# What a batch may meet without failing: GONE for teardown, EXISTS for setup.
EXISTS_MESSAGES = ("File exists",)
GONE_MESSAGES = (
    "Cannot find device",
    "No such device",
    "No such process",
    "No such file or directory",
    "does not exist",
    "Cannot assign requested address",
    "not found",
)


_FOUND: dict[str, str] = {}


def find_binary(name: str) -> str | None:
    if name not in _FOUND:
        path = shutil.which(name, path=_SEARCH_PATH)
        if path is None:
            return None
        _FOUND[name] = path
    return _FOUND[name]


def _binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise ApplyFailed(f"{name!r} was not found in PATH or the sbin directories; install it")
    return path


@dataclass(frozen=True)
class BatchFailure:
    line_number: int
    line: str
    message: str


def _failures(batch: str, stderr: str) -> list[BatchFailure]:
    """Map iproute2's ``Command failed -:N`` back to the rendered line N."""
    lines = batch.splitlines()
    failures: list[BatchFailure] = []
    pending: list[str] = []
    for text in stderr.splitlines():
        nft = _NFT_ERROR.match(text)
        if nft:
            number = int(nft.group(1))
            line = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
            failures.append(BatchFailure(number, line, nft.group(2)))
            pending = []
            break  # nft then echoes the line and a caret marker
        match = _FAILED_LINE.match(text)
        if match:
            number = int(match.group(1))
            line = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
            failures.append(BatchFailure(number, line, " ".join(pending).strip()))
            pending = []
        elif text.strip():
            pending.append(text.strip())
    if pending:
        failures.append(BatchFailure(0, "", " ".join(pending)))
    return failures


_CLONE_NEWNET = 0x40000000
_LIBC: list[Any] = []


def _libc_call(name: str, *args: int) -> None:
    import ctypes

    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if getattr(_LIBC[0], name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    _libc_call("setns", fd, _CLONE_NEWNET)


def _unshare_net() -> None:
    """Move the calling thread into a new, empty network namespace of its own."""
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(_CLONE_NEWNET)
        return
    _libc_call("unshare", _CLONE_NEWNET)


def _strand(details: str) -> LostNamespace:
    """The thread could not go back: park it where it can do no harm (a fresh
    namespace of its own) and return what ends its call. When even that
    fails, stop the process at once: nothing may run in the wrong namespace."""
    try:
        _unshare_net()
    except OSError as exc:
        details = f"{details}; and cannot leave it either ({exc.strerror})"
        os.write(2, f"cni-render: fatal: {details}\n".encode())
        os.write(1, (json.dumps({"cniVersion": "1.1.0", "code": 999, "msg": "Fatal plugin error",
                                 "details": details}) + "\n").encode())
        os._exit(70)
    return LostNamespace(details)


@contextmanager
def in_netns(path: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace
    ``path`` (processes started meanwhile are born there); None stays put.

    When the thread cannot return, it is moved into a fresh empty namespace
    and LostNamespace (a BaseException) raised: the call ends, the process
    (a daemon worker with other calls in flight) does not.
    """
    if not path:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ApplyFailed(f"cannot open network namespace {path}: {exc.strerror}") from exc
        try:
            _setns(target)
        except OSError as exc:
            raise ApplyFailed(f"cannot enter network namespace {path}: {exc.strerror}") from exc
        finally:
            os.close(target)
        try:
            yield
        finally:
            try:
                _setns(own)
            except OSError as exc:  # never go on in the wrong namespace
                raise _strand(
                    f"cannot return to its own network namespace from {path}: {exc.strerror}; "
                    "the call stopped where it was, DEL the attachment"
                ) from exc
    finally:
        os.close(own)


def run_ip_batch(
    batch: str, *, netns: str | None = None, where: str, tolerate: Sequence[str] = ()
) -> None:
    """Run ``batch`` with ``ip -batch -`` (inside ``netns`` when given).

    With nothing to ``tolerate`` the batch stops at its first failing line;
    otherwise every line runs (``-force``) and failures whose message is in
    ``tolerate`` (GONE_MESSAGES, EXISTS_MESSAGES) count as success.
    """
    if not batch.strip():
        return
    argv = [_binary("ip"), *(["-force"] if tolerate else []), "-batch", "-"]
    with in_netns(netns):
        _run_batch(argv, batch, f"ip batch ({where})", tolerate)


def run_nft_batch(batch: str, *, where: str, tolerate: Sequence[str] = ()) -> None:
    """Run ``batch`` with ``nft -f -`` (atomic: all or nothing)."""
    if not batch.strip():
        return
    _run_batch([_binary("nft"), "-f", "-"], batch, f"nft batch ({where})", tolerate)


COMMAND_TIMEOUT = 30.0  # seconds an ip or nft batch may take
PLUGIN_TIMEOUT = 60.0  # seconds a delegated plugin may take
OUTPUT_LIMIT = 1 << 20  # bytes kept of each output stream; the rest is read and dropped
MESSAGE_LIMIT = 2000  # characters of a command's output quoted in an error
_CHUNK = 1 << 16


class TimedOut(Exception):
    """The command ran past its deadline; it and its process group were killed."""


@dataclass
class Completed:
    status: int
    stdout: bytes
    stderr: bytes


def execute(
    argv: Sequence[str],
    stdin: bytes,
    timeout: float,
    env: Mapping[str, str] | None = None,
    merge_output: bool = True,
) -> Completed:
    """Run ``argv`` (an absolute path first) with ``stdin``, bounded.

    posix_spawn (vfork-like) instead of subprocess: several times cheaper from
    a large process, and the child starts in the calling thread's network
    namespace. The child leads a new process group; stdin is written while
    the output is read (a command that floods its output before reading a
    large input cannot deadlock), at most OUTPUT_LIMIT bytes of each stream
    are kept, and past ``timeout`` the whole group is killed and reaped and
    TimedOut raised. With ``merge_output`` stderr goes into stdout.
    OSError when it cannot be started.
    """
    pipes: list[int] = []
    try:
        stdin_read, stdin_write = _pipe(pipes)
        stdout_read, stdout_write = _pipe(pipes)
        stderr_read, stderr_write = (stdout_read, stdout_write) if merge_output else _pipe(pipes)
        pid = os.posix_spawn(
            argv[0],
            list(argv),
            os.environ if env is None else dict(env),
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_read, 0),
                (os.POSIX_SPAWN_DUP2, stdout_write, 1),
                (os.POSIX_SPAWN_DUP2, stderr_write, 2),
            ],
            setpgroup=0,
        )
        for fd in {stdin_read, stdout_write, stderr_write}:
            _close(pipes, fd)
        try:
            outputs = _exchange(stdin_write, stdin, {stdout_read, stderr_read}, pipes, time.monotonic() + timeout, pid)
        except BaseException:
            _kill_group(pid)
            raise
    finally:
        for fd in list(pipes):
            _close(pipes, fd)
    return Completed(outputs[0], outputs[1].get(stdout_read, b""), outputs[1].get(stderr_read, b""))


def _pipe(pipes: list[int]) -> tuple[int, int]:
    read, write = os.pipe()
    pipes.extend((read, write))
    return read, write


def _close(pipes: list[int], fd: int) -> None:
    if fd in pipes:
        pipes.remove(fd)
        os.close(fd)


def _exchange(
    stdin_write: int, stdin: bytes, readers: set[int], pipes: list[int], deadline: float, pid: int
) -> tuple[int, dict[int, bytes]]:
    """Feed stdin and drain the outputs until both are done and ``pid`` exited."""
    selector = selectors.DefaultSelector()
    kept: dict[int, bytearray] = {fd: bytearray() for fd in readers}
    pending = memoryview(stdin)
    try:
        if pending:
            os.set_blocking(stdin_write, False)
            selector.register(stdin_write, selectors.EVENT_WRITE)
        else:
            _close(pipes, stdin_write)
        for fd in readers:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimedOut()
            for key, _ in selector.select(remaining):
                fd = key.fd
                if fd == stdin_write:
                    try:
                        pending = pending[os.write(fd, pending[:_CHUNK]):]
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        pending = pending[:0]  # it stopped reading: its status and output say why
                    if not pending:
                        selector.unregister(fd)
                        _close(pipes, fd)
                    continue
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    selector.unregister(fd)
                    continue
                room = OUTPUT_LIMIT - len(kept[fd])
                if room > 0:
                    kept[fd] += chunk[:room]
    finally:
        selector.close()
    return _reap(pid, deadline), {fd: bytes(data) for fd, data in kept.items()}


def _reap(pid: int, deadline: float) -> int:
    """The exit status of ``pid`` (its output is closed, so it is ending)."""
    delay = 0.0002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            raise TimedOut()
        time.sleep(delay)
        delay = min(delay * 2, 0.01)


def _kill_group(pid: int) -> None:
    """Kill ``pid``'s process group (what it started too) and reap ``pid``."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _spawn(argv: list[str], stdin: bytes, timeout: float | None = None) -> tuple[int, str]:
    """(exit status, stdout and stderr merged) of ``argv``, bounded by
    ``timeout`` (COMMAND_TIMEOUT): ApplyFailed naming it when it cannot be
    started or does not finish."""
    limit = COMMAND_TIMEOUT if timeout is None else timeout
    try:
        done = execute(argv, stdin, limit)
    except OSError as exc:
        raise ApplyFailed(f"cannot start {argv[0]}: {exc.strerror}") from exc
    except TimedOut as exc:
        raise ApplyFailed(
            f"{os.path.basename(argv[0])} did not finish within {limit:g} s and was killed"
        ) from exc
    return done.status, done.stdout.decode(errors="replace")


def _run_batch(argv: list[str], batch: str, what: str, tolerate: Sequence[str]) -> None:
    try:
        status, output = _spawn(argv, batch.encode())
    except ApplyFailed as exc:
        raise ApplyFailed(f"{what}: {exc.details}") from exc
    if status == 0:
        return
    failures = _failures(batch, output) or [BatchFailure(0, "", output.strip())]
    if tolerate:
        failures = [f for f in failures if not any(m in f.message for m in tolerate)]
        if not failures:
            return
    first = failures[0]
    message = first.message if len(first.message) <= MESSAGE_LIMIT else first.message[:MESSAGE_LIMIT] + "..."
    location = f"line {first.line_number} {first.line!r}: " if first.line_number else ""
    raise ApplyFailed(
        f"{what} {location}{message or 'failed'}",
        line_number=first.line_number,
        line=first.line,
        reason=message,
    )


def read_state(netns: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(links with their addresses, routes of every table), over netlink."""
    from cni_render.host.netlink import Netlink

    try:
        with in_netns(netns):
            netlink = Netlink()  # the socket stays bound to the namespace it was opened in
        with netlink:
            return netlink.state()
    except OSError as exc:
        where = f"in {netns}" if netns else "on the node"
        raise ApplyFailed(f"reading links and routes {where}: {exc}") from exc


def write_sysctls(pairs: Sequence[tuple[str, str]], *, where: str) -> None:
    for key, value in pairs:
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise ApplyFailed(f"sysctl ({where}) {key} = {value}: {exc.strerror}") from exc


def link_exists(ifname: str) -> bool:
    """Whether the node has a link called ``ifname`` (asked in this thread's namespace)."""
    import socket

    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True


def link_index(ifname: str) -> int | None:
    """The index of the node's link ``ifname`` (a new link of the same name gets a new one), or None."""
    import socket

    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def delete_link(ifname: str) -> None:
    """Delete a node link, ignoring "already gone" (the safety net of rollbacks)."""
    run_ip_batch(f"link del dev {ifname}\n", where="cleanup", tolerate=GONE_MESSAGES)


def link_aliases() -> dict[str, str]:
    """{ifname: alias} of the node's links that have an alias."""
    links, _ = read_state()
    return {link["ifname"]: link["ifalias"] for link in links if link.get("ifalias")}


def default_route_mtu(fallback: int = 1500) -> int:
    """MTU of the interface holding the node's default route (IPv4 first), else ``fallback``."""
    if _uplink_mtu is not None and _uplink_mtu.serves_here():
        return _uplink_mtu.get(fallback)
    return _read_uplink(fallback)[0]


def _read_uplink(fallback: int) -> tuple[int, int | None]:
    """(MTU, link index) of the default route's interface; (fallback, None) without one."""
    links, routes = read_state()
    by_name: dict[str, Any] = {link["ifname"]: link for link in links}
    for family in ("inet", "inet6"):
        for route in routes:
            link = by_name.get(route.get("dev", ""))
            if (
                route["family"] == family
                and route["dst"] == "default"
                and route["table"] == "main"
                and route.get("type") == "unicast"
                and link
                and link.get("mtu")
            ):
                return int(link["mtu"]), int(link["ifindex"])
    return fallback, None


class UplinkMtu:
    """The uplink MTU kept by a long-lived process (a daemon worker): read once,
    and read again only when the kernel reports that the uplink changed or a
    default route came or went, instead of a netlink dump of every link and
    route on every ADD. The pods' own veths do not count as changes."""

    def __init__(self) -> None:
        from cni_render.host.netlink import Changes

        self.pid = os.getpid()
        self.netns = _netns_identity()
        self.lock = threading.Lock()
        self.changes = Changes()  # bound to the namespace it is opened in: the node's
        self.known: tuple[int, int | None] | None = None
        self.reads = 0

    def serves_here(self) -> bool:
        """Only in the process and network namespace it was made in: a call
        from another namespace (a forked child, a test's node) reads its own."""
        return self.pid == os.getpid() and self.netns == _netns_identity()

    def get(self, fallback: int) -> int:
        with self.lock:
            # drain first, then read: a change after the read is seen next time
            touched = self.changes.touched(self.known[1] if self.known else None)
            if self.known is None or touched or self.known[1] is None and self.known[0] != fallback:
                self.known = _read_uplink(fallback)
                self.reads += 1
            return self.known[0]


_uplink_mtu: UplinkMtu | None = None


def _netns_identity() -> tuple[int, int]:
    st = os.stat("/proc/thread-self/ns/net")
    return st.st_dev, st.st_ino


def keep_uplink_mtu() -> UplinkMtu:
    """From now on this process keeps the uplink MTU (:class:`UplinkMtu`)."""
    global _uplink_mtu
    _uplink_mtu = UplinkMtu()
    return _uplink_mtu


def netns_problem(netns: str) -> str | None:
    """Why ``netns`` cannot be a pod's network namespace, or None."""
    try:
        target = os.stat(netns)
    except OSError as exc:
        return f"CNI_NETNS {netns!r} cannot be opened: {exc.strerror}"
    own = os.stat("/proc/thread-self/ns/net")
    if target.st_dev != own.st_dev:
        return f"CNI_NETNS {netns!r} is not a namespace file"
    if target.st_ino == own.st_ino:
        return f"CNI_NETNS {netns!r} is the plugin's own network namespace"
    return None


def exec_plugin(
    path: str, env: Mapping[str, str], stdin: bytes, timeout: float | None = None
) -> tuple[int, bytes, bytes]:
    """Execute a CNI plugin, bounded by ``timeout`` (PLUGIN_TIMEOUT); returns
    (exit code, stdout, stderr)."""
    limit = PLUGIN_TIMEOUT if timeout is None else timeout
    try:
        done = execute([path], stdin, limit, env=env, merge_output=False)
    except OSError as exc:
        raise InvalidEnvironment(f"cannot execute {path}: {exc.strerror}") from exc
    except TimedOut as exc:
        raise DelegateFailed(f"{path} did not answer within {limit:g} s and was killed") from exc
    return done.status, done.stdout, done.stderr


def find_plugin(name: str, cni_path: Sequence[str]) -> str | None:
    """The first regular, executable file called ``name`` in CNI_PATH."""
    if "/" in name or not name:
        return None
    for directory in cni_path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def writable_dir_problem(path: str) -> str | None:
    """None when files can be created in ``path`` (made if missing), else why not."""
    import tempfile

    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)  # unique per thread too
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None


# --- The node agent (cni_render.node): read-only ip queries and its daemon child ---


def ip_query(args: Sequence[str]) -> Any:
    """``ip -json -Numeric ARGS`` parsed: read-only questions such as
    ``route get ADDR`` or ``-6 route show table main`` (protocols as numbers)."""
    import json

    status, output = _spawn([_binary("ip"), "-json", "-Numeric", *args], b"")
    if status != 0:
        raise ApplyFailed(f"ip {' '.join(args)}: {output.strip() or f'exit status {status}'}")
    try:
        return json.loads(output) if output.strip() else []
    except ValueError as exc:
        raise ApplyFailed(f"ip {' '.join(args)}: unreadable answer {output[:200]!r}") from exc


# A started child (start_process), named for the modules that may not import subprocess.
Process = subprocess.Popen[bytes]


def start_process(argv: Sequence[str]) -> Process:
    """Start a long-running child (the node agent's daemon) with its stderr on
    a pipe for the caller to read, and stdin closed."""
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ApplyFailed(f"cannot start {argv[0]}: {exc.strerror}") from exc
