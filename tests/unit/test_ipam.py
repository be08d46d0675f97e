"""cni-render-ipam: ranges, exhaustion, requested addresses, release, GC,
persistence across processes, and the executable's protocol (no root needed)."""

import ipaddress
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni_render.cni.errors import AddressUnavailable, InvalidConfig, InvalidEnvironment, StateMismatch
from cni_render.ipam.local import LocalIpam, requested_addresses
from cni_render.ipam.model import parse_ipam_config
from cni_render.ipam.store import Store
from throwaway import IPAM_PLUGIN


def ipam_config(tmp_path, **ipam):
    ipam.setdefault("ranges", [[{"subnet": "10.9.0.0/29"}]])
    ipam["dataDir"] = str(tmp_path)
    return parse_ipam_config({"type": "cni-render-ipam", **ipam})


def local(config, container_id="c1", ifname="eth0", requested=()):
    return LocalIpam(
        config=config,
        network="net",
        container_id=container_id,
        ifname=ifname,
        requested=tuple(ipaddress.ip_address(r) for r in requested),
    )


def addresses(result):
    return [ip["address"] for ip in result["ips"]]


# --- configuration ---------------------------------------------------------


def test_defaults_follow_host_local():
    config = parse_ipam_config({"type": "cni-render-ipam", "ranges": [[{"subnet": "10.9.0.0/24"}]]})
    rng = config.range_sets[0][0]
    assert (str(rng.start), str(rng.end), str(rng.gateway)) == ("10.9.0.1", "10.9.0.254", "10.9.0.1")
    assert config.data_dir == "/run/cni-render/ipam"
    v6 = parse_ipam_config({"type": "cni-render-ipam", "ranges": [[{"subnet": "fd00::/120"}]]})
    assert str(v6.range_sets[0][0].end) == "fd00::ff"


def test_legacy_subnet_form():
    config = parse_ipam_config({"type": "cni-render-ipam", "subnet": "10.9.0.0/24", "rangeStart": "10.9.0.100"})
    assert str(config.range_sets[0][0].start) == "10.9.0.100"


@pytest.mark.parametrize(
    "ranges,message",
    [
        ([[{"subnet": "10.9.0.0/31"}]], "too small"),
        ([[{"subnet": "10.9.0.0/24", "rangeStart": "10.8.0.1"}]], "not in subnet"),
        ([[{"subnet": "10.9.0.0/24", "gateway": "10.10.0.1"}]], "not in subnet"),
        ([[{"subnet": "10.9.0.0/24", "rangeStart": "10.9.0.9", "rangeEnd": "10.9.0.5"}]], "after rangeEnd"),
        ([[{"subnet": "10.9.0.0/24"}, {"subnet": "fd00::/64"}]], "mixes IPv4 and IPv6"),
        ([[{"subnet": "10.9.0.0/24"}], [{"subnet": "10.9.0.0/25"}]], "overlaps"),
    ],
)
def test_cross_field_errors(ranges, message):
    with pytest.raises(InvalidConfig) as info:
        parse_ipam_config({"type": "cni-render-ipam", "ranges": ranges})
    assert message in info.value.details and "$.ipam.ranges" in info.value.details


def test_route_family_must_match_gateway():
    with pytest.raises(InvalidConfig):
        parse_ipam_config(
            {"type": "cni-render-ipam", "subnet": "10.9.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]}
        )


# --- allocation --------------------------------------------------------------


def test_allocates_round_robin_skipping_the_gateway(tmp_path):
    config = ipam_config(tmp_path)
    first = local(config, "c1").add()
    assert first["ips"] == [{"address": "10.9.0.2/29", "gateway": "10.9.0.1"}]
    local(config, "c1").delete()
    # round-robin: the next pod does not reuse the address just released
    assert addresses(local(config, "c2").add()) == ["10.9.0.3/29"]


def test_exhaustion_is_an_error_naming_the_range(tmp_path):
    config = ipam_config(tmp_path)  # /29: .2-.6 usable (.1 gateway, .7 broadcast)
    got = [addresses(local(config, f"c{i}").add())[0] for i in range(5)]
    assert got == [f"10.9.0.{i}/29" for i in range(2, 7)]
    with pytest.raises(AddressUnavailable) as info:
        local(config, "c9").add()
    assert "10.9.0.1-10.9.0.6" in info.value.details and info.value.code == 101
    local(config, "c3").delete()
    assert addresses(local(config, "c9").add()) == ["10.9.0.5/29"]


def test_dual_stack_gets_one_address_per_range_set(tmp_path):
    config = ipam_config(
        tmp_path,
        ranges=[[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64"}]],
        routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    )
    result = local(config).add()
    assert addresses(result) == ["10.9.0.2/24", "fd00:9::2/64"]
    assert result["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_multiple_ranges_in_a_set_are_used_in_turn(tmp_path):
    config = ipam_config(
        tmp_path,
        ranges=[[{"subnet": "10.9.0.0/29", "rangeStart": "10.9.0.5"}, {"subnet": "10.9.1.0/29"}]],
    )
    got = [addresses(local(config, f"c{i}").add())[0] for i in range(4)]
    assert got == ["10.9.0.5/29", "10.9.0.6/29", "10.9.1.2/29", "10.9.1.3/29"]


def test_requested_address(tmp_path):
    config = ipam_config(tmp_path)
    assert addresses(local(config, "c1", requested=["10.9.0.5"]).add()) == ["10.9.0.5/29"]
    with pytest.raises(AddressUnavailable) as info:
        local(config, "c2", requested=["10.9.0.5"]).add()
    assert "already allocated by container c1" in info.value.details
    with pytest.raises(AddressUnavailable):
        local(config, "c3", requested=["10.9.0.1"]).add()  # the gateway
    with pytest.raises(AddressUnavailable) as info:
        local(config, "c4", requested=["192.168.0.1"]).add()
    assert "in no configured range" in info.value.details


def test_failed_request_in_one_family_releases_the_other(tmp_path):
    config = ipam_config(tmp_path, ranges=[[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64"}]])
    local(config, "c1", requested=["fd00:9::7"]).add()
    with pytest.raises(AddressUnavailable):
        local(config, "c2", requested=["fd00:9::7"]).add()
    assert Store(str(tmp_path), "net").find("c2", "eth0") == []


def test_same_container_and_ifname_twice_is_refused(tmp_path):
    config = ipam_config(tmp_path)
    local(config, "c1").add()
    with pytest.raises(AddressUnavailable) as info:
        local(config, "c1").add()
    assert "DEL it" in info.value.details
    # another interface of the same container is a different attachment
    assert addresses(local(config, "c1", ifname="eth1").add()) == ["10.9.0.3/29"]


def test_requested_sources_are_merged():
    found = requested_addresses(
        {"IP": "10.9.0.2,10.9.0.3"},
        {"cni": {"ips": ["10.9.0.4/24"]}},
        {"ips": ["10.9.0.2", "fd00::1/64"]},
    )
    assert [str(ip) for ip in found] == ["10.9.0.2", "10.9.0.3", "10.9.0.4", "fd00::1"]
    with pytest.raises(InvalidEnvironment):
        requested_addresses({"IP": "nope"}, {}, {})


def test_release_check_and_gc(tmp_path):
    config = ipam_config(tmp_path)
    for container_id in ("a", "b", "c"):
        local(config, container_id).add()
    local(config, "a").check(["10.9.0.2"])
    with pytest.raises(StateMismatch):
        local(config, "a").check(["10.9.0.3"])
    with pytest.raises(StateMismatch):
        local(config, "zzz").check([])
    stale = local(config).gc({("b", "eth0")})
    assert sorted(ip for ip, _, _ in stale) == ["10.9.0.2", "10.9.0.4"]
    assert Store(str(tmp_path), "net").allocations() == [("10.9.0.3", "b", "eth0")]
    assert local(config, "b").delete() == ["10.9.0.3"]
    assert local(config, "b").delete() == []  # twice is fine


def test_files_are_in_host_local_format(tmp_path):
    config = ipam_config(tmp_path)
    local(config, "abc", "eth0").add()
    directory = tmp_path / "net"
    assert (directory / "10.9.0.2").read_bytes() == b"abc\r\neth0"
    assert (directory / "last_reserved_ip.0").read_text() == "10.9.0.2"
    # host-local's older format (container ID only) is understood
    (directory / "10.9.0.6").write_text("old-container")
    assert Store(str(tmp_path), "net").find("old-container", "eth7") == ["10.9.0.6"]


def test_concurrent_allocations_in_threads_are_distinct(tmp_path):
    config = ipam_config(tmp_path, ranges=[[{"subnet": "10.9.0.0/24"}]])
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda i: addresses(local(config, f"c{i}").add())[0], range(60)))
    assert len(set(results)) == 60


def test_allocation_rolls_back_when_a_later_range_set_is_full(tmp_path):
    config = ipam_config(tmp_path, ranges=[[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/126"}]])
    local(config, "c1").add()  # takes fd00:9::2; fd00:9::3 is the last one
    local(config, "c2").add()
    with pytest.raises(AddressUnavailable):
        local(config, "c3").add()
    assert Store(str(tmp_path), "net").find("c3", "eth0") == []


def test_store_reserve_is_exclusive(tmp_path):
    store = Store(str(tmp_path), "net")
    os.makedirs(store.directory)
    ip = ipaddress.ip_address("10.9.0.9")
    assert store.reserve(ip, "a", "eth0", 0)
    assert not store.reserve(ip, "b", "eth0", 0)


# --- the executable, across processes ---------------------------------------


def run_ipam(command, config, container_id="c1", ifname="eth0", cni_args=None):
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_IFNAME": ifname, "CNI_NETNS": "/proc/1/ns/net", "CNI_PATH": "/nonexistent"}
    if cni_args:
        env["CNI_ARGS"] = cni_args
    proc = subprocess.run([IPAM_PLUGIN], input=json.dumps(config).encode(), env=env, capture_output=True, timeout=60)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def network(tmp_path, version="1.0.0", **extra):
    return {
        "cniVersion": version,
        "name": "net",
        "type": "some-plugin",
        "stateDir": str(tmp_path / "state"),
        "ipam": {
            "type": "cni-render-ipam",
            "dataDir": str(tmp_path / "ipam"),
            "ranges": [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
        **extra,
    }


def test_executable_persists_across_processes(tmp_path):
    code, out, err = run_ipam("ADD", network(tmp_path))
    assert code == 0, out + err
    assert json.loads(out) == {
        "cniVersion": "1.0.0",
        "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1"}, {"address": "fd00:9::2/64", "gateway": "fd00:9::1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    code, out, _ = run_ipam("ADD", network(tmp_path), container_id="c2", cni_args="IgnoreUnknown=1;IP=10.9.0.50")
    assert [ip["address"] for ip in json.loads(out)["ips"]] == ["10.9.0.50/24", "fd00:9::3/64"]
    assert run_ipam("CHECK", network(tmp_path))[0] == 0
    assert run_ipam("DEL", network(tmp_path))[0] == 0
    code, out, _ = run_ipam("CHECK", network(tmp_path))
    assert code == 1 and json.loads(out)["code"] == 103


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "0.4.0", "1.1.0"])
def test_executable_answers_in_the_config_version(tmp_path, version):
    code, out, _ = run_ipam("ADD", network(tmp_path, version))
    result = json.loads(out)
    assert code == 0 and result["cniVersion"] == version
    if version == "0.2.0":
        assert result["ip4"]["ip"] == "10.9.0.2/24" and result["ip6"]["ip"] == "fd00:9::2/64"
    elif version in ("0.3.1", "0.4.0"):
        assert [ip["version"] for ip in result["ips"]] == ["4", "6"]


def test_executable_gc_and_status(tmp_path):
    for container_id in ("a", "b"):
        run_ipam("ADD", network(tmp_path, "1.1.0"), container_id=container_id)
    # absent key: nothing collected
    assert run_ipam("GC", network(tmp_path, "1.1.0"))[0] == 0
    assert len(Store(str(tmp_path / "ipam"), "net").allocations()) == 4
    gc_config = network(tmp_path, "1.1.0", **{"cni.dev/attachments": [{"containerID": "b", "ifname": "eth0"}]})
    assert run_ipam("GC", gc_config)[0] == 0
    assert {cid for _, cid, _ in Store(str(tmp_path / "ipam"), "net").allocations()} == {"b"}
    assert run_ipam("STATUS", network(tmp_path, "1.1.0"))[0] == 0
    code, out, _ = run_ipam("STATUS", network(tmp_path, "1.0.0"))
    assert code == 1 and json.loads(out)["code"] == 1


def test_executable_reports_config_errors_with_paths(tmp_path):
    config = network(tmp_path)
    config["ipam"]["ranges"] = [[{"subnet": "10.9.0.0/24", "rangeStart": "10.10.0.1"}]]
    code, out, _ = run_ipam("ADD", config)
    error = json.loads(out)
    assert code == 1 and error["code"] == 7 and "$.ipam.ranges[0][0].rangeStart" in error["details"]


def test_executable_version():
    proc = subprocess.run([IPAM_PLUGIN], input=b"", env={"CNI_COMMAND": "VERSION"}, capture_output=True)
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"


def test_attachment_index_survives_a_crash_between_its_two_writes(tmp_path):
    config = ipam_config(tmp_path)
    store = Store(str(tmp_path), "net")
    local(config, "a").add()
    # an index entry whose address file was never written is ignored
    store._index_add("b", "eth0", "10.9.0.6")
    assert store.find("b", "eth0") == []
    assert addresses(local(config, "b").add()) == ["10.9.0.3/29"]
    # an address file without an index entry (host-local wrote it) is still released
    (tmp_path / "net" / "10.9.0.6").write_bytes(b"c\r\neth0")
    assert local(config, "c").delete() == ["10.9.0.6"]
    assert sorted(ip for ip, _, _ in store.allocations()) == ["10.9.0.2", "10.9.0.3"]
    assert local(config, "a").delete() == ["10.9.0.2"]
    assert not (tmp_path / "net" / ".attachments" / store._index_path("a", "eth0").rsplit("/", 1)[1]).exists()


def test_a_gateway_of_another_range_in_the_set_is_never_handed_out(tmp_path):
    config = ipam_config(tmp_path, ranges=[[
        {"subnet": "10.9.0.0/29", "rangeStart": "10.9.0.2", "rangeEnd": "10.9.0.3", "gateway": "10.9.0.1"},
        {"subnet": "10.9.1.0/29", "gateway": "10.9.1.2"},
    ]])
    got = [addresses(local(config, f"c{i}").add())[0] for i in range(6)]
    assert "10.9.1.2/29" not in got and len(set(got)) == 6
    with pytest.raises(AddressUnavailable) as info:
        local(config, "x", requested=["10.9.1.2"]).add()
    assert "gateway" in info.value.details


def test_an_empty_index_falls_back_to_the_scan(tmp_path):
    config = ipam_config(tmp_path)
    store = Store(str(tmp_path), "net")
    local(config, "a").add()
    open(store._index_path("a", "eth0"), "w").close()  # a crash left it empty
    assert local(config, "a").delete() == ["10.9.0.2"]
