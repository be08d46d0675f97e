"""The node agent's conflist: built from the Node's pod CIDRs, written only when it changes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from cni_render.node import files
from cni_render.node.conflist import NoPodCidr, build_conflist, conflist_bytes, plugin_config
from cni_render.node.nodeinfo import NodeInfo, parse_networks
from cni_render.node.settings import Settings
from cni_render.node.state import NodeFacts, node_conflist

TEMPLATES = "/run/cni-render/templates"


def build(cidrs, **overrides):
    arguments = dict(mtu=1500, mode="routed", template_dir=TEMPLATES, portmap=False)
    arguments.update(overrides)
    return build_conflist("node-a", parse_networks(cidrs), **arguments)


def test_one_family_gives_one_range_set_and_its_default_route():
    plugin = build(["10.244.1.0/24"])["plugins"][0]
    assert plugin["ipam"] == {
        "type": "cni-render-ipam",
        "ranges": [[{"subnet": "10.244.1.0/24"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
    }
    assert plugin["ipMasq"] is False  # the agent masquerades for the whole node
    assert plugin["templateDir"] == TEMPLATES
    assert plugin["mode"] == "routed"


def test_two_families_give_two_range_sets_ipv4_first():
    plugin = build(["fd00:10:244:1::/64", "10.244.1.0/24"])["plugins"][0]
    assert plugin["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:10:244:1::/64"}]]
    assert plugin["ipam"]["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]


def test_ipv6_only():
    plugin = build(["fd00:10:244:1::/64"])["plugins"][0]
    assert plugin["ipam"]["ranges"] == [[{"subnet": "fd00:10:244:1::/64"}]]
    assert plugin["ipam"]["routes"] == [{"dst": "::/0"}]


def test_no_pod_cidr_is_refused_with_what_to_fix():
    with pytest.raises(NoPodCidr, match="--allocate-node-cidrs"):
        build([])
    with pytest.raises(NoPodCidr, match="node node-a"):
        build(["not-a-cidr"])


def test_mtu_from_the_uplink_unless_the_settings_fix_one():
    facts = NodeFacts(uplink_mtu=1450, portmap=False, template_dir=TEMPLATES)
    node = NodeInfo("node-a", ("10.244.1.0/24",))
    assert node_conflist(node, Settings(), facts)["plugins"][0]["mtu"] == 1450
    assert node_conflist(node, Settings(mtu=9000), facts)["plugins"][0]["mtu"] == 9000


def test_mode_comes_from_the_settings():
    facts = NodeFacts(uplink_mtu=1500, portmap=False, template_dir=TEMPLATES)
    node = NodeInfo("node-a", ("10.244.1.0/24",))
    assert node_conflist(node, Settings(mode="bridge"), facts)["plugins"][0]["mode"] == "bridge"


def test_portmap_is_chained_only_when_the_node_has_it():
    assert [p["type"] for p in build(["10.244.1.0/24"])["plugins"]] == ["cni-render"]
    with_portmap = build(["10.244.1.0/24"], portmap=True)["plugins"]
    assert with_portmap[1] == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_the_conflist_is_a_valid_cni_render_config_for_the_plugin():
    from cni_render.cni.config import load

    document = build(["10.244.1.0/24", "fd00:10:244:1::/64"], portmap=True)
    config = load(plugin_config(document))  # the schema the plugin itself applies
    assert config.name == "cni-render" and config.mtu == 1500 and config.template_dir == TEMPLATES
    assert json.loads(conflist_bytes(document)) == document


def test_written_atomically_and_only_when_the_content_changed(tmp_path):
    path = str(tmp_path / "net.d" / "10-cni-render.conflist")
    content = conflist_bytes(build(["10.244.1.0/24"]))
    assert files.write_if_changed(path, content) is True
    first = os.stat(path)
    assert files.write_if_changed(path, content) is False
    assert os.stat(path).st_ino == first.st_ino and os.stat(path).st_mtime_ns == first.st_mtime_ns
    changed = conflist_bytes(build(["10.244.1.0/24"], mtu=1400))
    assert files.write_if_changed(path, changed) is True
    assert open(path, "rb").read() == changed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(tmp_path / "net.d") == ["10-cni-render.conflist"]  # no temporary left


def test_a_symlink_in_place_of_the_conflist_is_replaced_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep me")
    link = tmp_path / "10-cni-render.conflist"
    link.symlink_to(target)
    files.write_if_changed(str(link), b"{}\n")
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and link.read_bytes() == b"{}\n"


def test_remove_file_never_removes_the_directory(tmp_path):
    path = tmp_path / "10-cni-render.conflist"
    path.write_text("{}")
    assert files.remove_file(str(path)) is True
    assert files.remove_file(str(path)) is False
    assert tmp_path.is_dir()
