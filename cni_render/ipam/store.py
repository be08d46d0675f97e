"""On-disk allocation store, in host-local's format.

``<dataDir>/<network>/<ip>`` holds ``<containerID>\\r\\n<ifname>``;
``last_reserved_ip.<rangeset>`` holds the round-robin cursor; ``lock`` is
flock'ed around every read-modify-write. Every write is crash-consistent
(see :mod:`cni_render.host.durable`): an owner file is linked into place whole,
which fails when the address is taken, so a reservation is atomic even
without the lock; the index and the cursor are replaced by rename. This
module is the only one that touches IPAM files.

The index, ``.attachments/<key>`` with ``key`` a hash of (containerID,
ifname), lists an attachment's addresses so that DEL need not read every
owner file. Owner files are the truth and the index a hint, kept so that a
SIGKILL between any two system calls never hides an address: a reservation
writes the index entry before it links the owner file, a release unlinks the
owner file before it rewrites the index. A kill in either gap leaves an
*orphaned entry*: one whose owner file is gone, or names an attachment whose
key is not the record's (another attachment got the address since). An
orphaned entry is never taken for an address (every lookup reads the owner
file and compares its attachment with the record's); every rewrite of a
record drops its orphans, DEL removes what is left of its record, and GC
sweeps every record (:meth:`Store.sweep_records`). Temporaries of killed
writers are removed from both directories.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from contextlib import contextmanager
from typing import Iterator, Union

from cni_render.cni.errors import IoFailure
from cni_render.host import durable
from cni_render.host.locking import LOCK_TIMEOUT_SECONDS, file_lock

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
LINE_BREAK = "\r\n"
_CURSOR_PREFIX = "last_reserved_ip."
_INDEX_DIR = ".attachments"
_RECORD_NAME = re.compile(r"[0-9a-f]{32}")


def record_key(container_id: str, ifname: str) -> str:
    """The name of (container, ifname)'s record in the index."""
    return hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()[:32]


class Store:
    def __init__(self, data_dir: str, network: str):
        self.directory = os.path.join(data_dir, network)

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Store]:
        with file_lock(os.path.join(self.directory, "lock"), timeout):
            yield self

    def _path(self, ip: IPAddress) -> str:
        return os.path.join(self.directory, str(ip))

    def reserved(self) -> set[str]:
        """Names of the reserved addresses (file names)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return set()
        durable.sweep_temporaries(self.directory, names)
        self._sweep_index_temporaries()
        return {n for n in names if n != "lock" and not n.startswith((_CURSOR_PREFIX, "."))}

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, range_set: int) -> bool:
        """Reserve ``ip``; False when it is already taken. The index entry
        comes first (killed before the owner file, it is an orphan), then the
        owner file, created whole or not at all."""
        self._index_add(container_id, ifname, str(ip))
        owner = f"{container_id}{LINE_BREAK}{ifname}".encode()
        try:
            created = durable.create_file(self._path(ip), owner)
        except OSError as exc:
            self._index_remove(container_id, ifname, str(ip))
            raise IoFailure(f"cannot reserve {ip} in {self.directory}: {exc.strerror}") from exc
        if not created:
            self._index_remove(container_id, ifname, str(ip))
            return False
        self._write_cursor(range_set, ip)
        return True

    # --- the index: one record per attachment, named by its key ----------------

    def _record_path(self, key: str) -> str:
        return os.path.join(self.directory, _INDEX_DIR, key)

    def _index_path(self, container_id: str, ifname: str) -> str:
        return self._record_path(record_key(container_id, ifname))

    def _record_entries(self, key: str) -> list[str] | None:
        """The addresses record ``key`` lists; None when there is no record."""
        try:
            with open(self._record_path(key)) as handle:
                return [line for line in handle.read().split() if line]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IoFailure(f"cannot read the IPAM index in {self.directory}: {exc.strerror}") from exc

    def _index_read(self, container_id: str, ifname: str) -> list[str] | None:
        """The indexed addresses; None (scan instead) when there is no usable index."""
        return self._record_entries(record_key(container_id, ifname)) or None

    def _orphaned(self, key: str, name: str) -> bool:
        """Whether entry ``name`` of record ``key`` names an address that
        record's attachment does not hold: the owner file is gone, or names
        another attachment. One that cannot be read keeps its entry."""
        try:
            owner = self._read_owner(name)
        except FileNotFoundError:
            return True
        except (OSError, UnicodeDecodeError):
            return False
        return record_key(*owner) != key

    def _record_rewrite(self, key: str, add: str | None = None, drop: str | None = None) -> int:
        """Record ``key`` with ``add``, without ``drop`` and without its
        orphans (removed when nothing is left; untouched when nothing
        changes). Returns how many orphans went."""
        entries = self._record_entries(key)
        if entries is None and add is None:
            return 0
        kept = [e for e in entries or [] if e == add or (e != drop and not self._orphaned(key, e))]
        orphans = len([e for e in entries or [] if e != drop]) - len(kept)
        if add is not None and add not in kept:
            kept.append(add)
        if kept != entries or not kept:
            path = self._record_path(key)
            if kept:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                durable.replace_file(path, "".join(f"{entry}\n" for entry in kept).encode())
            else:
                durable.remove_file(path)
        return orphans

    def _index_add(self, container_id: str, ifname: str, ip: str) -> None:
        try:
            self._record_rewrite(record_key(container_id, ifname), add=ip)
        except OSError as exc:
            raise IoFailure(f"cannot write the IPAM index in {self.directory}: {exc.strerror}") from exc

    def _index_remove(self, container_id: str, ifname: str, ip: str) -> None:
        """Drop ``ip`` (and the record's orphans) from the index. The index is
        a hint (owner files are the truth), so when it cannot be rewritten (a
        full disk) it goes and lookups fall back to reading the owner files."""
        key = record_key(container_id, ifname)
        try:
            self._record_rewrite(key, drop=ip)
        except (OSError, IoFailure):
            try:
                durable.remove_file(self._record_path(key))
            except OSError as exc:
                raise IoFailure(f"cannot update the IPAM index in {self.directory}: {exc.strerror}") from exc

    def prune_record(self, container_id: str, ifname: str) -> None:
        """DEL's last step: what is left of the attachment's record are
        orphans (a release or a reservation killed halfway); they go, and the
        record with them, as do temporaries of killed writers."""
        self._index_remove(container_id, ifname, "")
        self._sweep_index_temporaries()

    def sweep_records(self) -> int:
        """GC: every record without its orphans (which name no address of
        theirs, so nothing is released); returns how many entries went."""
        index = os.path.join(self.directory, _INDEX_DIR)
        try:
            names = os.listdir(index)
        except FileNotFoundError:
            return 0
        durable.sweep_temporaries(index, names)
        swept = 0
        for key in filter(_RECORD_NAME.fullmatch, names):
            try:
                swept += self._record_rewrite(key)
            except OSError as exc:
                raise IoFailure(f"cannot update the IPAM index in {self.directory}: {exc.strerror}") from exc
        return swept

    def _sweep_index_temporaries(self) -> None:
        index = os.path.join(self.directory, _INDEX_DIR)
        try:
            durable.sweep_temporaries(index, os.listdir(index))
        except OSError:
            pass  # no index yet; or the next call sweeps

    # --- owner files -------------------------------------------------------------

    def _read_owner(self, name: str) -> tuple[str, str]:
        with open(os.path.join(self.directory, name), encoding="utf-8", newline="") as handle:
            content = handle.read()
        container_id, _, ifname = content.strip().partition(LINE_BREAK)
        return container_id.strip(), ifname.strip()

    def owner(self, name: str) -> tuple[str, str] | None:
        """(container ID, ifname) of a reservation; ifname is "" in host-local's old format."""
        try:
            return self._read_owner(name)
        except (OSError, UnicodeDecodeError):
            return None

    def allocations(self) -> list[tuple[str, str, str]]:
        """Every reservation as (address, container ID, ifname)."""
        found = []
        for name in sorted(self.reserved()):
            owner = self.owner(name)
            if owner is not None:
                found.append((name, *owner))
        return found

    def find(self, container_id: str, ifname: str, scan: bool = True) -> list[str]:
        """The addresses of (container, ifname). Through the index, each
        checked against its owner file (an entry alone proves nothing);
        without one, every address file is read unless ``scan`` is False."""
        indexed = self._index_read(container_id, ifname)
        if indexed is not None:
            return [ip for ip in indexed if self.owner(ip) == (container_id, ifname)]
        if not scan:
            return []
        return [
            ip
            for ip, cid, owner_ifname in self.allocations()
            if cid == container_id and owner_ifname in (ifname, "")
        ]

    def release(self, name: str) -> None:
        """Unlink the owner file, then drop the entry from its owner's record
        (killed in between, the entry is an orphan: never the reverse, which
        would hide a held address from the index)."""
        owner = self.owner(name)
        try:
            durable.remove_file(os.path.join(self.directory, name))
        except OSError as exc:
            raise IoFailure(f"cannot release {name} in {self.directory}: {exc.strerror}") from exc
        if owner is not None:
            self._index_remove(*owner, name)

    def last_reserved(self, range_set: int) -> str | None:
        try:
            with open(os.path.join(self.directory, f"{_CURSOR_PREFIX}{range_set}")) as handle:
                return handle.read().strip() or None
        except OSError:
            return None

    def _write_cursor(self, range_set: int, ip: IPAddress) -> None:
        path = os.path.join(self.directory, f"{_CURSOR_PREFIX}{range_set}")
        try:
            durable.replace_file(path, str(ip).encode())
        except OSError:
            pass  # only the round-robin start is lost

    def writable(self) -> str | None:
        """None when allocations can be written here, else why not."""
        from cni_render.host.system import writable_dir_problem

        return writable_dir_problem(self.directory)


class MemoryStore(Store):
    """A store that keeps reservations in memory: previews allocate without
    touching the disk, through the same allocator."""

    def __init__(self, reservations: dict[str, tuple[str, str]] | None = None):
        self.directory = "(memory)"
        self.reservations = dict(reservations or {})
        self.cursors: dict[int, str] = {}

    @contextmanager
    def locked(self, timeout: float = LOCK_TIMEOUT_SECONDS) -> Iterator[Store]:
        yield self

    def reserved(self) -> set[str]:
        return set(self.reservations)

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, range_set: int) -> bool:
        if str(ip) in self.reservations:
            return False
        self.reservations[str(ip)] = (container_id, ifname)
        self.cursors[range_set] = str(ip)
        return True

    def owner(self, name: str) -> tuple[str, str] | None:
        return self.reservations.get(name)

    def find(self, container_id: str, ifname: str, scan: bool = True) -> list[str]:
        return [ip for ip, owner in self.reservations.items() if owner == (container_id, ifname)]

    def release(self, name: str) -> None:
        self.reservations.pop(name, None)

    def prune_record(self, container_id: str, ifname: str) -> None:
        pass  # no index in memory

    def sweep_records(self) -> int:
        return 0

    def last_reserved(self, range_set: int) -> str | None:
        return self.cursors.get(range_set)

    def writable(self) -> str | None:
        return None
