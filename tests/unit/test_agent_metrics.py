"""Metrics: the daemon's per-call lines counted, IPAM usage read from the store, and
the exposition served by prometheus_client, and /healthz on a loopback listener of its
own that no number of idle connections to the metrics port can delay."""

from __future__ import annotations

import io
import socket
import time
import urllib.error
import urllib.request

import pytest

from cni_render.fastpath.worker import Worker
from cni_render.node import metrics as metrics_module
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


def test_served_over_http_with_healthz_on_its_own_loopback_listener():
    metrics = Metrics()
    metrics.template_reloads.inc()
    metrics.set_routes({4: 2, 6: 1})
    health = {"problem": None}
    served = serve_metrics("127.0.0.1", 0, metrics, lambda: health["problem"], "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{served.metrics.server_port}"
        probe = f"http://127.0.0.1:{served.health.server_port}/healthz"
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "cni_render_template_reloads_total 1.0" in text
        assert 'cni_render_node_routes{family="ipv4"} 2.0' in text
        assert urllib.request.urlopen(probe, timeout=5).read() == b"ok\n"
        with pytest.raises(urllib.error.HTTPError) as not_here:  # pods reach the metrics port, not the probe
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert not_here.value.code == 404
        health["problem"] = "the daemon is not running"
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(probe, timeout=5)
        assert unhealthy.value.code == 503 and b"the daemon is not running" in unhealthy.value.read()
    finally:
        served.close()


def test_healthz_is_never_served_off_loopback():
    with pytest.raises(ValueError, match="loopback"):
        serve_metrics("127.0.0.1", 0, Metrics(), lambda: None, "0.0.0.0", 0)


def test_200_idle_connections_to_the_metrics_port_do_not_delay_healthz():
    served = serve_metrics("127.0.0.1", 0, Metrics(), lambda: None, "127.0.0.1", 0)
    idle = []
    try:
        for _ in range(200):  # connected, never sending a byte: what any pod can do to <node>:9645
            idle.append(socket.create_connection(("127.0.0.1", served.metrics.server_port), timeout=5))
        probe = f"http://127.0.0.1:{served.health.server_port}/healthz"
        for _ in range(3):
            started = time.monotonic()
            assert urllib.request.urlopen(probe, timeout=5).read() == b"ok\n"
            assert time.monotonic() - started < 1.0
    finally:
        for connection in idle:
            connection.close()
        served.close()


def test_a_silent_connection_is_closed_and_a_busy_server_still_answers(monkeypatch):
    monkeypatch.setattr(metrics_module._QuietHandler, "timeout", 0.3)
    served = serve_metrics("127.0.0.1", 0, Metrics(), lambda: None, "127.0.0.1", 0)
    try:
        silent = socket.create_connection(("127.0.0.1", served.metrics.server_port), timeout=5)
        started = time.monotonic()
        assert silent.recv(1) == b""  # the server hung up on it
        assert time.monotonic() - started < 3
        silent.close()
        base = f"http://127.0.0.1:{served.metrics.server_port}/metrics"
        assert b"cni_render_calls" in urllib.request.urlopen(base, timeout=5).read()
    finally:
        served.close()
