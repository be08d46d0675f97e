"""What one object or one pod can do to a node, on the running cluster: a Node
claiming every address hijacks no route and turns no SNAT off; a template
override with a runaway loop is refused within the validation limit while
pods keep starting; 200 idle connections to the metrics port cannot get the
agent restarted, and /healthz stays on loopback, quick (the metrics port
itself serves a bounded number of connections at once, so while they are held
a scrape may be turned away: metrics are best effort, liveness is not)."""

from __future__ import annotations

import json
import time
from typing import Any

from agent_state import agent_pod_on, restarts
from cluster import (
    NAMESPACE,
    apply,
    delete_pods,
    eventually,
    families,
    kube_json,
    kubectl,
    node_ip,
    node_names,
    nodes,
    on_node,
    pod_manifest,
    unique,
    wait_running,
)
from cni_render.node.masquerade import TABLE as MASQUERADE_TABLE
from node_state import agent_routes


def default_routes(node: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for flag in ("-4", "-6"):
        found += json.loads(on_node(node, "ip", "-j", flag, "route", "show", "default") or "[]")
    return found


def masquerade_exempt(node: str) -> list[str]:
    """The cluster CIDRs the node's masquerade table leaves alone (both families)."""
    table = json.loads(on_node(node, "nft", "-j", "list", "table", "inet", MASQUERADE_TABLE))["nftables"]
    exempt = []
    for entry in table:
        for element in (entry.get("set") or {}).get("elem", []):
            prefix = element.get("prefix") if isinstance(element, dict) else None
            exempt.append(f"{prefix['addr']}/{prefix['len']}" if prefix else str(element))
    return exempt


def events_about(name: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube_json("get", "events", "-A", "--field-selector",
                                             f"reason={reason},involvedObject.name={name}")["items"]
    return items


def test_a_node_claiming_every_address_hijacks_no_route_and_turns_no_snat_off() -> None:
    real = node_names()
    before = {node: default_routes(node) for node in real}
    name = unique("evil")
    claims = {4: ("0.0.0.0/0", "10.200.0.98"), 6: ("::/0", "fd00:200::98")}
    wanted = [claims[family] for family in families()]
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"e2e": "cni-render"}},
        "spec": {"podCIDRs": [cidr for cidr, _ in wanted], "unschedulable": True,
                 "taints": [{"key": "e2e/evil", "effect": "NoExecute"}]},
    }
    kubectl("create", "-f", "-", input=json.dumps(node))
    try:
        status = {"status": {"addresses": [{"type": "InternalIP", "address": address} for _, address in wanted]}}
        kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        refused = eventually(f"every node to refuse {name}'s pod CIDRs",
                             lambda: _from_every_node(events_about(name, "PodCIDRRefused"), real), timeout=90)
        assert all("0.0.0.0/0" in e["message"] or "::/0" in e["message"] for e in refused), refused
        time.sleep(5)  # a round of every agent after the refusal
        for member in real:
            assert default_routes(member) == before[member], f"{member}: the default route changed"
            ours = agent_routes(member)
            assert "default" not in ours and "0.0.0.0/0" not in ours and "::/0" not in ours, ours
            exempt = masquerade_exempt(member)
            assert "0.0.0.0/0" not in exempt and "::/0" not in exempt, exempt
    finally:
        kubectl("delete", "node", name, "--wait=true")
    time.sleep(5)
    for member in real:
        assert default_routes(member) == before[member], f"{member}: the default route changed after the delete"


def _from_every_node(events: list[dict[str, Any]], real: list[str]) -> list[dict[str, Any]]:
    """Events every agent posts on another Node: one reported by each node."""
    missing = set(real) - {e.get("reportingInstance") or (e.get("source") or {}).get("host") for e in events}
    assert not missing, f"none reported by {sorted(missing)} yet"
    return events


def _on_every_node(events: list[dict[str, Any]], real: list[str]) -> list[dict[str, Any]]:
    """Events an agent posts on its own Node: one from every node."""
    missing = set(real) - {e["involvedObject"]["name"] for e in events}
    assert not missing, f"none from {sorted(missing)} yet"
    return events


RUNAWAY = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\n"


def test_a_runaway_template_is_refused_within_the_limit_while_pods_keep_starting() -> None:
    before = {e["metadata"]["uid"] for e in kube_json("get", "events", "-A", "--field-selector",
                                                         "reason=TemplatesRefused")["items"]}
    patch = {"data": {"add-host.ip.j2": RUNAWAY}}
    kubectl("-n", "kube-system", "patch", "configmap", "cni-render-templates", "--type=merge", "-p", json.dumps(patch))
    try:
        names = {unique(f"busy-{node}"): node for node in node_names()}
        started = time.monotonic()
        apply([pod_manifest(name, node) for name, node in names.items()])
        wait_running(names, timeout=120)
        assert time.monotonic() - started < 120

        def refused() -> list[dict[str, Any]]:
            fresh = [e for e in kube_json("get", "events", "-A", "--field-selector", "reason=TemplatesRefused")["items"]
                     if e["metadata"]["uid"] not in before]
            return _on_every_node(fresh, node_names())

        for event in eventually("every node to refuse the runaway set", refused, timeout=120):
            assert "limit" in event["message"], event["message"]
        delete_pods(*names)
    finally:
        kubectl("-n", "kube-system", "patch", "configmap", "cni-render-templates", "--type=merge",
                "-p", json.dumps({"data": None}))


HOLD_SECONDS = 180
# Keeps 200 connections to the node's metrics port open, idle, for HOLD_SECONDS:
# one closed by the server is opened again at once.
HOLDER = """
import socket, sys, time
host, count, seconds = sys.argv[1], 200, float(sys.argv[2])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
held, opened, end = [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    alive = []
    for s in held:
        try:
            s.setblocking(False)
            if s.recv(1, socket.MSG_PEEK) == b"":
                s.close(); continue
        except BlockingIOError:
            pass
        except OSError:
            s.close(); continue
        alive.append(s)
    held = alive
    while len(held) < count:
        s = socket.socket(family); s.settimeout(2)
        try:
            s.connect((host, 9645)); held.append(s); opened += 1
        except OSError:
            s.close(); break
    time.sleep(0.5)
print("opened", opened, flush=True)
"""


def test_idle_connections_to_the_metrics_port_cannot_get_the_agent_restarted() -> None:
    node = node_names()[0]
    target = next(n for n in nodes() if n["metadata"]["name"] == node)
    address = node_ip(target, families()[0])
    agent = agent_pod_on(node)
    restarts_before = restarts(agent)
    image = agent["spec"]["containers"][0]["image"]
    holder = unique("holder")
    pod = pod_manifest(holder, node_names()[-1])
    pod["spec"]["containers"][0].update(image=image, command=["python3", "-c", HOLDER, address, str(HOLD_SECONDS)],
                                        ports=[])
    pod["spec"]["restartPolicy"] = "Never"
    apply(pod)
    try:
        wait_running([holder], timeout=120)
        slowest = 0.0
        end = time.monotonic() + HOLD_SECONDS - 10
        while time.monotonic() < end:
            took = float(on_node(node, "curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", "--fail",
                                 "--max-time", "1", "http://127.0.0.1:9646/healthz"))
            slowest = max(slowest, took)
            time.sleep(10)
        assert slowest < 1.0
        logs = eventually("the holder to finish", lambda: _finished(holder), timeout=60)
        assert int(logs.split()[-1]) >= 200, logs
    finally:
        delete_pods(holder)
    assert restarts(agent_pod_on(node)) == restarts_before
    # once the port is free again: /healthz is not served on the address pods reach
    metrics = f"http://{address if ':' not in address else '[' + address + ']'}:9645"
    code = on_node(node, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", f"{metrics}/healthz",
                   check=False)
    assert code.strip() == "404", code
    assert "cni_render" in on_node(node, "curl", "-s", "--max-time", "5", "--fail", f"{metrics}/metrics")


def _finished(pod: str) -> str:
    phase = kube_json("-n", NAMESPACE, "get", "pod", pod)["status"].get("phase")
    assert phase in ("Succeeded", "Failed"), phase
    return kubectl("-n", NAMESPACE, "logs", pod)
