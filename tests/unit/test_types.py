"""mypy, strict on cni_render/ (the [tool.mypy] section of pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_is_clean(tmp_path):
    # No skip: make install puts mypy in the venv (requirements-test.txt), and a
    # missing mypy fails here with its message. The cache goes to tmp_path so a
    # run leaves nothing in the checkout and never reads a stale cache.
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
