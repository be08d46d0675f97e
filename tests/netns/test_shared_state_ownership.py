"""Shared node state belongs to its owner (issue 9, item 1).

Masquerade set elements, routes and anything else keyed by a pod address are
removed by DEL, GC and ADD's rollback only for addresses that call itself
released. A repeated DEL of an old sandbox carrying its cached prevResult (a
runtime retrying, or a reboot that kept /var/lib/cni/results) must leave the
pod that now holds the same address alone, with in-process and delegated IPAM.
"""

from __future__ import annotations

import json

import pytest

from throwaway import Node, Pod, pod_addresses, with_prev_result

ADDRESS = "10.244.1.50"


def masq_sources(node: Node) -> str:
    listing = node.exec(["nft", "-j", "list", "set", "ip", "cni-render", "masq-sources"], check=False)
    if listing.returncode != 0:
        return ""
    return listing.stdout


def host_routes(node: Node) -> list[str]:
    return [r["dst"] for r in json.loads(node.exec(["ip", "-j", "-4", "route", "show"]).stdout)]


def local_ipam(node: Node) -> dict:
    return {"type": "cni-render-ipam", "dataDir": node.data_dir, "ranges": [[{"subnet": "10.244.1.0/24"}]]}


def host_local(node: Node) -> dict:
    return {"type": "host-local", "dataDir": node.data_dir, "ranges": [[{"subnet": "10.244.1.0/24"}]]}


IPAMS = {"cni-render-ipam": local_ipam, "host-local": host_local}


def add_at(node: Node, config: dict, pod: Pod) -> dict:
    result = node.cni("ADD", config, pod, cni_args=f"IP={ADDRESS}").ok().json
    assert pod_addresses(result) == [ADDRESS]
    return result


@pytest.mark.parametrize("ipam", sorted(IPAMS))
def test_a_repeated_del_of_an_old_sandbox_leaves_the_new_owner_alone(node, ipam):
    config = node.config(ipMasq=True, ipam=IPAMS[ipam](node))
    old, new = node.add_pod(), node.add_pod()
    old_result = add_at(node, config, old)
    node.cni("DEL", with_prev_result(config, old_result), old).ok()
    add_at(node, config, new)  # the same address, now another pod's
    assert ADDRESS in masq_sources(node)

    node.cni("DEL", with_prev_result(config, old_result), old).ok()  # the runtime retries
    node.cni("DEL", with_prev_result(config, old_result), old, netns="").ok()  # after a reboot

    assert ADDRESS in masq_sources(node), "the new pod lost its masquerade entry"
    if node.template_set == "routed":
        assert f"{ADDRESS}" in host_routes(node)
    new.serve_http()
    assert node.http_get(ADDRESS) == "It works!\n"


@pytest.mark.parametrize("ipam", sorted(IPAMS))
def test_teardown_templates_see_only_what_this_call_released(node, ipam):
    """An operator's teardown template that acts per released address (here:
    any node route to it) never sees an address this call did not release."""
    overrides = node.tmp / "templates"
    overrides.mkdir()
    (overrides / "del-host.ip.j2").write_text(
        '{% include "builtin/del-host.ip.j2" %}\n'
        "{% for ip in released %}\nroute del {{ ip }}/32\n{% endfor %}\n"
    )
    config = node.config(ipam=IPAMS[ipam](node), templateDir=str(overrides))
    old, new = node.add_pod(), node.add_pod()
    old_result = add_at(node, config, old)
    node.cni("DEL", with_prev_result(config, old_result), old).ok()
    add_at(node, config, new)
    if node.template_set == "bridge":  # give the new pod a node route of its own to lose
        node.exec(["ip", "route", "add", f"{ADDRESS}/32", "dev", "lo"])
    node.cni("DEL", with_prev_result(config, old_result), old).ok()
    assert ADDRESS in host_routes(node), "the repeated DEL removed the new pod's route"


@pytest.mark.parametrize("ipam", sorted(IPAMS))
def test_del_of_a_live_pod_removes_its_masquerade_entry(node, ipam):
    config = node.config(ipMasq=True, ipam=IPAMS[ipam](node))
    pod = node.add_pod()
    result = add_at(node, config, pod)
    assert ADDRESS in masq_sources(node)
    node.cni("DEL", with_prev_result(config, result), pod).ok()
    assert ADDRESS not in masq_sources(node)
    assert node.pod_links() == []
