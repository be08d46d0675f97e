"""The one Jinja environment every template is rendered in: the pod sets, the
agent's node templates (and policy templates to come).

Sandboxed and immutable (a template cannot reach Python), StrictUndefined (a
misspelt variable is an error, not an empty string), no autoescape, and a
finalize hook on every ``{{ }}``: :func:`batch_token` for batch files (each
value one token, so no value can add a command), :func:`json_value` for the
result template. Templates are reloaded when their file changes.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Callable

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from cni_render.datapath.filters import FILTERS

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_.:/@+=,\-]+")


class UnsafeValue(ValueError):
    """A value that would not stay a single token in a batch line."""


def batch_token(value: Any) -> str:
    """The batch environment's finalize hook."""
    if value is None or isinstance(value, bool):
        raise UnsafeValue(f"{value!r} is not a value a batch line can hold")
    text = str(value)
    if not SAFE_TOKEN.fullmatch(text):
        bad = sorted({c for c in text if not SAFE_TOKEN.fullmatch(c)}) or ["empty string"]
        raise UnsafeValue(
            f"value {text!r} is refused in a batch file: it holds {', '.join(map(repr, bad))}; "
            "a value must be one token of letters, digits and '_.:/@+=,-'"
        )
    return text


def json_value(value: Any) -> str:
    """The result environment's finalize hook."""
    return json.dumps(value)


def template_environment(
    loader: jinja2.BaseLoader,
    finalize: Callable[[Any], Any] = batch_token,
    cache_dir: str | None = None,
) -> ImmutableSandboxedEnvironment:
    """An environment reading templates through ``loader``; with ``cache_dir``,
    compiled templates are kept there between processes."""
    bytecode_cache: jinja2.BytecodeCache | None = None
    if cache_dir:
        try:
            os.makedirs(cache_dir, mode=0o700, exist_ok=True)
            bytecode_cache = jinja2.FileSystemBytecodeCache(cache_dir)
        except OSError:
            bytecode_cache = None
    env = ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=finalize,
        bytecode_cache=bytecode_cache,
        auto_reload=True,
    )
    env.filters.update(FILTERS)
    return env
