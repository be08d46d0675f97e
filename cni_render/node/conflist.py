"""The node's conflist, built from its Node's ``spec.podCIDRs``.

One cni-render entry with ``cni-render-ipam``: one range set per family (so a
dual-stack node gives each pod an IPv4 and an IPv6 address), a default route
per family, the MTU of the node's uplink unless the settings fix one, and
``ipMasq: false`` (egress masquerade is the agent's, for the whole node:
:mod:`.masquerade`). ``templateDir`` is the agent's active override directory
(:mod:`.overrides`). ``portmap`` is chained when the node has it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Sequence

from cni_render.cni.spec import CURRENT_VERSION
from cni_render.node.nodeinfo import Network

NETWORK_NAME = "cni-render"
CONFLIST_VERSION = "1.0.0"  # what containerd 1.6's libcni reads; newer ones pick from cniVersions
CONFLIST_VERSIONS = ("0.4.0", "1.0.0", CURRENT_VERSION)
NO_POD_CIDR = (
    "node {node} has no spec.podCIDRs: the controller manager must allocate node CIDRs "
    "(--allocate-node-cidrs with --cluster-cidr); no conflist is written until it does"
)


# .tmp-<pid>-<hex>-10-cni-render.conflist: the temporary name agents used before
# temporaries ended in .partial; it ends in .conflist, so a runtime may load it.
LEGACY_TEMPORARY = re.compile(r"^\.tmp-(?P<pid>[0-9]+)-[0-9a-f]+-10-cni-render\.conflist$")


class NoPodCidr(ValueError):
    pass


def build_conflist(
    node: str,
    pod_networks: Sequence[Network],
    *,
    mtu: int,
    mode: str,
    template_dir: str,
    portmap: bool,
) -> dict[str, Any]:
    """The conflist document; NoPodCidr when the node has no usable pod CIDR."""
    networks = _first_per_family(pod_networks)
    if not networks:
        raise NoPodCidr(NO_POD_CIDR.format(node=node))
    default_routes = {4: "0.0.0.0/0", 6: "::/0"}
    plugin: dict[str, Any] = {
        "type": "cni-render",
        "mode": mode,
        "mtu": mtu,
        "ipMasq": False,
        "templateDir": template_dir,
        "ipam": {
            "type": "cni-render-ipam",
            "ranges": [[{"subnet": str(network)}] for network in networks],
            "routes": [{"dst": default_routes[network.version]} for network in networks],
        },
    }
    plugins = [plugin]
    if portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    return {
        "cniVersion": CONFLIST_VERSION,
        "cniVersions": list(CONFLIST_VERSIONS),
        "name": NETWORK_NAME,
        "plugins": plugins,
    }


def _first_per_family(pod_networks: Sequence[Network]) -> list[Network]:
    """One network per family (the first of each), IPv4 first."""
    chosen: dict[int, Network] = {}
    for network in pod_networks:
        chosen.setdefault(network.version, network)
    return [chosen[version] for version in sorted(chosen)]


def conflist_bytes(document: dict[str, Any]) -> bytes:
    """The file's exact content: stable, so an unchanged conflist is never rewritten."""
    return (json.dumps(document, indent=2, sort_keys=False) + "\n").encode()


def plugin_config(document: dict[str, Any], cni_version: str = CURRENT_VERSION) -> bytes:
    """The cni-render entry as a runtime hands it to the plugin (for STATUS)."""
    entry = dict(document["plugins"][0], name=document["name"], cniVersion=cni_version)
    return json.dumps(entry).encode()


def stale_legacy_temporaries(names: Sequence[str], alive: Callable[[int], bool]) -> list[str]:
    """Among ``names`` in the conf dir, the conflist temporaries of the old
    naming left by a process that is gone (``alive(pid)`` False)."""
    stale = []
    for name in names:
        match = LEGACY_TEMPORARY.match(name)
        if match and not alive(int(match["pid"])):
            stale.append(name)
    return stale
