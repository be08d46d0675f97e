"""The end-to-end suite runs against the local cluster that `make e2e` brings
up (cluster/up.sh + cluster/daemonset.sh). Without a running cluster it fails:
it never skips."""

from __future__ import annotations

from typing import Iterator

import pytest

from cluster import NAMESPACE, STATE, kubectl, nodes


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Iterator[None]:
    if not (STATE / "cluster.env").exists():
        pytest.fail("no local cluster: run `make cluster daemonset` (or `make e2e`, which does all)", pytrace=False)
    assert nodes(), "the cluster has no nodes"
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("-n", NAMESPACE, "wait", "--for=jsonpath={.metadata.name}=default", "serviceaccount/default", "--timeout=60s")
    yield
    kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s", check=False, timeout=240)
