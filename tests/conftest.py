"""Shared fixtures: throwaway node namespaces, the golden-file flag, and the
rule that in CI (CNI_RENDER_CI=1) a skipped test is a failed test."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterator

import pytest

from netns import MODES, PLUGIN, TEMPLATE_SETS, Node, leftover_namespaces, root_links

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
    for tool in ("ip", "curl", "busybox"):
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


@pytest.fixture(scope="session")
def launcher_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The fast launchers `cni-render install` writes for a node's CNI bin dir."""
    directory = tmp_path_factory.mktemp("cni-bin")
    subprocess.run([PLUGIN, "install", "--bin-dir", str(directory)], check=True, capture_output=True)
    return str(directory)


NODE_VARIANTS = [(template_set, mode) for template_set in TEMPLATE_SETS for mode in MODES]


@pytest.fixture(params=NODE_VARIANTS, ids=[f"{t}-{m}" for t, m in NODE_VARIANTS])
def node(request: pytest.FixtureRequest, netns_ok: None, launcher_dir: str) -> Iterator[Node]:
    """A throwaway node; every test using it runs with both template sets,
    each with and without the daemon."""
    template_set, mode = request.param
    node = Node(mode=mode, plugin_dir=launcher_dir, template_set=template_set)
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def plain_node(netns_ok: None) -> Iterator[Node]:
    """A throwaway node for tests that do not run the plugin."""
    node = Node()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
