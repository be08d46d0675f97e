"""The agent's settings: the ConfigMap's keys, parsed strictly, errors naming the key."""

from __future__ import annotations

import pytest

from cni_render.node.settings import (
    Settings,
    SettingsError,
    parse_settings,
    paths_from_environment,
    split_address,
)


def test_empty_or_missing_configmap_gives_the_defaults():
    assert parse_settings(None) == Settings()
    defaults = parse_settings({"clusterCIDRs": "", "mtu": "", "masquerade": "", "mode": ""})
    assert defaults == Settings()
    assert defaults.masquerade is True and defaults.mode == "routed" and defaults.mtu is None
    assert defaults.resync_seconds == 30


def test_every_key():
    settings = parse_settings({
        "clusterCIDRs": "10.244.0.0/16, fd00:10:244::/56",
        "mtu": "1450",
        "masquerade": "false",
        "mode": "bridge",
        "metricsAddress": "127.0.0.1:9999",
        "healthAddress": "[::1]:9999",
        "resyncSeconds": "10s",
        "minPodCIDRPrefixIPv4": "12",
        "minPodCIDRPrefixIPv6": "/48",
    })
    assert settings == Settings(
        cluster_cidrs=("10.244.0.0/16", "fd00:10:244::/56"),
        mtu=1450,
        masquerade=False,
        mode="bridge",
        metrics_address="127.0.0.1:9999",
        health_address="[::1]:9999",
        resync_seconds=10.0,
        min_prefix_ipv4=12,
        min_prefix_ipv6=48,
    )
    assert settings.min_prefix == {4: 12, 6: 48}
    assert Settings().min_prefix == {4: 8, 6: 32} and Settings().health_address == "127.0.0.1:9646"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"clusterCIDRs": "10.244.0.1/16"}, "clusterCIDRs: '10.244.0.1/16' is not a CIDR"),
        ({"mtu": "huge"}, "mtu: 'huge' is not an MTU"),
        ({"mtu": "100"}, "mtu: '100' is not an MTU"),
        ({"masquerade": "maybe"}, "masquerade: 'maybe' is not true or false"),
        ({"mode": "vxlan"}, "mode: 'vxlan' is not a mode; choose one of routed, bridge"),
        ({"metricsAddress": "9645"}, "metricsAddress: '9645' is not host:port"),
        ({"resyncSeconds": "0"}, "resyncSeconds: '0' is not a number of seconds"),
        ({"healthAddress": ":9646"}, "healthAddress: ':9646' is not on a loopback address"),
        ({"healthAddress": "10.0.0.1:9646"}, "is not on a loopback address"),
        ({"minPodCIDRPrefixIPv4": "33"}, "minPodCIDRPrefixIPv4: '33' is not a prefix length from 1 to 32"),
        ({"minPodCIDRPrefixIPv6": "x"}, "minPodCIDRPrefixIPv6: 'x' is not a prefix length from 1 to 128"),
        ({"mtuu": "1500"}, "unknown key 'mtuu'"),
    ],
)
def test_a_bad_value_names_its_key(data, message):
    with pytest.raises(SettingsError) as error:
        parse_settings(data)
    assert message in str(error.value)


def test_paths_need_the_node_name_and_take_overrides():
    with pytest.raises(SettingsError, match="NODE_NAME"):
        paths_from_environment({})
    paths = paths_from_environment({"NODE_NAME": "node-a", "CNI_RENDER_HOST_CONF_DIR": "/tmp/x"})
    assert paths.node_name == "node-a"
    assert paths.conflist == "/tmp/x/10-cni-render.conflist"
    assert paths.socket == "/run/cni-render/daemon.sock"
    assert paths.templates == "/run/cni-render/templates"
    assert paths.cni_bin_dir == "/host/opt/cni/bin"


def test_metrics_address_forms():
    assert split_address(":9645") == ("", 9645)
    assert split_address("127.0.0.1:9645") == ("127.0.0.1", 9645)
    assert split_address("[::1]:9645") == ("::1", 9645)
