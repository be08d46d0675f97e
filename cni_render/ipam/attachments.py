"""The runtime's list of live attachments, as GC receives it.

``cni.dev/valid-attachments`` (CNI 1.1) or the older ``cni.dev/attachments``
lists the live (containerID, ifname) pairs.
"""

from __future__ import annotations

from typing import Any

from cni_render.cni.errors import InvalidConfig

VALID_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")

Attachment = tuple[str, str]  # (container ID, ifname)


def valid_attachments(document: dict[str, Any]) -> set[Attachment] | None:
    """The listed attachments; None when the runtime sent no list."""
    key = next((k for k in VALID_KEYS if k in document), None)
    if key is None:
        return None
    entries = document[key] or []
    if not isinstance(entries, list):
        raise InvalidConfig(f"$.{key}: expected a list of {{containerID, ifname}}")
    valid = set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("containerID"), str):
            raise InvalidConfig(f"$.{key}[{index}]: expected {{containerID, ifname}}")
        valid.add((entry["containerID"], str(entry.get("ifname", ""))))
    return valid


def is_valid(attachment: Attachment, valid: set[Attachment]) -> bool:
    """host-local's old files name no ifname: valid when the container is."""
    container_id, ifname = attachment
    return attachment in valid or (ifname == "" and any(cid == container_id for cid, _ in valid))


def with_valid_attachments(document: dict[str, Any], valid: set[Attachment]) -> dict[str, Any]:
    """``document`` listing exactly ``valid`` (under every key it used, and the current one)."""
    entries = [{"containerID": cid, "ifname": ifname} for cid, ifname in sorted(valid)]
    return dict(document, **{key: entries for key in VALID_KEYS if key in document or key == VALID_KEYS[0]})
