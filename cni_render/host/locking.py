"""Node-wide locks (flock), with a timeout that becomes CNI code 11.

Used for the IPAM store, for each attachment (ADD, DEL and GC of one
attachment exclude each other), for shared node setup (the bridge set's
bridge), and between ADD and a delegated IPAM's GC. flock locks belong to an
open file description, so they exclude threads of the daemon as well as
separate plugin processes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from typing import Iterator

from cni_render.cni.errors import IoFailure, TryAgainLater

LOCK_TIMEOUT_SECONDS = 30.0


def _open(path: str) -> int:
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise IoFailure(f"cannot open lock {path}: {exc.strerror}") from exc


@contextmanager
def file_lock(path: str, timeout: float = LOCK_TIMEOUT_SECONDS, shared: bool = False) -> Iterator[None]:
    """Hold ``path`` exclusively (or ``shared`` with other shared holders)."""
    fd = _open(path)
    try:
        _flock(fd, timeout, path, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextmanager
def try_file_lock(path: str) -> Iterator[bool]:
    """Hold ``path`` exclusively if nobody holds it now; yields whether it is held."""
    fd = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise IoFailure(f"cannot lock {path}: {exc.strerror}") from exc
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _flock(fd: int, timeout: float, where: str, operation: int = fcntl.LOCK_EX) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise IoFailure(f"cannot lock {where}: {exc.strerror}") from exc
        if time.monotonic() >= deadline:
            raise TryAgainLater(f"{where} stayed locked for {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
