"""Address management: in-process cni-render-ipam, or a delegated IPAM plugin."""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Union

from ..config import IN_PROCESS_IPAM, NetworkConfig
from ..request import Request
from .delegated import DelegatedIpam
from .local import LocalIpam, requested_addresses
from .model import parse_ipam_config


class Ipam(Protocol):
    def add(self) -> dict[str, Any]: ...

    def delete(self) -> list[str]: ...

    def check(self, expected: Iterable[str]) -> None: ...

    def gc(self, valid: set[tuple[str, str]]) -> list[tuple[str, str, str]]: ...

    def status(self) -> None: ...


def select_ipam(request: Request, config: NetworkConfig) -> Union[LocalIpam, DelegatedIpam]:
    if config.ipam_type == IN_PROCESS_IPAM:
        return LocalIpam(
            config=parse_ipam_config(config.ipam),
            network=config.name,
            container_id=request.container_id,
            ifname=request.ifname,
            requested=tuple(
                requested_addresses(request.args, config.args, config.runtime_config)
            )
            if request.command == "ADD"
            else (),
        )
    return DelegatedIpam(
        plugin_type=config.ipam_type,
        environ=request.raw_env,
        raw_config=config.raw,
        cni_path=request.cni_path,
    )
