"""The API server away for 3 minutes changes nothing on the nodes, and when it
is back everything converges (issue 13). With a template override active and
pods on every node, some being deleted (their sandboxes torn down 15 s later)
and some scheduled but not yet started (their sandboxes made once a file they
wait for appears on the node) when the API server stops, so that the kubelets
run DEL and ADD while it is away (the test checks they did), every node
keeps, throughout the outage, the agent's routes (both families), its
masquerade table (rules and sets, not the handles of a table it replaces whole
every round), the active override set (the link and the files it names) and
the conflist (bytes and inode: not even rewritten); the agent keeps answering
/healthz on loopback and is not restarted. Once the
API server is back, the deleted pods are gone with their node ends, the pods
that were starting run with addresses and the override, and removing the
override is seen by every node (a new TemplatesReloaded)."""

from __future__ import annotations

import difflib
import json
import subprocess
import time
from typing import Any

from agent_state import OVERRIDE, QLEN, agent_restarts, one_new_event_per_node, set_templates, uids
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
from node_state import agent_routes, host_link_of

APISERVER = str(REPO / "cluster" / "apiserver.sh")
AWAY_SECONDS = 180
EVERY_SECONDS = 15
TABLE = "cni-render-node"
TEMPLATES = "/run/cni-render/templates"
CONFLIST = "/etc/cni/net.d/10-cni-render.conflist"
HEALTHZ = "http://127.0.0.1:9646/healthz"
WAIT_DIR = "/tmp"


def without_handles(value: Any) -> Any:
    """An nft JSON document without what changes when the same table is loaded
    again: rule and object handles, and counter values."""
    if isinstance(value, dict):
        return {key: ({} if key == "counter" and isinstance(item, dict) else without_handles(item))
                for key, item in value.items() if key != "handle"}
    if isinstance(value, list):
        return [without_handles(item) for item in value]
    return value


def node_state(node: str) -> dict[str, str]:
    """What the agent keeps on a node, as text to compare."""
    table = json.loads(on_node(node, "nft", "-j", "list", "table", "inet", TABLE))["nftables"]
    table = [entry for entry in table if "metainfo" not in entry]
    return {
        "routes": agent_routes(node),
        "masquerade": json.dumps(without_handles(table), indent=1, sort_keys=True),
        "overrides": on_node(node, "sh", "-c", f"readlink {TEMPLATES} || echo '{TEMPLATES} is not a link'; "
                             f"cd {TEMPLATES}/ && find . -type f | sort | xargs -r sha256sum"),
        "conflist": on_node(node, "sh", "-c", f"stat -c 'inode %i' {CONFLIST} && cat {CONFLIST}"),
    }


def changes(node: str, before: dict[str, str], now: dict[str, str]) -> list[str]:
    return [f"{node} {what}:\n" + "\n".join(difflib.unified_diff(before[what].splitlines(), now[what].splitlines(),
                                                                 "before", "now", lineterm=""))
            for what in before if now[what] != before[what]]


def node_ends(node: str) -> set[str]:
    """The node ends of the pods on a node (cni-render names them cr<hex>)."""
    return {link["ifname"] for link in json.loads(on_node(node, "ip", "-j", "link", "show"))
            if link["ifname"].startswith("cr")}


def slow_to_stop(name: str, node: str) -> dict[str, Any]:
    """A pod whose containers take 15 s to stop: its sandbox is torn down well after its deletion."""
    pod = pod_manifest(name, node, terminationGracePeriodSeconds=30)
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 15}}}
    return pod


def waiting_for_a_file(name: str, node: str) -> dict[str, Any]:
    """A pod whose sandbox the kubelet makes only once /tmp/<name> exists on its node
    (a hostPath volume of type File), with no service account token to fetch: it starts
    without an API server."""
    pod = pod_manifest(name, node, automountServiceAccountToken=False,
                       volumes=[{"name": "go", "hostPath": {"path": f"{WAIT_DIR}/{name}", "type": "File"}}])
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "go", "mountPath": "/go", "readOnly": True}]
    return pod


def link_exists(node: str, link: str) -> bool:
    return bool(on_node(node, "ip", "-j", "link", "show", "dev", link, check=False).strip())


def ends_gone(pods: dict[str, str], ends: dict[str, str]) -> bool:
    left = [f"{ends[name]} on {node}" for name, node in pods.items() if link_exists(node, ends[name])]
    assert not left, f"still there: {left}"
    return True


def all_nodes_ready(names: list[str]) -> bool:
    ready = {
        node["metadata"]["name"]
        for node in kube_json("get", "nodes")["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
    }
    missing = set(names) - ready
    assert not missing, f"not Ready yet: {sorted(missing)}"
    return True


def gone(names: list[str]) -> bool:
    left = {p["metadata"]["name"] for p in kube_json("-n", NAMESPACE, "get", "pods")["items"]} & set(names)
    assert not left, f"still there: {sorted(left)}"
    return True


def test_the_api_server_away_for_3_minutes_changes_nothing_and_everything_converges() -> None:
    started = time.monotonic()
    every = node_names()
    restarts_before = agent_restarts()
    staying = {unique(f"stay-{node}"): node for node in every for _ in range(2)}
    doomed = {unique(f"doomed-{node}"): node for node in every for _ in range(2)}
    starting = {unique(f"late-{node}"): node for node in every for _ in range(2)}
    reloaded_before = uids("TemplatesReloaded")
    set_templates({"add-host.ip.j2": OVERRIDE})
    try:
        apply([pod_manifest(name, node) for name, node in staying.items()]
              + [slow_to_stop(name, node) for name, node in doomed.items()])
        eventually("every node to load the override",
                   lambda: one_new_event_per_node("TemplatesReloaded", reloaded_before), timeout=90)
        pods = wait_running([*staying, *doomed])
        doomed_ends = {name: host_link_of(node, pod_ips(pods[name])[0]) for name, node in doomed.items()}
        assert all(doomed_ends.values()), doomed_ends
        before = {node: node_state(node) for node in every}
        assert all(not s["overrides"].startswith(TEMPLATES) for s in before.values()), before

        # the kubelets see the new pods and the deletions, then the API server goes: the
        # sandboxes are torn down (15 s after the deletion) and made (once the file each
        # new pod waits for is there) while it is away
        ends_before = {node: node_ends(node) for node in every}
        apply([waiting_for_a_file(name, node) for name, node in starting.items()])
        kubectl("-n", NAMESPACE, "delete", "pod", *doomed, "--wait=false")
        time.sleep(1)
        run([APISERVER, "stop"])
        print(f"API server stopped at {time.monotonic() - started:.0f}s")
        for name, node in starting.items():
            on_node(node, "touch", f"{WAIT_DIR}/{name}")
        try:
            away_until = time.monotonic() + AWAY_SECONDS
            rounds = 0
            while True:
                found: list[str] = []
                for node in every:
                    found += changes(node, before[node], node_state(node))
                    code = on_node(node, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2",
                                   HEALTHZ, check=False)
                    if code.strip() != "200":
                        found.append(f"{node}: /healthz on loopback answered {code.strip() or 'nothing'}")
                rounds += 1
                assert not found, f"round {rounds} with the API server away:\n" + "\n".join(found)
                if time.monotonic() >= away_until:
                    break
                time.sleep(min(EVERY_SECONDS, max(0.0, away_until - time.monotonic())))
            assert rounds >= AWAY_SECONDS // EVERY_SECONDS
            # the kubelets did tear down and make sandboxes while the API server was away
            for node in every:
                ends = node_ends(node)
                gone_ends = {doomed_ends[name] for name, n in doomed.items() if n == node}
                assert not ends & gone_ends, f"{node}: deleted pods' node ends left: {ends & gone_ends}"
                made = ends - ends_before[node]
                # at least the gated pods' (a system pod's sandbox may be made again too)
                assert len(made) >= sum(n == node for n in starting.values()), f"{node}: new node ends {made}"
        finally:
            run([APISERVER, "start"], timeout=180)

        print(f"API server back at {time.monotonic() - started:.0f}s")
        eventually("the API server to answer", lambda: node_names() == every, timeout=60)
        # the node controller marked every node Unknown meanwhile; each kubelet posts again
        eventually("every node to be Ready again", lambda: all_nodes_ready(every), timeout=180, interval=3)
        eventually("the deleted pods to be gone", lambda: gone(list(doomed)), timeout=120, interval=2)
        eventually("the deleted pods' node ends to go", lambda: ends_gone(doomed, doomed_ends), timeout=60, interval=2)
        pods = wait_running([*staying, *starting], timeout=120)
        for name, node in starting.items():
            addresses = pod_ips(pods[name])
            assert addresses, f"{name} has no address"
            link = host_link_of(node, addresses[0])
            assert link, f"{name}: no route to {addresses[0]} on {node}"
            qlen = json.loads(on_node(node, "ip", "-j", "link", "show", "dev", link))[0]["txqlen"]
            assert qlen == QLEN, f"{name} on {node}: the override is not in force (txqueuelen {qlen})"
        after = {node: node_state(node) for node in every}
        found = [change for node in every for change in changes(node, before[node], after[node])]
        assert not found, "after the outage:\n" + "\n".join(found)
        assert agent_restarts() == restarts_before

        print(f"converged at {time.monotonic() - started:.0f}s")
        reloaded_before = uids("TemplatesReloaded")
        set_templates({})
        dropped = eventually("every node to drop the override",
                             lambda: one_new_event_per_node("TemplatesReloaded", reloaded_before), timeout=90)
        assert all("(0 files)" in e["message"] for e in dropped.values()), [e["message"] for e in dropped.values()]
    finally:
        if subprocess.run([APISERVER, "status"], capture_output=True, text=True).stdout.strip() != "running":
            run([APISERVER, "start"], timeout=180)
        set_templates({})
        for name, node in starting.items():
            on_node(node, "rm", "-f", f"{WAIT_DIR}/{name}", check=False)
        kubectl("-n", NAMESPACE, "delete", "pod", *staying, *doomed, *starting, "--ignore-not-found",
                "--wait=true", "--timeout=120s", timeout=180, check=False)
    print(f"took {time.monotonic() - started:.0f}s")
