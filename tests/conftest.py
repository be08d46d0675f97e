"""Shared fixtures: throwaway node namespaces, the golden-file flag, and the
rule that in CI (CNI_RENDER_CI=1) a skipped test is a failed test."""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from netns import Node, leftover_namespaces, root_links

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


def namespaces_available() -> str | None:
    """None when namespace tests can run here, else why not."""
    if os.geteuid() != 0:
        return "namespace tests need root"
    for tool in ("ip", "nsenter", "curl", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@pytest.fixture(scope="session")
def netns_ok() -> None:
    reason = namespaces_available()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def machine_untouched() -> Iterator[None]:
    """The machine's own links must be the same after the whole run."""
    before = root_links() if os.geteuid() == 0 else set()
    yield
    if os.geteuid() != 0:
        return
    assert root_links() == before, f"links changed in the machine's namespace: {root_links() ^ before}"
    assert not leftover_namespaces(), f"namespaces left behind: {leftover_namespaces()}"


@pytest.fixture
def node(netns_ok: None) -> Iterator[Node]:
    node = Node()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
