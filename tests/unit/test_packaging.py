"""`pip install .` gives a working plugin: templates and schemas are package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_carries_templates_and_schemas(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(tmp_path.glob("cni_render-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (ROOT / "templates").glob("*/*.j2"):
        assert f"cni_render/templates/{template.parent.name}/{template.name}" in names
    for schema in (ROOT / "schemas").glob("*.json"):
        assert f"cni_render/schemas/{schema.name}" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "cni-render = cni_render.entry:plugin_main" in text
    assert "cni-render-ipam = cni_render.entry:ipam_main" in text


def test_installed_plugin_reads_no_file_from_the_checkout():
    import cni_render
    from cni_render.cni.resources import schemas_root, templates_root

    assert Path(cni_render.__file__).resolve().parent != ROOT / "cni_render"
    assert "site-packages" in str(templates_root()) and str(ROOT / "templates") not in str(templates_root())
    assert "site-packages" in str(schemas_root()) and str(ROOT / "schemas") not in str(schemas_root())
