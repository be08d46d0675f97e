"""``cni-render node uninstall``: remove from the node everything the agent
put there (the conflist, the shim, its routes (by protocol), its nft table)
and nothing else: IPAM state, other conflists, other plugins and other
routes stay. A marker in /run/cni-render tells a still-running agent on the
node to stop putting things back until it restarts: it holds a generation
number that each uninstall increments, and an agent that sees a generation
newer than the one at its start stops (no clock: a clock step neither keeps a
reinstalled agent uninstalled nor hides a fresh uninstall from a running one).
"""

from __future__ import annotations

import os

from cni_render.cni.errors import ApplyFailed
from cni_render.host import system
from cni_render.node import files
from cni_render.node.masquerade import TABLE, apply_masquerade, render_masquerade
from cni_render.node.routes import ROUTE_PROTOCOL, apply_routes, read_current_routes, uninstall_plan
from cni_render.node.settings import Paths


def uninstall(paths: Paths) -> list[str]:
    """Remove the agent's things; what was removed, one line each."""
    done = []
    _mark(paths)
    for path in _files(paths):
        if files.remove_file(path):
            done.append(f"removed {path}")
    plan = uninstall_plan(read_current_routes())
    if plan.delete:
        apply_routes(plan)
        done += [f"removed route {route.dst} via {route.via} proto {ROUTE_PROTOCOL}" for route in plan.delete]
    if _table_exists():
        apply_masquerade(render_masquerade(False, {}))
        done.append(f"removed nft table inet {TABLE}")
    return done


def _files(paths: Paths) -> tuple[str, ...]:
    """The agent's files on the node: the conflist, the shim, the saved override set."""
    return paths.conflist, os.path.join(paths.cni_bin_dir, "cni-render"), paths.saved_templates


def leftovers(paths: Paths) -> list[str]:
    """What of the agent's is still on the node (empty: the uninstall is complete)."""
    left = [path for path in _files(paths) if os.path.lexists(path)]
    left += [f"route {r.dst} proto {ROUTE_PROTOCOL}" for r in read_current_routes() if r.protocol == ROUTE_PROTOCOL]
    if _table_exists():
        left.append(f"nft table inet {TABLE}")
    return left


def _table_exists() -> bool:
    try:
        system.run_nft_batch(f"list table inet {TABLE}\n", where="node masquerade check")
    except ApplyFailed:
        return False
    return True


def _mark(paths: Paths) -> None:
    os.makedirs(paths.state_dir, mode=0o755, exist_ok=True)
    files.write_atomically(paths.uninstalled_marker, f"{uninstall_generation(paths) + 1}\n".encode())


def uninstall_generation(paths: Paths) -> int:
    """How many times ``uninstall`` ran on this node since boot (0: never; an
    unreadable marker counts as 1)."""
    content = files.read_bytes(paths.uninstalled_marker)
    if content is None:
        return 0
    try:
        return max(int(content.strip()), 1)
    except ValueError:
        return 1  # a marker of an older agent: one uninstall


def uninstalled_since(paths: Paths, generation: int) -> bool:
    """True when ``uninstall`` ran since the agent read ``generation`` at its
    start (it must then stop restoring)."""
    return uninstall_generation(paths) > generation
