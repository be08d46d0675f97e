"""Template overrides from the ConfigMap: checked like `cni-render validate`, swapped in
whole, and a broken set refused while the last good one keeps serving."""

from __future__ import annotations

import os

import pytest

from cni_render.datapath.render import Renderer
from cni_render.node.conflist import build_conflist
from cni_render.node.nodeinfo import parse_networks
from cni_render.node.overrides import TemplateOverrides

GOOD = {"add-host.ip.j2": '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} txqueuelen 10000\n'}
BROKEN_SYNTAX = {"add-host.ip.j2": "link set dev {{ host.ifname }\n"}
BROKEN_RENDER = {"add-pod.ip.j2": "link set dev {{ pod.no_such_field }} up\n"}


@pytest.fixture
def overrides(tmp_path):
    active = str(tmp_path / "templates")
    overrides = TemplateOverrides(active)
    overrides.ensure()
    return overrides


def conflist(overrides, mode="routed"):
    return build_conflist("node-a", parse_networks(["10.244.1.0/24", "fd00:10:244:1::/64"]), mtu=1500, mode=mode,
                          template_dir=overrides.active, portmap=False)


def active_files(overrides):
    return {name: open(os.path.join(overrides.active, name)).read() for name in os.listdir(overrides.active)}


def test_the_active_directory_starts_empty(overrides):
    assert os.path.islink(overrides.active) and os.listdir(overrides.active) == []


def test_a_good_set_becomes_active_and_the_renderer_uses_it(overrides):
    outcome = overrides.apply(GOOD, conflist(overrides))
    assert outcome.changed and not outcome.refused
    assert active_files(overrides) == GOOD
    renderer = Renderer("routed", override_dir=overrides.active)
    assert renderer.path("add-host.ip") == os.path.join(overrides.active, "add-host.ip.j2")
    assert overrides.apply(GOOD, conflist(overrides)).changed is False  # same set: nothing to do


@pytest.mark.parametrize(
    "broken,where",
    [(BROKEN_SYNTAX, "cni-render-templates/add-host.ip.j2:1: unexpected '}'"),
     (BROKEN_RENDER, "cni-render-templates/add-pod.ip.j2:1")],
)
def test_a_broken_set_is_refused_naming_file_and_line_and_the_last_good_set_serves(overrides, broken, where):
    overrides.apply(GOOD, conflist(overrides))
    good_digest = overrides.current_digest()
    outcome = overrides.apply(broken, conflist(overrides))
    assert outcome.refused and not outcome.changed
    assert any(where in problem for problem in outcome.problems), outcome.problems
    assert overrides.current_digest() == good_digest
    assert active_files(overrides) == GOOD
    assert not [n for n in os.listdir(overrides.versions) if n.startswith(".staging")]


def test_a_set_is_checked_against_the_nodes_mode(overrides):
    # builtin/setup-host.ip.j2 exists only in the bridge set
    bridge_only = {"add-host.ip.j2": '{% include "builtin/setup-host.ip.j2" %}\n{% include "builtin/add-host.ip.j2" %}\n'}
    assert overrides.apply(bridge_only, conflist(overrides, mode="routed")).refused
    assert overrides.apply(bridge_only, conflist(overrides, mode="bridge")).changed


def test_a_key_that_is_not_a_template_file_name_is_refused(overrides):
    outcome = overrides.apply({"../escape.j2": "x", "notes.txt": "x"}, conflist(overrides))
    assert outcome.refused and len(outcome.problems) == 2


def test_removing_every_override_goes_back_to_the_built_in_templates(overrides):
    overrides.apply(GOOD, conflist(overrides))
    assert overrides.apply({}, conflist(overrides)).changed
    assert os.listdir(overrides.active) == []


def test_a_replaced_file_is_newer_than_the_one_it_replaces(overrides):
    """The daemon's template cache compares modification times."""
    overrides.apply(GOOD, conflist(overrides))
    before = os.stat(os.path.join(overrides.active, "add-host.ip.j2")).st_mtime_ns
    changed = {"add-host.ip.j2": GOOD["add-host.ip.j2"] + "link set dev {{ host.ifname }} up\n"}
    assert overrides.apply(changed, conflist(overrides)).changed
    assert os.stat(os.path.join(overrides.active, "add-host.ip.j2")).st_mtime_ns > before
