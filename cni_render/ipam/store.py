"""On-disk allocation store, in host-local's format.

``<dataDir>/<network>/<ip>`` holds ``<containerID>\\r\\n<ifname>``;
``last_reserved_ip.<rangeset>`` holds the round-robin cursor; ``lock`` is
flock'ed around every read-modify-write. Every write is crash-consistent
(see :mod:`cni_render.host.durable`): an owner file is linked into place whole,
which fails when the address is taken, so a reservation is atomic even
without the lock; the index and the cursor are replaced by rename. This
module is the only one that touches IPAM files.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from contextlib import contextmanager
from typing import Iterator, Union

from cni_render.cni.errors import IoFailure
from cni_render.host import durable
from cni_render.host.locking import LOCK_TIMEOUT_SECONDS, file_lock

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
LINE_BREAK = "\r\n"
_CURSOR_PREFIX = "last_reserved_ip."
_INDEX_DIR = ".attachments"


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
        return {n for n in names if n != "lock" and not n.startswith((_CURSOR_PREFIX, "."))}

    def reserve(self, ip: IPAddress, container_id: str, ifname: str, range_set: int) -> bool:
        """Reserve ``ip``; False when it is already taken. The index entry
        comes first (an entry without its owner file is ignored), then the
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

    def _index_path(self, container_id: str, ifname: str) -> str:
        key = hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()[:32]
        return os.path.join(self.directory, _INDEX_DIR, key)

    def _index_read(self, container_id: str, ifname: str) -> list[str] | None:
        """The indexed addresses; None (scan instead) when there is no usable index."""
        try:
            with open(self._index_path(container_id, ifname)) as handle:
                return [line for line in handle.read().split() if line] or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IoFailure(f"cannot read the IPAM index in {self.directory}: {exc.strerror}") from exc

    def _index_write(self, container_id: str, ifname: str, entries: list[str]) -> None:
        path = self._index_path(container_id, ifname)
        if entries:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            durable.replace_file(path, "".join(f"{entry}\n" for entry in entries).encode())
        else:
            durable.remove_file(path)

    def _index_add(self, container_id: str, ifname: str, ip: str) -> None:
        entries = self._index_read(container_id, ifname) or []
        try:
            self._index_write(container_id, ifname, [*entries, ip] if ip not in entries else entries)
        except OSError as exc:
            raise IoFailure(f"cannot write the IPAM index in {self.directory}: {exc.strerror}") from exc

    def _index_remove(self, container_id: str, ifname: str, ip: str) -> None:
        """Drop ``ip`` from the index. The index is a hint (owner files are
        the truth), so when it cannot be rewritten (a full disk) it goes and
        lookups fall back to reading the owner files."""
        try:
            entries = self._index_read(container_id, ifname) or []
        except IoFailure:
            entries = []
        try:
            self._index_write(container_id, ifname, [entry for entry in entries if entry != ip])
        except OSError:
            try:
                durable.remove_file(self._index_path(container_id, ifname))
            except OSError as exc:
                raise IoFailure(f"cannot update the IPAM index in {self.directory}: {exc.strerror}") from exc

    def owner(self, name: str) -> tuple[str, str] | None:
        """(container ID, ifname) of a reservation; ifname is "" in host-local's old format."""
        try:
            with open(os.path.join(self.directory, name), encoding="utf-8", newline="") as handle:
                content = handle.read()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return None
        container_id, _, ifname = content.strip().partition(LINE_BREAK)
        return container_id.strip(), ifname.strip()

    def allocations(self) -> list[tuple[str, str, str]]:
        """Every reservation as (address, container ID, ifname)."""
        found = []
        for name in sorted(self.reserved()):
            owner = self.owner(name)
            if owner is not None:
                found.append((name, *owner))
        return found

    def find(self, container_id: str, ifname: str, scan: bool = True) -> list[str]:
        """The addresses of (container, ifname). Through the index; without one,
        every address file is read unless ``scan`` is False."""
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

    def last_reserved(self, range_set: int) -> str | None:
        return self.cursors.get(range_set)

    def writable(self) -> str | None:
        return None
