"""The agent's Kubernetes API client (cni_render.node.kubeapi) and cluster.py on it,
against a fake API server on 127.0.0.1: list, get, watch (events, bookmarks, 410
Gone and a list again), timeouts, the service-account token read for every request,
an Event's POST, and TLS with the kubeconfig's and the service account's CA."""

from __future__ import annotations

import base64
import http.server
import io
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from cni_render.node import cluster as cluster_module
from cni_render.node.cluster import Cluster
from cni_render.node.kubeapi import Api, ApiConfig, ApiError, ConfigError, from_kubeconfig, in_cluster


def node(name, version):
    return {"metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": version}}


class FakeApi:
    """An API server: ``routes`` maps "METHOD path" to a list of answers, one per
    request (the last repeats): (status, document) or ("watch", [events]). Every
    request is recorded as (method, path, query, headers, body)."""

    def __init__(self, routes, tls=None):
        self.routes = routes
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.answer("GET")

            def do_POST(self):
                self.answer("POST")

            def answer(self, method):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                fake.requests.append((method, url.path, query, dict(self.headers), body))
                key = f"{method} {url.path}" + (" watch" if query.get("watch") == "true" else "")
                answers = fake.routes.get(key) or [(404, {"kind": "Status", "code": 404, "message": "not found"})]
                status, document = answers.pop(0) if len(answers) > 1 else answers[0]
                if status == "watch":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for event in document:  # one chunk per event, as the API server sends them
                        line = json.dumps(event).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.write(b"0\r\n\r\n")
                    return
                content = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(routes, tls=None):
        servers.append(FakeApi(routes, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def plain(server, token_file=None):
    return Api(ApiConfig(host="127.0.0.1", port=server.port, tls=None, token_file=token_file))


def test_list_and_get_with_the_token_read_for_every_request(serve, tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    server = serve({
        "GET /api/v1/nodes": [(200, {"metadata": {"resourceVersion": "7"}, "items": [node("a", "7")]})],
        "GET /api/v1/namespaces/kube-system/configmaps/cni-render-settings": [(200, {"data": {"k": "v"}})],
    })
    cluster = Cluster("kube-system", api=plain(server, token))
    assert cluster.list_nodes() == [node("a", "7")]
    token.write_text("rotated\n")  # the kubelet rotates a projected token in place
    assert cluster.get_config_map("cni-render-settings") == {"k": "v"}
    assert cluster.get_config_map("cni-render-templates") is None  # 404: it does not exist
    assert [r[3]["Authorization"] for r in server.requests] == ["Bearer first", "Bearer rotated", "Bearer rotated"]
    assert all(r[3]["Accept"] == "application/json" for r in server.requests)


def test_an_error_answer_raises_with_the_status_and_message(serve):
    server = serve({"GET /api/v1/nodes": [(403, {"kind": "Status", "code": 403, "message": "nodes is forbidden"})]})
    with pytest.raises(ApiError) as caught:
        plain(server).get("/api/v1/nodes")
    assert caught.value.status == 403
    assert "nodes is forbidden" in str(caught.value)


def test_watch_events_bookmarks_and_410_relist(serve, monkeypatch):
    monkeypatch.setattr(cluster_module, "RETRY_SECONDS", (0,))
    path = "/api/v1/namespaces/kube-system/configmaps"
    config_map = {"metadata": {"name": "cni-render-settings", "resourceVersion": "12"}, "data": {"a": "1"}}
    server = serve({
        f"GET {path}": [
            (200, {"metadata": {"resourceVersion": "10"}, "items": []}),
            (200, {"metadata": {"resourceVersion": "40"}, "items": [config_map]}),
        ],
        f"GET {path} watch": [
            ("watch", [
                {"type": "ADDED", "object": config_map},
                {"type": "BOOKMARK", "object": {"kind": "ConfigMap", "metadata": {"resourceVersion": "20"}}},
            ]),
            ("watch", [
                {"type": "DELETED", "object": {**config_map, "metadata": {"name": "x", "resourceVersion": "25"}}},
                {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}},
            ]),
            ("watch", []),
        ],
    })
    seen, stop = [], threading.Event()

    def on_data(data):
        seen.append(data)
        if len(seen) == 4:
            stop.set()

    Cluster("kube-system", api=plain(server), log=io.StringIO()).watch_config_map("cni-render-settings", on_data, stop)
    assert seen == [None, {"a": "1"}, None, {"a": "1"}]  # listed, added, deleted, listed again after 410
    calls = [(q.get("watch"), q.get("resourceVersion")) for _, _, q, _, _ in server.requests]
    # the bookmark's version resumes the watch; after 410 a list, then a watch from its version
    assert calls[:5] == [(None, None), ("true", "10"), ("true", "20"), (None, None), ("true", "40")]
    watch_query = server.requests[1][2]
    assert watch_query["fieldSelector"] == "metadata.name=cni-render-settings"
    assert watch_query["allowWatchBookmarks"] == "true"
    assert int(watch_query["timeoutSeconds"]) < cluster_module.WATCH_TIMEOUT[1]


def test_watch_of_nodes_resumes_from_the_last_version(serve, monkeypatch):
    server = serve({
        "GET /api/v1/nodes": [(200, {"metadata": {"resourceVersion": "5"}, "items": [node("a", "5")]})],
        "GET /api/v1/nodes watch": [
            ("watch", [{"type": "MODIFIED", "object": node("a", "6")}, {"type": "ADDED", "object": node("b", "8")}]),
            ("watch", [{"type": "DELETED", "object": node("b", "9")}]),
        ],
    })
    synced, events, stop = [], [], threading.Event()

    def on_event(kind, item):
        events.append((kind, item["metadata"]["name"]))
        if len(events) == 3:
            stop.set()

    Cluster("kube-system", api=plain(server)).watch_nodes(synced.append, on_event, stop)
    assert synced == [[node("a", "5")]]
    assert events == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "b")]
    assert [r[2].get("resourceVersion") for r in server.requests] == [None, "5", "8"]


def silent_server():
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    return listener


def test_a_server_that_never_answers_fails_the_call_within_its_timeout():
    listener = silent_server()
    try:
        api = Api(ApiConfig(host="127.0.0.1", port=listener.getsockname()[1], tls=None))
        for call in (lambda: api.get("/api/v1/nodes", timeout=(1, 0.5)),
                     lambda: api.create("/api/v1/namespaces/default/events", {}, timeout=(1, 0.5)),
                     lambda: list(api.watch("/api/v1/nodes", {"resourceVersion": "1"}, timeout=(1, 0.5)))):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                call()
            assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_a_watch_whose_server_goes_silent_fails_within_the_read_timeout():
    listener = silent_server()

    def answer_headers_then_nothing():
        connection, _ = listener.accept()
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        time.sleep(3)
        connection.close()

    threading.Thread(target=answer_headers_then_nothing, daemon=True).start()
    try:
        api = Api(ApiConfig(host="127.0.0.1", port=listener.getsockname()[1], tls=None))
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            list(api.watch("/api/v1/nodes", {"resourceVersion": "1"}, timeout=(1, 0.5)))
        assert time.monotonic() - started < 2
    finally:
        listener.close()


def test_a_node_event_is_posted_in_default(serve):
    server = serve({"POST /api/v1/namespaces/default/events": [(201, {"metadata": {"name": "cni-render.x"}})]})
    Cluster("kube-system", api=plain(server)).node_event(node("a", "1"), "PodCIDRRefused", "m" * 2000)
    (method, path, _, headers, body), = server.requests
    assert (method, path, headers["Content-Type"]) == ("POST", "/api/v1/namespaces/default/events", "application/json")
    assert body["metadata"] == {"generateName": "cni-render.", "namespace": "default"}
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "a", "uid": "uid-a"}
    assert (body["reason"], body["type"], len(body["message"])) == ("PodCIDRRefused", "Warning", 1024)
    assert body["source"] == {"component": "cni-render", "host": "a"}


def test_not_in_a_cluster_without_the_service_environment(tmp_path):
    with pytest.raises(ConfigError):
        in_cluster({}, tmp_path)
    with pytest.raises(ConfigError):
        in_cluster({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, tmp_path)


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 and its key (also usable as a client's)."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=apiserver",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "tls.key"),
                    "-out", str(tmp_path / "tls.crt")], check=True, capture_output=True)
    return tmp_path / "tls.crt", tmp_path / "tls.key"


def tls_server(serve, crt, key, client_ca=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(crt), str(key))
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return serve({"GET /api/v1/nodes": [(200, {"metadata": {"resourceVersion": "3"}, "items": [node("a", "3")]})]},
                 context)


def test_tls_in_cluster_with_the_service_account(serve, certificate, tmp_path):
    crt, key = certificate
    server = tls_server(serve, crt, key)
    account = tmp_path / "account"
    account.mkdir()
    shutil.copy(crt, account / "ca.crt")
    (account / "token").write_text("sa-token")
    environ = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(server.port)}
    assert Cluster("kube-system", api=Api(in_cluster(environ, account))).list_nodes() == [node("a", "3")]
    assert server.requests[0][3]["Authorization"] == "Bearer sa-token"


def test_tls_from_a_kubeconfig_with_client_certificate(serve, certificate, tmp_path):
    """The local cluster's kubeconfig (cluster/config/kubeconfig.in): CA and client
    certificate as files; and the same with -data, as kind writes them."""
    crt, key = certificate
    server = tls_server(serve, crt, key, client_ca=crt)
    files = {"cluster": {"server": f"https://127.0.0.1:{server.port}", "certificate-authority": "tls.crt"},
             "user": {"client-certificate": "tls.crt", "client-key": "tls.key"}}
    b64 = lambda p: base64.b64encode(p.read_bytes()).decode()  # noqa: E731
    data = {"cluster": {"server": f"https://127.0.0.1:{server.port}", "certificate-authority-data": b64(crt)},
            "user": {"client-certificate-data": b64(crt), "client-key-data": b64(key), "token": "t"}}
    for name, entry in (("files", files), ("data", data)):
        kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "local",
                      "clusters": [{"name": "local", "cluster": entry["cluster"]}],
                      "users": [{"name": "me", "user": entry["user"]}],
                      "contexts": [{"name": "local", "context": {"cluster": "local", "user": "me"}}]}
        (tmp_path / f"{name}.kubeconfig").write_text(json.dumps(kubeconfig))  # JSON is YAML
        api = Api(from_kubeconfig(environ={"KUBECONFIG": str(tmp_path / f"{name}.kubeconfig")}))
        assert api.get("/api/v1/nodes")["items"] == [node("a", "3")]
    assert "Authorization" not in server.requests[0][3]
    assert server.requests[1][3]["Authorization"] == "Bearer t"


def test_tls_refuses_a_server_the_ca_did_not_sign(serve, certificate, tmp_path):
    crt, key = certificate
    server = tls_server(serve, crt, key)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{server.port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        Api(from_kubeconfig(str(kubeconfig))).get("/api/v1/nodes", timeout=(2, 2))


def test_an_event_on_another_node_names_the_reporting_node_as_its_source(serve):
    server = serve({"POST /api/v1/namespaces/default/events": [(201, {"metadata": {"name": "cni-render.x"}})]})
    Cluster("kube-system", api=plain(server), reporter="node1").node_event(node("evil", "1"), "PodCIDRRefused", "m")
    (_, _, _, _, body), = server.requests
    assert body["involvedObject"]["name"] == "evil"
    assert body["source"] == {"component": "cni-render", "host": "node1"} and body["reportingInstance"] == "node1"
