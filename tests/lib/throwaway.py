"""Throwaway nodes and pods for the namespace tests: the package's sandbox
(:mod:`cni_render.cli.sandbox`) with the tests' defaults.

A :class:`Node` is a sandbox named ``cnir-test-<pid>-…`` running either template
set, with (``daemon``) or without (``in-process``) the node's daemon, and a
routed ``testnet`` config whose state stays in its temporary directory. The
plugin always runs inside the node, so the machine's own links and routes are
never touched; ``close`` removes everything the node made, also after failures.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from cni_render.cli.sandbox import (
    BIN_DIR,
    NETNS_PREFIX,
    REFERENCE_PLUGINS,
    CniCall,
    Pod,
    Sandbox,
    namespaces,
    pod_addresses,
    run,
)
from cni_render.cni.config import DEFAULT_BRIDGE

__all__ = [
    "BRIDGE", "IPAM_PLUGIN", "MODES", "PLUGIN", "REFERENCE_PLUGINS", "TEMPLATE_SETS", "CniCall", "Node", "Pod",
    "host_interface", "leftover_namespaces", "pod_addresses", "pod_interface", "root_links", "run", "with_prev_result",
]

PLUGIN = str(BIN_DIR / "cni-render")
IPAM_PLUGIN = str(BIN_DIR / "cni-render-ipam")
TEST_PREFIX = f"{NETNS_PREFIX}test-"
MODES = ("in-process", "daemon")
TEMPLATE_SETS = ("routed", "bridge")
BRIDGE = DEFAULT_BRIDGE


class Node(Sandbox):
    """A throwaway test node; ``plugin_dir`` holds the ``cni-render`` it runs
    (the virtualenv's console script unless the launchers are asked for)."""

    def __init__(self, mode: str = "in-process", plugin_dir: str = str(BIN_DIR), template_set: str = "routed") -> None:
        self.mode = mode
        self.template_set = template_set
        super().__init__("test", plugin_dir=plugin_dir, daemon=mode == "daemon")

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A routed cni-render network config whose state stays in this node's tmp dir."""
        config = self.contain({
            "cniVersion": "1.0.0",
            "name": "testnet",
            "type": "cni-render",
            "mode": self.template_set,
            "ipam": {
                "type": "cni-render-ipam",
                "ranges": [[{"subnet": "10.244.1.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        })
        config.update(overrides)
        return config

    def allocations(self, network: str = "testnet") -> list[str]:
        return super().allocations(network)


def host_interface(result: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's node end in a result (either template set)."""
    return next(i for i in result["interfaces"] if i["name"].startswith("cr") and not i.get("sandbox"))


def pod_interface(result: Mapping[str, Any]) -> dict[str, Any]:
    return next(i for i in result["interfaces"] if i.get("sandbox"))


def leftover_namespaces() -> list[str]:
    """This run's test namespaces that still exist (a concurrent run's are its own business)."""
    return namespaces(f"{TEST_PREFIX}{os.getpid()}-")


def root_links() -> set[str]:
    return {link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]).stdout)}


def with_prev_result(config: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(config)
    merged["prevResult"] = dict(result)
    return merged
