"""The end-to-end suite runs against the cluster that `make e2e` brings up
(cluster/up.sh + cluster/daemonset.sh). Without a running cluster it fails: it
never skips. A test marked ``last`` (the uninstall, which takes cni-render away
and puts it back) runs after every other, whatever the files are called and
whichever are selected."""

from __future__ import annotations

from typing import Iterator

import pytest

from cluster import NAMESPACE, STATE, kubectl, nodes


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "last: run after every other end-to-end test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Iterator[None]:
    if not (STATE / "cluster.env").exists():
        pytest.fail("no local cluster: run `make cluster daemonset` (or `make e2e`, which does all)", pytrace=False)
    assert nodes(), "the cluster has no nodes"
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("-n", NAMESPACE, "wait", "--for=jsonpath={.metadata.name}=default", "serviceaccount/default", "--timeout=60s")
    yield
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", check=False, timeout=240)
