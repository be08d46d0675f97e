"""Fixtures for tests that run the plugin inside throwaway node namespaces
(tests/netns/ and tests/clients/ import them in their conftest.py)."""

from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from cni_render.cli.sandbox import install_launchers
from throwaway import MODES, TEMPLATE_SETS, Node, leftover_namespaces, root_links


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
    install_launchers(directory)
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


