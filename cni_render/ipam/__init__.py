"""Address management: in-process cni-render-ipam, or a delegated IPAM plugin.
May import :mod:`cni_render.host` (locks, the durable writer, commands) and
:mod:`cni_render.cni`; never the datapath or anything above it.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, Union

from cni_render.cni.config import IN_PROCESS_IPAM, NetworkConfig
from cni_render.cni.errors import InvalidConfig
from cni_render.cni.request import Request
from cni_render.ipam.delegated import (
    DelegatedIpam as DelegatedIpam,  # re-exported: commands import it from here
)
from cni_render.ipam.local import LocalIpam as LocalIpam
from cni_render.ipam.local import requested_addresses
from cni_render.ipam.model import DEFAULT_DATA_DIR, IpamConfig, parse_ipam_config


class Ipam(Protocol):
    # Whether held() is the truth; a delegate cannot say what it holds.
    knows_owners: bool

    def add(self) -> dict[str, Any]: ...

    def held(self) -> list[str]: ...

    def delete(self) -> list[str]: ...

    def check(self, expected: Iterable[str]) -> None: ...

    def gc(self, valid: set[tuple[str, str]]) -> list[tuple[str, str, str]]: ...

    def status(self) -> None: ...


def _ipam_config(request: Request, config: NetworkConfig) -> IpamConfig:
    try:
        return parse_ipam_config(config.ipam)
    except InvalidConfig:
        if request.command != "DEL":
            raise
        # DEL releases by attachment and needs only where the store is.
        data_dir = config.ipam.get("dataDir")
        return IpamConfig(range_sets=(), data_dir=data_dir if isinstance(data_dir, str) else DEFAULT_DATA_DIR)


def select_ipam(request: Request, config: NetworkConfig) -> Union[LocalIpam, DelegatedIpam]:
    if config.ipam_type == IN_PROCESS_IPAM:
        return LocalIpam(
            config=_ipam_config(request, config),
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
