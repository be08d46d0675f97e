"""Choosing addresses: one per range set, requested ones first, else round-robin.

Runs under the store's lock. Every reservation is released again when any
range set cannot be satisfied, so a failed allocation leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterator, Sequence, Union

from cni_render.cni.errors import AddressUnavailable
from cni_render.ipam.model import AddressRange, IpamConfig, RangeSet
from cni_render.ipam.store import Store

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]


@dataclass(frozen=True)
class Allocation:
    address: IPInterface  # the pod address with its subnet's prefix length
    gateway: IPAddress
    range_set: int

    def to_result(self) -> dict[str, str]:
        return {"address": str(self.address), "gateway": str(self.gateway)}


def allocate(
    store: Store,
    config: IpamConfig,
    container_id: str,
    ifname: str,
    requested: Sequence[IPAddress] = (),
) -> list[Allocation]:
    existing = store.find(container_id, ifname, scan=False)
    if existing:
        raise AddressUnavailable(
            f"container {container_id} interface {ifname} already holds "
            f"{', '.join(existing)} in this network; DEL it before adding it again"
        )
    _check_requested_fit(config, requested)
    taken = store.reserved()
    done: list[Allocation] = []
    try:
        for index, range_set in enumerate(config.range_sets):
            wanted = [ip for ip in requested if any(ip in r for r in range_set)]
            allocation = (
                _reserve_requested(store, range_set, index, wanted[0], container_id, ifname)
                if wanted
                else _reserve_next(store, range_set, index, taken, container_id, ifname)
            )
            done.append(allocation)
    except BaseException:
        for allocation in done:
            store.release(str(allocation.address.ip))
        raise
    return done


def _check_requested_fit(config: IpamConfig, requested: Sequence[IPAddress]) -> None:
    for ip in requested:
        owners = [i for i, rs in enumerate(config.range_sets) if any(ip in r for r in rs)]
        if not owners:
            ranges = ", ".join(str(r) for rs in config.range_sets for r in rs)
            raise AddressUnavailable(f"requested address {ip} is in no configured range ({ranges})")
    for index, range_set in enumerate(config.range_sets):
        wanted = [ip for ip in requested if any(ip in r for r in range_set)]
        if len(wanted) > 1:
            raise AddressUnavailable(
                f"requested addresses {', '.join(map(str, wanted))} all fall in range set "
                f"{index}; a pod gets one address per range set"
            )


def _range_of(range_set: RangeSet, ip: IPAddress) -> AddressRange:
    return next(r for r in range_set if ip in r)


def _allocation(rng: AddressRange, ip: IPAddress, index: int) -> Allocation:
    return Allocation(
        address=ipaddress.ip_interface(f"{ip}/{rng.subnet.prefixlen}"),
        gateway=rng.gateway,
        range_set=index,
    )


def _reserve_requested(
    store: Store, range_set: RangeSet, index: int, ip: IPAddress, container_id: str, ifname: str
) -> Allocation:
    rng = _range_of(range_set, ip)
    gateway_of = next((r for r in range_set if r.gateway == ip), None)
    if gateway_of is not None:
        raise AddressUnavailable(f"requested address {ip} is the gateway of {gateway_of.subnet}")
    if not store.reserve(ip, container_id, ifname, index):
        owner = store.owner(str(ip))
        held_by = f" by container {owner[0]}" if owner else ""
        raise AddressUnavailable(f"requested address {ip} is already allocated{held_by}")
    return _allocation(rng, ip, index)


def _reserve_next(
    store: Store, range_set: RangeSet, index: int, taken: set[str], container_id: str, ifname: str
) -> Allocation:
    gateways = {r.gateway for r in range_set}
    for rng, ip in _candidates(range_set, store.last_reserved(index)):
        if ip in gateways or str(ip) in taken:
            continue
        if store.reserve(ip, container_id, ifname, index):
            return _allocation(rng, ip, index)
    ranges = ", ".join(str(r) for r in range_set)
    raise AddressUnavailable(f"no IP addresses available in range set: {ranges}")


def _candidates(range_set: RangeSet, last: str | None) -> Iterator[tuple[AddressRange, IPAddress]]:
    """Every address of the set once, starting after the last reserved one."""
    start_range, start_offset = 0, 0
    if last is not None:
        try:
            last_ip = ipaddress.ip_address(last)
        except ValueError:
            last_ip = None
        for i, rng in enumerate(range_set):
            if last_ip is not None and last_ip in rng:
                start_range, start_offset = i, int(last_ip) - int(rng.start) + 1
                break
    order = list(range(start_range, len(range_set))) + list(range(0, start_range))
    for position, i in enumerate(order):
        rng = range_set[i]
        first = start_offset if position == 0 else 0
        for offset in range(first, rng.size):
            yield rng, rng.start + offset
    if start_offset:
        rng = range_set[start_range]
        for offset in range(0, start_offset):
            yield rng, rng.start + offset
