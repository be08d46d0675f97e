"""Crash-consistent file writes: a file is whole or absent, never half written.
The one writer of every file the plugin, the installer and the agent write
(IPAM records, the shim and launchers, the conflist, the agent's state).

Every writer goes through a temporary file in the target's directory, created
exclusively without following links (``O_CREAT|O_EXCL|O_NOFOLLOW``),
written, fsynced, then put in place, and the directory fsynced. On any error
the temporary file is removed and the ``OSError`` (ENOSPC, EIO...) is
raised for the caller to turn into a CNI error. A process killed mid-write
can leave a temporary file; its name says which process made it, so
:func:`sweep_temporaries` can remove those of dead processes. It starts with
a dot and ends in ``.partial``, so no runtime that loads ``*.conflist``,
``*.conf`` or ``*.json`` from a directory ever reads one.
"""

from __future__ import annotations

import os
from typing import Sequence

TEMPORARY_PREFIX = ".tmp-"
TEMPORARY_SUFFIX = ".partial"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write ``path`` atomically, replacing what was there (rename)."""
    temporary = _write_temporary(path, data, mode)
    try:
        os.rename(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    sync_directory(os.path.dirname(path))


def replace_files(files: Sequence[tuple[str, bytes, int]]) -> None:
    """Write several files all or nothing: each is written under a temporary
    name first (nothing is renamed if one cannot be), then all are renamed;
    if a rename fails, the files already renamed get their old content back
    (or are removed if they were new). No temporary name is left behind."""
    temporaries: list[str] = []
    backups: list[str | None] = []
    renamed: list[int] = []
    try:
        for path, data, mode in files:
            temporaries.append(_write_temporary(path, data, mode))
        for (path, _, _), temporary in zip(files, temporaries):
            backups.append(_keep_previous(path, temporary))
        for index, ((path, _, _), temporary) in enumerate(zip(files, temporaries)):
            os.rename(temporary, path)
            renamed.append(index)
    except BaseException:
        for index in renamed:
            path, backup = files[index][0], backups[index]
            if backup is None:
                _remove(path)
            else:
                os.rename(backup, path)
        raise
    finally:
        for temporary in temporaries:
            _remove(temporary)
        for backup in backups:
            if backup is not None:
                _remove(backup)
    for directory in sorted({os.path.dirname(path) for path, _, _ in files}):
        sync_directory(directory)


def _keep_previous(path: str, temporary: str) -> str | None:
    """A second name for the file at ``path``, so a failed replace can put it back."""
    backup = temporary + ".previous"
    try:
        os.link(path, backup, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise
    except PermissionError as exc:  # link(2) on a directory is EPERM
        if os.path.isdir(path) and not os.path.islink(path):
            raise IsADirectoryError(exc.errno, f"{path} is a directory", path) from exc
        raise
    return backup


def replace_symlink(path: str, target: str) -> None:
    """Point the symlink ``path`` at ``target`` atomically (a new link under a
    temporary name, renamed over the old one), then fsync the directory."""
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{os.getpid()}-{os.urandom(6).hex()}-{name}{TEMPORARY_SUFFIX}")
    os.symlink(target, temporary)
    try:
        os.rename(temporary, path)
    except BaseException:
        _remove(temporary)
        raise
    sync_directory(directory)


def create_file(path: str, data: bytes, mode: int = 0o644) -> bool:
    """Create ``path`` holding ``data``, all or nothing; False when it exists.

    The whole temporary file is hard-linked to ``path``: link(2) fails when
    the name is taken, so this is as exclusive as ``O_EXCL`` and a reader
    (or a crash) never sees an empty file.
    """
    temporary = _write_temporary(path, data, mode)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        _remove(temporary)
    try:
        sync_directory(os.path.dirname(path))
    except BaseException:
        _remove(path)  # not known to be durable: not created
        raise
    return True


def remove_file(path: str) -> bool:
    """Unlink ``path`` durably; False when it was already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    sync_directory(os.path.dirname(path))
    return True


def sync_directory(directory: str) -> None:
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporaries(directory: str, names: list[str]) -> None:
    """Remove, among ``names`` in ``directory``, temporary files of processes
    that no longer exist (killed mid-write). Best effort."""
    for name in names:
        if not name.startswith(TEMPORARY_PREFIX) or not (name.endswith(TEMPORARY_SUFFIX) or name.endswith(".previous")):
            continue
        pid = name[len(TEMPORARY_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _write_temporary(path: str, data: bytes, mode: int) -> str:
    directory, name = os.path.split(path)
    temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{os.getpid()}-{os.urandom(6).hex()}-{name}{TEMPORARY_SUFFIX}")
    fd = os.open(temporary, _CREATE, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # the mode asked for, whatever the umask
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _remove(temporary)
        raise
    os.close(fd)
    return temporary


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
