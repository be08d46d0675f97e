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
    pod_manifest,
    unique,
    wait_running,
)

# Connect to the daemon's socket and print its first answer: the daemon judges
# the peer as it accepts, before it reads anything, so nothing is sent.
PROBE = """
import socket
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
try:
    s.connect("/run/cni-render/daemon.sock")
    print("answer:", s.recv(4096).decode(errors="replace"))
except OSError as exc:
    print("unreachable:", exc)
"""


def image() -> str:
    ds = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")
    return ds["spec"]["template"]["spec"]["containers"][0]["image"]


def probe_pod(name: str, node: str, *, host_network: bool, run_as_user: int | None, mount: bool,
              capabilities: tuple[str, ...] = ()) -> dict:
    pod = pod_manifest(name, node)
    spec = pod["spec"]
    spec["hostNetwork"] = host_network
    if run_as_user is not None:
        spec["securityContext"] = {"runAsUser": run_as_user, "runAsGroup": run_as_user}
    if mount:
        spec["volumes"] = [{"name": "state", "hostPath": {"path": "/run/cni-render", "type": "Directory"}}]
        spec["containers"][0]["volumeMounts"] = [{"name": "state", "mountPath": "/run/cni-render"}]
    spec["containers"][0]["image"] = image()
    if capabilities:
        spec["containers"][0]["securityContext"] = {"capabilities": {"add": list(capabilities)}}
    spec["containers"][0]["command"] = ["sleep", "3600"]
    return pod


def test_ordinary_pods_cannot_use_the_daemon() -> None:
    node = node_names()[0]
    cases = {
        unique("plain"): dict(host_network=False, run_as_user=None, mount=False),
        unique("nonroot"): dict(host_network=True, run_as_user=1000, mount=True),
        unique("ownnet"): dict(host_network=False, run_as_user=0, mount=True),
        unique("ownnet-caps"): dict(host_network=False, run_as_user=0, mount=True, capabilities=("NET_ADMIN", "SYS_ADMIN")),
    }
    apply([probe_pod(name, node, **case) for name, case in cases.items()])
    try:
        wait_running(cases)
        answers = {name: kubectl("-n", NAMESPACE, "exec", name, "--", "python3", "-c", PROBE) for name in cases}
        plain, nonroot, ownnet, ownnet_caps = cases
        assert answers[plain].startswith("unreachable:"), answers[plain]  # no socket there at all
        assert answers[nonroot].startswith("unreachable:") and "ermission denied" in answers[nonroot], answers[nonroot]
        assert "REFUSED" in answers[ownnet] and "CAP_NET_ADMIN" in answers[ownnet], answers[ownnet]
        assert "REFUSED" in answers[ownnet_caps] and "network namespace" in answers[ownnet_caps], answers[ownnet_caps]
    finally:
        delete_pods(*cases)
