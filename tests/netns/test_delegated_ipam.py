"""Delegated IPAM: any other ipam.type is executed from CNI_PATH as the spec
says, with ADD, DEL, CHECK, STATUS and GC forwarded and errors passed on."""

from __future__ import annotations

import json
import os

from delegates import host_local, spy_plugin
from throwaway import pod_addresses, with_prev_result


def test_host_local_add_check_del(node):
    config = node.config(ipam=host_local(node))
    pod = node.add_pod()
    result = node.cni("ADD", config, pod).ok().json
    (address,) = pod_addresses(result)
    assert address == "10.244.3.2" and result["ips"][0]["gateway"] == "10.244.3.1"
    assert os.path.exists(f"{node.data_dir}/testnet/{address}")
    pod.serve_http()
    assert node.http_get(address) == "It works!\n"
    node.cni("CHECK", with_prev_result(config, result), pod).ok()
    node.cni("DEL", with_prev_result(config, result), pod).ok()
    assert not os.path.exists(f"{node.data_dir}/testnet/{address}")
    assert node.pod_links() == []


def test_delegated_errors_are_passed_on(node):
    config = node.config(ipam=host_local(node, subnet="10.244.3.0/30"))
    first, second = node.add_pod(), node.add_pod()
    node.cni("ADD", config, first).ok()
    call = node.cni("ADD", config, second)
    assert call.exit_code == 1
    assert "host-local" in call.json["details"] and "no IP addresses available" in call.json["details"]
    assert len(node.pod_links()) == 1  # the first pod only


def test_missing_ipam_plugin(node):
    call = node.cni("ADD", node.config(ipam=host_local(node, plugin="no-such-ipam")), node.add_pod())
    assert call.json["code"] == 7 and "not found in CNI_PATH" in call.json["details"]


def test_failed_add_releases_the_delegated_address(node):
    overrides = node.tmp / "templates"
    overrides.mkdir()
    (overrides / "add-pod.ip.j2").write_text("route add 10.99.0.0/16 via 10.98.0.1 dev {{ pod.ifname }}\n")
    config = node.config(ipam=host_local(node), templateDir=str(overrides))
    call = node.cni("ADD", config, node.add_pod())
    assert call.json["code"] == 100
    reserved = [n for n in os.listdir(f"{node.data_dir}/testnet") if n[0].isdigit()]
    assert reserved == [] and node.pod_links() == []


def test_every_command_is_forwarded_with_the_whole_config(node):
    plugins, log = spy_plugin(node)
    extra = {"CNI_PATH": f"{plugins}:/usr/lib/cni"}
    config = node.config(cniVersion="1.1.0", ipam=host_local(node, plugin="spy-ipam"), mtu=1400)
    pod = node.add_pod()
    result = node.cni("ADD", config, pod, extra_env=extra).ok().json
    node.cni("CHECK", with_prev_result(config, result), pod, extra_env=extra).ok()
    node.cni("STATUS", config, extra_env=extra).ok()
    gc = dict(config, **{"cni.dev/valid-attachments": [{"containerID": pod.container_id, "ifname": "eth0"}]})
    node.cni("GC", gc, extra_env=extra).ok()
    node.cni("DEL", with_prev_result(config, result), pod, extra_env=extra).ok()
    seen = [line.split(" ", 1) for line in open(log).read().splitlines()]
    assert [command for command, _ in seen] == ["ADD", "CHECK", "STATUS", "GC", "DEL"]
    for _, stdin in seen:
        forwarded = json.loads(stdin)
        assert forwarded["mtu"] == 1400 and forwarded["type"] == "cni-render"  # the whole config
    assert json.loads(seen[3][1])["cni.dev/valid-attachments"][0]["containerID"] == pod.container_id
    assert "prevResult" in json.loads(seen[1][1])
