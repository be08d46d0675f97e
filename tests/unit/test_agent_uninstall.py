"""The uninstall marker: a generation number each uninstall increments, so whether an
agent must stop restoring never depends on the clock."""

from __future__ import annotations

import os
import time

import pytest

from cni_render.node import uninstall as uninstall_module
from cni_render.node.settings import Paths
from cni_render.node.uninstall import uninstall, uninstall_generation, uninstalled_since


@pytest.fixture
def paths(tmp_path, monkeypatch):
    monkeypatch.setattr(uninstall_module, "read_current_routes", lambda: [])  # no node: files only
    monkeypatch.setattr(uninstall_module, "_table_exists", lambda: False)
    for directory in ("bin", "net.d", "run"):
        (tmp_path / directory).mkdir()
    return Paths(node_name="a", cni_bin_dir=str(tmp_path / "bin"), cni_conf_dir=str(tmp_path / "net.d"),
                 state_dir=str(tmp_path / "run"), persistent_dir=str(tmp_path / "var"))


def test_an_uninstall_after_the_agent_started_stops_it_and_a_restarted_agent_runs(paths):
    started = uninstall_generation(paths)  # what an agent reads at its start
    assert started == 0 and not uninstalled_since(paths, started)
    uninstall(paths)
    assert uninstalled_since(paths, started)
    restarted = uninstall_generation(paths)  # a reinstalled agent
    assert restarted == 1 and not uninstalled_since(paths, restarted)
    uninstall(paths)
    assert uninstall_generation(paths) == 2 and uninstalled_since(paths, restarted)


def test_a_clock_step_changes_nothing(paths, monkeypatch):
    uninstall(paths)
    reinstalled = uninstall_generation(paths)
    marker = paths.uninstalled_marker
    os.utime(marker, (time.time() + 86400, time.time() + 86400))  # the clock stepped back a day
    assert not uninstalled_since(paths, reinstalled)  # the reinstalled agent keeps working
    monkeypatch.setattr(time, "time", lambda: 0.0)  # the clock stepped back to 1970
    uninstall(paths)
    os.utime(marker, (0, 0))
    assert uninstalled_since(paths, reinstalled)  # a fresh uninstall is seen all the same


def test_a_marker_of_an_older_agent_counts_as_one_uninstall(paths):
    with open(paths.uninstalled_marker, "w") as marker:
        marker.write("1733312345.678\n")  # the wall time older agents wrote
    assert uninstall_generation(paths) == 1
    uninstall(paths)
    assert uninstall_generation(paths) == 2
