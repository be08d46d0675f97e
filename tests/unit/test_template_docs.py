"""docs/templates.md stays true: every variable and field a template uses is
documented, and the worked examples render what the page shows. No root."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import jinja2
import pytest
from jinja2 import meta, nodes

from cni_render.cni.resources import templates_root
from cni_render.datapath.render import Renderer
from throwaway import PLUGIN

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "templates.md").read_text()
EXAMPLES = ROOT / "docs" / "examples"


def documented_names() -> set[str]:
    """Every `name` that starts a row of a table in the page."""
    names = set()
    for line in DOC.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([a-z_0-9]+)", first_cell))
    return names


def all_templates() -> list[tuple[str, str]]:
    found = []
    for directory in ("routed", "bridge", "common"):
        for path in templates_root().joinpath(directory).iterdir():
            if path.name.endswith(".j2"):
                found.append((f"{directory}/{path.name}", path.read_text()))
    for path in EXAMPLES.glob("*/*.j2"):
        found.append((str(path.relative_to(ROOT)), path.read_text()))
    return found


def used_names(source: str) -> tuple[set[str], set[str]]:
    """(free variables, attribute names) a template uses."""
    tree = jinja2.Environment().parse(source)
    free = meta.find_undeclared_variables(tree)
    fields = {node.attr for node in tree.find_all(nodes.Getattr)}
    fields |= {
        node.arg.value
        for node in tree.find_all(nodes.Getitem)
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str)
    }
    return free, fields


@pytest.mark.parametrize("name,source", all_templates(), ids=[n for n, _ in all_templates()])
def test_every_variable_and_field_is_documented(name, source):
    free, fields = used_names(source)
    documented = documented_names() | {"loop", "K8S_POD_NAME"}
    assert free <= documented, f"{name} uses undocumented variables {sorted(free - documented)}"
    assert fields - {"last", "first", "index"} <= documented, (
        f"{name} uses undocumented fields {sorted(fields - documented)}"
    )


def test_the_context_table_matches_the_plan():
    from cni_render.datapath.plan import Link, Plan, PodAddress, PodRoute, TeardownPlan

    documented = documented_names()
    for kind in (Plan, TeardownPlan, Link, PodAddress, PodRoute):
        missing = set(kind.__dataclass_fields__) - documented
        assert not missing, f"{kind.__name__} fields missing from docs/templates.md: {missing}"


SLOT_SECTIONS = {"add-host.sysctl": "node sysctls", "add-pod.ip": "pod: ", "add-host.ip": "node: ip"}


def rendered_section(example: str, slot: str) -> str:
    output = subprocess.run(
        [PLUGIN, "render", "--config", str(EXAMPLES / "example.conflist"), "--templates", str(EXAMPLES / example),
         "--container-id", "web-0", "--netns", "/var/run/netns/web-0"],
        capture_output=True, text=True, check=True,
    ).stdout
    sections = output.split("\n# ")
    section = next(s for s in sections if s.startswith(SLOT_SECTIONS[slot]))
    return section.split("\n", 1)[1].rstrip("\n") + "\n"


@pytest.mark.parametrize("example,slot", re.findall(r"<!-- rendered: (\S+) (\S+) -->", DOC))
def test_worked_examples_render_what_the_page_shows(example, slot):
    shown = re.search(rf"<!-- rendered: {example} {slot} -->\n```\n(.*?)```", DOC, re.S).group(1)
    assert rendered_section(example, slot) == shown
    template = next((EXAMPLES / example).glob("*.j2")).read_text()
    assert template.strip() in DOC, f"the page must show docs/examples/{example} as it is"


def test_every_example_compiles_for_both_sets():
    for example in EXAMPLES.iterdir():
        if example.is_dir():
            for template_set in ("routed", "bridge"):
                renderer = Renderer(template_set, override_dir=str(example))
                for name in renderer.loader.list_templates():
                    renderer.compile(name)
