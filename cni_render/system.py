"""The one place that changes or reads the system: ``ip`` and ``nft`` batches,
sysctls, entering a pod's network namespace, netlink reads, and executing
other CNI plugins.

Everything else in cni-render is pure: it renders text and hands it here.
A pod's batch runs in the pod's namespace by entering it (setns) for the
calling thread only and starting ``ip`` from there, which is what
``nsenter --net`` does, minus one process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from .errors import ApplyFailed, InvalidEnvironment

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
    failures, pending = [], []
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


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, _CLONE_NEWNET)
        return
    import ctypes

    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    if _LIBC[0].setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _fatal(details: str) -> None:
    """Stop the process at once: nothing may run after this, not even a rollback."""
    os.write(2, f"cni-render: fatal: {details}\n".encode())
    os.write(1, ('{"cniVersion": "1.1.0", "code": 999, "msg": "Fatal plugin error", "details": '
                 f'"{details}"}}\n').encode())
    os._exit(70)


@contextmanager
def in_netns(path: str | None) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace
    ``path`` (processes started meanwhile are born there); None stays put."""
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
                _fatal(f"cannot return to its own network namespace from {path}: {exc.strerror}")
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


def _spawn(argv: list[str], stdin: bytes) -> tuple[int, str]:
    """Run ``argv`` with ``stdin``; (exit status, its stdout and stderr merged).

    posix_spawn (vfork-like) instead of subprocess: several times cheaper from
    a large process, and the child starts in the calling thread's network
    namespace.
    """
    stdin_read, stdin_write = os.pipe()
    output_read, output_write = os.pipe()
    try:
        pid = os.posix_spawn(
            argv[0],
            argv,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_read, 0),
                (os.POSIX_SPAWN_DUP2, output_write, 1),
                (os.POSIX_SPAWN_DUP2, output_write, 2),
            ],
        )
    except OSError as exc:
        for fd in (stdin_write, output_read):
            os.close(fd)
        raise ApplyFailed(f"cannot start {argv[0]}: {exc.strerror}") from exc
    finally:
        os.close(stdin_read)
        os.close(output_write)
    try:
        view = memoryview(stdin)
        while view:
            written = os.write(stdin_write, view)
            view = view[written:]
    except BrokenPipeError:
        pass  # the command stopped reading: its status and output say why
    finally:
        os.close(stdin_write)
    chunks = []
    try:
        while True:
            chunk = os.read(output_read, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(output_read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def _run_batch(argv: list[str], batch: str, what: str, tolerate: Sequence[str]) -> None:
    status, output = _spawn(argv, batch.encode())
    if status == 0:
        return
    failures = _failures(batch, output) or [BatchFailure(0, "", output.strip())]
    if tolerate:
        failures = [f for f in failures if not any(m in f.message for m in tolerate)]
        if not failures:
            return
    first = failures[0]
    location = f"line {first.line_number} {first.line!r}: " if first.line_number else ""
    raise ApplyFailed(
        f"{what} {location}{first.message or 'failed'}",
        line_number=first.line_number,
        line=first.line,
        reason=first.message,
    )


def read_state(netns: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(links with their addresses, routes of every table), over netlink."""
    from .netlink import Netlink

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
    links, routes = read_state()
    mtus = {link["ifname"]: link.get("mtu") for link in links}
    for family in ("inet", "inet6"):
        for route in routes:
            if (
                route["family"] == family
                and route["dst"] == "default"
                and route["table"] == "main"
                and route.get("type") == "unicast"
                and mtus.get(route.get("dev", ""))
            ):
                return int(mtus[route["dev"]])
    return fallback


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
    path: str, env: Mapping[str, str], stdin: bytes, timeout: float = 120.0
) -> tuple[int, bytes, bytes]:
    """Execute a CNI plugin; returns (exit code, stdout, stderr)."""
    try:
        proc = subprocess.run(
            [path], input=stdin, env=dict(env), capture_output=True, timeout=timeout, check=False
        )
    except OSError as exc:
        raise InvalidEnvironment(f"cannot execute {path}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ApplyFailed(f"{path} did not answer within {timeout:.0f}s") from exc
    return proc.returncode, proc.stdout, proc.stderr


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


def start_process(argv: Sequence[str]) -> subprocess.Popen:
    """Start a long-running child (the node agent's daemon) with its stderr on
    a pipe for the caller to read, and stdin closed."""
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ApplyFailed(f"cannot start {argv[0]}: {exc.strerror}") from exc
