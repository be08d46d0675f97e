"""A slow or absent API server never removes anything: the agent, with a fake cluster and
the node's commands recorded, changes nothing that depends on an input until that input
has been listed once; Events never hold up the reconcile loop; every API call has a
timeout; a deleted settings ConfigMap keeps the last settings; an unknown uplink MTU
keeps the last known one; the DaemonSet comes first in the manifest; stale temporaries
are removed from the conf dir at start."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from cni_render.node import agent as agent_module
from cni_render.node import cluster as cluster_module
from cni_render.node.agent import Agent, EventQueue, known_mtu
from cni_render.node.overrides import Activation
from cni_render.node.settings import Paths

ROOT = Path(__file__).resolve().parents[2]


def node_json(name, cidrs, address, uid=None):
    return {
        "metadata": {"name": name, "uid": uid or f"uid-{name}"},
        "spec": {"podCIDRs": cidrs},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


NODES = [node_json("a", ["10.244.0.0/24"], "192.0.2.10"), node_json("b", ["10.244.1.0/24"], "192.0.2.11")]


class SilentCluster:
    """An API server that accepts and never answers: posting an Event blocks until released."""

    def __init__(self):
        self.release = threading.Event()
        self.events = []

    def node_event(self, node, reason, message, warning=True):
        self.release.wait()
        self.events.append((node["metadata"]["name"], reason, message))


class FakeDaemon:
    def ensure_running(self):
        return False

    def alive(self):
        return True

    def wait_until_status(self, plugin_config, timeout):
        return None


class FakeOverrides:
    def __init__(self):
        self.applied = []

    def apply(self, templates, conflist):
        self.applied.append(dict(templates))
        return Activation(digest="d", changed=True)

    def current_digest(self):
        return "d"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """What the agent would do to the node, recorded instead of done."""
    done = {"routes": [], "masquerade": [], "mtu": [1450]}
    monkeypatch.setattr(agent_module, "apply_routes", lambda plan: done["routes"].append(plan))
    monkeypatch.setattr(agent_module, "apply_masquerade", lambda batch: done["masquerade"].append(batch))
    monkeypatch.setattr(agent_module, "read_current_routes", lambda: [])
    monkeypatch.setattr(agent_module, "kernel_not_on_link", lambda address: None)
    monkeypatch.setattr(agent_module.system, "default_route_mtu", lambda fallback=1500: done["mtu"][-1] or fallback)
    for directory in ("bin", "net.d", "run"):
        (tmp_path / directory).mkdir()
    done["paths"] = Paths(node_name="a", cni_bin_dir=str(tmp_path / "bin"), cni_conf_dir=str(tmp_path / "net.d"),
                          state_dir=str(tmp_path / "run"), persistent_dir=str(tmp_path / "var"))
    return done


def make_agent(node, cluster=None):
    agent = Agent(node["paths"], cluster or SilentCluster(), log=io.StringIO())
    agent.daemon = FakeDaemon()
    agent.overrides = FakeOverrides()
    agent.ensure_shim = lambda: None
    return agent


def conflist(node):
    path = Path(node["paths"].conflist)
    return json.loads(path.read_text()) if path.exists() else None


def test_nothing_is_changed_until_every_input_has_been_listed_once(node):
    agent = make_agent(node)
    agent.reconcile()  # the API server never answered: nothing listed
    assert node["routes"] == [] and node["masquerade"] == [] and agent.overrides.applied == []
    assert conflist(node) is None
    assert "waiting for the first listing of Nodes, ConfigMap cni-render-settings" in agent.log.getvalue()
    assert agent.health() is None  # alive: the loop runs and the daemon lives, whatever the API does

    agent.nodes_listed(NODES)
    agent.reconcile()  # the settings (masquerade on or off, the cluster CIDRs) are not known yet
    assert node["routes"] == [] and node["masquerade"] == []

    agent.settings_changed(None)  # listed: the ConfigMap does not exist, so the defaults
    agent.reconcile()
    assert [route.dst for route in node["routes"][0].add] == ["10.244.1.0/24"]
    assert "masquerade" in node["masquerade"][0]
    assert agent.overrides.applied == [] and conflist(node) is None  # the overrides are not known yet

    agent.templates_changed({"add-host.ip.j2": "x"})
    agent.reconcile()
    assert agent.overrides.applied == [{"add-host.ip.j2": "x"}]  # the overrides first, then the conflist
    assert conflist(node)["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24"}]]


def test_events_never_hold_up_the_reconcile_loop(node):
    cluster = SilentCluster()
    agent = make_agent(node, cluster)
    agent.nodes_listed(NODES + [node_json("evil", ["0.0.0.0/0"], "192.0.2.66")])
    agent.settings_changed(None)
    agent.templates_changed({})
    started = time.monotonic()
    agent.reconcile()  # posts PodCIDRRefused on node evil: the API server does not answer
    agent.reconcile()
    assert time.monotonic() - started < 2
    assert node["routes"] and node["masquerade"]
    cluster.release.set()
    assert agent.events.flush(5)
    assert ("evil", "PodCIDRRefused") in [(name, reason) for name, reason, _ in cluster.events]


def test_the_event_queue_is_bounded():
    release = threading.Event()
    posted = []
    events = EventQueue(lambda *event: (release.wait(), posted.append(event)), lambda line: None, size=2)
    accepted = [events.put({"metadata": {}}, f"R{n}", "m", True) for n in range(5)]
    assert accepted.count(True) <= 3 and accepted[-1] is False  # one in the poster's hands, two queued
    release.set()
    assert events.flush(5) and len(posted) == accepted.count(True)


def test_a_deleted_settings_configmap_keeps_the_last_settings(node):
    agent = make_agent(node)
    agent.settings_changed({"masquerade": "false", "mtu": "1400"})
    agent.settings_changed(None)  # `kubectl delete -f` in the agents' last seconds
    assert agent.settings.masquerade is False and agent.settings.mtu == 1400
    agent.settings_changed({"masquerade": "true"})  # created again: used
    assert agent.settings.masquerade is True and agent.settings.mtu is None


def test_an_unknown_uplink_mtu_keeps_the_last_known_one(node):
    agent = make_agent(node)
    agent.nodes_listed(NODES)
    agent.settings_changed(None)
    agent.templates_changed({})
    agent.reconcile()
    assert conflist(node)["plugins"][0]["mtu"] == 1450
    node["mtu"].append(0)  # the default route is gone for a moment
    agent.reconcile()
    assert conflist(node)["plugins"][0]["mtu"] == 1450
    restarted = make_agent(node)  # and an agent restarted meanwhile reads it from the conflist
    restarted.nodes_listed(NODES)
    restarted.settings_changed(None)
    restarted.templates_changed({})
    restarted.reconcile()
    assert conflist(node)["plugins"][0]["mtu"] == 1450
    node["mtu"].append(9000)
    restarted.reconcile()
    assert conflist(node)["plugins"][0]["mtu"] == 9000


def test_the_mtu_rule():
    document = json.dumps({"plugins": [{"mtu": 1400}]}).encode()
    assert known_mtu(1500, 1450, document) == 1500
    assert known_mtu(0, 1450, document) == 1450
    assert known_mtu(0, None, document) == 1400
    assert known_mtu(0, None, None) == 1500 and known_mtu(0, None, b"{broken") == 1500


class RecordingApi:
    """The kubeapi.Api calls the agent makes, each recording its timeout."""

    def __init__(self):
        self.calls = {}

    def get(self, path, query=None, timeout=None):
        self.calls[f"get {path}"] = timeout
        return {"metadata": {"resourceVersion": "1"}, "items": []}

    def create(self, path, body, timeout=None):
        self.calls[f"create {path}"] = timeout
        return {}


def test_every_api_call_has_a_timeout(monkeypatch):
    cluster = cluster_module.Cluster("kube-system", log=io.StringIO(), api=RecordingApi())
    cluster.list_nodes()
    cluster.get_config_map("cni-render-settings")
    cluster.node_event({"metadata": {"name": "a", "uid": "u"}}, "Test", "m")
    stop = threading.Event()

    def watch_once(*args, **kwargs):
        stop.set()
        return "1"

    monkeypatch.setattr(cluster, "_watch", watch_once)
    cluster.watch_config_map("cni-render-templates", lambda data: None, stop)
    assert set(cluster.api.calls) == {
        "get /api/v1/nodes", "get /api/v1/namespaces/kube-system/configmaps/cni-render-settings",
        "get /api/v1/namespaces/kube-system/configmaps", "create /api/v1/namespaces/default/events",
    }
    for name, timeout in cluster.api.calls.items():
        assert timeout == cluster_module.REQUEST_TIMEOUT, name  # a watch's: tests/unit/test_kubeapi.py


def test_the_daemonset_comes_first_in_the_manifest():
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy" / "cni-render.yaml").read_text()) if d]
    assert documents[0]["kind"] == "DaemonSet"  # `kubectl delete -f` stops the agents before the ConfigMaps go


def test_stale_temporaries_are_removed_from_the_conf_dir_at_start(node):
    conf = Path(node["paths"].cni_conf_dir)
    dead = 2**22 + 12345  # above the largest pid_max: no such process
    names = {
        f".tmp-{dead}-0a1b2c-10-cni-render.conflist": "gone",  # the old naming: a runtime may load it
        f".tmp-{dead}-0a1b2c-10-cni-render.conflist.partial": "gone",
        f".tmp-{os.getpid()}-0a1b2c-10-cni-render.conflist.partial": "kept",  # a live writer's
        f".tmp-{os.getpid()}-0a1b2c-10-cni-render.conflist": "kept",
        ".tmp-x-other.conflist": "kept",  # not of our naming
        "10-cni-render.conflist": "kept",
        "99-other.conflist": "kept",
    }
    for name in names:
        (conf / name).write_text("{}")
    make_agent(node).sweep_temporaries()
    assert sorted(p.name for p in conf.iterdir()) == sorted(n for n, fate in names.items() if fate == "kept")


def test_events_may_be_created_only_where_the_agent_posts_them():
    documents = [d for d in yaml.safe_load_all((ROOT / "deploy" / "cni-render.yaml").read_text()) if d]
    rules = {}
    for document in documents:
        if document["kind"] in ("Role", "ClusterRole"):
            where = document["metadata"].get("namespace", "cluster")
            for rule in document["rules"]:
                for resource in rule["resources"]:
                    rules[(where, resource)] = sorted(rule["verbs"])
    assert rules == {
        ("cluster", "nodes"): ["list", "watch"],
        ("kube-system", "configmaps"): ["get", "list", "watch"],
        (cluster_module.EVENTS_NAMESPACE, "events"): ["create"],
    }
    bound = {(d["metadata"].get("namespace", "cluster"), d["roleRef"]["name"]) for d in documents
             if d["kind"] in ("RoleBinding", "ClusterRoleBinding")}
    assert bound == {("cluster", "cni-render"), ("kube-system", "cni-render"),
                     (cluster_module.EVENTS_NAMESPACE, "cni-render-events")}


class DaemonStarted(Exception):
    """Stops Agent.run() where the daemon would start."""


def test_after_a_reboot_the_saved_override_set_is_active_before_the_daemon_starts(tmp_path, monkeypatch):
    from cni_render.node.overrides import TemplateOverrides, digest_of

    saved_set = {"add-host.ip.j2": '{% include "builtin/add-host.ip.j2" %}\nlink set dev {{ host.ifname }} txqueuelen 10000\n'}
    paths = Paths(node_name="a", cni_bin_dir=str(tmp_path / "bin"), cni_conf_dir=str(tmp_path / "net.d"),
                  shim=str(tmp_path / "image-shim"), state_dir=str(tmp_path / "run"),
                  persistent_dir=str(tmp_path / "var"))
    (tmp_path / "var").mkdir()
    Path(paths.saved_templates).write_text(json.dumps({"digest": digest_of(saved_set), "templates": saved_set}))
    agent = Agent(paths, SilentCluster(), log=io.StringIO())
    assert isinstance(agent.overrides, TemplateOverrides) and agent.overrides.saved == paths.saved_templates
    seen = {}

    def start():
        seen["active"] = sorted(os.listdir(paths.templates)) if os.path.isdir(paths.templates) else None
        raise DaemonStarted

    monkeypatch.setattr(agent.daemon, "start", start)
    monkeypatch.setattr(agent_module.signal, "signal", lambda *args: None)  # pytest keeps its handlers
    with pytest.raises(DaemonStarted):
        agent.run()
    assert seen["active"] == ["add-host.ip.j2"]
    assert Path(paths.templates, "add-host.ip.j2").read_text() == saved_set["add-host.ip.j2"]
