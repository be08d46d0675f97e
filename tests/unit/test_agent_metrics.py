"""Metrics: the daemon's per-call lines counted, IPAM usage read from the store, and
the exposition and /healthz served by prometheus_client."""

from __future__ import annotations

import io
import urllib.request

from cni_render.fastpath.worker import Worker
from cni_render.node.conflist import build_conflist
from cni_render.node.metrics import IpamCollector, Metrics, ipam_usage, serve_metrics
from cni_render.node.nodeinfo import parse_networks


def daemon_line(command, exit_code, seconds, container="c0ffee", ifname="eth0"):
    """A line exactly as the daemon writes it (its own code, not a copy of the format)."""
    writer = Worker.__new__(Worker)
    writer.log = io.StringIO()
    environ = {"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_IFNAME": ifname}
    writer.note(environ, exit_code, seconds)
    return writer.log.getvalue()


def test_the_daemons_call_lines_are_counted_by_command_and_code():
    metrics = Metrics()
    assert metrics.count_daemon_line(daemon_line("ADD", 0, 0.012))
    assert metrics.count_daemon_line(daemon_line("ADD", 1, 0.5))
    assert metrics.count_daemon_line(daemon_line("STATUS", 0, 0.001, container="", ifname=""))
    assert not metrics.count_daemon_line("cni-render daemon: listening on /run/cni-render/daemon.sock\n")
    value = metrics.registry.get_sample_value
    assert value("cni_render_calls_total", {"command": "ADD", "code": "0"}) == 1
    assert value("cni_render_calls_total", {"command": "ADD", "code": "1"}) == 1
    assert value("cni_render_calls_total", {"command": "STATUS", "code": "0"}) == 1
    assert value("cni_render_call_duration_seconds_count", {"command": "ADD"}) == 2
    assert abs(value("cni_render_call_duration_seconds_sum", {"command": "ADD"}) - 0.512) < 0.001


def test_a_cni_error_code_in_the_line_is_the_code_label():
    metrics = Metrics()
    metrics.count_daemon_line("cni-render daemon: ADD abc/eth0 -> 1 (code 11) in 3.0 ms\n")
    assert metrics.registry.get_sample_value("cni_render_calls_total", {"command": "ADD", "code": "11"}) == 1


def test_addresses_in_use_and_free_per_range(tmp_path):
    document = build_conflist("a", parse_networks(["10.244.1.0/24", "fd00:10:244:1::/120"]), mtu=1500, mode="routed",
                              template_dir="/x", portmap=False)
    store = tmp_path / "cni-render"
    store.mkdir()
    for address in ("10.244.1.2", "10.244.1.3", "fd00:10:244:1::2"):
        (store / address).write_text("container\r\neth0")
    (store / "lock").write_text("")
    (store / "last_reserved_ip.0").write_text("10.244.1.3")
    assert ipam_usage(document, str(tmp_path)) == [
        ("cni-render", "10.244.1.0/24", 2, 254 - 1 - 2),  # .1-.254; the gateway .1 is not free
        ("cni-render", "fd00:10:244:1::/120", 1, 255 - 1 - 1),
    ]
    metrics = Metrics()
    metrics.registry.register(IpamCollector(lambda: ipam_usage(document, str(tmp_path))))
    labels = {"network": "cni-render", "range": "10.244.1.0/24"}
    assert metrics.registry.get_sample_value("cni_render_ipam_addresses", {**labels, "state": "in_use"}) == 2
    assert metrics.registry.get_sample_value("cni_render_ipam_addresses", {**labels, "state": "free"}) == 251


def test_served_over_http_with_healthz():
    metrics = Metrics()
    metrics.template_reloads.inc()
    metrics.set_routes({4: 2, 6: 1})
    health = {"problem": None}
    server = serve_metrics("127.0.0.1", 0, metrics, lambda: health["problem"])
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "cni_render_template_reloads_total 1.0" in text
        assert 'cni_render_node_routes{family="ipv4"} 2.0' in text
        assert urllib.request.urlopen(base + "/healthz", timeout=5).read() == b"ok\n"
        health["problem"] = "the daemon is not running"
        try:
            urllib.request.urlopen(base + "/healthz", timeout=5)
            raise AssertionError("/healthz answered 200 while unhealthy")
        except urllib.error.HTTPError as error:
            assert error.code == 503 and b"the daemon is not running" in error.read()
    finally:
        server.shutdown()
        server.server_close()
