"""What every test folder shares: the rule that in CI (CNI_RENDER_CI=1) a
skipped test is a failed test, the golden-file flag, and tests/lib on the
import path (the throwaway node, the result-shape checker, daemon helpers).

    unit/     no root, no network: parsing, rendering, golden files, layers, lint, types
    netns/    root: the plugin, daemon and agent inside throwaway node namespaces
    clients/  root: real runtimes (libcni, podman) calling the plugin
    e2e/      the local Kubernetes cluster (make e2e)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

IN_CI = os.environ.get("CNI_RENDER_CI") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/<case>/ expectations from the current templates",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
