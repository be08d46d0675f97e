"""A node reboots with a template override active (cluster/reboot-node.sh: its
processes killed, its tmpfs /run and network gone, its disk kept): the pods
the kubelet starts again right after the boot, before the agent has heard
from the API server, and every pod created later get the operator's
datapath, never the built-in one."""

from __future__ import annotations

from typing import Any

from agent_state import (
    OVERRIDE,
    QLEN,
    node_end_txqueuelen,
    one_new_event_per_node,
    restarts,
    set_templates,
    uids,
)
from cluster import (
    NAMESPACE,
    REPO,
    apply,
    eventually,
    kube_json,
    kubectl,
    node_names,
    pod_ips,
    pod_manifest,
    run,
    unique,
    wait_running,
)


def agent_ready_everywhere() -> bool:
    ds = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")["status"]
    assert ds.get("numberReady") == ds.get("desiredNumberScheduled") == len(node_names()), ds
    return True


def test_a_rebooted_node_keeps_the_operators_datapath() -> None:
    node = node_names()[-1]
    before = uids("TemplatesReloaded")
    set_templates({"add-host.ip.j2": OVERRIDE})
    names = [unique("boot") for _ in range(4)]
    try:
        eventually("every node to load the override",
                   lambda: one_new_event_per_node("TemplatesReloaded", before), timeout=90)
        apply([pod_manifest(name, node) for name in names])
        pods = wait_running(names)
        assert {node_end_txqueuelen(node, pod_ips(pod)[0]) for pod in pods.values()} == {QLEN}
        restarted_before = {name: restarts(pod) for name, pod in pods.items()}

        run([str(REPO / "cluster" / "reboot-node.sh"), node], timeout=300)

        def started_again() -> dict[str, dict[str, Any]]:
            now = wait_running(names, timeout=10)
            stale = [n for n, pod in now.items() if restarts(pod) <= restarted_before[n]]
            assert not stale, f"not started again yet: {stale}"
            return now

        again = eventually(f"the pods on {node} to start again after the reboot", started_again, timeout=240,
                           interval=5)
        lengths = {name: node_end_txqueuelen(node, pod_ips(pod)[0]) for name, pod in again.items()}
        assert set(lengths.values()) == {QLEN}, f"pods started after the reboot without the override: {lengths}"

        later = unique("after-boot")
        apply(pod_manifest(later, node))
        names.append(later)
        assert node_end_txqueuelen(node, pod_ips(wait_running([later])[later])[0]) == QLEN
    finally:
        set_templates(None)
        kubectl("-n", NAMESPACE, "delete", "pod", *names, "--ignore-not-found", "--wait=true", "--timeout=120s",
                timeout=180)
        eventually("the DaemonSet to be ready on every node", agent_ready_everywhere, timeout=180, interval=3)
