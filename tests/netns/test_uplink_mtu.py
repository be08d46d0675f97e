"""The daemon's workers keep the uplink MTU: read once, read again only when
the uplink or a default route changes; pods' veths coming and going do not
cost a netlink dump of the whole node."""

from __future__ import annotations

import json
import sys

# Runs inside the throwaway node's namespace: the change feed is bound to it.
PROBE = """
import json, subprocess, sys
from cni_render.host import system

def ip(*argv):
    subprocess.run(["ip", *argv], check=True, capture_output=True)

cache = system.keep_uplink_mtu()
seen = {"first": system.default_route_mtu()}
reads = {"first": cache.reads}
for n in range(20):
    ip("link", "add", f"pv{n}", "type", "veth", "peer", "name", f"pp{n}")
    ip("link", "set", f"pv{n}", "up")
    ip("route", "add", f"10.99.{n}.2/32", "dev", f"pv{n}")
seen["after veths"] = system.default_route_mtu()
reads["after veths"] = cache.reads
ip("link", "set", "uplink", "mtu", "1400")
seen["after uplink change"] = system.default_route_mtu()
reads["after uplink change"] = cache.reads
ip("route", "del", "default")
seen["without default route"] = system.default_route_mtu()
ip("route", "add", "default", "via", "192.0.2.1", "dev", "uplink")
seen["default route back"] = system.default_route_mtu()
json.dump({"seen": seen, "reads": reads}, sys.stdout)
"""


def add_uplink(node, mtu: int) -> None:
    """A veth pair inside the node stands in for its uplink (no dummy module here)."""
    node.exec(["ip", "link", "add", "uplink", "mtu", str(mtu), "type", "veth", "peer", "name", "uplink-peer"])
    node.exec(["ip", "link", "set", "uplink-peer", "up"])
    node.exec(["ip", "link", "set", "uplink", "up"])


def test_the_uplink_mtu_is_read_again_only_when_the_uplink_or_default_route_changes(plain_node):
    add_uplink(plain_node, 9000)
    plain_node.exec(["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink"])
    plain_node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink"])
    report = json.loads(plain_node.exec([sys.executable, "-c", PROBE]).stdout)
    assert report["seen"] == {
        "first": 9000,
        "after veths": 9000,
        "after uplink change": 1400,
        "without default route": 1500,
        "default route back": 1400,
    }
    assert report["reads"] == {"first": 1, "after veths": 1, "after uplink change": 2}


def test_without_the_daemon_every_call_reads_the_uplink(plain_node):
    add_uplink(plain_node, 1450)
    plain_node.exec(["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink"])
    plain_node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink"])
    probe = "from cni_render.host import system; print(system.default_route_mtu())"
    assert plain_node.exec([sys.executable, "-c", probe]).stdout.strip() == "1450"


def test_a_kept_uplink_mtu_serves_only_its_own_namespace(plain_node):
    """A process that keeps the MTU of one namespace (a worker: the node's) and
    is asked from another (a thread in a pod's, a test's node) reads that one."""
    from cni_render.host import system

    add_uplink(plain_node, 1380)
    plain_node.exec(["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink"])
    plain_node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink"])
    kept = system.keep_uplink_mtu()  # this process's own namespace
    try:
        with system.in_netns(plain_node.netns):
            assert system.default_route_mtu() == 1380
        assert kept.reads <= 1
    finally:
        system._uplink_mtu = None
