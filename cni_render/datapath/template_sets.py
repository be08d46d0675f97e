"""Template sets: which files a set holds, found without importing Jinja.

A set is a directory of ``<slot>.j2`` files under ``templates/``; files both
sets share (and partials they include) live in ``templates/common/``. A
template is looked up in the operator's override directory first, then in
the set, then in ``common``.
"""

from __future__ import annotations

import os

from cni_render.cni.resources import templates_root

DEFAULT_SET = "routed"
SETS = ("routed", "bridge")
COMMON = "common"
TEMPLATE_SUFFIX = ".j2"

SETUP_HOST = "setup-host.ip"  # ip -force -batch in the node namespace, under the setup lock, idempotent
ADD_HOST = "add-host.ip"  # ip -batch in the node namespace
ADD_POD = "add-pod.ip"  # ip -batch in the pod namespace
ADD_SYSCTL = "add-host.sysctl"  # key = value, written in the node namespace
ADD_NFT = "add-host.nft"  # nft -f, with ipMasq
RESULT = "result.json"  # the CNI result, current shape
DEL_HOST = "del-host.ip"  # ip -force -batch in the node namespace
DEL_POD = "del-pod.ip"  # ip -force -batch in the pod namespace, when it still exists
DEL_NFT = "del-host.nft"  # nft -f, with ipMasq
SLOTS = (SETUP_HOST, ADD_HOST, ADD_POD, ADD_SYSCTL, ADD_NFT, RESULT, DEL_HOST, DEL_POD, DEL_NFT)
REQUIRED_SLOTS = (ADD_HOST, ADD_POD, RESULT, DEL_HOST)


def template_file(slot: str) -> str:
    return slot + TEMPLATE_SUFFIX


def missing_required_templates(
    template_set: str = DEFAULT_SET, override_dir: str | None = None
) -> list[str]:
    root = templates_root()
    missing = []
    for slot in REQUIRED_SLOTS:
        name = template_file(slot)
        if override_dir and os.path.isfile(os.path.join(override_dir, name)):
            continue
        if not any(root.joinpath(d).joinpath(name).is_file() for d in (template_set, COMMON)):
            missing.append(f"template {name} of set {template_set!r} is missing")
    return missing
