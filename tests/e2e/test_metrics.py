"""Prometheus metrics from the agent on every node (port 9645, node-local)."""

from __future__ import annotations

from cluster import apply, delete_pods, families, node_names, on_node, pod_manifest, unique, wait_running

PORT = 9645


def metrics(node: str) -> str:
    return on_node(node, "curl", "-sf", "--max-time", "5", f"http://127.0.0.1:{PORT}/metrics")


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_count_calls_addresses_and_routes() -> None:
    nodes = node_names()
    before = {node: value(metrics(node), "cni_render_calls_total", command="ADD", code="0") for node in nodes}
    names = {unique(f"met-{node}"): node for node in nodes}
    apply([pod_manifest(name, node) for name, node in names.items()])
    try:
        wait_running(names)
        for node in nodes:
            text = metrics(node)
            assert value(text, "cni_render_calls_total", command="ADD", code="0") >= before[node] + 1, node
            assert value(text, "cni_render_call_duration_seconds_count") >= 1, node
            assert value(text, "cni_render_ipam_addresses", state="in_use") >= 1, node
            assert value(text, "cni_render_ipam_addresses", state="free") > 100, node
            assert value(text, "cni_render_node_routes") == (len(nodes) - 1) * len(families()), node
    finally:
        delete_pods(*names)
