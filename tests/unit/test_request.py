"""The CNI environment: required variables, grammars, CNI_ARGS."""

import pytest

from cni_render.cni.errors import InvalidEnvironment, UnknownContainer
from cni_render.cni.request import parse_cni_args, parse_request

BASE = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/x", "CNI_IFNAME": "eth0"}


def env(**changes):
    merged = dict(BASE)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def test_parses_a_runtime_environment_ignoring_other_variables():
    request = parse_request(env(CNI_PATH="/opt/cni/bin:/usr/lib/cni", HOME="/root", LANG="C"))
    assert request.command == "ADD"
    assert request.cni_path == ("/opt/cni/bin", "/usr/lib/cni")
    assert request.netns == "/var/run/netns/x"


@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_needs_its_variables(missing):
    with pytest.raises(InvalidEnvironment) as info:
        parse_request(env(**{missing: None}))
    assert missing in str(info.value)
    assert info.value.code == 4


def test_del_accepts_an_empty_netns():
    assert parse_request(env(CNI_COMMAND="DEL", CNI_NETNS="")).netns == ""


def test_unknown_command():
    with pytest.raises(InvalidEnvironment):
        parse_request(env(CNI_COMMAND="REMOVE"))


def test_empty_container_id_is_code_3():
    with pytest.raises(UnknownContainer) as info:
        parse_request(env(CNI_CONTAINERID=""))
    assert info.value.code == 3


@pytest.mark.parametrize("bad", ["-abc", "a b", "a/b", "a;b", "a\nb", "_x"])
def test_container_id_grammar(bad):
    with pytest.raises(InvalidEnvironment):
        parse_request(env(CNI_CONTAINERID=bad))


@pytest.mark.parametrize("bad", ["", "a" * 16, ".", "..", "eth/0", "eth:0", "eth 0", "eth\n0"])
def test_ifname_rules(bad):
    with pytest.raises((InvalidEnvironment, UnknownContainer)):
        parse_request(env(CNI_IFNAME=bad))


@pytest.mark.parametrize("bad", ["relative/path", "/var/run/netns/a b", "/x#y", "/x;y", '/x"y'])
def test_netns_must_be_a_plain_absolute_path(bad):
    with pytest.raises(InvalidEnvironment):
        parse_request(env(CNI_NETNS=bad))


def test_cni_args_in_any_order_with_unknown_keys():
    containerd = "K8S_POD_UID=u1;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;X=1"
    args = parse_cni_args(containerd)
    assert args["K8S_POD_NAME"] == "web-0" and args["X"] == "1" and args["IgnoreUnknown"] == "1"
    assert parse_cni_args("") == {}
    assert parse_cni_args("IP=10.0.0.5;;") == {"IP": "10.0.0.5"}


def test_cni_args_must_be_pairs():
    with pytest.raises(InvalidEnvironment):
        parse_cni_args("K8S_POD_NAME")


def test_del_ignores_an_unusable_netns():
    assert parse_request(env(CNI_COMMAND="DEL", CNI_NETNS="not a path")).netns == ""


# --- duplicated variables (issue 9, item 10) ------------------------------------


def test_duplicated_cni_variables_are_found_in_an_environment_block():
    from cni_render.cni.request import duplicated_variables

    block = b"PATH=/a\0CNI_IFNAME=eth0\0PATH=/b\0CNI_COMMAND=ADD\0CNI_IFNAME=eth1\0NOEQUALS\0"
    assert duplicated_variables(block) == ["CNI_IFNAME"]  # only CNI_* matters
    assert duplicated_variables(b"CNI_COMMAND=ADD\0CNI_IFNAME=eth0\0") == []
