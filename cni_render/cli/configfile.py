"""Reading a network config file the way a runtime would hand it to the plugin.

A conflist is reduced to its cni-render entry with the list's ``name`` and
``cniVersion`` injected (as libcni does); a single config is taken as it is.
"""

from __future__ import annotations

import json
import os
from typing import Any

from cni_render.cni.config import NetworkConfig, load, plugin_entry
from cni_render.cni.errors import DecodeFailure, InvalidConfig


def plugin_document(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise InvalidConfig(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise DecodeFailure(f"{path} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeFailure(f"{path} is not a JSON object")
    return plugin_entry(document, path)


def load_file(
    path: str, templates: str | None = None, cache: bool = False, **overrides: Any
) -> NetworkConfig:
    """The validated config of ``path``; ``templates`` replaces its templateDir.
    Operator commands leave no validation cache behind (``cache=False``)."""
    document = plugin_document(path)
    if templates:
        document["templateDir"] = os.path.abspath(templates)
    document.update(overrides)
    return load(json.dumps(document).encode(), cache=cache)
