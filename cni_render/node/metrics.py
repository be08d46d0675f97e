"""Prometheus metrics of the node, with prometheus_client (its registry, its
exposition), on the agent's metrics address, and ``/healthz`` for the
liveness probe on a loopback address of its own (127.0.0.1:9646): pods can
reach the metrics port, never the probe's. Both listeners serve each
connection in a thread of their own, a bounded number at once, and close a
connection silent for 5 s.

CNI calls are served by the daemon's worker processes; the daemon writes one
line per call on its stderr (``cni-render daemon: ADD <id>/<if> -> <exit> in
<ms> ms``), which the agent reads from its daemon child
(:mod:`.daemon_child`) and counts here: the call metrics cost the daemon
nothing and need no shared state between processes.

====================================================  ==========================================
``cni_render_calls_total{command,code}``              CNI calls served by the daemon (code: the
                                                      exit status, or the CNI error code when the
                                                      daemon's line carries it)
``cni_render_call_duration_seconds{command}``         histogram of their latency
``cni_render_ipam_addresses{network,range,state}``    addresses ``in_use`` / ``free`` per range,
                                                      read from the IPAM store at scrape time
``cni_render_template_reloads_total``                 override sets made active
``cni_render_template_refusals_total``                override sets refused
``cni_render_node_routes{family}``                    host-gw routes the agent manages
``cni_render_conflist_writes_total``                  conflist (re)writes
``cni_render_shim_installs_total``                    shim (re)installs
``cni_render_daemon_restarts_total``                  daemon children restarted after dying
``cni_render_agent_errors_total{step}``               failed reconcile steps
====================================================  ==========================================
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterator, Mapping
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DAEMON_CALL = re.compile(
    r"^cni-render daemon: (?P<command>[A-Z]+) \S*/\S* -> (?P<exit>\d+)"
    r"(?: \(code (?P<code>\d+)\))? in (?P<milliseconds>[0-9.]+) ms"
)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.calls = Counter("cni_render_calls", "CNI calls served by the daemon", ["command", "code"], registry=r)
        self.latency = Histogram(
            "cni_render_call_duration_seconds", "Latency of CNI calls served by the daemon", ["command"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.template_reloads = Counter("cni_render_template_reloads", "Template override sets made active", registry=r)
        self.template_refusals = Counter("cni_render_template_refusals", "Template override sets refused", registry=r)
        self.routes = Gauge("cni_render_node_routes", "Host-gw routes managed by the agent", ["family"], registry=r)
        self.conflist_writes = Counter("cni_render_conflist_writes", "Conflist writes", registry=r)
        self.shim_installs = Counter("cni_render_shim_installs", "Shim installs", registry=r)
        self.daemon_restarts = Counter("cni_render_daemon_restarts", "Daemon children restarted", registry=r)
        self.errors = Counter("cni_render_agent_errors", "Failed reconcile steps", ["step"], registry=r)

    def count_daemon_line(self, line: str) -> bool:
        """Count one line of the daemon's stderr; True when it was a call."""
        match = DAEMON_CALL.match(line)
        if not match:
            return False
        command = match["command"]
        self.calls.labels(command=command, code=match["code"] or match["exit"]).inc()
        self.latency.labels(command=command).observe(float(match["milliseconds"]) / 1000)
        return True

    def set_routes(self, routes_by_family: Mapping[int, int]) -> None:
        for family in (4, 6):
            self.routes.labels(family=f"ipv{family}").set(routes_by_family.get(family, 0))


# usage() -> [(network, range, in use, free)]
Usage = Callable[[], "list[tuple[str, str, int, int]]"]


class IpamCollector(Collector):
    """Addresses in use and free per range, read when Prometheus scrapes."""

    def __init__(self, usage: Usage):
        self.usage = usage

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "cni_render_ipam_addresses", "IPAM addresses per range and state", labels=["network", "range", "state"]
        )
        for network, address_range, in_use, free in self.usage():
            family.add_metric([network, address_range, "in_use"], in_use)
            family.add_metric([network, address_range, "free"], free)
        yield family


def ipam_usage(document: Mapping[str, Any] | None, data_dir: str) -> list[tuple[str, str, int, int]]:
    """(network, range, in use, free) for every range of the conflist, read-only."""
    if not document:
        return []
    from cni_render.ipam.model import parse_ipam_config
    from cni_render.ipam.store import Store

    plugin = document["plugins"][0]
    config = parse_ipam_config(plugin["ipam"])
    reserved = Store(data_dir, document["name"]).reserved()
    addresses = []
    for name in reserved:
        try:
            addresses.append(ipaddress.ip_address(name))
        except ValueError:
            continue
    usage = []
    for range_set in config.range_sets:
        for address_range in range_set:
            in_use = sum(1 for address in addresses if address in address_range)
            gateway = 1 if address_range.gateway in address_range else 0
            usage.append((document["name"], str(address_range.subnet), in_use, address_range.size - gateway - in_use))
    return usage


class _QuietHandler(WSGIRequestHandler):
    timeout = 5  # seconds a connection may stay silent; then it is closed (StreamRequestHandler)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


class _Server(ThreadingMixIn, WSGIServer):
    """A request per thread, at most ``max_connections`` at once: a connection
    beyond that is closed at once, so idle or slow clients cost a bounded
    number of threads and never hold the accept loop."""

    daemon_threads = True
    block_on_close = False
    max_connections = 32
    request_queue_size = 256  # the listen backlog: a burst of connections is accepted (and refused), not dropped

    def server_activate(self) -> None:
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out or went away: nothing to report


class _Server6(_Server):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class Served:
    """The two listeners: /metrics on the metrics address, /healthz on loopback."""

    def __init__(self, metrics: WSGIServer, health: WSGIServer):
        self.metrics, self.health = metrics, health

    def close(self) -> None:
        for server in (self.metrics, self.health):
            server.shutdown()
            server.server_close()


def serve_metrics(
    host: str, port: int, metrics: Metrics, healthy: Callable[[], str | None],
    health_host: str = "127.0.0.1", health_port: int = 9646,
) -> Served:
    """Serve ``/metrics`` from the registry on ``host:port`` (every path but
    ``/healthz``, which is 404 there), and ``/healthz`` alone on the loopback
    address ``health_host:health_port``: 200 when ``healthy()`` is None, else
    503 with the reason. Each listener serves concurrently, bounded, with a
    read timeout per connection, so no client off the node can delay the
    liveness probe."""
    exposition = make_wsgi_app(metrics.registry)

    def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"/healthz is served on {health_host}:{health_port} only\n".encode()]
        return exposition(environ, start_response)

    def health_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") != "/healthz":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"only /healthz here\n"]
        problem = healthy()
        status = "200 OK" if problem is None else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain")])
        return [(problem or "ok").encode() + b"\n"]

    if not ipaddress.ip_address(health_host).is_loopback:
        raise ValueError(f"/healthz is served on a loopback address only, not {health_host}")
    served = Served(_bind(host, port, metrics_app), _bind(health_host, health_port, health_app))
    for name, server in (("metrics", served.metrics), ("health", served.health)):
        threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return served


def _bind(host: str, port: int, app: Callable[..., Any]) -> WSGIServer:
    """An empty host binds every address, IPv6 and IPv4 where the node has IPv6."""
    if host and ":" not in host:
        return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    try:
        return make_server(host or "::", port, app, server_class=_Server6, handler_class=_QuietHandler)
    except OSError:
        if host:
            raise
        return make_server("0.0.0.0", port, app, server_class=_Server, handler_class=_QuietHandler)
