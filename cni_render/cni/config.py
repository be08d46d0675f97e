"""Parsing the network config from stdin into a validated :class:`NetworkConfig`.

Order: decode JSON (code 6) → check cniVersion (code 1) → JSON Schema
(code 7, or 2 for an unknown key; cached by content hash) → the per-call keys
the runtime sets (runtimeConfig, args, prevResult), checked in Python.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cni_render.cni import schema
from cni_render.cni.errors import DecodeFailure, InvalidConfig
from cni_render.cni.spec import IMPLICIT_VERSION
from cni_render.cni.versions import require_supported

DEFAULT_STATE_DIR = "/run/cni-render"
DEFAULT_BRIDGE = "cni-render0"
NODE_TEMPLATE_DIR = "/etc/cni/cni-render/templates"
IN_PROCESS_IPAM = "cni-render-ipam"


@dataclass(frozen=True)
class NetworkConfig:
    document: dict[str, Any]
    raw: bytes
    cni_version: str
    name: str
    ipam: dict[str, Any]
    mode: str = "routed"
    bridge: str = DEFAULT_BRIDGE
    mtu: int | None = None
    ip_masq: bool = False
    dns: dict[str, Any] = field(default_factory=dict)
    state_dir: str = DEFAULT_STATE_DIR
    template_dir: str | None = None
    log_file: str | None = None
    log_level: str = "info"
    # runtimeConfig with every key lower-cased (containerd capitalises them).
    runtime_config: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    # prevResult as the runtime sent it; CHECK parses it strictly, DEL leniently.
    prev_result: dict[str, Any] | None = None

    @property
    def ipam_type(self) -> str:
        return str(self.ipam.get("type", ""))

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.state_dir, "cache")


def decode(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DecodeFailure(f"network config on stdin is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise DecodeFailure("network config on stdin is not a JSON object")
    return document


def config_version(document: dict[str, Any]) -> str:
    version = document.get("cniVersion", IMPLICIT_VERSION)
    if not isinstance(version, str):
        raise DecodeFailure(f"cniVersion {version!r} is not a string")
    return require_supported(version)


def lower_keys(value: Any) -> Any:
    """Lower-case every mapping key, recursively."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


def _state_dir(document: dict[str, Any]) -> str:
    state_dir = document.get("stateDir")
    return state_dir if isinstance(state_dir, str) and state_dir.startswith("/") else DEFAULT_STATE_DIR


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidConfig(f"$.{key}: {type(value).__name__} is not an object")
    return value


# What every command reads of the config. ADD checks it with the JSON Schema;
# DEL and STATUS skip the schema (DEL must not fail for good over a key it
# does not read; STATUS must stay cheap) and check these with the schema's
# own rules, so the three judge the same value alike.
_READ_BY_EVERY_COMMAND = (
    ("name",), ("mode",), ("bridge",), ("stateDir",), ("templateDir",), ("logFile",), ("logLevel",),
    ("ipam", "type"),
)
_READ_BY_IN_PROCESS_IPAM = (("dataDir",),)
_ABSENT = object()


@cache
def _schema_rules(schema_name: str) -> dict[str, Any]:
    from cni_render.cni.resources import read_schema

    rules: dict[str, Any] = json.loads(read_schema(schema_name))  # each schema file is an object
    return rules


def _rules_at(schema_name: str, path: tuple[str, ...]) -> dict[str, Any]:
    rules = _schema_rules(schema_name)
    for key in path:
        rules = rules.get("properties", {}).get(key, {})
    return rules


def _check_value(value: Any, rules: dict[str, Any], where: str) -> None:
    """The schema keywords the read keys use: type string, enum, const, pattern
    (re.search, as jsonschema applies it)."""
    if rules.get("type") == "string" or "pattern" in rules:
        if not isinstance(value, str):
            raise InvalidConfig(f"{where}: {value!r} is not a string")
    if "enum" in rules and value not in rules["enum"]:
        raise InvalidConfig(f"{where}: {value!r} is not one of {rules['enum']!r}")
    if "const" in rules and value != rules["const"]:
        raise InvalidConfig(f"{where}: {value!r} was expected to be {rules['const']!r}")
    if "pattern" in rules and not re.search(rules["pattern"], value):
        raise InvalidConfig(f"{where}: {value!r} does not match {rules['pattern']!r}")


def _structural_check(document: dict[str, Any]) -> None:
    """What DEL and STATUS need to read the config, without the JSON Schema."""
    if "name" not in document:
        raise InvalidConfig("$.name: the network name is required")
    ipam = document.get("ipam")
    if not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str):
        raise InvalidConfig("$.ipam: an object with a type is required")
    for path in _READ_BY_EVERY_COMMAND:
        value: Any = document
        for key in path:
            value = value.get(key, _ABSENT) if isinstance(value, dict) else _ABSENT
        if value is not _ABSENT:
            _check_value(value, _rules_at(schema.PLUGIN_SCHEMA, path), "$." + ".".join(path))
    if ipam["type"] == IN_PROCESS_IPAM:
        for path in _READ_BY_IN_PROCESS_IPAM:
            if path[0] in ipam:
                _check_value(ipam[path[0]], _rules_at(schema.IPAM_SCHEMA, path), "$.ipam." + ".".join(path))


def load(raw: bytes, validate: bool = True, cache: bool = True) -> NetworkConfig:
    """The config from stdin; ``validate=False`` (STATUS) skips the JSON Schema
    and only checks what is read, so STATUS never loads jsonschema; with
    ``cache=False`` no verdict is kept on disk."""
    document = decode(raw)
    version = config_version(document)
    state_dir = _state_dir(document)
    if validate:
        schema.validate(
            schema.static_part(document),
            schema.PLUGIN_SCHEMA,
            cache_dir=os.path.join(state_dir, "cache", "validated") if cache else None,
        )
    else:
        _structural_check(document)
    prev = document.get("prevResult")
    return NetworkConfig(
        document=document,
        raw=raw,
        cni_version=version,
        name=document["name"],
        ipam=document["ipam"],
        mode=str(document.get("mode", "routed")),
        bridge=str(document.get("bridge", DEFAULT_BRIDGE)),
        mtu=document.get("mtu") if isinstance(document.get("mtu"), int) else None,
        ip_masq=document.get("ipMasq") is True,
        dns=document.get("dns") or {},
        state_dir=state_dir,
        template_dir=document.get("templateDir")
        or (NODE_TEMPLATE_DIR if os.path.isdir(NODE_TEMPLATE_DIR) else None),
        log_file=document.get("logFile") if isinstance(document.get("logFile"), str) else None,
        log_level=str(document.get("logLevel", "info")),
        runtime_config=lower_keys(_object(document, "runtimeConfig")),
        args=_object(document, "args"),
        prev_result=prev if isinstance(prev, dict) else None,
    )


PLUGIN_TYPE = "cni-render"


def plugin_entry(document: dict[str, Any], source: str = "the config") -> dict[str, Any]:
    """A conflist reduced to its cni-render entry with the list's ``name`` and
    ``cniVersion`` injected (as libcni does); a single config as it is."""
    if "plugins" not in document:
        return document
    plugins = document.get("plugins")
    entry = next(
        (p for p in plugins or [] if isinstance(p, dict) and p.get("type") == PLUGIN_TYPE), None
    )
    if entry is None:
        raise InvalidConfig(f"{source}: the conflist has no plugin of type {PLUGIN_TYPE}")
    merged = dict(entry)
    for key in ("name", "cniVersion"):
        if key in document:
            merged[key] = document[key]
    return merged
