"""Driving the local cluster from the end-to-end tests: kubectl (cluster/kubectl),
commands on nodes (cluster/node), pods made from the test image, waiting."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / "cluster" / "kubectl"
NODE = REPO / "cluster" / "node"
STATE = REPO / ".cluster"


def _versions() -> dict[str, str]:
    pairs = {}
    for line in (REPO / "cluster" / "versions.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


VERSIONS = _versions()
TEST_IMAGE = VERSIONS["TEST_IMAGE"]
NAMESPACE = "cni-render-e2e"


class CommandFailed(AssertionError):
    pass


def run(args: list[str], *, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(args, input=input, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise CommandFailed(f"{' '.join(map(str, args))} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def kubectl(*args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
    return run([str(KUBECTL), *args], input=input, check=check, timeout=timeout)


def kube_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def apply(manifest: dict[str, Any] | list[dict[str, Any]]) -> None:
    items = manifest if isinstance(manifest, list) else [manifest]
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def on_node(node: str, *args: str, check: bool = True, timeout: float = 60) -> str:
    return run([str(NODE), node, "--", *args], check=check, timeout=timeout)


def eventually(what: str, probe: Callable[[], Any], timeout: float = 120, interval: float = 1.0) -> Any:
    """probe() until it returns something truthy without raising; its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except (AssertionError, subprocess.SubprocessError, ValueError, KeyError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}: {last}")
        time.sleep(interval)


def nodes() -> list[dict[str, Any]]:
    return kube_json("get", "nodes")["items"]


def node_names() -> list[str]:
    return sorted(n["metadata"]["name"] for n in nodes())


def node_ip(node: dict[str, Any], family: int) -> str:
    for address in node["status"]["addresses"]:
        if address["type"] == "InternalIP" and ipaddress.ip_address(address["address"]).version == family:
            return address["address"]
    raise KeyError(f"{node['metadata']['name']} has no IPv{family} InternalIP")


def pod_cidrs(node: dict[str, Any]) -> list[ipaddress._BaseNetwork]:
    return [ipaddress.ip_network(c) for c in node["spec"].get("podCIDRs", [])]


def families() -> list[int]:
    """The cluster's IP families, from the first node's pod CIDRs."""
    return sorted({c.version for c in pod_cidrs(nodes()[0])})


def pod_manifest(name: str, node: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"e2e": "cni-render", **(labels or {})}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "web", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent", "ports": [{"containerPort": 8080}]}
            ],
            **spec,
        },
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_running(names: Iterable[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
    wanted = set(names)

    def ready() -> dict[str, dict[str, Any]] | None:
        pods = {p["metadata"]["name"]: p for p in kube_json("-n", NAMESPACE, "get", "pods")["items"]}
        missing = [n for n in wanted if not _ready(pods.get(n))]
        if missing:
            raise AssertionError(f"not ready yet: {sorted(missing)[:5]}")
        return {n: pods[n] for n in wanted}

    return eventually("pods to run", ready, timeout=timeout, interval=2)


def _ready(pod: dict[str, Any] | None) -> bool:
    if not pod:
        return False
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pod_ips(pod: dict[str, Any]) -> list[str]:
    return [entry["ip"] for entry in pod["status"].get("podIPs", [])]


def url(ip: str, port: int = 8080, path: str = "/") -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{path}"


def pod_fetch(pod: str, address: str, *, timeout: int = 5) -> str:
    # busybox wget's own -T crashes (SIGSEGV) in Debian's busybox-static: time it out from outside
    return kubectl("-n", NAMESPACE, "exec", pod, "--", "timeout", str(timeout), "wget", "-qO-", address, timeout=timeout + 30)


def node_fetch(node: str, address: str, *, timeout: int = 5) -> str:
    return on_node(node, "curl", "-s", "--max-time", str(timeout), "--fail", address, timeout=timeout + 30)


def delete_pods(*names: str) -> None:
    if names:
        kubectl("-n", NAMESPACE, "delete", "pod", *names, "--wait=true", "--timeout=120s", timeout=180)
