"""The cluster scripts (cluster/): shellcheck-clean, one of each shared piece,
configs from templates, and every file the targets name exists, on the kind
path as on the local one (the kind path cannot run here: no Docker engine)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
CLUSTER_TARGETS = ("cluster", "daemonset", "smoke", "clean", "down", "e2e", "conformance")
# A path a script names through the variables lib/env.sh sets.
NAMED_PATH = re.compile(r"\$\{?(REPO|CLUSTER_SRC|CONFIG)\}?/([\w./-]+)")
BASE = {"REPO": ROOT, "CLUSTER_SRC": CLUSTER, "CONFIG": CLUSTER / "config"}


def shell_scripts() -> list[Path]:
    """Every shell file under cluster/ (by ending or shebang), and .ci/run."""
    found = [ROOT / ".ci" / "run"]
    for path in sorted(CLUSTER.rglob("*")):
        if not path.is_file() or "build" in path.relative_to(CLUSTER).parts[:1]:
            continue
        head = path.read_bytes()[:64]
        if path.suffix == ".sh" or head.startswith(b"#!/usr/bin/env bash") or head.startswith(b"#!/bin/sh"):
            found.append(path)
    return found


def script_text() -> str:
    return "\n".join(p.read_text() for p in shell_scripts() if p.suffix != ".cgi")


def test_every_cluster_script_is_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (make deps installs it)")
    scripts = shell_scripts()
    assert len(scripts) > 15, scripts
    done = subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_one_preamble_one_kubectl_helper_one_image_import() -> None:
    text = script_text()
    assert len(re.findall(r"^k\(\)", text, re.M)) == 1, "k() is defined once, in lib/env.sh"
    assert len(re.findall(r"ctr .*images import", text)) == 1, "one image import (node_import in lib/node.sh)"
    assert len(re.findall(r"^\s*\.\s.*versions\.env", text, re.M)) == 1, "only lib/env.sh reads the pins"
    for script in shell_scripts():
        if script.parent == CLUSTER and script.suffix != ".cgi":
            assert '. "$(dirname "$0")/lib/env.sh"' in script.read_text(), f"{script.name} does not source lib/env.sh"


def test_configs_come_from_templates_not_heredocs() -> None:
    for script in shell_scripts():
        assert not re.search(r"<<-?\s*['\"]?[A-Z]", script.read_text()), f"{script.name} writes a config in a heredoc"


def test_render_fills_every_placeholder_and_refuses_a_missing_one(tmp_path: Path) -> None:
    template = tmp_path / "t.in"
    template.write_text("a: @ALPHA@\nb: @BETA@\n")
    render = f'CLUSTER_PROVIDER=local CLUSTER_STATE={tmp_path}/state . {CLUSTER}/lib/env.sh; ALPHA=1 BETA=x/y render {template} ALPHA'
    whole = subprocess.run(["bash", "-c", render + " BETA"], capture_output=True, text=True)
    assert whole.returncode == 0 and whole.stdout == "a: 1\nb: x/y\n", whole
    partial = subprocess.run(["bash", "-c", render], capture_output=True, text=True)
    assert partial.returncode != 0 and "@BETA@" in partial.stderr, partial


def test_every_template_placeholder_is_rendered_somewhere() -> None:
    text = script_text()
    for template in sorted((CLUSTER / "config").glob("*.in")):
        calls = [line for line in text.splitlines() if f"render \"$CONFIG/{template.name}\"" in line]
        assert calls, f"nothing renders {template.name}"
        for name in set(re.findall(r"@([A-Z0-9_]+)@", template.read_text())):
            assert any(re.search(rf"\b{name}\b", call) for call in calls), f"{template.name}: @{name}@ is never given"


def files_named(script: Path, provider: str, seen: set[Path]) -> set[Path]:
    """The files a script names, and those the scripts it runs or sources name."""
    if script in seen:
        return set()
    seen.add(script)
    named = set()
    for base, rest in NAMED_PATH.findall(script.read_text()):
        if rest.startswith(".cluster"):
            continue  # the running cluster's state, made as it runs
        path = BASE[base] / rest
        named.add(path)
        if path.suffix == ".sh" and path.exists() and "provider-" not in path.name:
            named |= files_named(path, provider, seen)
    provider_file = CLUSTER / "lib" / f"provider-{provider}.sh"
    if script.name == "env.sh":
        named.add(provider_file)
        named |= files_named(provider_file, provider, seen)
    if '. "$(dirname "$0")/lib/env.sh"' in script.read_text():
        named |= files_named(CLUSTER / "lib" / "env.sh", provider, seen)
    return named


def target_scripts() -> set[Path]:
    """The cluster/ scripts the Makefile's Kubernetes targets run."""
    makefile = (ROOT / "Makefile").read_text()
    scripts = set()
    for target in CLUSTER_TARGETS:
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe, f"no recipe for make {target}"
        scripts |= {ROOT / s for s in re.findall(r"(?<![\w./])cluster/[\w.-]+", recipe.group(1))}
    return scripts


@pytest.mark.parametrize("provider", ["kind", "local"])
def test_every_file_the_cluster_targets_name_exists(provider: str) -> None:
    scripts = target_scripts()
    assert {s.name for s in scripts} >= {"up.sh", "daemonset.sh", "smoke.sh", "uninstall.sh", "down.sh"}, scripts
    named: set[Path] = set(scripts)
    seen: set[Path] = set()
    for script in scripts:
        named |= files_named(script, provider, seen)
    if provider == "kind":
        assert ROOT / "kind.yaml" in named and CLUSTER / "lib" / "provider-kind.sh" in named
    assert ROOT / "deploy" / "cni-render-uninstall.yaml" in named
    missing = sorted(str(p.relative_to(ROOT)) for p in named if not p.exists())
    assert not missing, f"named by the {provider} path but missing: {missing}"


def test_kind_yaml_leaves_the_cni_to_us() -> None:
    text = (ROOT / "kind.yaml").read_text()
    assert re.search(r"disableDefaultCNI:\s*true", text)
    assert len(re.findall(r"- role:", text)) >= 2


def test_one_package_list_which_ci_uses() -> None:
    makefile = (ROOT / "Makefile").read_text()
    lists = re.findall(r"^(\w*PACKAGES)\s*:?=", makefile, re.M)
    assert lists == ["PACKAGES"], lists
    assert "shellcheck" in makefile.split("PACKAGES :=", 1)[1].split("\n\n", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make deps" in ci
    assert not re.search(r"apt-get install[^\n]*\b(containerd|podman|iproute2)\b", ci), "a second package list"
