"""The plugin end to end, as a runtime calls it, inside throwaway node namespaces.

Every test runs ``cni-render`` inside its own node namespace with pods as
further namespaces, proves traffic flows where it should, and the ``node``
fixture removes everything afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni_render.cni.versions import SUPPORTED_VERSIONS, has_check, has_status
from resultshape import result_shape_problems
from throwaway import BRIDGE, Node, host_interface, pod_addresses, pod_interface, run, with_prev_result

DUAL_STACK = {
    "type": "cni-render-ipam",
    "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
}


def dual_stack(node: Node, **overrides):
    ipam = dict(DUAL_STACK, dataDir=node.data_dir)
    return node.config(ipam=ipam, **overrides)


def assert_no_residue(node: Node, network: str = "testnet") -> None:
    """Nothing of any pod is left: links, allocations, routes. The bridge set's
    shared bridge (and its subnet routes) stays by design."""
    assert node.pod_links() == [], f"links left on the node: {node.links()}"
    assert node.allocations(network) == [], f"allocations left: {node.allocations(network)}"
    for family in ("-4", "-6"):
        left = [
            r for r in node.routes(family)
            if r.get("table") != "local" and r.get("type") != "multicast" and r.get("dev") != BRIDGE
        ]
        assert left == [], f"routes left on the node: {left}"


# --- ADD and traffic -------------------------------------------------------


def test_pods_get_unique_addresses_and_reach_each_other(node):
    config = node.config()
    pods = [node.add_pod() for _ in range(6)]
    results = [node.cni("ADD", config, pod).ok().json for pod in pods]
    addresses = [pod_addresses(r)[0] for r in results]
    host_names = [host_interface(r)["name"] for r in results]
    assert len(set(addresses)) == len(pods)
    assert len(set(host_names)) == len(pods) and all(len(n) <= 15 for n in host_names)
    for pod, result in zip(pods, results):
        assert pod_interface(result)["name"] == "eth0"
        assert pod_interface(result)["sandbox"] == pod.netns
        assert all(result["interfaces"][ip["interface"]] == pod_interface(result) for ip in result["ips"])
        pod.serve_http(f"It works from {pod.name}!\n")
    for pod, address in zip(pods, addresses):
        assert node.http_get(address) == f"It works from {pod.name}!\n"
    for source, target, address in zip(pods, pods[1:] + pods[:1], addresses[1:] + addresses[:1]):
        assert node.http_get(address, source=source) == f"It works from {target.name}!\n"


def test_result_macs_and_mtu_are_the_real_ones(node):
    pod = node.add_pod()
    result = node.cni("ADD", node.config(cniVersion="1.1.0", mtu=1400), pod).ok().json
    host, pod_iface = host_interface(result), pod_interface(result)
    link = json.loads(pod.exec(["ip", "-j", "link", "show", "eth0"]).stdout)[0]
    assert link["address"] == pod_iface["mac"] and link["mtu"] == 1400 == pod_iface["mtu"]
    host_link = json.loads(node.exec(["ip", "-j", "link", "show", host["name"]]).stdout)[0]
    assert host_link["address"] == host["mac"] and host_link["mtu"] == 1400


def test_dual_stack_answers_at_once_without_dad(node):
    config = dual_stack(node)
    pods = [node.add_pod(), node.add_pod()]
    results = [node.cni("ADD", config, pod).ok().json for pod in pods]
    for pod in pods:
        tentative = pod.exec(["ip", "-6", "addr", "show", "dev", "eth0", "tentative"]).stdout
        assert tentative.strip() == "", f"addresses still in DAD: {tentative}"
        pod.serve_http(f"It works from {pod.name}!\n")
    for pod, result in zip(pods, results):
        v4, v6 = pod_addresses(result)
        assert ":" in v6 and ":" not in v4
        assert node.http_get(v4) == node.http_get(v6) == f"It works from {pod.name}!\n"
    other_v6 = pod_addresses(results[1])[1]
    assert node.http_get(other_v6, source=pods[0]) == f"It works from {pods[1].name}!\n"
    facing_pods = BRIDGE if node.template_set == "bridge" else host_interface(results[0])["name"]
    accept_ra = node.exec(["cat", f"/proc/sys/net/ipv6/conf/{facing_pods}/accept_ra"])
    assert accept_ra.stdout.strip() == "0"


def test_pods_reach_each_other_over_ipv6_before_the_node_talked_to_either(node):
    """Forwarded IPv6 needs neighbour discovery from the node end, which the
    kernel sends only from a link-local address: the node end must have one
    (found on a real cluster, where a pod's first peer is often another pod)."""
    config = dual_stack(node)
    pods = [node.add_pod(), node.add_pod()]
    results = [node.cni("ADD", config, pod).ok().json for pod in pods]
    pods[1].serve_http(f"It works from {pods[1].name}!\n")
    target_v6 = pod_addresses(results[1])[1]
    assert node.http_get(target_v6, source=pods[0]) == f"It works from {pods[1].name}!\n"


def test_ipv6_only(node):
    ipam = {"type": "cni-render-ipam", "dataDir": node.data_dir, "ranges": [[{"subnet": "fd00:6::/64"}]], "routes": [{"dst": "::/0"}]}
    pod = node.add_pod()
    result = node.cni("ADD", node.config(ipam=ipam), pod).ok().json
    (address,) = pod_addresses(result)
    pod.serve_http()
    assert node.http_get(address) == "It works!\n"


def test_proc_pid_netns_path(node):
    """CNI_NETNS may be /proc/PID/ns/net rather than a name under /var/run/netns."""
    pod = node.add_pod()
    sleeper = subprocess.Popen(["ip", "netns", "exec", pod.name, "sleep", "60"])
    node.processes.append(sleeper)
    time.sleep(0.2)
    child = run(["pgrep", "-P", str(sleeper.pid)], check=False).stdout.split()
    pid = child[0] if child else str(sleeper.pid)
    netns = f"/proc/{pid}/ns/net"
    result = node.cni("ADD", node.config(), pod, netns=netns).ok().json
    assert pod_interface(result)["sandbox"] == netns
    pod.serve_http()
    assert node.http_get(pod_addresses(result)[0]) == "It works!\n"
    node.cni("DEL", node.config(), pod, netns=netns).ok()
    assert_no_residue(node)


def test_mtu_is_detected_from_the_default_route_interface(node):
    node.exec(["ip", "link", "add", "uplink0", "mtu", "1420", "type", "veth", "peer", "name", "uplink1"])
    node.exec(["ip", "link", "set", "uplink0", "up"])
    node.exec(["ip", "addr", "add", "192.0.2.2/24", "dev", "uplink0"])
    node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink0"])
    pod = node.add_pod()
    result = node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok().json
    assert {i["mtu"] for i in result["interfaces"]} == {1420}
    assert json.loads(pod.exec(["ip", "-j", "link", "show", "eth0"]).stdout)[0]["mtu"] == 1420


def test_requested_ip_and_mac_from_cni_args(node):
    pod = node.add_pod()
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;IP=10.244.1.77;MAC=0a:58:0a:f4:01:4d"
    result = node.cni("ADD", node.config(), pod, cni_args=args).ok().json
    assert pod_addresses(result) == ["10.244.1.77"]
    assert pod_interface(result)["mac"] == "0a:58:0a:f4:01:4d"
    other = node.add_pod()
    taken = node.cni("ADD", node.config(), other, cni_args="IP=10.244.1.77")
    assert taken.exit_code == 1 and taken.json["code"] == 101
    assert "already allocated" in taken.json["details"]


def test_requested_ip_from_capitalised_runtime_config(node):
    pod = node.add_pod()
    config = node.config(capabilities={"ips": True}, runtimeConfig={"IPs": ["10.244.1.88/24"]})
    assert pod_addresses(node.cni("ADD", config, pod).ok().json) == ["10.244.1.88"]


# --- versions ----------------------------------------------------------------


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_spec_version(node, version):
    config = dual_stack(node, cniVersion=version)
    pod = node.add_pod()
    if has_status(version):
        node.cni("STATUS", config).ok()
    else:
        assert node.cni("STATUS", config).json["code"] == 1
    add = node.cni("ADD", config, pod).ok()
    result = add.json
    assert result["cniVersion"] == version
    assert result_shape_problems(result, version) == []
    check = node.cni("CHECK", with_prev_result(config, result), pod)
    if has_check(version):
        check.ok()
    else:
        assert check.exit_code == 1 and check.json["code"] == 1
    pod.serve_http()
    address = result["ip4"]["ip"] if "ip4" in result else result["ips"][0]["address"]
    assert node.http_get(address.split("/")[0]) == "It works!\n"
    node.cni("DEL", with_prev_result(config, result), pod).ok()
    assert_no_residue(node)


def test_version_answers_without_a_config(node):
    call = node.cni("VERSION", b"", extra_env={"CNI_NETNS": "dummy", "CNI_IFNAME": "dummy", "CNI_PATH": "dummy"})
    assert call.ok().json == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    call = node.cni("VERSION", b'{"cniVersion": "0.4.0"}')
    assert call.json["cniVersion"] == "0.4.0"


# --- DEL in every form ---------------------------------------------------------


def test_del_twice_and_with_prev_result(node):
    config = dual_stack(node)
    pod = node.add_pod()
    result = node.cni("ADD", config, pod).ok().json
    node.cni("DEL", with_prev_result(config, result), pod).ok()
    node.cni("DEL", with_prev_result(config, result), pod).ok()
    assert_no_residue(node)


def test_del_without_add(node):
    node.cni("DEL", node.config(), container_id="never-added", netns="", ifname="eth0").ok()
    assert_no_residue(node)


def test_del_without_prev_result_and_empty_netns(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    node.cni("DEL", node.config(), pod, netns="").ok()
    assert_no_residue(node)


def test_del_after_the_pod_namespace_is_gone(node):
    pods = [node.add_pod(), node.add_pod()]
    results = [node.cni("ADD", node.config(), pod).ok().json for pod in pods]
    run(["ip", "netns", "del", pods[0].name])
    node.cni("DEL", with_prev_result(node.config(), results[0]), pods[0]).ok()
    node.cni("DEL", node.config(), pods[1], netns="/var/run/netns/does-not-exist").ok()
    assert_no_residue(node)


def test_del_with_a_corrupt_prev_result(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    node.cni("DEL", with_prev_result(node.config(), {"ips": "garbage"}), pod).ok()
    assert_no_residue(node)


def test_del_releases_the_address_before_touching_the_namespace(node):
    """Even when the node end cannot be removed, the address is released first."""
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    assert len(node.allocations()) == 1
    broken = node.tmp / "broken-templates"
    broken.mkdir()
    (broken / "del-host.ip.j2").write_text("link del dev {{ no_such_variable }}\n")
    call = node.cni("DEL", node.config(templateDir=str(broken)), pod)
    assert call.exit_code == 1 and "del-host.ip.j2:1" in call.json["details"]
    assert node.allocations() == []
    assert node.pod_links() == []  # the safety net removed the node end


# --- CHECK ---------------------------------------------------------------------


def added(node: Node, config=None):
    config = config or dual_stack(node)
    pod = node.add_pod()
    result = node.cni("ADD", config, pod).ok().json
    return pod, with_prev_result(config, result), result


def test_check_passes_right_after_add(node):
    pod, check_config, _ = added(node)
    node.cni("CHECK", check_config, pod).ok()


def test_check_needs_prev_result(node):
    pod, _, _ = added(node)
    call = node.cni("CHECK", dual_stack(node), pod)
    assert call.exit_code == 1 and call.json["code"] == 7 and "prevResult" in call.json["details"]


# Each drift: what to break (pod, node end) -> what CHECK must say, per template set.
DRIFTS = {
    "pod-default-v4": (lambda pod, host: pod.exec(["ip", "route", "del", "default"]), "route 0.0.0.0/0"),
    "pod-default-v6": (lambda pod, host: pod.exec(["ip", "-6", "route", "del", "default"]), "route ::/0"),
    "pod-address": (lambda pod, host: pod.exec(["ip", "addr", "flush", "dev", "eth0"]), "missing on eth0"),
    "pod-mac": (lambda pod, host: pod.exec(["ip", "link", "set", "eth0", "address", "02:11:22:33:44:55"]), "MAC"),
    "pod-down": (lambda pod, host: pod.exec(["ip", "link", "set", "eth0", "down"]), "down"),
    "node-link": (lambda pod, host: pod.node.exec(["ip", "link", "del", host]), "eth0 is missing in the pod"),
    "node-datapath": {
        "routed": (lambda pod, host: pod.node.exec(["ip", "route", "del", "10.244.1.2/32"]), "route 10.244.1.2/32"),
        "bridge": (lambda pod, host: pod.node.exec(["ip", "link", "set", host, "nomaster"]), f"not a port of {BRIDGE}"),
    },
    "node-gateway": {
        "routed": (lambda pod, host: pod.node.exec(["ip", "addr", "flush", "dev", host]), "missing on cr"),
        "bridge": (lambda pod, host: pod.node.exec(["ip", "addr", "flush", "dev", BRIDGE]), f"missing on {BRIDGE}"),
    },
}


@pytest.mark.parametrize("drift_name", sorted(DRIFTS))
def test_check_finds_drift(node, drift_name):
    drift, expected = DRIFTS[drift_name] if isinstance(DRIFTS[drift_name], tuple) else DRIFTS[drift_name][node.template_set]
    pod, check_config, result = added(node)
    drift(pod, host_interface(result)["name"])
    call = node.cni("CHECK", check_config, pod)
    assert call.exit_code == 1, call.stdout
    assert call.json["code"] == 103 and expected in call.json["details"], call.json


def test_check_finds_a_released_address(node):
    pod, check_config, _ = added(node)
    for name in node.allocations():
        os.unlink(f"{node.data_dir}/testnet/{name}")
    call = node.cni("CHECK", check_config, pod)
    assert call.json["code"] == 103 and "no address is allocated" in call.json["details"]


def test_check_tolerates_changes_by_later_chained_plugins(node):
    """tuning may change the pod MAC and MTU; the final prevResult says so."""
    pod, check_config, result = added(node)
    pod.exec(["ip", "link", "set", "eth0", "address", "02:aa:bb:cc:dd:ee", "mtu", "1300"])
    pod_interface(check_config["prevResult"])["mac"] = "02:aa:bb:cc:dd:ee"
    node.cni("CHECK", check_config, pod).ok()


# --- STATUS --------------------------------------------------------------------


def test_status(node):
    config = node.config(cniVersion="1.1.0")
    node.cni("STATUS", config).ok()
    blocker = node.tmp / "not-a-directory"
    blocker.write_text("")
    call = node.cni("STATUS", node.config(cniVersion="1.1.0", stateDir=str(blocker / "state")))
    assert call.exit_code == 1 and call.json["code"] == 50 and "state directory" in call.json["details"]
    ipam = dict(config["ipam"], dataDir=str(blocker / "ipam"))
    call = node.cni("STATUS", node.config(cniVersion="1.1.0", ipam=ipam))
    assert call.json["code"] == 50 and "IPAM data directory" in call.json["details"]


def test_status_is_forwarded_to_a_delegated_ipam(node):
    ipam = {"type": "host-local", "ranges": [[{"subnet": "10.244.1.0/24"}]], "dataDir": node.data_dir}
    # Debian's host-local knows spec versions up to 1.0.0, so its STATUS fails:
    # an ADD with this config would fail the same way.
    call = node.cni("STATUS", node.config(cniVersion="1.1.0", ipam=ipam))
    assert call.json["code"] == 50 and "host-local" in call.json["details"]
    missing = dict(ipam, type="no-such-ipam")
    call = node.cni("STATUS", node.config(cniVersion="1.1.0", ipam=missing))
    assert call.json["code"] == 50 and "not found in CNI_PATH" in call.json["details"]


# --- GC ------------------------------------------------------------------------


def gc_config(node: Node, key: str | None, attachments):
    config = node.config(cniVersion="1.1.0")
    if key:
        config[key] = attachments
    return config


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_releases_what_is_not_valid(node, key):
    pods = [node.add_pod() for _ in range(3)]
    results = [node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok().json for pod in pods]
    keep = pods[1]
    node.cni("GC", gc_config(node, key, [{"containerID": keep.container_id, "ifname": "eth0"}])).ok()
    assert node.allocations() == [pod_addresses(results[1])[0]]
    assert node.pod_links() == [host_interface(results[1])["name"]]
    keep.serve_http()
    assert node.http_get(pod_addresses(results[1])[0]) == "It works!\n"


def test_gc_without_the_key_does_nothing_and_empty_list_collects_all(node):
    pods = [node.add_pod() for _ in range(2)]
    for pod in pods:
        node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok()
    node.cni("GC", gc_config(node, None, None)).ok()
    assert len(node.allocations()) == 2
    node.cni("GC", gc_config(node, "cni.dev/valid-attachments", [])).ok()
    assert_no_residue(node)


def test_gc_removes_links_whose_allocation_is_already_gone(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(cniVersion="1.1.0"), pod).ok()
    for name in node.allocations():
        os.unlink(f"{node.data_dir}/testnet/{name}")
    node.cni("GC", gc_config(node, "cni.dev/valid-attachments", [])).ok()
    assert_no_residue(node)


def test_gc_needs_1_1_0(node):
    call = node.cni("GC", gc_config(node, "cni.dev/valid-attachments", []) | {"cniVersion": "1.0.0"})
    assert call.json["code"] == 1


# --- failures leave nothing behind ------------------------------------------------


def test_exhausted_pool(node):
    ipam = {"type": "cni-render-ipam", "dataDir": node.data_dir, "ranges": [[{"subnet": "10.244.9.0/29"}]]}
    config = node.config(ipam=ipam)
    pods = [node.add_pod() for _ in range(6)]
    for pod in pods[:5]:
        node.cni("ADD", config, pod).ok()
    links_before, allocations_before = node.links(), node.allocations()
    call = node.cni("ADD", config, pods[5])
    assert call.exit_code == 1 and call.json["code"] == 101
    assert "no IP addresses available" in call.json["details"]
    assert node.links() == links_before and node.allocations() == allocations_before


def test_bad_netns(node):
    call = node.cni("ADD", node.config(), container_id="c1", netns="/var/run/netns/nope", ifname="eth0")
    assert call.json["code"] == 4 and "cannot be opened" in call.json["details"]
    not_a_netns = node.tmp / "file"
    not_a_netns.write_text("")
    call = node.cni("ADD", node.config(), container_id="c1", netns=str(not_a_netns), ifname="eth0")
    assert call.json["code"] == 4 and "not a namespace" in call.json["details"]
    call = node.cni("ADD", node.config(), container_id="c1", netns=node.netns, ifname="eth0")
    assert call.json["code"] == 4 and "own network namespace" in call.json["details"]
    assert_no_residue(node)


def test_ifname_already_in_the_pod(node):
    pod = node.add_pod()
    pod.exec(["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "keep1"])
    call = node.cni("ADD", node.config(), pod)
    assert call.exit_code == 1 and call.json["code"] == 102 and "eth0 already exists" in call.json["details"]
    assert_no_residue(node)
    assert "eth0" in pod.exec(["ip", "link", "show"]).stdout  # the pod's own link is untouched


def test_add_twice_without_del(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    links, allocations = node.links(), node.allocations()
    call = node.cni("ADD", node.config(), pod)
    assert call.json["code"] == 102 and node.links() == links and node.allocations() == allocations


BROKEN_TEMPLATES = {
    "pod-batch-ip-error": ("add-pod.ip.j2", "link set dev {{ pod.ifname }} up\nroute add 10.99.0.0/16 via 10.98.0.1 dev {{ pod.ifname }}\n", 100, "line 2"),
    "node-batch-ip-error": ("add-host.ip.j2", None, 100, "nosuchdevice"),
    "template-undefined": ("add-pod.ip.j2", "link set dev {{ pod.nope }} up\n", 7, "add-pod.ip.j2:1"),
    "template-syntax": ("result.json.j2", "{% for %}", 7, "result.json.j2:1"),
    "sysctl-failure": ("add-host.sysctl.j2", "net.ipv4.conf.nosuchdevice.forwarding = 1\n", 100, "sysctl"),
    "unsafe-value": ("add-pod.ip.j2", "link set dev {{ pod.ifname }} alias {{ args.K8S_POD_NAME }}\n", 7, "refused"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_TEMPLATES))
def test_failure_at_each_step_leaves_nothing(node, case):
    name, source, code, detail = BROKEN_TEMPLATES[case]
    overrides = node.tmp / "templates"
    overrides.mkdir()
    if source is None:  # the built-in node batch plus one failing line
        from cni_render.cni.resources import templates_root

        builtin = templates_root().joinpath(node.template_set).joinpath(name).read_text()
        source = builtin + "route add 10.99.0.0/16 dev nosuchdevice\n"
    (overrides / name).write_text(source)
    config = dual_stack(node, templateDir=str(overrides))
    pod = node.add_pod()
    call = node.cni("ADD", config, pod, cni_args="K8S_POD_NAME=web#0")
    assert call.exit_code == 1, call.stdout
    assert call.json["code"] == code and detail in call.json["details"], call.json
    assert_no_residue(node)
    assert pod.exec(["ip", "-o", "link", "show"]).stdout.count("\n") == 1  # only lo


def test_injection_through_the_environment_is_refused(node):
    pod = node.add_pod()
    calls = [
        node.cni("ADD", node.config(), pod, ifname="eth0\nlink del lo"),
        node.cni("ADD", node.config(), pod, container_id="a;b"),
        node.cni("ADD", node.config(), pod, netns=pod.netns + " x"),
    ]
    for call in calls:
        assert call.exit_code == 1 and call.json["code"] == 4, call.stdout
    assert_no_residue(node)


# --- concurrency -------------------------------------------------------------------


def test_forty_concurrent_adds_then_dels(node):
    config = dual_stack(node)
    pods = [node.add_pod() for _ in range(40)]
    with ThreadPoolExecutor(max_workers=40) as pool:
        adds = list(pool.map(lambda pod: node.cni("ADD", config, pod, timeout=240), pods))
    for call in adds:
        call.ok()
    addresses = [a for call in adds for a in pod_addresses(call.json)]
    names = [host_interface(call.json)["name"] for call in adds]
    assert len(set(addresses)) == 80 and len(set(names)) == 40
    pods[0].serve_http()
    assert node.http_get(pod_addresses(adds[0].json)[0], source=pods[39]) == "It works!\n"
    with ThreadPoolExecutor(max_workers=40) as pool:
        dels = list(pool.map(lambda pod: node.cni("DEL", config, pod, timeout=240), pods))
    for call in dels:
        call.ok()
    assert_no_residue(node)


# --- logs ------------------------------------------------------------------------


def test_logs_go_to_stderr_and_the_log_file_never_stdout(node):
    log_file = node.tmp / "cni-render.log"
    pod = node.add_pod()
    config = node.config(logFile=str(log_file), logLevel="debug")
    call = node.cni("ADD", config, pod).ok()
    json.loads(call.stdout)  # exactly one JSON document
    assert "node batch" in call.stderr and "link add name" in log_file.read_text()


# --- masquerade ----------------------------------------------------------------------


def test_ip_masq_lets_pods_reach_a_network_that_has_no_route_back(node):
    """An 'outside' namespace knows only the node's uplink address; a pod reaches
    it only when its source is masqueraded. Both families."""
    outside = node.add_pod()
    node.exec(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "wan0", "netns", outside.name])
    node.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink0"])
    node.exec(["ip", "addr", "add", "2001:db8::1/64", "dev", "uplink0", "nodad"])
    node.exec(["ip", "link", "set", "uplink0", "up"])
    outside.exec(["ip", "addr", "add", "192.0.2.2/24", "dev", "wan0"])
    outside.exec(["ip", "addr", "add", "2001:db8::2/64", "dev", "wan0", "nodad"])
    outside.exec(["ip", "link", "set", "wan0", "up"])
    outside.serve_http("outside\n")
    masq, plain = node.add_pod(), node.add_pod()
    node.cni("ADD", dual_stack(node, ipMasq=True), masq).ok()
    assert node.http_get("192.0.2.2", source=masq) == "outside\n"
    assert node.http_get("2001:db8::2", source=masq) == "outside\n"
    node.cni("ADD", dual_stack(node), plain).ok()
    unreachable = plain.exec(["curl", "-sS", "-m", "2", "http://192.0.2.2/"], check=False)
    assert unreachable.returncode != 0  # no masquerade, no way back
    # pod to pod is never masqueraded
    masq.serve_http("masq\n")
    assert node.http_get("10.244.1.2", source=plain) == "masq\n"
    node.cni("DEL", dual_stack(node, ipMasq=True), masq).ok()
    node.cni("DEL", dual_stack(node, ipMasq=True), masq).ok()
    sources = node.exec(["nft", "list", "set", "ip", "cni-render", "masq-sources"]).stdout
    assert "10.244.1.2" not in sources
    rules = node.exec(["nft", "list", "chain", "ip", "cni-render", "postrouting"]).stdout
    assert rules.count("masquerade") == 1


# --- shared node objects and teardown order ---------------------------------------------


def test_bridge_mode_refuses_to_take_over_a_link_that_is_not_a_bridge(node):
    node.exec(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1"])
    mac_before = json.loads(node.exec(["ip", "-j", "link", "show", "uplink0"]).stdout)[0]["address"]
    call = node.cni("ADD", node.config(mode="bridge", bridge="uplink0"), node.add_pod())
    assert call.exit_code == 1 and call.json["code"] == 102 and "not a bridge" in call.json["details"]
    assert json.loads(node.exec(["ip", "-j", "link", "show", "uplink0"]).stdout)[0]["address"] == mac_before
    assert sorted(node.pod_links()) == ["uplink0", "uplink1"] and node.allocations() == []


def test_networks_sharing_a_bridge_agree_on_it(node):
    first, second = node.add_pod(), node.add_pod()
    ipam_b = {"type": "cni-render-ipam", "dataDir": node.data_dir, "ranges": [[{"subnet": "10.245.1.0/24"}]]}
    a = node.cni("ADD", node.config(mode="bridge"), first).ok().json
    b = node.cni("ADD", node.config(mode="bridge", name="othernet", ipam=ipam_b), second).ok().json
    assert a["interfaces"][0] == b["interfaces"][0]  # same bridge, same MAC
    node.cni("CHECK", with_prev_result(node.config(mode="bridge"), a), first).ok()


def test_del_keeps_the_addresses_while_the_node_end_cannot_be_removed(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    stuck = node.tmp / "stuck"
    stuck.mkdir()
    (stuck / "del-host.ip.j2").write_text("link set dev {{ host.ifname }} mtu 10\n")
    call = node.cni("DEL", node.config(templateDir=str(stuck)), pod)
    assert call.exit_code == 1 and call.json["code"] == 100 and "addresses kept" in call.stderr
    assert node.allocations() != [] and node.pod_links() != []
    node.cni("DEL", node.config(), pod).ok()  # the runtime retries; now it goes
    assert_no_residue(node)


def test_del_works_after_the_config_stopped_validating(node):
    pod = node.add_pod()
    node.cni("ADD", node.config(), pod).ok()
    broken = node.config(mtu="big", unknownKey=1)
    broken["ipam"] = dict(broken["ipam"], ranges=[[{"subnet": "not-a-subnet"}]])
    node.cni("DEL", broken, pod).ok()
    assert_no_residue(node)


def test_check_passes_for_routes_in_another_table(node):
    ipam = dict(node.config()["ipam"], routes=[{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "table": 100}])
    config = node.config(cniVersion="1.1.0", ipam=ipam)
    pod = node.add_pod()
    result = node.cni("ADD", config, pod).ok().json
    assert json.loads(pod.exec(["ip", "-j", "route", "show", "table", "100"]).stdout)[0]["dst"] == "192.0.2.0/24"
    node.cni("CHECK", with_prev_result(config, result), pod).ok()
    pod.exec(["ip", "route", "del", "192.0.2.0/24", "table", "100"])
    assert node.cni("CHECK", with_prev_result(config, result), pod).json["code"] == 103
