"""The throwaway node (cni_render.cli.sandbox, and the tests' Node on top of it)
cleans up after itself, also when it fails to start or its user fails."""

from __future__ import annotations

import os

import pytest

import throwaway as netns
from cni_render.cli.sandbox import Sandbox, SandboxError, namespaces
from throwaway import Node, pod_addresses, run


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


def test_a_sandbox_with_launchers_and_a_daemon_networks_a_pod_and_leaves_nothing(netns_ok: None) -> None:
    """The whole life of a sandbox as the demo uses it, ended by a failure in
    the middle: namespaces, daemon (master and workers), server and files go."""
    with pytest.raises(RuntimeError, match="the user failed"):
        with Sandbox("sandboxtest", install=True, daemon=True) as node:
            assert node.name.startswith("cnir-sandboxtest-") and (node.tmp / "bin" / "cni-render").exists()
            pod = node.add_pod()
            config = node.contain({"cniVersion": "1.0.0", "name": "box", "type": "cni-render",
                                   "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": "10.244.9.0/24"}]]}})
            call = node.cni("ADD", config, pod).ok()
            assert f"ADD {pod.container_id}/eth0 -> 0" in node.daemon_log()
            server = pod.serve_http("box\n", port=8080)
            assert node.http_get(pod_addresses(call.json)[0], port=8080) == "box\n"
            assert node.allocations("box") == ["10.244.9.2"]
            daemon = node.daemon_pids()
            assert len(daemon) > 1  # master and workers
            raise RuntimeError("the user failed")
    assert not namespaces(f"cnir-sandboxtest-{os.getpid()}-")
    assert not os.path.exists(node.tmp)
    assert server.poll() is not None
    assert not [pid for pid in daemon if os.path.exists(f"/proc/{pid}")]


def test_the_http_client_says_what_did_not_answer(plain_node: Node) -> None:
    pod = plain_node.add_pod()
    pod.exec(["ip", "addr", "add", "192.0.2.7/32", "dev", "lo"])
    with pytest.raises(SandboxError, match="192.0.2.7 port 80"):
        plain_node.http_get("192.0.2.7", source=pod, seconds=0.5)
    pod.serve_http("here\n")
    assert plain_node.http_get("192.0.2.7", source=pod) == "here\n"
