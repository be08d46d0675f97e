"""The namespace fixtures clean up after themselves, also when they fail to start."""

from __future__ import annotations

import os

import pytest

import throwaway as netns
from throwaway import Node, run


def test_a_node_that_fails_to_start_leaves_nothing_behind(netns_ok: None, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Node] = []

    def broken_daemon(node: Node) -> None:
        made.append(node)
        raise AssertionError("the daemon did not start")

    monkeypatch.setattr(netns.Node, "start_daemon", broken_daemon)
    with pytest.raises(AssertionError, match="the daemon did not start"):
        Node(mode="daemon")
    (node,) = made
    assert node.name not in run(["ip", "netns", "list"]).stdout
    assert not os.path.exists(node.tmp)
