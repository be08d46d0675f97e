"""The Kubernetes API as the agent uses it: list and watch (with
resourceVersion) Nodes and the agent's two ConfigMaps, and post Events on Nodes
in ``EVENTS_NAMESPACE``: exactly what deploy/cni-render.yaml grants
(docs/kubernetes.md, "Permissions"). The only module that talks to the API,
through ``kubeapi`` (the standard library's HTTP, no client package).

Objects are handed on in their JSON form (dicts, as ``kubectl get -o json``
shows them), so everything after this module is plain data. Every call has a
timeout (``REQUEST_TIMEOUT``): an API server that accepts and never answers
costs a watch a retry, never a thread forever.
"""

from __future__ import annotations

import sys
import threading
from contextlib import closing
from datetime import datetime, timezone
from typing import Any, Callable, TextIO

from cni_render.node.kubeapi import Api, ApiError, ConfigError, Query, from_kubeconfig, in_cluster

WATCH_SECONDS = 300  # the API server ends each watch after this; it is resumed from the last version
RETRY_SECONDS = (1, 2, 5, 10, 30)
EVENTS_NAMESPACE = "default"  # where the kubelet puts a Node's events; `kubectl describe node` shows them
GONE = 410
REQUEST_TIMEOUT = (10, 30)  # seconds to connect, seconds to read an answer: every call but a watch
WATCH_TIMEOUT = (10, WATCH_SECONDS + 30)  # a watch's server may stay silent until it ends the watch

# on_sync(every object, listed) and on_event(type, object) receive JSON-form dicts
OnSync = Callable[[list[dict[str, Any]]], None]
OnEvent = Callable[[str, dict[str, Any]], None]


class Cluster:
    def __init__(self, namespace: str, log: TextIO = sys.stderr, api: Api | None = None, reporter: str = ""):
        """``reporter``: the node this agent runs on, named as the Events' source
        (an agent posts Events on other Nodes too: a refused pod CIDR)."""
        if api is None:
            try:
                api = Api(in_cluster())
            except ConfigError:
                api = Api(from_kubeconfig())  # `cni-render node render` run outside the cluster
        self.api = api
        self.namespace = namespace
        self.log = log
        self.reporter = reporter

    def list_nodes(self) -> list[dict[str, Any]]:
        return list(self.api.get("/api/v1/nodes", timeout=REQUEST_TIMEOUT).get("items") or [])

    def get_config_map(self, name: str) -> dict[str, str] | None:
        try:
            found = self.api.get(f"/api/v1/namespaces/{self.namespace}/configmaps/{name}", timeout=REQUEST_TIMEOUT)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.get("data") or {})

    def watch_nodes(self, on_sync: OnSync, on_event: OnEvent, stop: threading.Event) -> None:
        self._list_and_watch("nodes", "/api/v1/nodes", {}, on_sync, on_event, stop)

    def watch_config_map(
        self, name: str, on_data: Callable[[dict[str, str] | None], None], stop: threading.Event
    ) -> None:
        """Call ``on_data`` with the ConfigMap's data whenever it changes (None: it does not exist)."""

        def synced(items: list[dict[str, Any]]) -> None:
            on_data(dict(items[0].get("data") or {}) if items else None)

        def event(kind: str, item: dict[str, Any]) -> None:
            on_data(None if kind == "DELETED" else dict(item.get("data") or {}))

        path = f"/api/v1/namespaces/{self.namespace}/configmaps"
        selector = {"fieldSelector": f"metadata.name={name}"}
        self._list_and_watch(f"configmap {name}", path, selector, synced, event, stop)

    def _list_and_watch(
        self,
        what: str,
        path: str,
        query: Query,
        on_sync: OnSync,
        on_event: OnEvent,
        stop: threading.Event,
    ) -> None:
        """List, then watch from the list's resourceVersion; list again when the
        version is too old (410 Gone); retry with backoff on any failure."""
        failures = 0
        version = None
        while not stop.is_set():
            try:
                if version is None:
                    listing = self.api.get(path, query, timeout=REQUEST_TIMEOUT)
                    version = str(listing["metadata"]["resourceVersion"])
                    on_sync(list(listing.get("items") or []))
                version = self._watch(path, query, version, on_event, stop)
                failures = 0
            except ApiError as exc:
                if exc.status == GONE:
                    version = None
                    continue
                failures = self._backoff(what, f"API error {exc.status} {exc.reason}", failures, stop)
            except Exception as exc:  # connection refused or reset, timeouts: the API server restarts
                failures = self._backoff(what, f"{type(exc).__name__}: {exc}", failures, stop)

    def _watch(self, path: str, query: Query, version: str, on_event: OnEvent, stop: threading.Event) -> str:
        """One watch from ``version`` until the server ends it; the last version seen
        (BOOKMARK events carry only that)."""
        arguments = {**query, "resourceVersion": version, "timeoutSeconds": WATCH_SECONDS,
                     "allowWatchBookmarks": True}
        with closing(self.api.watch(path, arguments, timeout=WATCH_TIMEOUT)) as stream:
            for event in stream:
                item = event.get("object") or {}
                version = (item.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    on_event(event["type"], item)
                if stop.is_set():
                    break
        return version

    def _backoff(self, what: str, problem: str, failures: int, stop: threading.Event) -> int:
        delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
        self.log.write(f"cni-render node: watching {what}: {problem}; again in {delay} s\n")
        self.log.flush()
        stop.wait(delay)
        return failures + 1

    def node_event(self, node: dict[str, Any], reason: str, message: str, warning: bool = True) -> None:
        """An Event on the Node (``kubectl describe node`` and ``kubectl get events`` show it)."""
        metadata = node.get("metadata") or {}
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": "cni-render.", "namespace": EVENTS_NAMESPACE},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": metadata.get("name"), "uid": metadata.get("uid")},
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "cni-render", "host": self.reporter or metadata.get("name")},
            "reportingComponent": "cni-render",
            "reportingInstance": self.reporter or metadata.get("name"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.api.create(f"/api/v1/namespaces/{EVENTS_NAMESPACE}/events", body, timeout=REQUEST_TIMEOUT)


