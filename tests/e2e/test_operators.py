"""Operators change the datapath with kubectl: a template override in the
ConfigMap reaches new pods on every node without restarting anything; a broken
one is refused (an Event naming file and line) and the last good set keeps
serving; `cni-render render` and `status` work through `kubectl exec`."""

from __future__ import annotations

import json

import pytest

from cluster import (
    apply,
    delete_pods,
    eventually,
    kube_json,
    kubectl,
    node_names,
    on_node,
    pod_ips,
    pod_manifest,
    unique,
    wait_running,
)
from node_state import host_link_of

QLEN = 4242
OVERRIDE = '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} txqueuelen ' + str(QLEN) + "\n"
BROKEN = '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }\n'


def set_templates(data: dict[str, str]) -> None:
    patch = {"data": data} if data else {"data": None}
    kubectl("-n", "kube-system", "patch", "configmap", "cni-render-templates", "--type=merge", "-p", json.dumps(patch))


def qlen_of_new_pods() -> dict[str, int]:
    """Start a pod on every node; the txqueuelen of each one's node end."""
    names = {unique(f"tpl-{node}"): node for node in node_names()}
    apply([pod_manifest(name, node) for name, node in names.items()])
    try:
        pods = wait_running(names)
        lengths = {}
        for name, pod in pods.items():
            node = names[name]
            link = host_link_of(node, pod_ips(pod)[0])
            lengths[node] = json.loads(on_node(node, "ip", "-j", "link", "show", "dev", link))[0]["txqlen"]
        return lengths
    finally:
        delete_pods(*names)


def reload_events(reason: str) -> list[dict]:
    return [e for e in kube_json("get", "events", "-A", "--field-selector", f"reason={reason}")["items"]]


@pytest.fixture
def restore_templates():
    yield
    set_templates({})


def test_an_override_reaches_new_pods_on_every_node_and_a_broken_one_is_refused(restore_templates) -> None:
    reloaded_before = len(reload_events("TemplatesReloaded"))
    set_templates({"add-host.ip.j2": OVERRIDE})
    eventually("every node to load the override",
               lambda: len(reload_events("TemplatesReloaded")) >= reloaded_before + len(node_names()), timeout=90)
    assert set(qlen_of_new_pods().values()) == {QLEN}

    refused_before = len(reload_events("TemplatesRefused"))
    set_templates({"add-host.ip.j2": BROKEN})
    refusals = eventually(
        "every node to refuse the broken override",
        lambda: [e for e in reload_events("TemplatesRefused")][refused_before:]
        if len(reload_events("TemplatesRefused")) >= refused_before + len(node_names()) else None,
        timeout=90,
    )
    assert all("add-host.ip.j2" in e["message"] and ":2" in e["message"] for e in refusals), refusals
    # the last good set keeps serving: new pods start, with the override
    assert set(qlen_of_new_pods().values()) == {QLEN}


def test_render_and_status_through_kubectl_exec() -> None:
    status = kubectl("-n", "kube-system", "exec", "ds/cni-render", "--", "cni-render", "status")
    assert "cni-render" in status
    routes = kubectl("-n", "kube-system", "exec", "ds/cni-render", "--", "cni-render", "node", "render")
    assert "route" in routes
