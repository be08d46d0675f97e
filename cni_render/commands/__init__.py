"""CNI commands, dispatched through a table of module paths so that each
invocation imports only what its command needs (VERSION imports nothing)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import NetworkConfig
from ..log import Log
from ..request import Request

if TYPE_CHECKING:
    from ..ipam import DelegatedIpam, LocalIpam
    from ..render import Renderer

COMMAND_MODULES = {
    "ADD": "cni_render.commands.add",
    "DEL": "cni_render.commands.delete",
    "CHECK": "cni_render.commands.check",
    "STATUS": "cni_render.commands.status",
    "GC": "cni_render.commands.gc",
}


@dataclass
class Invocation:
    """One CNI call: the request, its config, and where to log."""

    request: Request
    config: NetworkConfig
    log: Log
    _renderer: Any = field(default=None, repr=False)

    def renderer(self) -> Renderer:
        if self._renderer is None:
            from ..render import shared_renderer

            self._renderer = shared_renderer(
                template_set=self.config.mode,
                override_dir=self.config.template_dir,
                cache_dir=os.path.join(self.config.cache_dir, "jinja"),
            )
        return self._renderer

    def ipam(self) -> LocalIpam | DelegatedIpam:
        from ..ipam import select_ipam

        return select_ipam(self.request, self.config)


def attachment_lock(inv: Invocation) -> Any:
    """Serialises ADD and DEL of one attachment (256 lock files, picked by the
    node end's hash), so a duplicate call never tears down what another made."""
    from ..locking import file_lock
    from ..naming import host_ifname

    stripe = host_ifname(inv.config.name, inv.request.container_id, inv.request.ifname)[-2:]
    return file_lock(os.path.join(inv.config.state_dir, "locks", f"attachment-{stripe}.lock"))


def run(invocation: Invocation) -> dict[str, Any] | None:
    module = importlib.import_module(COMMAND_MODULES[invocation.request.command])
    return module.run(invocation)
