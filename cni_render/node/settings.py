"""The agent's settings: where things are (environment, set by the DaemonSet)
and what the operator chose (the ConfigMap ``cni-render-settings``).

ConfigMap keys (all optional; an empty value means the default):

========================  ==================================================
``clusterCIDRs``          the cluster's pod CIDRs (the controller manager's
                          ``--cluster-cidr``, comma or space separated): a
                          Node's pod CIDR outside them is refused, and they
                          are never masqueraded to (default: learned from
                          this node's own pod CIDRs, see
                          :func:`cni_render.node.nodeinfo.cluster_bounds`)
``minPodCIDRPrefixIPv4``  a Node's IPv4 pod CIDR shorter than this is
                          refused (default 8)
``minPodCIDRPrefixIPv6``  the same for IPv6 (default 32)
``mtu``                   MTU of the pods' interfaces (default: the node's
                          uplink)
``masquerade``            ``true``/``false``: egress masquerade (default true)
``mode``                  ``routed`` or ``bridge`` (the template set; default
                          routed)
``metricsAddress``        ``host:port`` of /metrics (default :9645; read at
                          start)
``healthAddress``         loopback ``host:port`` of /healthz, the liveness
                          probe's (default 127.0.0.1:9646; read at start)
``resyncSeconds``         the periodic re-check (default 30)
========================  ==================================================

A bad value is refused with the key and what is wrong, and the agent keeps
the settings it had.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Any, Mapping

from cni_render.datapath.template_sets import SETS

SETTINGS_CONFIGMAP = "cni-render-settings"
TEMPLATES_CONFIGMAP = "cni-render-templates"
NAMESPACE = "kube-system"
DEFAULT_METRICS_ADDRESS = ":9645"
DEFAULT_HEALTH_ADDRESS = "127.0.0.1:9646"
DEFAULT_RESYNC_SECONDS = 30.0
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class SettingsError(ValueError):
    """A setting the agent cannot use; the message names the key."""


@dataclass(frozen=True)
class Settings:
    cluster_cidrs: tuple[str, ...] = ()
    mtu: int | None = None
    masquerade: bool = True
    mode: str = "routed"
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    health_address: str = DEFAULT_HEALTH_ADDRESS
    resync_seconds: float = DEFAULT_RESYNC_SECONDS
    min_prefix_ipv4: int = 8
    min_prefix_ipv6: int = 32

    @property
    def min_prefix(self) -> dict[int, int]:
        """{4: ..., 6: ...}: the shortest pod CIDR prefix a Node may hold, per family."""
        return {4: self.min_prefix_ipv4, 6: self.min_prefix_ipv6}


@dataclass(frozen=True)
class Paths:
    """Where the agent reads and writes; the DaemonSet mounts the host's
    directories under /host, and /run/cni-render at its own path (the daemon's
    socket, IPAM and templateDir must have the same path for host and pod)."""

    node_name: str
    cni_bin_dir: str = "/host/opt/cni/bin"
    cni_conf_dir: str = "/host/etc/cni/net.d"
    shim: str = "/opt/cni-render/shim/cni-render"
    state_dir: str = "/run/cni-render"
    # survives a reboot (state_dir is tmpfs): the last good template override set
    persistent_dir: str = "/var/lib/cni/cni-render"
    namespace: str = NAMESPACE

    @property
    def socket(self) -> str:
        return os.path.join(self.state_dir, "daemon.sock")

    @property
    def conflist(self) -> str:
        return os.path.join(self.cni_conf_dir, "10-cni-render.conflist")

    @property
    def templates(self) -> str:
        """The active override directory: the conflist's templateDir."""
        return os.path.join(self.state_dir, "templates")

    @property
    def saved_templates(self) -> str:
        """The last good override set, on disk: restored after a reboot."""
        return os.path.join(self.persistent_dir, "templates.json")

    @property
    def ipam_dir(self) -> str:
        return os.path.join(self.state_dir, "ipam")

    @property
    def uninstalled_marker(self) -> str:
        return os.path.join(self.state_dir, "uninstalled")


ENVIRONMENT = {
    "cni_bin_dir": "CNI_RENDER_HOST_BIN_DIR",
    "cni_conf_dir": "CNI_RENDER_HOST_CONF_DIR",
    "shim": "CNI_RENDER_SHIM",
    "state_dir": "CNI_RENDER_STATE_DIR",
    "persistent_dir": "CNI_RENDER_PERSISTENT_DIR",
    "namespace": "CNI_RENDER_NAMESPACE",
}


def paths_from_environment(environ: Mapping[str, str]) -> Paths:
    node_name = environ.get("NODE_NAME", "").strip()
    if not node_name:
        raise SettingsError(
            "NODE_NAME is not set: the DaemonSet sets it from the pod's spec.nodeName (fieldRef)"
        )
    chosen = {key: environ[variable] for key, variable in ENVIRONMENT.items() if environ.get(variable)}
    return Paths(node_name=node_name, **chosen)


def parse_settings(data: Mapping[str, str] | None) -> Settings:
    """Settings from the ConfigMap's data (None or {}: every default)."""
    data = {key: (value or "").strip() for key, value in (data or {}).items()}
    unknown = sorted(set(data) - set(_PARSERS))
    if unknown:
        raise SettingsError(
            f"{SETTINGS_CONFIGMAP}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(_PARSERS))}"
        )
    values: dict[str, Any] = {}  # each parser gives its own field's type
    for key, text in data.items():
        if text:
            attribute, parser = _PARSERS[key]
            values[attribute] = parser(key, text)
    return Settings(**values)


def _cidrs(key: str, text: str) -> tuple[str, ...]:
    cidrs = []
    for item in text.replace(",", " ").split():
        try:
            cidrs.append(str(ipaddress.ip_network(item, strict=True)))
        except ValueError as exc:
            raise SettingsError(f"{key}: {item!r} is not a CIDR ({exc})") from None
    return tuple(cidrs)


def _mtu(key: str, text: str) -> int:
    if not text.isdigit() or not 576 <= int(text) <= 65535:
        raise SettingsError(f"{key}: {text!r} is not an MTU (a number from 576 to 65535)")
    return int(text)


def _boolean(key: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise SettingsError(f"{key}: {text!r} is not true or false")


def _mode(key: str, text: str) -> str:
    if text not in SETS:
        raise SettingsError(f"{key}: {text!r} is not a mode; choose one of {', '.join(SETS)}")
    return text


def _address(key: str, text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{key}: {text!r} is not host:port (e.g. :9645 or 127.0.0.1:9645)")
    return text


def _loopback_address(key: str, text: str) -> str:
    host = split_address(_address(key, text))[0]
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SettingsError(f"{key}: {text!r} is not on a loopback address (e.g. 127.0.0.1:9646): "
                            "anything else lets pods delay the liveness probe")
    return text


def _seconds(key: str, text: str) -> float:
    try:
        seconds = float(text.rstrip("s"))
    except ValueError:
        seconds = 0.0
    if not 1 <= seconds <= 3600:
        raise SettingsError(f"{key}: {text!r} is not a number of seconds from 1 to 3600")
    return seconds


def _prefix(bits: int) -> Any:
    def parse(key: str, text: str) -> int:
        if not text.lstrip("/").isdigit() or not 1 <= int(text.lstrip("/")) <= bits:
            raise SettingsError(f"{key}: {text!r} is not a prefix length from 1 to {bits}")
        return int(text.lstrip("/"))

    return parse


_PARSERS = {
    "clusterCIDRs": ("cluster_cidrs", _cidrs),
    "mtu": ("mtu", _mtu),
    "masquerade": ("masquerade", _boolean),
    "mode": ("mode", _mode),
    "metricsAddress": ("metrics_address", _address),
    "healthAddress": ("health_address", _loopback_address),
    "resyncSeconds": ("resync_seconds", _seconds),
    "minPodCIDRPrefixIPv4": ("min_prefix_ipv4", _prefix(32)),
    "minPodCIDRPrefixIPv6": ("min_prefix_ipv6", _prefix(128)),
}


def split_address(address: str) -> tuple[str, int]:
    """("host", port) of ``host:port``; an empty host (or ``[::]``) binds every address."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
