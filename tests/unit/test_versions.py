"""Spec versions: the supported set, what each allows, and result conversion."""

import pytest

from cni_render.cni.errors import DecodeFailure, IncompatibleVersion
from cni_render.cni.versions import (
    SUPPORTED_VERSIONS,
    convert_result,
    has_check,
    has_gc,
    has_status,
    parse_result,
    require_supported,
)

CURRENT = {
    "interfaces": [
        {"name": "cr0", "mac": "02:00:00:00:00:01", "mtu": 1400},
        {"name": "eth0", "mac": "02:00:00:00:00:02", "mtu": 1400, "sandbox": "/var/run/netns/p"},
    ],
    "ips": [
        {"address": "10.244.0.5/24", "gateway": "10.244.0.1", "interface": 1},
        {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1},
    ],
    "routes": [
        {"dst": "0.0.0.0/0", "gw": "10.244.0.1", "mtu": 1300},
        {"dst": "::/0", "gw": "fd00::1"},
    ],
    "dns": {"nameservers": ["10.96.0.10"]},
}


def test_supported_versions_are_the_reference_plugins_set():
    assert SUPPORTED_VERSIONS == ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


@pytest.mark.parametrize("version", ["1.0.1", "2.0.0", "", "0.3"])
def test_unknown_versions_are_code_1(version):
    with pytest.raises(IncompatibleVersion) as info:
        require_supported(version)
    assert info.value.code == 1


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_predicates(version):
    assert has_check(version) == (version in ("0.4.0", "1.0.0", "1.1.0"))
    assert has_status(version) == has_gc(version) == (version == "1.1.0")


def test_1_1_keeps_everything():
    converted = convert_result(CURRENT, "1.1.0")
    assert converted["cniVersion"] == "1.1.0"
    assert converted["interfaces"][0]["mtu"] == 1400
    assert converted["routes"][0]["mtu"] == 1300
    assert "version" not in converted["ips"][0]


def test_1_0_drops_1_1_fields():
    converted = convert_result(CURRENT, "1.0.0")
    assert all("mtu" not in i for i in converted["interfaces"])
    assert all("mtu" not in r for r in converted["routes"])
    assert converted["ips"][1] == {"address": "fd00::5/64", "gateway": "fd00::1", "interface": 1}


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0"])
def test_0_3_and_0_4_carry_ip_version(version):
    converted = convert_result(CURRENT, version)
    assert [ip["version"] for ip in converted["ips"]] == ["4", "6"]
    assert converted["interfaces"][1]["sandbox"] == "/var/run/netns/p"


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_legacy_results_use_ip4_and_ip6(version):
    converted = convert_result(CURRENT, version)
    assert converted == {
        "cniVersion": version,
        "ip4": {
            "ip": "10.244.0.5/24",
            "gateway": "10.244.0.1",
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.0.1"}],
        },
        "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
        "dns": {"nameservers": ["10.96.0.10"]},
    }


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_round_trip_keeps_addresses_and_routes(version):
    back = parse_result(convert_result(CURRENT, version))
    assert [ip["address"] for ip in back["ips"]] == ["10.244.0.5/24", "fd00::5/64"]
    assert [r["dst"] for r in back["routes"]] == ["0.0.0.0/0", "::/0"]


def test_parse_result_rejects_garbage():
    with pytest.raises(DecodeFailure):
        parse_result({"ips": [{"address": "not-an-ip"}]})
    with pytest.raises(DecodeFailure):
        parse_result(["not", "an", "object"])
