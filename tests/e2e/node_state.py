"""Reading a node's state from the end-to-end tests (through cluster/node)."""

from __future__ import annotations

from cluster import on_node

IPAM_DIR = "/run/cni-render/ipam"


def host_link_of(node: str, pod_ip: str) -> str:
    """The node end of a pod: the device of the node's route to the pod's address."""
    out = on_node(node, "ip", "route", "get", pod_ip)
    words = out.split()
    return words[words.index("dev") + 1] if "dev" in words else ""


def ipam_files(node: str) -> set[str]:
    out = on_node(node, "sh", "-c", f"ls {IPAM_DIR}/*/ 2>/dev/null || true")
    return {line.strip() for line in out.splitlines() if line.strip() and not line.endswith(":")}


def nft_ruleset(node: str) -> str:
    return on_node(node, "nft", "list", "ruleset")


def agent_routes(node: str) -> str:
    """The routes the node agent manages (its own route protocol), both families."""
    from cni_render.node.routes import ROUTE_PROTOCOL  # the agent's constant, one source of truth

    out = on_node(node, "ip", "route", "show", "proto", str(ROUTE_PROTOCOL))
    return out + on_node(node, "ip", "-6", "route", "show", "proto", str(ROUTE_PROTOCOL))
