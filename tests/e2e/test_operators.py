"""Operators change the datapath with kubectl: a template override in the
ConfigMap reaches new pods on every node without restarting anything (a new
TemplatesReloaded Event from every node); a broken one is refused (a new
TemplatesRefused Event from every node naming file, line and the set that
keeps serving) and the last good set keeps serving; through `kubectl exec`,
`cni-render status` lists a new pod with its node end and `cni-render node
render` shows the routes to every other node's pod CIDRs."""

from __future__ import annotations

import json
import re
from typing import Iterator

import pytest

from agent_state import (
    OVERRIDE,
    QLEN,
    agent_pod_list,
    node_end_txqueuelen,
    one_new_event_per_node,
    set_templates,
    uids,
)
from cluster import (
    apply,
    delete_pods,
    eventually,
    families,
    kubectl,
    node_ip,
    node_names,
    nodes,
    pod_cidrs,
    pod_ips,
    pod_manifest,
    unique,
    wait_running,
)
from node_state import host_link_of

BROKEN = '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }\n'


def qlen_of_new_pods() -> dict[str, int]:
    """Start a pod on every node; the txqueuelen of each one's node end."""
    names = {unique(f"tpl-{node}"): node for node in node_names()}
    apply([pod_manifest(name, node) for name, node in names.items()])
    try:
        pods = wait_running(names)
        lengths = {}
        for name, pod in pods.items():
            node = names[name]
            lengths[node] = node_end_txqueuelen(node, pod_ips(pod)[0])
        return lengths
    finally:
        delete_pods(*names)


@pytest.fixture
def restore_templates() -> Iterator[None]:
    yield
    set_templates({})


def test_an_override_reaches_new_pods_on_every_node_and_a_broken_one_is_refused(restore_templates: None) -> None:
    reloaded_before = uids("TemplatesReloaded")
    set_templates({"add-host.ip.j2": OVERRIDE})
    reloads = eventually("every node to load the override",
                         lambda: one_new_event_per_node("TemplatesReloaded", reloaded_before), timeout=90)
    loaded = [re.search(r"template overrides (\S+) active \(1 files\)", e["message"]) for e in reloads.values()]
    assert all(loaded), [e["message"] for e in reloads.values()]
    digests = {match.group(1) for match in loaded if match}
    assert len(digests) == 1, f"nodes loaded different sets: {digests}"
    override = digests.pop()
    assert set(qlen_of_new_pods().values()) == {QLEN}

    refused_before = uids("TemplatesRefused")
    set_templates({"add-host.ip.j2": BROKEN})
    refusals = eventually("every node to refuse the broken override",
                          lambda: one_new_event_per_node("TemplatesRefused", refused_before), timeout=90)
    for node, event in refusals.items():
        message = event["message"]
        assert "add-host.ip.j2" in message and ":2" in message, f"{node}: {message}"
        assert f"last good set ({override}) keeps serving" in message, f"{node}: {message}"
    # the last good set keeps serving: new pods start, with the override
    assert set(qlen_of_new_pods().values()) == {QLEN}


def agent_pods() -> dict[str, str]:
    """The DaemonSet's pod on each node, by node name."""
    return {p["spec"]["nodeName"]: p["metadata"]["name"] for p in agent_pod_list() if p["status"].get("phase") == "Running"}


def agent(node: str, *args: str) -> str:
    return kubectl("-n", "kube-system", "exec", agent_pods()[node], "--", "cni-render", *args)


def test_status_through_kubectl_exec_lists_a_new_pod_with_its_node_end() -> None:
    node = node_names()[0]
    name = unique("status")
    apply(pod_manifest(name, node))
    try:
        ips = pod_ips(wait_running([name])[name])
        report = json.loads(agent(node, "status", "--json"))
        mine = [a for a in report["attachments"] if sorted(a["addresses"]) == sorted(ips)]
        assert len(mine) == 1, f"{ips} not in {report}"
        assert mine[0]["hostInterfacePresent"] is True, mine[0]
        assert mine[0]["hostInterface"] == host_link_of(node, ips[0]), mine[0]
    finally:
        delete_pods(name)


def routes_section(render: str) -> list[str]:
    """The route lines of `cni-render node render`'s routes batch."""
    section = render.split("# routes:", 1)[1].split("# masquerade:", 1)[0]
    return [line for line in section.splitlines() if line.startswith("route ")]


def test_render_through_kubectl_exec_shows_the_nodes_routes() -> None:
    everyone = {n["metadata"]["name"]: n for n in nodes()}
    node = node_names()[0]
    scratch = agent(node, "node", "render", "--from-scratch")
    conflist = json.loads(scratch.split("\n", 1)[1].split("# routes:", 1)[0])
    ranges = {r[0]["subnet"] for r in conflist["plugins"][0]["ipam"]["ranges"]}
    assert ranges == {str(c) for c in pod_cidrs(everyone[node])}, ranges
    wanted = {
        f"{cidr} via {node_ip(other, cidr.version)}"
        for name, other in everyone.items() if name != node for cidr in pod_cidrs(other)
    }
    assert len(wanted) == (len(everyone) - 1) * len(families())
    shown = {" ".join(line.split()[2:5]) for line in routes_section(scratch)}  # route VERB DST via GW proto N
    assert shown == wanted, f"from scratch: {routes_section(scratch)}"
    # against the node's own table the agent has already done it all
    eventually(f"{node}'s routes to need no change",
               lambda: routes_section(agent(node, "node", "render")) == [], timeout=60)
