"""Node-wide exclusive locks (flock), with a timeout that becomes CNI code 11.

Used for the IPAM store and for shared node setup (the bridge set's bridge).
flock locks belong to an open file description, so they exclude threads of
the daemon as well as separate plugin processes.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import IoFailure, TryAgainLater

LOCK_TIMEOUT_SECONDS = 30.0


@contextmanager
def file_lock(path: str, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    try:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise IoFailure(f"cannot open lock {path}: {exc.strerror}") from exc
    try:
        _flock(fd, timeout, path)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _flock(fd: int, timeout: float, where: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise IoFailure(f"cannot lock {where}: {exc.strerror}") from exc
        if time.monotonic() >= deadline:
            raise TryAgainLater(f"{where} stayed locked for {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)
