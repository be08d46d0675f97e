"""The package's layers: no import goes up a layer, and no module imports
itself through a circle.

The rules are written once, here (docs/architecture.md draws them). Each
folder of ``cni_render/`` is a layer and names the layers it may import;
``entry.py`` sits on top and may import anything. An import inside a function
counts like one at the top of a module: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "cni_render"

# layer -> the layers it may import (besides itself and the package root,
# which holds only __version__).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "cni": frozenset(),
    "host": frozenset({"cni"}),
    "ipam": frozenset({"cni", "host"}),
    # pure: it computes batches and previews (the preview allocates from an
    # in-memory IPAM store), it never touches the machine.
    "datapath": frozenset({"cni", "ipam"}),
    "commands": frozenset({"cni", "host", "ipam", "datapath"}),
    "fastpath": frozenset({"cni", "host", "ipam", "datapath", "commands"}),
    "node": frozenset({"cni", "host", "ipam", "datapath", "commands", "fastpath"}),
    "cli": frozenset({"cni", "host", "ipam", "datapath", "commands", "fastpath", "node"}),
    "entry": frozenset({"cni", "host", "ipam", "datapath", "commands", "fastpath", "node", "cli"}),
}
ROOT_MODULES = {"__init__", "__main__", "entry"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """``cni_render.host.system`` -> ``host``; the root modules -> ``entry``;
    the package itself (``__version__``) -> None, importable by every layer."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    if parts[1] in ROOT_MODULES:
        return "entry"
    return parts[1]


def imports_of(path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every cni_render import in a file, also the
    ones inside functions; ``from X import Y`` counts as X.Y when Y is a module."""
    name = module_name(path, package)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == package.name]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != package.name:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                as_module = (package.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    package.parent / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                found.append((node.lineno, candidate if as_module else target))
    return found


def upward_imports(package: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(package.rglob("*.py")):
        source_layer = layer_of(module_name(path, package))
        if source_layer is not None and source_layer not in MAY_IMPORT:
            problems.append(f"{path.relative_to(package.parent)}: folder {source_layer!r} is no layer; add it to MAY_IMPORT")
            continue
        for line, target in imports_of(path, package):
            target_layer = layer_of(target)
            if target_layer is None or target_layer == source_layer:
                continue
            if source_layer is None or target_layer not in MAY_IMPORT[source_layer]:
                problems.append(
                    f"{path.relative_to(package.parent)}:{line}: {source_layer} imports {target} ({target_layer}): "
                    f"{source_layer} may import only {', '.join(sorted(MAY_IMPORT.get(source_layer or '', ()))) or 'nothing'}"
                )
    return problems


def import_circles(package: Path = PACKAGE) -> list[list[str]]:
    """Every circle among the package's modules (Tarjan's strongly connected
    components of more than one module, or a module importing itself)."""
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        source = module_name(path, package)
        graph.setdefault(source, set())
        for _, target in imports_of(path, package):
            # a package's __init__ is imported on the way to any module in it,
            # but that edge is Python's, not the author's: count named modules.
            if target != source:
                graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_every_folder_is_a_layer_with_a_docstring():
    for folder in sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if folder.name == "shim":
            continue
        assert folder.name in MAY_IMPORT, f"cni_render/{folder.name}/ is not a layer: add it to MAY_IMPORT and docs/architecture.md"
        init = folder / "__init__.py"
        docstring = ast.get_docstring(ast.parse(init.read_text())) if init.exists() else None
        assert docstring and "import" in docstring, f"cni_render/{folder.name}/__init__.py must say what the layer may import"


def test_no_import_goes_up_a_layer():
    assert upward_imports() == []


def test_no_import_circle():
    assert import_circles() == []


@pytest.fixture
def toy_package(tmp_path: Path) -> Path:
    root = tmp_path / "cni_render"
    for folder in ("host", "commands", "cli"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text('"""may import nothing"""\n')
    (root / "__init__.py").write_text("")
    return root


def test_an_upward_import_is_found(toy_package: Path):
    (toy_package / "host" / "system.py").write_text("def run():\n    from ..commands import add\n")
    (toy_package / "commands" / "add.py").write_text("")
    problems = upward_imports(toy_package)
    assert len(problems) == 1 and "host imports cni_render.commands.add (commands)" in problems[0]


def test_a_circle_is_found(toy_package: Path):
    (toy_package / "cli" / "a.py").write_text("from cni_render.cli import b\n")
    (toy_package / "cli" / "b.py").write_text("from . import a\n")
    assert import_circles(toy_package) == [["cni_render.cli.a", "cni_render.cli.b"]]
