"""The daemon's socket: only root callers the kernel vouches for in the node's
network namespace are served. An ordinary pod cannot reach it; a pod that is
given the directory but is not root, or is in its own network namespace, is
refused."""

from __future__ import annotations

from cluster import (
    NAMESPACE,
    apply,
    delete_pods,
    kube_json,
    kubectl,
    node_names,
    test_pod,
    unique,
    wait_running,
)

# Connect to the daemon's socket and print its first answer (the daemon judges
# the peer before it reads anything, so the bytes sent do not matter).
PROBE = """
import socket
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect("/run/cni-render/daemon.sock")
    s.sendall(b"CNIR1 - - - 0 0\\n")
    print("answer:", s.recv(4096).decode(errors="replace"))
except OSError as exc:
    print("unreachable:", exc)
"""


def image() -> str:
    ds = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def probe_pod(name: str, node: str, *, host_network: bool, run_as_user: int | None, mount: bool) -> dict:
    pod = test_pod(name, node)
    spec = pod["spec"]
    spec["hostNetwork"] = host_network
    if run_as_user is not None:
        spec["securityContext"] = {"runAsUser": run_as_user, "runAsGroup": run_as_user}
    if mount:
        spec["volumes"] = [{"name": "state", "hostPath": {"path": "/run/cni-render", "type": "Directory"}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "state", "mountPath": "/run/cni-render"}]
    spec["containers"][0]["image"] = image()
    spec["containers"][0]["command"] = ["sleep", "3600"]
    return pod


def test_ordinary_pods_cannot_use_the_daemon() -> None:
    node = node_names()[0]
    cases = {
        unique("plain"): dict(host_network=False, run_as_user=None, mount=False),
        unique("nonroot"): dict(host_network=True, run_as_user=1000, mount=True),
        unique("ownnet"): dict(host_network=False, run_as_user=0, mount=True),
    }
    apply([probe_pod(name, node, **case) for name, case in cases.items()])
    try:
        wait_running(cases)
        answers = {name: kubectl("-n", NAMESPACE, "exec", name, "--", "python3", "-c", PROBE) for name in cases}
        plain, nonroot, ownnet = cases
        assert answers[plain].startswith("unreachable:"), answers[plain]  # no socket there at all
        assert answers[nonroot].startswith("unreachable:") and "ermission denied" in answers[nonroot], answers[nonroot]
        assert "REFUSED" in answers[ownnet] and "network namespace" in answers[ownnet], answers[ownnet]
    finally:
        delete_pods(*cases)
