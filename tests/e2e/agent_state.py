"""The agent as the end-to-end tests see it: its pods, its Events, the template
override ConfigMap, and an override whose effect a test can read off a pod's
node end (through cluster/kubectl and cluster/node)."""

from __future__ import annotations

import json
from typing import Any

from cluster import kube_json, kubectl, node_names, on_node
from node_state import host_link_of

QLEN = 4242
OVERRIDE = '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} txqueuelen ' + str(QLEN) + "\n"


def set_templates(data: dict[str, str] | None) -> None:
    """The ConfigMap cni-render-templates holds ``data`` (None or empty: no override)."""
    kubectl("-n", "kube-system", "patch", "configmap", "cni-render-templates", "--type=merge",
            "-p", json.dumps({"data": data or None}))


def node_end_txqueuelen(node: str, pod_ip: str) -> int:
    link = host_link_of(node, pod_ip)
    return int(json.loads(on_node(node, "ip", "-j", "link", "show", "dev", link))[0]["txqlen"])


def events(reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube_json("get", "events", "-A", "--field-selector", f"reason={reason}")["items"]
    return items


def uids(reason: str) -> set[str]:
    return {e["metadata"]["uid"] for e in events(reason)}


def one_new_event_per_node(reason: str, before: set[str]) -> dict[str, dict[str, Any]]:
    """The Events of ``reason`` posted since ``before`` (their UIDs), by node;
    every node's, or an AssertionError naming the nodes still missing."""
    fresh = {e["involvedObject"]["name"]: e for e in events(reason) if e["metadata"]["uid"] not in before}
    missing = set(node_names()) - set(fresh)
    assert not missing, f"no new {reason} Event from {sorted(missing)} yet"
    return fresh


def agent_pod_list(*selectors: str) -> list[dict[str, Any]]:
    """The DaemonSet's pods (``selectors``: more kubectl arguments, e.g. a field selector)."""
    selector = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")["spec"]["selector"]["matchLabels"]
    labels = ",".join(f"{key}={value}" for key, value in selector.items())
    items: list[dict[str, Any]] = kube_json("-n", "kube-system", "get", "pods", "-l", labels, *selectors)["items"]
    return items


def agent_pod_on(node: str) -> dict[str, Any]:
    (pod,) = agent_pod_list("--field-selector", f"spec.nodeName={node}")
    return pod


def restarts(pod: dict[str, Any]) -> int:
    return sum(status.get("restartCount", 0) for status in pod["status"].get("containerStatuses", []))


def agent_restarts() -> dict[str, int]:
    """Container restarts of the DaemonSet's pod on each node."""
    return {pod["spec"]["nodeName"]: restarts(pod) for pod in agent_pod_list()}
