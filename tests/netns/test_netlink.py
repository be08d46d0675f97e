"""The netlink reader sees what iproute2 sees (compared inside a throwaway node)."""

from __future__ import annotations

import json

from cni_render.host import system


def normalized_ip_view(node):
    links = json.loads(node.exec(["ip", "-j", "-d", "addr", "show"]).stdout)
    routes = json.loads(node.exec(["ip", "-j", "route", "show", "table", "all"]).stdout)
    routes += json.loads(node.exec(["ip", "-j", "-6", "route", "show", "table", "all"]).stdout)
    return links, routes


def test_links_addresses_and_routes_match_ip(plain_node):
    plain_node.exec(["ip", "link", "add", "va", "mtu", "1400", "address", "02:00:00:00:00:0a", "type", "veth", "peer", "name", "vb"])
    plain_node.exec(["ip", "link", "set", "va", "alias", "cni-render/net/abc/eth0"])
    plain_node.exec(["ip", "link", "set", "va", "up"])
    plain_node.exec(["ip", "addr", "add", "10.1.0.1/24", "dev", "va"])
    plain_node.exec(["ip", "addr", "add", "fd00:1::1/64", "dev", "va", "nodad"])
    plain_node.exec(["ip", "route", "add", "10.2.0.0/16", "via", "10.1.0.2", "dev", "va", "table", "100"])
    plain_node.exec(["ip", "route", "add", "default", "via", "10.1.0.254", "dev", "va"])
    plain_node.exec(["ip", "-6", "route", "add", "fd00:2::/64", "via", "fd00:1::2", "dev", "va"])
    with system.in_netns(plain_node.netns):
        from cni_render.host.netlink import Netlink

        with Netlink() as netlink:
            links, routes = netlink.state()
    ip_links, ip_routes = normalized_ip_view(plain_node)
    ours = {link["ifname"]: link for link in links}
    for theirs in ip_links:
        mine = ours[theirs["ifname"]]
        assert mine["address"] == theirs["address"] and mine["mtu"] == theirs["mtu"]
        assert ("UP" in mine["flags"]) == ("UP" in theirs["flags"])
        assert {(a["local"], a["prefixlen"]) for a in mine["addr_info"]} == {
            (a["local"], a["prefixlen"]) for a in theirs.get("addr_info", [])
        }
    assert ours["va"]["ifalias"] == "cni-render/net/abc/eth0"
    assert ours["va"]["linkinfo"]["info_kind"] == "veth"
    wanted = {("10.2.0.0/16", "10.1.0.2", "va", "100"), ("default", "10.1.0.254", "va", "main"), ("fd00:2::/64", "fd00:1::2", "va", "main")}
    seen = {(r["dst"], r.get("gateway"), r.get("dev"), r["table"]) for r in routes}
    assert wanted <= seen
    def key(route):
        dst = route["dst"]
        if "/" not in dst and dst != "default":
            dst += "/128" if ":" in dst else "/32"
        return dst, route.get("gateway"), route.get("dev"), route.get("table", "main")

    theirs = {key(r) for r in ip_routes if r.get("type", "unicast") == "unicast"}
    assert theirs == {key(r) for r in routes if r["type"] == "unicast"}


def test_default_route_mtu_and_link_lookups(plain_node):
    plain_node.exec(["ip", "link", "add", "up0", "mtu", "1380", "type", "veth", "peer", "name", "up1"])
    plain_node.exec(["ip", "link", "set", "up0", "up"])
    plain_node.exec(["ip", "addr", "add", "192.0.2.2/24", "dev", "up0"])
    with system.in_netns(plain_node.netns):
        assert system.default_route_mtu() == 1500  # no default route yet
        assert system.link_exists("up0") and not system.link_exists("nope0")
    plain_node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "up0"])
    with system.in_netns(plain_node.netns):
        assert system.default_route_mtu() == 1380


def test_in_netns_returns_to_the_own_namespace(plain_node):
    import os

    before = os.stat("/proc/thread-self/ns/net").st_ino
    with system.in_netns(plain_node.netns):
        assert os.stat("/proc/thread-self/ns/net").st_ino != before
    assert os.stat("/proc/thread-self/ns/net").st_ino == before
