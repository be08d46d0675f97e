"""cni-render-ipam's operations, used in-process by the plugin and by the
``cni-render-ipam`` executable alike."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

from cni_render.cni.errors import InvalidConfig, InvalidEnvironment, NotAvailable, StateMismatch
from cni_render.ipam.allocator import allocate
from cni_render.ipam.attachments import is_valid
from cni_render.ipam.model import IpamConfig
from cni_render.ipam.store import Store

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def requested_addresses(
    cni_args: Mapping[str, str], args: Mapping[str, Any], runtime_config: Mapping[str, Any]
) -> list[IPAddress]:
    """Addresses asked for by CNI_ARGS ``IP=``, ``args.cni.ips`` and ``runtimeConfig.ips``."""
    found: list[IPAddress] = []
    for raw in filter(None, cni_args.get("IP", "").split(",")):
        found.append(_parse_requested(raw, "CNI_ARGS IP", InvalidEnvironment))
    cni = args.get("cni") if isinstance(args, Mapping) else None
    for raw in (cni or {}).get("ips", []) if isinstance(cni, Mapping) else []:
        found.append(_parse_requested(raw, "args.cni.ips", InvalidConfig))
    for raw in runtime_config.get("ips") or []:
        found.append(_parse_requested(raw, "runtimeConfig.ips", InvalidConfig))
    unique: list[IPAddress] = []
    for ip in found:
        if ip not in unique:
            unique.append(ip)
    return unique


def _parse_requested(raw: Any, source: str, error: type) -> IPAddress:
    if not isinstance(raw, str):
        raise error(f"{source}: {raw!r} is not an address string")
    try:
        return ipaddress.ip_interface(raw.strip()).ip
    except ValueError as exc:
        raise error(f"{source}: {raw!r} is not an IP address: {exc}") from exc


@dataclass
class LocalIpam:
    config: IpamConfig
    network: str
    container_id: str = ""
    ifname: str = ""
    requested: tuple[IPAddress, ...] = ()
    store: Store = None  # type: ignore[assignment]
    knows_owners = True  # every address file names its attachment

    def __post_init__(self) -> None:
        if self.store is None:
            self.store = Store(self.config.data_dir, self.network)

    def add(self) -> dict[str, Any]:
        with self.store.locked() as store:
            allocations = allocate(
                store, self.config, self.container_id, self.ifname, self.requested
            )
        result: dict[str, Any] = {"ips": [a.to_result() for a in allocations]}
        result["routes"] = [route.to_result() for route in self.config.routes]
        return result

    def held(self) -> list[str]:
        """The addresses of this attachment, without releasing them."""
        with self.store.locked() as store:
            return store.find(self.container_id, self.ifname)

    def delete(self) -> list[str]:
        """Release every address of (container, ifname); returns them. The
        record goes last, with any orphan a killed ADD or DEL left in it."""
        with self.store.locked() as store:
            released = store.find(self.container_id, self.ifname)
            for ip in released:
                store.release(ip)
            store.prune_record(self.container_id, self.ifname)
        return released

    def check(self, expected: Iterable[str]) -> None:
        with self.store.locked() as store:
            held = set(store.find(self.container_id, self.ifname))
        if not held:
            raise StateMismatch(
                f"no address is allocated to container {self.container_id} "
                f"interface {self.ifname} in network {self.network}"
            )
        missing = sorted(set(expected) - held)
        if missing:
            raise StateMismatch(
                f"{', '.join(missing)} from the previous result is not allocated to container "
                f"{self.container_id} interface {self.ifname}"
            )

    def allocations(self) -> list[tuple[str, str, str]]:
        """Every reservation of the network as (address, container ID, ifname)."""
        with self.store.locked() as store:
            return store.allocations()

    def gc(self, valid: set[tuple[str, str]]) -> list[tuple[str, str, str]]:
        """Release allocations whose (container, ifname) is not in ``valid``:
        the ``cni-render-ipam`` executable's GC, which has no node ends to
        mind (the plugin's GC releases per attachment, see commands.gc)."""
        stale = []
        with self.store.locked() as store:
            for ip, container_id, ifname in store.allocations():
                if not is_valid((container_id, ifname), valid):
                    store.release(ip)
                    stale.append((ip, container_id, ifname))
            store.sweep_records()
        return stale

    def sweep_records(self) -> int:
        """Drop the index entries that name no address of their attachment
        (a killed ADD or DEL left them); releases nothing. Returns how many."""
        with self.store.locked() as store:
            return store.sweep_records()

    def status(self) -> None:
        problem = self.store.writable()
        if problem:
            raise NotAvailable(f"IPAM data directory is not writable: {problem}")
