"""Template sets: which files a set holds, found without importing Jinja.

A set is a directory of ``<slot>.j2`` files under ``templates/``. An
operator's override directory may replace any of them.
"""

from __future__ import annotations

import os

from .resources import templates_root

DEFAULT_SET = "routed"
TEMPLATE_SUFFIX = ".j2"

ADD_HOST = "add-host.ip"  # ip -batch in the node namespace
ADD_POD = "add-pod.ip"  # ip -batch in the pod namespace
ADD_SYSCTL = "add-host.sysctl"  # key = value, written in the node namespace
ADD_NFT = "add-host.nft"  # nft -f, with ipMasq
RESULT = "result.json"  # the CNI result, current shape
DEL_HOST = "del-host.ip"  # ip -force -batch in the node namespace
DEL_POD = "del-pod.ip"  # ip -force -batch in the pod namespace, when it still exists
DEL_NFT = "del-host.nft"  # nft -f, with ipMasq
SLOTS = (ADD_HOST, ADD_POD, ADD_SYSCTL, ADD_NFT, RESULT, DEL_HOST, DEL_POD, DEL_NFT)
REQUIRED_SLOTS = (ADD_HOST, ADD_POD, RESULT, DEL_HOST)


def template_file(slot: str) -> str:
    return slot + TEMPLATE_SUFFIX


def missing_required_templates(
    template_set: str = DEFAULT_SET, override_dir: str | None = None
) -> list[str]:
    builtin = templates_root().joinpath(template_set)
    missing = []
    for slot in REQUIRED_SLOTS:
        name = template_file(slot)
        if override_dir and os.path.isfile(os.path.join(override_dir, name)):
            continue
        if not builtin.joinpath(name).is_file():
            missing.append(f"template {name} of set {template_set!r} is missing")
    return missing
