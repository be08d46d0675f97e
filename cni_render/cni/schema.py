"""JSON Schema validation of network configs, cached by content hash.

jsonschema is imported only when a config has not been seen before: a valid
config leaves a marker file named by the hash of the schemas and the config's
static part (everything but the keys the runtime changes per call).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Iterable

from cni_render.cni.errors import CniError, InvalidConfig, UnsupportedField
from cni_render.cni.resources import read_schema

PLUGIN_SCHEMA = "cni-render.schema.json"
IPAM_SCHEMA = "cni-render-ipam.schema.json"
_SCHEMA_FILES = (PLUGIN_SCHEMA, IPAM_SCHEMA)

# Keys the runtime sets per invocation; they are checked in Python, not cached.
VOLATILE_KEYS = ("prevResult", "runtimeConfig", "args")


def static_part(config: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in config.items()
        if key not in VOLATILE_KEYS and not key.startswith("cni.dev/")
    }


_SCHEMAS_DIGEST: list[bytes] = []


def _schemas_digest() -> bytes:
    """The schemas' own hash, read once per process."""
    if not _SCHEMAS_DIGEST:
        digest = hashlib.sha256()
        for name in _SCHEMA_FILES:
            digest.update(read_schema(name))
        _SCHEMAS_DIGEST.append(digest.digest())
    return _SCHEMAS_DIGEST[0]


def _cache_key(schema_name: str, document: Any) -> str:
    digest = hashlib.sha256(_schemas_digest())
    digest.update(schema_name.encode())
    digest.update(json.dumps(document, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def validate(document: Any, schema_name: str, cache_dir: str | None) -> None:
    """Raise InvalidConfig/UnsupportedField naming the JSON path of the first error."""
    marker = os.path.join(cache_dir, _cache_key(schema_name, document)) if cache_dir else None
    if marker and os.path.exists(marker):
        return
    errors = schema_errors(document, schema_name)
    if errors:
        raise errors[0]
    if marker:
        _write_marker(marker)


def _write_marker(marker: str) -> None:
    try:
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        with open(marker, "x"):
            pass
    except FileExistsError:
        pass
    except OSError:
        # A cache we cannot write only costs time; validation already passed.
        pass


def schema_errors(document: Any, schema_name: str) -> list[CniError]:
    """Every schema error as a CNI error, the most relevant first."""
    validator = _validator(schema_name)
    from jsonschema.exceptions import best_match, relevance

    raw_errors = sorted(validator.iter_errors(document), key=relevance)
    if not raw_errors:
        return []
    first = best_match(raw_errors)
    ordered = [first] + [e for e in raw_errors if e is not first]
    return [_to_cni_error(e, document) for e in ordered]


def json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _to_cni_error(error: Any, document: Any) -> CniError:
    path = json_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        patterns = error.schema.get("patternProperties", {})
        import re

        extra = [
            key
            for key in error.instance
            if key not in allowed and not any(re.search(p, key) for p in patterns)
        ]
        if extra:
            key = extra[0]
            value = json.dumps(error.instance[key])
            return UnsupportedField(
                f"{json_path([*error.absolute_path, key])}: unknown key {key!r} (value {value}); "
                f"known keys here: {', '.join(sorted(allowed))}"
            )
    message = error.message
    if error.validator == "format" and error.cause is not None:
        message += f" ({error.cause})"
    return InvalidConfig(f"{path}: {message}")


_VALIDATORS: dict[str, Any] = {}


def _validator(schema_name: str) -> Any:
    if schema_name not in _VALIDATORS:
        _VALIDATORS[schema_name] = _build_validator(schema_name)
    return _VALIDATORS[schema_name]


def _build_validator(schema_name: str) -> Any:
    import ipaddress

    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    schemas = {name: json.loads(read_schema(name)) for name in _SCHEMA_FILES}
    registry: Registry = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values()
    )
    registry = registry.with_resources(
        (name, Resource.from_contents(schema)) for name, schema in schemas.items()
    )
    checker = FormatChecker(formats=())

    @checker.checks("ip-network", raises=ValueError)
    def _ip_network(value: object) -> bool:
        if isinstance(value, str):
            ipaddress.ip_network(value, strict=True)
        return True

    @checker.checks("ip-address", raises=ValueError)
    def _ip_address(value: object) -> bool:
        if isinstance(value, str):
            ipaddress.ip_address(value)
        return True

    return Draft202012Validator(
        schemas[schema_name], registry=registry, format_checker=checker
    )
