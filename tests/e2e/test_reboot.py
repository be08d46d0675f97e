"""A node reboots with a template override active (cluster/reboot-node.sh: its
processes killed, its tmpfs /run and network gone, its disk kept): the pods
the kubelet starts again right after the boot, before the agent has heard
from the API server, and every pod created later get the operator's
datapath, never the built-in one."""

from __future__ import annotations

import json
from typing import Any

from cluster import (
    NAMESPACE,
    REPO,
    apply,
    eventually,
    kube_json,
    kubectl,
    node_names,
    on_node,
    pod_ips,
    pod_manifest,
    run,
    unique,
    wait_running,
)
from node_state import host_link_of

QLEN = 4343
OVERRIDE = '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} txqueuelen ' + str(QLEN) + "\n"


def set_templates(data: dict[str, str] | None) -> None:
    kubectl("-n", "kube-system", "patch", "configmap", "cni-render-templates", "--type=merge",
            "-p", json.dumps({"data": data or None}))


def reloads() -> set[str]:
    found = kube_json("get", "events", "-A", "--field-selector", "reason=TemplatesReloaded")["items"]
    return {e["metadata"]["uid"] for e in found if "(1 files)" in e["message"]}


def txqueuelen(node: str, pod: dict[str, Any]) -> int:
    link = host_link_of(node, pod_ips(pod)[0])
    return int(json.loads(on_node(node, "ip", "-j", "link", "show", "dev", link))[0]["txqlen"])


def restarts(pod: dict[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in pod["status"].get("containerStatuses", []))


def agent_ready_everywhere() -> bool:
    ds = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")["status"]
    assert ds.get("numberReady") == ds.get("desiredNumberScheduled") == len(node_names()), ds
    return True


def test_a_rebooted_node_keeps_the_operators_datapath() -> None:
    node = node_names()[-1]
    before = reloads()
    set_templates({"add-host.ip.j2": OVERRIDE})
    names = [unique("boot") for _ in range(4)]
    try:
        def loaded_everywhere() -> bool:
            fresh = len(reloads() - before)
            assert fresh >= len(node_names()), f"{fresh} of {len(node_names())} nodes loaded the override"
            return True

        eventually("every node to load the override", loaded_everywhere, timeout=90)
        apply([pod_manifest(name, node) for name in names])
        pods = wait_running(names)
        assert {txqueuelen(node, pod) for pod in pods.values()} == {QLEN}
        restarted_before = {name: restarts(pod) for name, pod in pods.items()}

        run([str(REPO / "cluster" / "reboot-node.sh"), node], timeout=300)

        def started_again() -> dict[str, dict[str, Any]]:
            now = wait_running(names, timeout=10)
            stale = [n for n, pod in now.items() if restarts(pod) <= restarted_before[n]]
            assert not stale, f"not started again yet: {stale}"
            return now

        again = eventually(f"the pods on {node} to start again after the reboot", started_again, timeout=240,
                           interval=5)
        lengths = {name: txqueuelen(node, pod) for name, pod in again.items()}
        assert set(lengths.values()) == {QLEN}, f"pods started after the reboot without the override: {lengths}"

        later = unique("after-boot")
        apply(pod_manifest(later, node))
        names.append(later)
        assert txqueuelen(node, wait_running([later])[later]) == QLEN
    finally:
        set_templates(None)
        kubectl("-n", NAMESPACE, "delete", "pod", *names, "--ignore-not-found", "--wait=true", "--timeout=120s",
                timeout=180)
        eventually("the DaemonSet to be ready on every node", agent_ready_everywhere, timeout=180, interval=3)
