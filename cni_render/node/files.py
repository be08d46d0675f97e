"""The agent's file writes on the host: whole files or nothing.

A runtime reads /etc/cni/net.d whenever it likes, so a file there is written
as cni_render.host.durable writes every file: under an exclusive temporary name in
the same directory (never following a symlink), fsynced, renamed over the old
one, and the directory fsynced; a reader sees the old file or the new one.
Directories themselves are never removed (containerd stops watching a
deleted /etc/cni/net.d).
"""

from __future__ import annotations

import os

# One implementation of crash-consistent writes for the plugin and the agent.
from cni_render.host.durable import remove_file, replace_symlink, sync_directory
from cni_render.host.durable import replace_file as write_atomically

__all__ = ["read_bytes", "remove_file", "replace_symlink", "sync_directory", "write_atomically", "write_if_changed"]


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


def write_if_changed(path: str, content: bytes, mode: int = 0o644) -> bool:
    """Write ``content`` atomically unless the file already holds it; True when written."""
    if read_bytes(path) == content:
        return False
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    write_atomically(path, content, mode)
    return True
