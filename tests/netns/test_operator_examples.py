"""Operators own the datapath: the worked examples of docs/templates.md and
overrides, applied to real pods in throwaway nodes (both sets, both modes)."""

from __future__ import annotations

import json
from pathlib import Path

from throwaway import host_interface, pod_addresses, with_prev_result

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def test_worked_example_sysctl_on_the_node_end(node):
    pod = node.add_pod()
    result = node.cni("ADD", node.config(templateDir=str(EXAMPLES / "host-proxy-arp")), pod).ok().json
    host = host_interface(result)["name"]
    assert node.exec(["cat", f"/proc/sys/net/ipv4/conf/{host}/proxy_arp"]).stdout.strip() == "1"
    other = node.add_pod()
    plain = node.cni("ADD", node.config(), other).ok().json  # the change is per network
    assert node.exec(["cat", f"/proc/sys/net/ipv4/conf/{host_interface(plain)['name']}/proxy_arp"]).stdout.strip() == "0"


def test_worked_example_extra_pod_route_is_applied_and_checked(node):
    config = node.config(templateDir=str(EXAMPLES / "pod-extra-route"))
    pod = node.add_pod()
    result = node.cni("ADD", config, pod).ok().json
    routes = json.loads(pod.exec(["ip", "-j", "route", "show", "192.0.2.0/24"]).stdout)
    assert routes and routes[0]["gateway"] == result["ips"][0]["gateway"]
    node.cni("CHECK", with_prev_result(config, result), pod).ok()
    pod.exec(["ip", "route", "del", "192.0.2.0/24"])
    call = node.cni("CHECK", with_prev_result(config, result), pod)
    assert call.json["code"] == 103 and "route 192.0.2.0/24" in call.json["details"]
    pod.serve_http()
    assert node.http_get(pod_addresses(result)[0]) == "It works!\n"


def test_worked_example_txqueuelen(node):
    pod = node.add_pod()
    result = node.cni("ADD", node.config(templateDir=str(EXAMPLES / "host-txqueuelen")), pod).ok().json
    link = json.loads(node.exec(["ip", "-j", "link", "show", host_interface(result)["name"]]).stdout)[0]
    assert link["txqlen"] == 10000
    node.cni("DEL", node.config(templateDir=str(EXAMPLES / "host-txqueuelen")), pod).ok()
    assert node.pod_links() == []


def test_an_edited_template_takes_effect_for_new_pods_only(node):
    overrides = node.tmp / "templates"
    overrides.mkdir()
    config = node.config(templateDir=str(overrides))
    first = node.add_pod()
    before = node.cni("ADD", config, first).ok().json
    (overrides / "add-host.ip.j2").write_text(
        '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} alias edited-{{ container_id }}\n'
    )
    second = node.add_pod()
    after = node.cni("ADD", config, second).ok().json
    alias = lambda result: json.loads(node.exec(["ip", "-j", "link", "show", host_interface(result)["name"]]).stdout)[0].get("ifalias")  # noqa: E731
    assert alias(after) == f"edited-{second.container_id}"
    assert alias(before).startswith("cni-render/")
