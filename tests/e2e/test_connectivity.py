"""Pods on every node: Ready nodes, unique addresses from each node's pod CIDR,
and traffic in every direction the issue names, in every family the cluster has."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

from cluster import (
    NAMESPACE,
    apply,
    delete_pods,
    eventually,
    families,
    kube_json,
    kubectl,
    node_fetch,
    node_ip,
    node_names,
    nodes,
    pod_cidrs,
    pod_fetch,
    pod_ips,
    pod_manifest,
    url,
    wait_running,
)

PODS_PER_NODE = 2


@pytest.fixture(scope="module")
def pods() -> dict[str, dict[str, Any]]:
    """Two test pods on every node, Running."""
    names = []
    manifests = []
    for node in node_names():
        for i in range(PODS_PER_NODE):
            name = f"conn-{node}-{i}"
            names.append(name)
            manifests.append(pod_manifest(name, node, labels={"app": "conn"}))
    apply(manifests)
    running = wait_running(names)
    yield running
    delete_pods(*names)


def test_every_node_is_ready_with_a_cni_render_pod() -> None:
    for node in nodes():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"][0]
        assert ready["status"] == "True", f"{node['metadata']['name']}: {ready.get('message')}"
    def one_ready_agent_per_node() -> bool:
        status = kube_json("-n", "kube-system", "get", "daemonset", "cni-render")["status"]
        assert status["numberReady"] == len(nodes()) == status["desiredNumberScheduled"], status
        return True

    eventually("one Ready cni-render pod per node", one_ready_agent_per_node, timeout=60)


def test_addresses_are_unique_and_from_the_nodes_pod_cidr(pods: dict[str, dict[str, Any]]) -> None:
    cidrs = {n["metadata"]["name"]: pod_cidrs(n) for n in nodes()}
    seen: dict[str, str] = {}
    for name, pod in pods.items():
        ips = [ipaddress.ip_address(ip) for ip in pod_ips(pod)]
        assert sorted(ip.version for ip in ips) == families(), f"{name} has {ips}"
        for ip in ips:
            assert any(ip in cidr for cidr in cidrs[pod["spec"]["nodeName"]]), f"{name}: {ip} not in {cidrs}"
            assert str(ip) not in seen, f"{ip} given to both {seen.get(str(ip))} and {name}"
            seen[str(ip)] = name


def test_pod_to_pod_on_one_node_and_across_nodes(pods: dict[str, dict[str, Any]]) -> None:
    sources = [name for name in sorted(pods) if name.endswith("-0")]
    for source, target in itertools.product(sources, sorted(pods)):
        if source == target:
            continue
        for ip in pod_ips(pods[target]):
            assert pod_fetch(source, url(ip)).strip() == "It works!", f"{source} -> {target} {ip}"


def test_node_to_pod(pods: dict[str, dict[str, Any]]) -> None:
    for node in node_names():
        for name, pod in pods.items():
            for ip in pod_ips(pod):
                assert node_fetch(node, url(ip)).strip() == "It works!", f"{node} -> {name} {ip}"


def test_cross_node_traffic_keeps_the_pod_source_address(pods: dict[str, dict[str, Any]]) -> None:
    """Pod-to-pod across nodes is not masqueraded: the server sees the client pod's address."""
    first, second = node_names()[:2]
    client, server = pods[f"conn-{first}-0"], pods[f"conn-{second}-0"]
    for ip in pod_ips(server):
        family = ipaddress.ip_address(ip).version
        seen = seen_as(pod_fetch(f"conn-{first}-0", url(ip, path="/cgi-bin/whoami")))
        assert seen == [a for a in pod_ips(client) if ipaddress.ip_address(a).version == family][0]


def seen_as(answer: str) -> str:
    """The address a whoami CGI reports, without brackets or the v4-mapped prefix."""
    return answer.strip().strip("[]").removeprefix("::ffff:")


def test_pod_to_cluster_ip_service(pods: dict[str, dict[str, Any]]) -> None:
    fams = families()
    policy = "RequireDualStack" if len(fams) == 2 else "SingleStack"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "conn", "namespace": NAMESPACE},
        "spec": {
            "selector": {"app": "conn"},
            "ports": [{"port": 80, "targetPort": 8080}],
            "ipFamilyPolicy": policy,
        },
    }
    apply(service)
    try:
        svc = kube_json("-n", NAMESPACE, "get", "service", "conn")
        cluster_ips = svc["spec"]["clusterIPs"]
        assert len(cluster_ips) == len(fams)
        for name in sorted(pods)[:: PODS_PER_NODE]:
            for ip in cluster_ips:
                body = eventually(f"{name} -> service {ip}", lambda: pod_fetch(name, url(ip, 80)).strip(), timeout=60)
                assert body == "It works!"
    finally:
        kubectl("-n", NAMESPACE, "delete", "service", "conn", check=False)


def test_pod_to_outside_is_masqueraded_to_the_node_address(pods: dict[str, dict[str, Any]]) -> None:
    """The outside host (crk-ext on the underlay) reports who called: the node, not the pod."""
    outside = {4: "10.200.0.254", 6: "fd00:200::254"}
    for node in nodes():
        name = node["metadata"]["name"]
        for family in families():
            seen = seen_as(pod_fetch(f"conn-{name}-0", url(outside[family], 80, "/cgi-bin/whoami")))
            assert seen == node_ip(node, family), f"pod on {name} reached the outside as {seen}"
