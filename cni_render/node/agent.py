"""``cni-render node``: the agent's life on a node.

Start, in this order: (1) the static shim into the runtime's plugin
directory, (2) the daemon, started and answering, (3) only then the
conflist, from the Node's ``spec.podCIDRs``, after the daemon answered
STATUS for exactly that conflist. Then reconcile: on every change of a Node,
of the settings or of the template overrides, and every ``resyncSeconds``
(default 30) regardless, every step compares what the node has with what it
should have and fixes only the difference: shim, daemon, templates,
conflist, routes, masquerade. A failing step is logged and counted, and
the others still run.

A slow or absent API server never removes anything: until the Nodes and the
settings have been listed once, the conflist, the routes and the masquerade
table on the node stay as they are; until the template overrides have been
listed too, the overrides and the conflist do. Every API call has a timeout
(:mod:`.cluster`), Events are posted from a bounded queue by a thread of
their own (:class:`EventQueue`), never from the reconcile loop, and liveness
(``/healthz``) reflects the daemon and the loop, not the API server. A
deleted settings ConfigMap keeps the last settings; an uplink MTU that cannot
be read for a moment (no default route) keeps the last known one.

SIGTERM stops the watches, lets the daemon finish its calls in flight, and
leaves the conflist and the shim in place: a restart or an upgrade must not
make the node NotReady or leave pods that cannot be deleted.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
from typing import Any, Callable, TextIO

from cni_render.host import durable, system
from cni_render.node import files
from cni_render.node.conflist import NO_POD_CIDR, plugin_config, stale_legacy_temporaries
from cni_render.node.daemon_child import DaemonChild
from cni_render.node.masquerade import apply_masquerade
from cni_render.node.metrics import IpamCollector, Metrics, ipam_usage, serve_metrics
from cni_render.node.nodeinfo import NodeInfo, Refusal, node_from_dict
from cni_render.node.overrides import TemplateOverrides
from cni_render.node.routes import apply_routes, kernel_not_on_link, read_current_routes
from cni_render.node.settings import (
    SETTINGS_CONFIGMAP,
    TEMPLATES_CONFIGMAP,
    Paths,
    Settings,
    SettingsError,
    parse_settings,
    split_address,
)
from cni_render.node.state import DesiredState, NodeFacts, desired_state, node_conflist
from cni_render.node.uninstall import uninstall_generation, uninstalled_since

FIRST_STATUS_SECONDS = 60.0  # the daemon imports everything before it answers
STATUS_SECONDS = 10.0
SYNC_SECONDS = 30.0  # at most this long for the settings (the metrics address) before serving metrics
EVENT_QUEUE_SIZE = 100
FALLBACK_MTU = 1500  # only when no MTU was ever known on the node
NODES, SETTINGS, TEMPLATES = "Nodes", f"ConfigMap {SETTINGS_CONFIGMAP}", f"ConfigMap {TEMPLATES_CONFIGMAP}"

# post(node, reason, message, warning)
PostEvent = Callable[[dict[str, Any], str, str, bool], None]


class EventQueue:
    """Events posted one at a time by a daemon thread of their own, from a
    queue of at most ``size``: the reconcile loop never waits for the API
    server. When the queue is full, ``put`` refuses (the caller logs and
    tries again next round)."""

    def __init__(self, post: PostEvent, say: Callable[[str], None], size: int = EVENT_QUEUE_SIZE):
        self.post, self.say = post, say
        self.queue: queue.Queue[tuple[dict[str, Any], str, str, bool]] = queue.Queue(maxsize=size)
        self.thread: threading.Thread | None = None

    def put(self, node: dict[str, Any], reason: str, message: str, warning: bool) -> bool:
        if self.thread is None:
            self.thread = threading.Thread(target=self._post_forever, name="events", daemon=True)
            self.thread.start()
        try:
            self.queue.put_nowait((node, reason, message, warning))
        except queue.Full:
            return False
        return True

    def _post_forever(self) -> None:
        while True:
            node, reason, message, warning = self.queue.get()
            try:
                self.post(node, reason, message, warning)
            except Exception as exc:
                self.say(f"cannot post the event {reason}: {exc}")
            finally:
                self.queue.task_done()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for every queued Event to be posted (or to fail)."""
        with self.queue.all_tasks_done:
            return self.queue.all_tasks_done.wait_for(lambda: self.queue.unfinished_tasks == 0, timeout)


class Agent:
    def __init__(self, paths: Paths, cluster: Any, log: TextIO = sys.stderr, metrics: Metrics | None = None):
        self.paths = paths
        self.cluster = cluster
        self.log = log
        self.metrics = metrics or Metrics()
        self.daemon = DaemonChild(paths.socket, self.metrics, log)
        self.overrides = TemplateOverrides(paths.templates, saved=paths.saved_templates)
        self.settings = Settings()
        self.nodes: dict[str, NodeInfo] = {}
        self.own_node: dict[str, Any] = {"metadata": {"name": paths.node_name}}
        self.templates: dict[str, str] = {}
        self.templates_seen: dict[str, str] | None = None
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.listed = {name: threading.Event() for name in (NODES, SETTINGS, TEMPLATES)}  # each listed once
        self.uninstall_generation = uninstall_generation(paths)
        self.last_loop = time.monotonic()
        self.announced: dict[str, str] = {}
        self.events = EventQueue(lambda *event: cluster.node_event(*event), self.say)
        self.last_masquerade = ""
        self.last_mtu: int | None = None
        self.conflist_document: dict[str, Any] | None = None
        self.conflist_written = False

    # --- life ---------------------------------------------------------------

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.shutdown())
        self.say(f"starting on node {self.paths.node_name}")
        self.step("temporaries", self.sweep_temporaries)
        self.step("shim", self.ensure_shim)
        # the last good override set is active before the daemon answers any ADD
        # (after a reboot the conflist still names it, but /run is empty)
        self.step("templates", self.overrides.ensure)
        self.daemon.start()
        self.watch_in_background()
        self.listed[SETTINGS].wait(SYNC_SECONDS)  # the metrics address; the defaults if the API is away
        self.step("metrics", self.serve_metrics)
        try:
            while not self.stop.is_set():
                self.reconcile()
                self.wake.wait(self.settings.resync_seconds)
                self.wake.clear()
        finally:
            self.say("stopping: the daemon finishes its calls; the conflist and the shim stay")
            self.daemon.stop()
            self.events.flush(2.0)
        return 0

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()

    def watch_in_background(self) -> None:
        watches: list[Callable[[], None]] = [
            lambda: self.cluster.watch_nodes(self.nodes_listed, self.node_changed, self.stop),
            lambda: self.cluster.watch_config_map(SETTINGS_CONFIGMAP, self.settings_changed, self.stop),
            lambda: self.cluster.watch_config_map(TEMPLATES_CONFIGMAP, self.templates_changed, self.stop),
        ]
        for number, target in enumerate(watches):
            threading.Thread(target=target, name=f"watch-{number}", daemon=True).start()

    def serve_metrics(self) -> None:
        host, port = split_address(self.settings.metrics_address)
        self.metrics.registry.register(
            IpamCollector(lambda: ipam_usage(self.conflist_document, self.paths.ipam_dir))
        )
        health_host, health_port = split_address(self.settings.health_address)
        serve_metrics(host, port, self.metrics, self.health, health_host, health_port)
        self.say(f"metrics on {self.settings.metrics_address} (/metrics), /healthz on {self.settings.health_address}")

    def health(self) -> str | None:
        """None while the reconcile loop runs and the daemon lives (liveness)."""
        late = time.monotonic() - self.last_loop - 3 * self.settings.resync_seconds
        if late > 60:
            return f"the reconcile loop has not run for {late:.0f} s past its period"
        if not self.daemon.alive():
            return "the daemon is not running"
        return None

    # --- what the watches report ----------------------------------------------

    def nodes_listed(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.nodes = {}
            for item in items:
                self._remember(item)
        self.listed[NODES].set()
        self.wake.set()

    def node_changed(self, kind: str, item: dict[str, Any]) -> None:
        info = node_from_dict(item)
        with self.lock:
            before = self.nodes.get(info.name)
            if kind == "DELETED":
                self.nodes.pop(info.name, None)
            else:
                self._remember(item)
            changed = before != self.nodes.get(info.name)
        if changed:  # status heartbeats change nothing the agent uses
            self.wake.set()

    def _remember(self, item: dict[str, Any]) -> None:
        info = node_from_dict(item)
        self.nodes[info.name] = info
        if info.name == self.paths.node_name:
            self.own_node = item

    def settings_changed(self, data: dict[str, str] | None) -> None:
        """The settings ConfigMap listed or changed (None: it does not exist).
        Once listed, its deletion keeps the settings in use: ``kubectl delete
        -f`` must not revert the nodes in the agents' last seconds."""
        if data is None and self.listed[SETTINGS].is_set():
            self.say_once(f"the ConfigMap {SETTINGS_CONFIGMAP} is gone: keeping the settings in use")
            return
        self.set_settings(data)
        self.listed[SETTINGS].set()
        self.wake.set()

    def set_settings(self, data: dict[str, str] | None) -> None:
        try:
            settings = parse_settings(data)
        except SettingsError as exc:
            self.announce("SettingsRefused", f"{exc}; keeping the settings in use")
            return
        with self.lock:
            self.settings = settings

    def templates_changed(self, data: dict[str, str] | None) -> None:
        with self.lock:
            self.templates = dict(data or {})
        self.listed[TEMPLATES].set()
        self.wake.set()

    # --- reconcile ------------------------------------------------------------

    def reconcile(self) -> None:
        self.last_loop = time.monotonic()
        if uninstalled_since(self.paths, self.uninstall_generation):
            self.announce("Uninstalled", "`cni-render node uninstall` ran: nothing is restored; delete the DaemonSet")
            return
        with self.lock:
            settings, nodes, templates = self.settings, list(self.nodes.values()), dict(self.templates)
        self.step("shim", self.ensure_shim)
        self.step("daemon", self.daemon.ensure_running)
        waiting = [name for name, listed in self.listed.items() if not listed.is_set()]
        if waiting:
            self.say_once(f"waiting for the first listing of {', '.join(waiting)}: what depends on it stays "
                          "on the node as it is")
        if NODES in waiting or SETTINGS in waiting:
            return  # routes, masquerade, conflist and overrides all depend on both
        facts = self.facts()
        desired = self.step(
            "plan",
            lambda: desired_state(
                self.paths.node_name, nodes, settings, facts, read_current_routes(), kernel_not_on_link
            ),
        )
        if desired is None:
            return
        if TEMPLATES not in waiting:  # the first conflist is written with the overrides in place
            self.step("templates", lambda: self.ensure_templates(templates, desired, nodes, settings, facts))
            self.step("conflist", lambda: self.ensure_conflist(desired))
        self.step("routes", lambda: self.ensure_routes(desired))
        self.step("masquerade", lambda: self.ensure_masquerade(desired))

    def facts(self) -> NodeFacts:
        facts = node_facts(self.paths, self.last_mtu)
        self.last_mtu = facts.uplink_mtu
        return facts

    def sweep_temporaries(self) -> None:
        """Remove from the CNI conf dir the temporary files a killed writer left:
        ``.tmp-<pid>-...partial`` of a dead process (durable's naming), and the
        older ``.tmp-<pid>-<hex>-10-cni-render.conflist``, which a runtime
        could load and which would shadow the real conflist for good."""
        directory = self.paths.cni_conf_dir
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        durable.sweep_temporaries(directory, names)
        for name in stale_legacy_temporaries(names, process_exists):
            if files.remove_file(os.path.join(directory, name)):
                self.say(f"removed the stale temporary {os.path.join(directory, name)}")

    def ensure_shim(self) -> None:
        with open(self.paths.shim, "rb") as handle:
            wanted = handle.read()
        if files.read_bytes(os.path.join(self.paths.cni_bin_dir, "cni-render")) == wanted:
            return
        from cni_render.fastpath.install import install_shim

        for path in install_shim(self.paths.cni_bin_dir, self.paths.shim):
            self.say(f"installed the shim {path}")
        self.metrics.shim_installs.inc()

    def ensure_templates(
        self, templates: dict[str, str], desired: DesiredState, nodes: list[NodeInfo], settings: Settings,
        facts: NodeFacts,
    ) -> None:
        if templates == self.templates_seen:
            return
        mine = next((n for n in nodes if n.name == self.paths.node_name), NodeInfo(self.paths.node_name))
        document = desired.conflist or node_conflist(mine, settings, facts, sample=True)
        outcome = self.overrides.apply(templates, document)
        self.templates_seen = templates
        if outcome.refused:
            self.metrics.template_refusals.inc()
            details = "; ".join(outcome.problems)
            self.announce("TemplatesRefused", f"template overrides {outcome.digest} refused, the last good set "
                          f"({self.overrides.current_digest()}) keeps serving: {details}")
        elif outcome.changed:
            self.metrics.template_reloads.inc()
            self.announce("TemplatesReloaded", f"template overrides {outcome.digest} active "
                          f"({len(templates)} files)", warning=False)

    def ensure_conflist(self, desired: DesiredState) -> None:
        content = desired.conflist_bytes
        if content is None:
            self.announce("NoPodCIDR", desired.conflist_problem or NO_POD_CIDR.format(node=self.paths.node_name))
            return
        self.conflist_document = desired.conflist
        if files.read_bytes(self.paths.conflist) == content:
            return
        first = not self.conflist_written
        problem = self.daemon.wait_until_status(
            plugin_config(desired.conflist or {}), FIRST_STATUS_SECONDS if first else STATUS_SECONDS
        )
        if problem:
            self.announce("DaemonNotReady", f"the conflist is not written while the daemon does not answer: {problem}")
            return
        files.write_if_changed(self.paths.conflist, content)
        self.metrics.conflist_writes.inc()
        self.conflist_written = True
        self.say(f"wrote {self.paths.conflist}")

    def ensure_routes(self, desired: DesiredState) -> None:
        for refusal in desired.refused:
            self.refuse(refusal)
        for unknown in desired.unknown:
            self.say_once(unknown)
        for warning in desired.routes.warnings:
            self.announce("RouteSkipped", warning, key=warning)
        if desired.routes.changes:
            apply_routes(desired.routes)
            for route in desired.routes.delete:
                self.say(f"route {route.dst} via {route.via} removed")
            for route in desired.routes.add:
                self.say(f"route {route.dst} via {route.via} (node {route.node})")
        counts = {4: 0, 6: 0}
        for route in desired.routes.desired:
            counts[6 if ":" in route.dst else 4] += 1
        self.metrics.set_routes(counts)

    def ensure_masquerade(self, desired: DesiredState) -> None:
        apply_masquerade(desired.masquerade_batch)  # atomic and idempotent: replaced whole, every round
        if desired.masquerade_batch != self.last_masquerade:
            self.say("masquerade " + ("updated" if "masquerade" in desired.masquerade_batch else "off"))
            self.last_masquerade = desired.masquerade_batch

    # --- reporting ------------------------------------------------------------

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as exc:
            self.metrics.errors.labels(step=name).inc()
            self.say(f"{name}: {exc}")
            return None

    def say(self, message: str) -> None:
        self.log.write(f"cni-render node: {message}\n")
        self.log.flush()

    def say_once(self, message: str) -> None:
        if self.announced.get(message) is None:
            self.announced[message] = message
            self.say(message)

    def refuse(self, refusal: Refusal) -> None:
        node = {"metadata": {"name": refusal.node.name, "uid": refusal.node.uid}}
        self.announce("PodCIDRRefused", refusal.message, key=f"refused {refusal.node.name} {refusal.cidr}", node=node)

    def announce(
        self, reason: str, message: str, warning: bool = True, key: str | None = None,
        node: dict[str, Any] | None = None,
    ) -> None:
        """Log ``message`` and queue it as an Event on ``node`` (default: this
        agent's own Node), once per distinct message (a full queue: next round)."""
        key = key or reason
        if self.announced.get(key) == message:
            return
        self.say(f"{reason}: {message}")
        if self.events.put(node or self.own_node, reason, message, warning):
            self.announced[key] = message
        else:
            self.say(f"the event queue is full: {reason} is posted later")


def node_facts(paths: Paths, last_mtu: int | None = None) -> NodeFacts:
    """What the conflist needs from the node itself (read-only)."""
    return NodeFacts(
        uplink_mtu=known_mtu(system.default_route_mtu(fallback=0), last_mtu, files.read_bytes(paths.conflist)),
        portmap=os.path.isfile(os.path.join(paths.cni_bin_dir, "portmap")),
        template_dir=paths.templates,
    )


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def known_mtu(detected: int, last: int | None, conflist: bytes | None) -> int:
    """The uplink's MTU as ``detected`` (0: unknown, e.g. no default route for
    a moment); while unknown, the last known one, else the one the node's
    conflist already has, and only then 1500: a passing gap never rewrites
    the conflist."""
    if detected:
        return detected
    if last:
        return last
    try:
        mtu = json.loads(conflist or b"")["plugins"][0]["mtu"]
    except (ValueError, KeyError, IndexError, TypeError):
        return FALLBACK_MTU
    return mtu if isinstance(mtu, int) and mtu > 0 else FALLBACK_MTU
