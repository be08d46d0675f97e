"""The agent's file writes on the host: whole files or nothing.

A runtime reads /etc/cni/net.d whenever it likes, so a file there is written
under an exclusive temporary name in the same directory (never following a
symlink), fsynced, renamed over the old one, and the directory fsynced; a
reader sees the old file or the new one. Directories themselves are never
removed (containerd stops watching a deleted /etc/cni/net.d).
"""

from __future__ import annotations

import os
import secrets


def read_bytes(path: str) -> bytes | None:
    """The file's content, or None when it is not there (or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def write_atomically(path: str, content: bytes, mode: int = 0o644) -> None:
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(temporary)
        raise
    os.close(fd)
    try:
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    sync_directory(directory)


def write_if_changed(path: str, content: bytes, mode: int = 0o644) -> bool:
    """Write ``content`` atomically unless the file already holds it; True when written."""
    if read_bytes(path) == content:
        return False
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    write_atomically(path, content, mode)
    return True


def remove_file(path: str) -> bool:
    """Remove a file (never a directory); True when there was one."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    sync_directory(os.path.dirname(path) or ".")
    return True


def sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
