"""The CNI commands (ADD, DEL, CHECK, GC, STATUS; VERSION needs no module) and
the dispatch from a parsed request to them. May import
:mod:`cni_render.datapath`, :mod:`cni_render.ipam`, :mod:`cni_render.host`
and :mod:`cni_render.cni`; never the fast path, the agent or the CLI.

Dispatched through a table of module paths so that each
invocation imports only what its command needs (VERSION imports nothing)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cni_render.cni.config import NetworkConfig
from cni_render.cni.request import Request
from cni_render.host.log import Log

if TYPE_CHECKING:
    from cni_render.datapath.render import Renderer
    from cni_render.ipam import DelegatedIpam, LocalIpam

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
    _renderer: Renderer | None = field(default=None, repr=False)

    def renderer(self) -> Renderer:
        if self._renderer is None:
            from cni_render.datapath.render import shared_renderer

            self._renderer = shared_renderer(
                template_set=self.config.mode,
                override_dir=self.config.template_dir,
                cache_dir=os.path.join(self.config.cache_dir, "jinja"),
            )
        return self._renderer

    def ipam(self) -> LocalIpam | DelegatedIpam:
        from cni_render.ipam import select_ipam

        return select_ipam(self.request, self.config)


def attachment_lock_path(state_dir: str, network: str, container_id: str, ifname: str) -> str:
    """One of 256 lock files, picked by the node end's hash: ADD, DEL and GC
    of one attachment exclude each other (a stripe may also hold others)."""
    from cni_render.datapath.naming import host_ifname

    stripe = host_ifname(network, container_id, ifname)[-2:]
    return os.path.join(state_dir, "locks", f"attachment-{stripe}.lock")


def attachment_lock(inv: Invocation) -> Any:
    """Serialises ADD, DEL and GC of the invocation's attachment, so a
    duplicate call never tears down what another made."""
    from cni_render.host.locking import file_lock

    request = inv.request
    return file_lock(
        attachment_lock_path(inv.config.state_dir, inv.config.name, request.container_id, request.ifname)
    )


def delegated_gc_lock(inv: Invocation, exclusive: bool) -> Any:
    """Held shared by every ADD with a delegated IPAM and exclusively while GC
    is forwarded to it: a delegate that knows nothing of node ends must not
    collect an attachment whose ADD is still running."""
    from cni_render.host.locking import file_lock

    path = os.path.join(inv.config.state_dir, "locks", f"delegated-gc-{inv.config.name}.lock")
    return file_lock(path, shared=not exclusive)


def run(invocation: Invocation) -> dict[str, Any] | None:
    module = importlib.import_module(COMMAND_MODULES[invocation.request.command])
    result: dict[str, Any] | None = module.run(invocation)  # every command module's run() returns this
    return result
