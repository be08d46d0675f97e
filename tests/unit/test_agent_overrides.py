"""Template overrides from the ConfigMap: checked like `cni-render validate`, swapped in
whole, and a broken set refused while the last good one keeps serving."""

from __future__ import annotations

import functools
import os
import time

import pytest

from cni_render.datapath.render import Renderer
from cni_render.node.conflist import build_conflist
from cni_render.node.nodeinfo import parse_networks
from cni_render.node.overrides import DEFAULT_LIMITS, Limits, TemplateOverrides, validate_in_child

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


# --- templates that run away: validated in a child process with limits ------------------------

RUNAWAY_LOOP = {"add-host.ip.j2": "{% for i in range(10**5) %}{% for j in range(10**5) %}x{% endfor %}{% endfor %}\n"}
# the issue's spelling: the sandbox refuses a range over 100000 before it loops
ISSUE_LOOP = {"add-host.ip.j2": "{% for i in range(10**6) %}{% for j in range(10**6) %}x{% endfor %}{% endfor %}\n"}
MEMORY_BOMB = {"add-host.ip.j2": '{% set s = "x" * 10**9 %}{{ s | length }}\n'}
SLACK = 10.0  # seconds for the child's start on a busy machine


def assert_refused_keeping_the_good_set(overrides, templates, naming):
    overrides.apply(GOOD, conflist(overrides))
    good_digest = overrides.current_digest()
    started = time.monotonic()
    outcome = overrides.apply(templates, conflist(overrides))
    took = time.monotonic() - started
    assert outcome.refused and not outcome.changed
    assert any(naming in problem for problem in outcome.problems), outcome.problems
    assert overrides.current_digest() == good_digest and active_files(overrides) == GOOD
    return took


def test_a_runaway_loop_is_refused_within_the_wall_clock_limit_and_the_good_set_serves(overrides):
    assert (DEFAULT_LIMITS.wall_seconds, DEFAULT_LIMITS.memory_bytes) == (5.0, 256 << 20)
    took = assert_refused_keeping_the_good_set(overrides, RUNAWAY_LOOP, "limit of 5 s")
    assert took < DEFAULT_LIMITS.wall_seconds + SLACK


def test_the_issues_loop_is_refused_at_once(overrides):
    took = assert_refused_keeping_the_good_set(overrides, ISSUE_LOOP, "Range too big")
    assert took < SLACK


def test_a_template_that_eats_memory_is_refused_naming_the_memory_limit(overrides):
    assert_refused_keeping_the_good_set(overrides, MEMORY_BOMB, "memory limit of 256 MiB")


def test_a_template_that_burns_cpu_is_refused_naming_the_cpu_limit(tmp_path):
    limits = Limits(cpu_seconds=1, wall_seconds=60)
    overrides = TemplateOverrides(str(tmp_path / "templates"), functools.partial(validate_in_child, limits=limits))
    overrides.ensure()
    busy = {"add-host.ip.j2": "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}\n"}
    took = assert_refused_keeping_the_good_set(overrides, busy, "CPU limit of 1 s")
    assert took < 1 + 1 + SLACK  # SIGXCPU at the soft limit, SIGKILL a second later


def test_a_batch_that_runs_a_command_is_refused_naming_file_line_and_word(overrides):
    hostile = {"add-host.ip.j2": '{% include "builtin/add-host.ip.j2" %}\nnetns exec x /bin/sh -c id\n'}
    assert_refused_keeping_the_good_set(
        overrides, hostile, "cni-render-templates/add-host.ip.j2: rendered line 10 'netns exec x /bin/sh -c id': 'netns' is refused"
    )


# --- a reboot empties /run; the saved last good set comes back -----------------------


def reboot(tmp_path):
    """What a reboot does to the node's tmpfs: the active set and its versions go."""
    import shutil

    for name in ("templates", "templates.d"):
        path = tmp_path / name
        if path.is_symlink():
            path.unlink()
        shutil.rmtree(path, ignore_errors=True)


def test_after_a_reboot_the_saved_last_good_set_is_active_again(tmp_path):
    saved = str(tmp_path / "disk" / "templates.json")
    before = TemplateOverrides(str(tmp_path / "templates"), saved=saved)
    before.ensure()
    assert before.apply(GOOD, conflist(before)).changed
    reboot(tmp_path)
    after = TemplateOverrides(str(tmp_path / "templates"), saved=saved)
    assert after.ensure() == before.current_digest()
    assert (tmp_path / "templates" / "add-host.ip.j2").read_text() == GOOD["add-host.ip.j2"]


def test_a_refused_set_is_not_saved_and_an_emptied_one_is(tmp_path):
    saved = str(tmp_path / "disk" / "templates.json")
    overrides = TemplateOverrides(str(tmp_path / "templates"), saved=saved)
    overrides.ensure()
    good = overrides.apply(GOOD, conflist(overrides)).digest
    assert overrides.apply(BROKEN_SYNTAX, conflist(overrides)).refused
    reboot(tmp_path)
    assert TemplateOverrides(str(tmp_path / "templates"), saved=saved).ensure() == good
    emptied = TemplateOverrides(str(tmp_path / "templates"), saved=saved)
    assert emptied.apply({}, conflist(emptied)).changed
    reboot(tmp_path)
    assert TemplateOverrides(str(tmp_path / "templates"), saved=saved).ensure() != good
    assert os.listdir(tmp_path / "templates") == []


def test_a_saved_file_that_does_not_match_its_digest_restores_nothing(tmp_path):
    saved = tmp_path / "templates.json"
    saved.write_text('{"digest": "0000000000000000", "templates": {"add-host.ip.j2": "link set dev x up\\n"}}')
    overrides = TemplateOverrides(str(tmp_path / "templates"), saved=str(saved))
    overrides.ensure()
    assert os.listdir(tmp_path / "templates") == []
