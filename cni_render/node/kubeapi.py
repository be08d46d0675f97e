"""A small Kubernetes API client over the standard library: exactly what the
agent asks of the API server (get, list, watch, create; JSON in, JSON out).

Where to connect comes from the pod's service account (``in_cluster()``:
``KUBERNETES_SERVICE_HOST``/``_PORT``, the token and ``ca.crt`` under
``SERVICE_ACCOUNT``) or, outside a cluster, from a kubeconfig
(``from_kubeconfig()``: ``$KUBECONFIG`` or ``~/.kube/config``, its current
context; the CA, a client certificate and key, or a token, as files or as
``-data``). The service-account token is read from its file for every request:
the kubelet rotates it.

Every call has a connect timeout and a read timeout (seconds the server may
stay silent); a watch reads the newline-delimited JSON events of one chunked
response and gives each to the caller. An answer other than 2xx, or a watch's
``ERROR`` event, raises ``ApiError`` with the server's code (410: the
resourceVersion is too old, list again).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import tempfile
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import cni_render

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
Timeout = tuple[float, float]  # seconds to connect, seconds the server may stay silent
Query = Mapping[str, str | int | bool]


class ConfigError(Exception):
    """No usable configuration: not in a cluster, or a kubeconfig we cannot use."""


class ApiError(Exception):
    """The API server answered with an error (HTTP status, or a watch's ERROR event)."""

    def __init__(self, status: int, reason: str, message: str = ""):
        super().__init__(f"API error {status} {reason}" + (f": {message}" if message else ""))
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ApiConfig:
    """Where the API server is and how to authenticate to it."""

    host: str
    port: int
    tls: ssl.SSLContext | None  # None: plain HTTP (tests, or an insecure local server)
    path_prefix: str = ""  # a server URL's path, e.g. behind a proxy
    token: str | None = None
    token_file: Path | None = None  # read on every request (a projected token rotates)
    headers: Mapping[str, str] = field(default_factory=dict)

    def bearer(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return self.token


def in_cluster(environ: Mapping[str, str] = os.environ, account: Path = SERVICE_ACCOUNT) -> ApiConfig:
    """The pod's own service account, as the kubelet mounts it."""
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set")
    token_file, ca = account / "token", account / "ca.crt"
    for needed in (token_file, ca):
        if not needed.is_file():
            raise ConfigError(f"not in a cluster: no {needed}")
    return ApiConfig(host=host.strip("[]"), port=int(port), tls=ssl.create_default_context(cafile=str(ca)),
                     token_file=token_file)


def from_kubeconfig(path: str | None = None, environ: Mapping[str, str] = os.environ) -> ApiConfig:
    """The current context of a kubeconfig (``$KUBECONFIG``'s first file, or ``~/.kube/config``)."""
    import yaml

    if path is None:
        listed = [p for p in environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        path = listed[0] if listed else str(Path(environ.get("HOME", "~")).expanduser() / ".kube" / "config")
    try:
        document = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"kubeconfig {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"kubeconfig {path}: not a kubeconfig")
    return _config_of(document, Path(path).resolve().parent, path)


def _named(document: dict[str, Any], section: str, name: str, where: str) -> dict[str, Any]:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(section[:-1])
            if isinstance(found, dict):
                return found
    raise ConfigError(f"kubeconfig {where}: no {section[:-1]} {name!r}")


def _config_of(document: dict[str, Any], base: Path, where: str) -> ApiConfig:
    context = _named(document, "contexts", str(document.get("current-context") or ""), where)
    cluster = _named(document, "clusters", str(context.get("cluster") or ""), where)
    user = _named(document, "users", str(context.get("user") or ""), where) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError(f"kubeconfig {where}: exec and auth-provider credentials are not supported")
    server = urlsplit(str(cluster.get("server") or ""))
    if server.scheme not in ("https", "http") or not server.hostname:
        raise ConfigError(f"kubeconfig {where}: server {cluster.get('server')!r} is not an http(s) URL")
    tls = _tls_context(cluster, user, base) if server.scheme == "https" else None
    token_file = user.get("tokenFile")
    return ApiConfig(
        host=server.hostname,
        port=server.port or (443 if server.scheme == "https" else 80),
        tls=tls,
        path_prefix=server.path.rstrip("/"),
        token=user.get("token"),
        token_file=(base / token_file) if token_file else None,
    )


def _tls_context(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        context.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        context.load_verify_locations(cafile=str(base / cluster["certificate-authority"]))
    certificate = _pem(user, "client-certificate", base)
    key = _pem(user, "client-key", base)
    if certificate is not None:
        with tempfile.TemporaryDirectory(prefix="cni-render-kubeconfig.") as private:
            # load_cert_chain takes files only; the directory is the user's alone (0700)
            (Path(private) / "crt").write_bytes(certificate)
            (Path(private) / "key").write_bytes(key if key is not None else certificate)
            context.load_cert_chain(str(Path(private) / "crt"), str(Path(private) / "key"))
    return context


def _pem(user: dict[str, Any], name: str, base: Path) -> bytes | None:
    data, path = user.get(f"{name}-data"), user.get(name)
    if data:
        return base64.b64decode(str(data))
    if path:
        return (base / str(path)).read_bytes()
    return None


class Api:
    """Requests to one API server; a connection per request (a watch holds its own)."""

    def __init__(self, config: ApiConfig):
        self.config = config
        self.user_agent = f"cni-render/{cni_render.__version__}"

    def get(self, path: str, query: Query | None = None, timeout: Timeout = (10, 30)) -> dict[str, Any]:
        """One object or a list, as JSON (a list's ``metadata.resourceVersion`` starts a watch)."""
        with self._open("GET", path, query, None, timeout) as response:
            return _document(response.read())

    def create(self, path: str, body: dict[str, Any], timeout: Timeout = (10, 30)) -> dict[str, Any]:
        """POST ``body`` to a collection; the object as created."""
        with self._open("POST", path, None, json.dumps(body).encode(), timeout) as response:
            return _document(response.read())

    def watch(self, path: str, query: Query, timeout: Timeout) -> Generator[dict[str, Any], None, None]:
        """The events of one watch (``{"type", "object"}``) until the server ends it.
        ``query`` carries resourceVersion and timeoutSeconds; the read timeout must be
        longer than timeoutSeconds. An ERROR event raises ApiError with its code."""
        with self._open("GET", path, {**query, "watch": "true"}, None, timeout) as response:
            while True:
                line = response.readline()
                if not line:
                    return
                if not line.strip():
                    continue
                event = _document(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code") or 500), str(status.get("reason") or "Error"),
                                   str(status.get("message") or ""))
                yield event

    @contextmanager
    def _open(
        self, method: str, path: str, query: Query | None, body: bytes | None, timeout: Timeout
    ) -> Iterator[http.client.HTTPResponse]:
        """A 2xx response to one request; the connection is closed afterwards."""
        connect_timeout, read_timeout = timeout
        config = self.config
        connection: http.client.HTTPConnection
        if config.tls is not None:
            connection = http.client.HTTPSConnection(
                config.host, config.port, timeout=connect_timeout, context=config.tls
            )
        else:
            connection = http.client.HTTPConnection(config.host, config.port, timeout=connect_timeout)
        try:
            connection.connect()  # TCP and TLS within the connect timeout
            assert connection.sock is not None
            connection.sock.settimeout(read_timeout)  # then each read within the read timeout
            connection.request(method, self._url(path, query), body=body, headers=self._headers(body))
            response = connection.getresponse()
            if not 200 <= response.status < 300:
                raise ApiError(response.status, response.reason, _status_message(response.read()))
            yield response
        finally:
            connection.close()

    def _url(self, path: str, query: Query | None) -> str:
        return self.config.path_prefix + path + (f"?{urlencode(_query(query))}" if query else "")

    def _headers(self, body: bytes | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent, **self.config.headers}
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

def _query(query: Query) -> dict[str, str]:
    return {key: (str(value).lower() if isinstance(value, bool) else str(value)) for key, value in query.items()}


def _document(content: bytes) -> dict[str, Any]:
    try:
        document = json.loads(content)
    except ValueError as exc:
        raise ApiError(502, "Bad Gateway", f"not JSON: {content[:200]!r}") from exc
    if not isinstance(document, dict):
        raise ApiError(502, "Bad Gateway", f"not a JSON object: {content[:200]!r}")
    return document


def _status_message(content: bytes) -> str:
    try:
        status = json.loads(content)
    except ValueError:
        return content[:200].decode(errors="replace")
    return str(status.get("message") or "") if isinstance(status, dict) else ""

