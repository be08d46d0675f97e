"""Is this config, with these templates, ready for pods? The one answer.

``cni-render validate`` prints it and the node agent refuses an override set
on it; neither reads the other's text. The steps, in order, each stopping the
rest when it fails where later steps would only repeat the failure:

1. the config against the JSON Schema: every error, with its JSON path;
2. the in-process IPAM ranges parse;
3. every template of the set compiles (with the operator's overrides);
4. every template renders for a sample pod in every spec version (with and
   without ``ipMasq``, so the nft templates are rendered too), every batch
   holds only what :mod:`cni_render.datapath.checks` allows, and the result
   is a valid CNI result that converts to that version.

Pure: templates are read, nothing runs, nothing is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cni_render.cni import schema
from cni_render.cni.config import IN_PROCESS_IPAM, NetworkConfig, load
from cni_render.cni.errors import CniError
from cni_render.cni.spec import SUPPORTED_VERSIONS
from cni_render.cni.versions import convert_result
from cni_render.datapath.preview import preview, request_for
from cni_render.datapath.render import Renderer, result_shape_problem
from cni_render.ipam.model import parse_ipam_config

SAMPLE_CONTAINER = "cni-render-validate"
SAMPLE_NETNS = "/var/run/netns/sample"


@dataclass(frozen=True)
class Check:
    """One step's verdict: ``problem`` is None when it passed, else what to fix."""

    step: str
    detail: str = ""
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        return f"{self.step}: {self.problem if self.problem is not None else self.detail}"


@dataclass
class Validation:
    checks: list[Check] = field(default_factory=list)

    @property
    def problems(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    @property
    def passed(self) -> bool:
        return not self.problems

    def run(self, step: str, action: Callable[[], str]) -> bool:
        """Record ``action``'s detail, or its error as the step's problem."""
        try:
            detail = action()
        except CniError as exc:
            self.checks.append(Check(step, problem=f"{exc.details} (code {exc.code})"))
            return False
        except Exception as exc:  # a template may raise anything; it is a verdict, not a crash
            self.checks.append(Check(step, problem=str(exc) or type(exc).__name__))
            return False
        self.checks.append(Check(step, detail=detail))
        return True


def validate(document: Mapping[str, Any], template_dir: str | None = None) -> Validation:
    """Every check of a plugin config (a conflist already reduced to cni-render's
    entry) with ``template_dir`` replacing its templateDir."""
    document = dict(document)
    if template_dir:
        document["templateDir"] = os.path.abspath(template_dir)
    validation = Validation()
    errors = schema.schema_errors(schema.static_part(document), schema.PLUGIN_SCHEMA)
    if errors:
        validation.checks += [Check("schema", problem=error.details) for error in errors]
        return validation
    validation.checks.append(Check("schema", "the config is valid"))
    config = _load(document)
    if config.ipam_type == IN_PROCESS_IPAM and not validation.run("IPAM ranges", lambda: _ipam(config)):
        return validation
    renderer = Renderer(config.mode, override_dir=config.template_dir)
    if not validation.run("templates compile", lambda: _compile(renderer)):
        return validation
    for version in SUPPORTED_VERSIONS:
        validation.run(f"render for cniVersion {version}", lambda version=version: _render(document, version))  # type: ignore[misc]
    return validation


def _load(document: Mapping[str, Any], **overrides: Any) -> NetworkConfig:
    return load(json.dumps(dict(document, **overrides)).encode(), cache=False)


def _ipam(config: NetworkConfig) -> str:
    ipam = parse_ipam_config(config.ipam)
    return ", ".join(str(r) for range_set in ipam.range_sets for r in range_set)


def _compile(renderer: Renderer) -> str:
    names = renderer.loader.list_templates()
    for name in names:
        renderer.compile(name)
    override = renderer.loader.override_dir
    overridden = [n for n in names if override and renderer.path_of(n).startswith(override)]
    detail = f"{len(names)} templates of set {renderer.loader.template_set}"
    return detail + (f", {len(overridden)} from {override}" if overridden else "")


def _render(document: Mapping[str, Any], version: str) -> str:
    config = _load(document, cniVersion=version)
    renderer = Renderer(config.mode, override_dir=config.template_dir)
    shown = preview(request_for(SAMPLE_CONTAINER, SAMPLE_NETNS, "eth0"), config, renderer)
    problem = result_shape_problem(shown.add.result)
    if problem:
        raise ValueError(f"the result is not a CNI result: {problem}")
    convert_result(shown.add.result or {}, version)
    if not config.ip_masq:  # the nft templates run once ipMasq is on: render and check them now
        masquerading = _load(document, cniVersion=version, ipMasq=True)
        preview(request_for(SAMPLE_CONTAINER, SAMPLE_NETNS, "eth0"), masquerading, renderer)
    lines = sum(batch.count("\n") for batch in (shown.add.setup_batch, shown.add.host_batch, shown.add.pod_batch))
    return f"{lines} batch lines; pod {', '.join(a.cidr for a in shown.plan.addresses)}"
