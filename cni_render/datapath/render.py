"""Rendering a plan into batches and a result, touching nothing.

Two strict, sandboxed Jinja environments share one loader:

* batch templates (``*.ip.j2``, ``*.sysctl.j2``, ``*.nft.j2``): every ``{{ }}``
  value must be a single safe token. iproute2's batch parser has no escapes
  and treats ``#`` as a comment even inside quotes, so a value holding
  whitespace, a quote, ``#``, ``;`` or a backslash is refused, not quoted;
* the result template (``result.json.j2``): every ``{{ }}`` value is written
  as JSON, so no value can break out of its string.

A template that fails (syntax, undefined variable, unknown filter, unsafe
value, malformed output) raises :class:`TemplateError` naming file and line.
"""

from __future__ import annotations

import json
import os
import re
import threading
import traceback
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any, Callable, Mapping, cast

import jinja2

from cni_render.cni.errors import TemplateError
from cni_render.cni.resources import templates_root
from cni_render.datapath.checks import check_batch
from cni_render.datapath.environment import batch_token, json_value, template_environment
from cni_render.datapath.plan import Plan, TeardownPlan
from cni_render.datapath.template_sets import (
    ADD_HOST,
    ADD_NFT,
    ADD_POD,
    ADD_SYSCTL,
    COMMON,
    DEFAULT_SET,
    DEL_HOST,
    DEL_NFT,
    DEL_POD,
    RESULT,
    SETS,
    SETUP_HOST,
    SLOTS,
    TEMPLATE_SUFFIX,
)

_SYSCTL_LINE = re.compile(r"(?P<key>[A-Za-z0-9_.\-/]+)\s*=\s*(?P<value>[A-Za-z0-9_.:\-]+)")


@dataclass(frozen=True)
class Rendered:
    setup_batch: str = ""
    host_batch: str = ""
    pod_batch: str = ""
    host_sysctls: tuple[tuple[str, str], ...] = ()
    host_nft: str = ""
    result: dict[str, Any] | None = None
    # slot -> the template file it came from, for error messages
    sources: Mapping[str, str] = field(default_factory=dict)

    def source(self, slot: str) -> str:
        return self.sources.get(slot, slot + TEMPLATE_SUFFIX)


BUILTIN_PREFIX = "builtin/"


class TemplateSetLoader(jinja2.BaseLoader):
    """Looks in the operator's directory, then in the set, then in ``common``.

    ``builtin/<name>`` always means the built-in template, so an override can
    include the template it replaces and add a line:
    ``{% include "builtin/add-pod.ip.j2" %}``.
    """

    def __init__(self, template_set: str, override_dir: str | None = None):
        if template_set not in SETS:
            raise TemplateError(f"unknown template set {template_set!r}; known sets: {', '.join(SETS)}")
        self.template_set = template_set
        self.override_dir = override_dir
        root = templates_root()
        self.builtin: tuple[Traversable, ...] = (root.joinpath(template_set), root.joinpath(COMMON))

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        builtin_only = template.startswith(BUILTIN_PREFIX)
        name = template[len(BUILTIN_PREFIX) :] if builtin_only else template
        if "/" in name or name.startswith("."):
            raise jinja2.TemplateNotFound(template)
        if self.override_dir and not builtin_only:
            path = os.path.join(self.override_dir, name)
            if os.path.isfile(path):
                return _file_source(path)
        # A built-in template stops being current when the operator adds an
        # override for it (a long-running daemon must notice).
        override = os.path.join(self.override_dir, name) if self.override_dir and not builtin_only else None
        for directory in self.builtin:
            builtin = directory.joinpath(name)
            if builtin.is_file():
                if isinstance(builtin, os.PathLike):
                    source, filename, current = _file_source(os.fspath(builtin))
                else:
                    source, filename, current = builtin.read_text(encoding="utf-8"), name, lambda: True
                if override is None:
                    return source, filename, current
                return source, filename, _unless_overridden(current, override)
        raise jinja2.TemplateNotFound(template)

    def locate(self, template: str) -> str:
        """Which file ``template`` comes from, without reading it."""
        if self.override_dir and os.path.isfile(os.path.join(self.override_dir, template)):
            return os.path.join(self.override_dir, template)
        for directory in self.builtin:
            builtin = directory.joinpath(template)
            if builtin.is_file():
                return os.fspath(builtin) if isinstance(builtin, os.PathLike) else template
        return template

    def builtin_files(self) -> dict[str, Traversable]:
        """Every built-in template of the set (common files included), by name."""
        files: dict[str, Traversable] = {}
        for directory in reversed(self.builtin):
            for path in directory.iterdir():
                if path.name.endswith(TEMPLATE_SUFFIX):
                    files[path.name] = path
        return files

    def list_templates(self) -> list[str]:
        names = set(self.builtin_files())
        if self.override_dir and os.path.isdir(self.override_dir):
            names |= {n for n in os.listdir(self.override_dir) if n.endswith(TEMPLATE_SUFFIX)}
        return sorted(names)


def _unless_overridden(current: Callable[[], bool], override: str) -> Callable[[], bool]:
    return lambda: current() and not os.path.isfile(override)


def _file_source(path: str) -> tuple[str, str, Callable[[], bool]]:
    mtime = os.path.getmtime(path)
    with open(path, encoding="utf-8") as handle:
        source = handle.read()
    return source, path, lambda: os.path.isfile(path) and os.path.getmtime(path) == mtime


class Renderer:
    """Renders one template set (with an optional operator override directory)."""

    def __init__(
        self,
        template_set: str = DEFAULT_SET,
        override_dir: str | None = None,
        cache_dir: str | None = None,
    ):
        self.loader = TemplateSetLoader(template_set, override_dir)
        self.batch_env = template_environment(self.loader, batch_token, cache_dir)
        self.json_env = template_environment(self.loader, json_value, cache_dir)

    def compile(self, name: str) -> None:
        """Compile one template file (TemplateError with file and line if it cannot)."""
        env = self.json_env if name.endswith(".json" + TEMPLATE_SUFFIX) else self.batch_env
        try:
            env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from exc
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"template {exc.name} not found in set {self.loader.template_set}") from exc

    def path_of(self, name: str) -> str:
        return self.loader.locate(name)

    def render_slot(self, slot: str, context: dict[str, Any], required: bool = False) -> str:
        """One slot's text, checked against what a batch may hold
        (:mod:`cni_render.datapath.checks`) before anyone can run it."""
        text = self._render_slot(slot, context, required)
        if text:
            check_batch(slot + TEMPLATE_SUFFIX, text, self.path(slot))
        return text

    def _render_slot(self, slot: str, context: dict[str, Any], required: bool) -> str:
        name = slot + TEMPLATE_SUFFIX
        env = self.json_env if slot.endswith(".json") else self.batch_env
        try:
            template = env.get_template(name)
            return template.render(context)
        except jinja2.TemplateNotFound as exc:
            if required or exc.name != name:
                raise TemplateError(f"template {exc.name} not found in set {self.loader.template_set}") from exc
            return ""
        except jinja2.TemplateSyntaxError as exc:
            where = f"{exc.filename or exc.name or name}:{exc.lineno}"
            raise TemplateError(f"{where}: {exc.message}") from exc
        except Exception as exc:  # undefined, unsafe value, filter failure, sandbox
            raise TemplateError(f"{_location(exc, name)}: {_describe(exc)}") from exc

    def render_add(self, plan: Plan, with_result: bool = True) -> Rendered:
        """Everything ADD runs (CHECK needs only the batches: ``with_result=False``)."""
        context = plan.context()
        result = None
        if with_result:
            result = parse_result_text(self.render_slot(RESULT, context, required=True), self.path(RESULT))
        return Rendered(
            setup_batch=self.render_slot(SETUP_HOST, context),
            host_batch=self.render_slot(ADD_HOST, context, required=True),
            pod_batch=self.render_slot(ADD_POD, context, required=True),
            host_sysctls=parse_sysctls(self.render_slot(ADD_SYSCTL, context), self.path(ADD_SYSCTL))
            if with_result
            else (),
            host_nft=self.render_slot(ADD_NFT, context) if plan.ip_masq and with_result else "",
            result=result,
            sources=self.sources(),
        )

    def render_teardown(self, plan: TeardownPlan) -> Rendered:
        context = plan.context()
        return Rendered(
            host_batch=self.render_slot(DEL_HOST, context, required=True),
            pod_batch=self.render_slot(DEL_POD, context) if plan.netns else "",
            host_nft=self.render_slot(DEL_NFT, context) if plan.ip_masq else "",
            sources=self.sources(),
        )

    def path(self, slot: str) -> str:
        """The file a slot's template comes from (override, set or common)."""
        return self.loader.locate(slot + TEMPLATE_SUFFIX)

    def sources(self) -> dict[str, str]:
        return {slot: self.path(slot) for slot in SLOTS}


_SHARED: dict[tuple[str, str | None, str | None], Renderer] = {}
_SHARED_LOCK = threading.Lock()


def shared_renderer(
    template_set: str = DEFAULT_SET, override_dir: str | None = None, cache_dir: str | None = None
) -> Renderer:
    """One renderer per template set and directories, kept for the process's
    life: a daemon compiles each template once (Jinja re-reads a template
    whose file changed)."""
    key = (template_set, override_dir, cache_dir)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = Renderer(template_set, override_dir, cache_dir)
        return _SHARED[key]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, jinja2.UndefinedError):
        return f"undefined variable: {exc.message}"
    return str(exc) or type(exc).__name__


def _location(exc: BaseException, fallback: str) -> str:
    """file:line of the innermost template frame in the traceback."""
    where = fallback
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(TEMPLATE_SUFFIX):
            where = f"{frame.filename}:{frame.lineno}"
    return where


def parse_sysctls(text: str, filename: str) -> tuple[tuple[str, str], ...]:
    """``key = value`` lines; blank lines and ``#`` comments skipped."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _SYSCTL_LINE.fullmatch(line)
        if not match:
            raise TemplateError(f"{filename}: rendered line {number} {line!r} is not 'key = value'")
        pairs.append((match["key"], match["value"]))
    return tuple(pairs)


def parse_result_text(text: str, filename: str) -> dict[str, Any]:
    """The rendered result as a current-shape CNI result, checked."""
    try:
        result = json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{filename}: rendered result is not JSON: {exc}") from exc
    problem = result_shape_problem(result)
    if problem:
        raise TemplateError(f"{filename}: rendered result is not a CNI result: {problem}")
    return cast("dict[str, Any]", result)  # result_shape_problem found an object


def result_shape_problem(result: Any) -> str | None:
    """Why ``result`` is not a valid current-shape result, or None."""
    if not isinstance(result, dict):
        return "not an object"
    interfaces = result.get("interfaces", [])
    if not isinstance(interfaces, list) or not all(
        isinstance(i, dict) and isinstance(i.get("name"), str) for i in interfaces
    ):
        return "interfaces must be a list of objects with a name"
    ips = result.get("ips")
    if not isinstance(ips, list) or not ips:
        return "ips must be a non-empty list"
    for ip in ips:
        if not isinstance(ip, dict) or not isinstance(ip.get("address"), str):
            return "every ips entry needs an address"
        index = ip.get("interface")
        if index is not None and not (isinstance(index, int) and 0 <= index < len(interfaces)):
            return f"ips entry {ip['address']} points at interface {index}, which does not exist"
    routes = result.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) and "dst" in r for r in routes):
        return "routes must be a list of objects with a dst"
    if not isinstance(result.get("dns", {}), dict):
        return "dns must be an object"
    return None
