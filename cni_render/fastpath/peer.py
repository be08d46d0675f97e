"""Whom the daemon acts for, and on which namespace: decided from what the
kernel says before a byte is read.

The peer process (``SO_PEERCRED``, pinned with a pidfd) must be root with
``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``, in the daemon's user and network
namespace. Its filesystem may be another (the daemon runs in a DaemonSet pod,
the caller is the node's container runtime): the caller's ``CNI_NETNS`` is
opened inside the caller's root (``/proc/<pid>/root``, ``openat2``
``RESOLVE_IN_ROOT``), checked to be the file the caller saw (dev:ino), and the
call acts on that descriptor only, so pid reuse cannot redirect a call.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import struct
from dataclasses import dataclass
from typing import Any

from cni_render.cni.request import NETNS_PATH_RE
from cni_render.fastpath.wire import RequestError, WireRequest, identity

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux 6.5+
NETNS_COMMANDS = ("ADD", "CHECK", "DEL")


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


# -- the call's environment, acting on that descriptor ------------------------


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


def prepare(peer: Peer, request: WireRequest) -> Prepared:
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
