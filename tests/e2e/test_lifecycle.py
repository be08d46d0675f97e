"""What happens over a cluster's life: pods deleted (nothing left on the node),
the DaemonSet restarted while pods are being created, a Node deleted (its routes
leave every other node)."""

from __future__ import annotations

import ipaddress
import json
import threading
import time

from cluster import (
    NAMESPACE,
    REPO,
    apply,
    delete_pods,
    eventually,
    families,
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
from node_state import agent_routes, host_link_of, ipam_files, nft_ruleset


def test_deleting_pods_leaves_no_link_route_address_file_or_nft_element() -> None:
    names = {unique(f"del-{node}"): node for node in node_names()}
    apply([pod_manifest(name, node) for name, node in names.items()])
    pods = wait_running(names)
    before = {}
    for name, pod in pods.items():
        node = names[name]
        ips = pod_ips(pod)
        link = host_link_of(node, ips[0])
        assert link, f"no node end found for {name}"
        assert all(ip in ipam_files(node) for ip in ips), f"{name}: {ips} not allocated on {node}"
        before[name] = (node, ips, link)
    delete_pods(*names)
    for node, ips, link in before.values():
        eventually(f"{link} and its addresses to leave {node}", lambda: nothing_left(node, ips, link), timeout=30)


def nothing_left(node: str, ips: list[str], link: str) -> bool:
    assert on_node(node, "ip", "link", "show", "dev", link, check=False) == "", f"{link} left on {node}"
    routes = on_node(node, "ip", "-d", "route", "show", "table", "all")
    routes += on_node(node, "ip", "-6", "-d", "route", "show", "table", "all")
    files = ipam_files(node)
    ruleset = nft_ruleset(node)
    for ip in ips:
        assert f"{ip} " not in routes and f"{ip}/" not in routes, f"route to {ip} left on {node}"
        assert ip not in files, f"address file {ip} left on {node}"
        assert ip not in ruleset, f"nft element {ip} left on {node}"
    return True


def test_rolling_restart_during_pod_creation_ends_with_every_pod_running() -> None:
    """Pods created while the DaemonSet restarts all run, and none of their
    sandboxes had to be retried: the shim waits for the restarting daemon."""
    nodes = node_names()
    created: list[str] = []
    stop = threading.Event()
    prefix = unique("roll")

    def create() -> None:
        i = 0
        while not stop.is_set() and i < 30:
            name = f"{prefix}-{i}"
            apply(pod_manifest(name, nodes[i % len(nodes)], labels={"app": "roll"}))
            created.append(name)
            i += 1
            time.sleep(1)

    creator = threading.Thread(target=create)
    creator.start()
    try:
        time.sleep(3)
        kubectl("-n", "kube-system", "rollout", "restart", "daemonset/cni-render")
        kubectl("-n", "kube-system", "rollout", "status", "daemonset/cni-render", "--timeout=300s", timeout=330)
    finally:
        stop.set()
        creator.join()
    try:
        assert len(created) >= 5, f"only {len(created)} pods were created during the restart"
        wait_running(created, timeout=300)
        events = kube_json("-n", NAMESPACE, "get", "events", "--field-selector", "reason=FailedCreatePodSandBox")
        retried = [e for e in events["items"] if e["involvedObject"]["name"] in created]
        assert retried == [], [f"{e['involvedObject']['name']}: {e['message']}" for e in retried]
    finally:
        delete_pods(*created)


def test_a_deleted_nodes_routes_leave_every_other_node() -> None:
    """A Node object with an on-link InternalIP in each of the cluster's families
    gets pod CIDRs from the controller manager; every node routes each via the
    address of its family; deleting the Node removes those routes."""
    name = unique("ghost")
    addresses = {4: "10.200.0.99", 6: "fd00:200::99"}
    wanted = {family: addresses[family] for family in families()}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"e2e": "cni-render"}},
        "spec": {"unschedulable": True, "taints": [{"key": "e2e/ghost", "effect": "NoExecute"}]},
    }
    real_nodes = node_names()
    kubectl("create", "-f", "-", input=json.dumps(node))
    try:
        status = {"status": {"addresses": [{"type": "InternalIP", "address": a} for a in wanted.values()]}}
        kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))
        cidrs = eventually(f"{name} to get a pod CIDR", lambda: kube_json("get", "node", name)["spec"]["podCIDRs"])
        routes = [f"{c} via {wanted[ipaddress.ip_network(c).version]}" for c in cidrs]
        assert sorted({ipaddress.ip_network(c).version for c in cidrs}) == sorted(wanted), cidrs
        for real in real_nodes:
            eventually(f"{real} to route {routes}", lambda: all(r in agent_routes(real) for r in routes), timeout=60)
    finally:
        kubectl("delete", "node", name, "--wait=true")
    for real in real_nodes:
        eventually(f"{real} to drop the routes to {name}'s pod CIDRs",
                   lambda: not any(f"via {a} " in agent_routes(real) for a in wanted.values()), timeout=60)


def test_a_node_without_a_pod_cidr_gets_an_event_and_no_conflist_until_it_has_one() -> None:
    """A node joins while the controller manager allocates no CIDRs (its node
    IPAM controller is off): the agent there says so with an Event and writes no
    conflist; once the node has a pod CIDR, the conflist follows."""
    name = "node9"
    restart = str(REPO / "cluster" / "restart-controller-manager.sh")
    run([restart, "node-ipam-controller"])
    try:
        try:
            run([str(REPO / "cluster" / "add-node.sh"), "9"], timeout=300)
            events = eventually(
                f"a NoPodCIDR event for {name}",
                lambda: kube_json("get", "events", "-A", "--field-selector",
                                  f"reason=NoPodCIDR,involvedObject.name={name}")["items"],
                timeout=180, interval=3,
            )
            assert "--allocate-node-cidrs" in events[0]["message"], events[0]["message"]
            assert on_node(name, "ls", "/etc/cni/net.d").strip() == ""
        finally:
            run([restart])
        eventually(f"{name}'s conflist once it has a pod CIDR",
                   lambda: "10-cni-render.conflist" in on_node(name, "ls", "/etc/cni/net.d"), timeout=180, interval=3)
    finally:
        run([str(REPO / "cluster" / "remove-node.sh"), name], timeout=120)
