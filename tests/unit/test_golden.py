"""Golden files: what every template renders, for every spec version.

Each ``tests/golden/<case>/case.json`` holds a network config and a pod; the
directory also holds the expected node batch, pod batch, sysctls, teardown
batch and one result per spec version. ``invalid_*`` cases hold the expected
error instead. ``make update-golden`` (pytest --update-golden) rewrites them.
No root needed: nothing is applied.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path

import pytest

from cni_render.cni import config as config_module
from cni_render.cni.errors import CniError
from cni_render.cni.request import parse_cni_args
from cni_render.cni.versions import SUPPORTED_VERSIONS, convert_result
from cni_render.datapath.preview import preview, request_for
from cni_render.datapath.render import Renderer
from resultshape import result_shape_problems

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").is_file())
VALID_CASES = [c for c in CASES if not c.startswith("invalid_")]
INVALID_CASES = [c for c in CASES if c.startswith("invalid_")]


def load_case(case: str, tmp_path: Path, version: str | None = None):
    spec = json.loads((GOLDEN / case / "case.json").read_text())
    document = dict(spec["config"], stateDir=str(tmp_path / "state"))
    if version:
        document["cniVersion"] = version
    config = config_module.load(json.dumps(document).encode())
    request = request_for(
        spec["container_id"], spec["netns"], spec["ifname"], parse_cni_args(spec.get("cni_args", ""))
    )
    renderer = Renderer(config.mode, override_dir=str(GOLDEN / case / "templates") if (GOLDEN / case / "templates").is_dir() else None)
    return spec, request, config, renderer


def compare(path: Path, actual: str, update: bool) -> None:
    if update:
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing; run make update-golden"
    expected = path.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), actual.splitlines(True), str(path), "rendered"
            )
        )
        pytest.fail(f"{path.parent.name}/{path.name} differs from what the templates render:\n{diff}")


@pytest.mark.parametrize("case", VALID_CASES)
def test_batches(case, tmp_path, update_golden):
    _, request, config, renderer = load_case(case, tmp_path)
    rendered = preview(request, config, renderer)
    directory = GOLDEN / case
    if rendered.add.setup_batch:
        compare(directory / "setup-host.ip", rendered.add.setup_batch, update_golden)
    compare(directory / "add-host.ip", rendered.add.host_batch, update_golden)
    compare(directory / "add-pod.ip", rendered.add.pod_batch, update_golden)
    sysctls = "".join(f"{key} = {value}\n" for key, value in rendered.add.host_sysctls)
    compare(directory / "add-host.sysctl", sysctls, update_golden)
    compare(directory / "del-host.ip", rendered.teardown.host_batch, update_golden)
    if config.ip_masq:
        compare(directory / "add-host.nft", rendered.add.host_nft, update_golden)
        compare(directory / "del-host.nft", rendered.teardown.host_nft, update_golden)
    else:  # without ipMasq neither ADD nor DEL runs nft at all (an empty batch is skipped)
        assert rendered.add.host_nft == "" and rendered.teardown.host_nft == ""


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
@pytest.mark.parametrize("case", VALID_CASES)
def test_results(case, version, tmp_path, update_golden):
    _, request, config, renderer = load_case(case, tmp_path, version)
    rendered = preview(request, config, renderer)
    assert rendered.add.result is not None
    result = convert_result(rendered.add.result, version)
    assert result_shape_problems(result, version) == []
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    compare(GOLDEN / case / f"result-{version}.json", text, update_golden)


@pytest.mark.parametrize("case", INVALID_CASES)
def test_invalid_cases(case, tmp_path, update_golden):
    with pytest.raises(CniError) as info:
        _, request, config, renderer = load_case(case, tmp_path)
        preview(request, config, renderer)
    error = info.value
    text = f"code {error.code}: {error.details}\n".replace(str(tmp_path), "<tmp>").replace(f"{GOLDEN}/", "")
    compare(GOLDEN / case / "error.txt", text, update_golden)


def test_every_case_has_a_description():
    for case in CASES:
        assert json.loads((GOLDEN / case / "case.json").read_text()).get("description"), case
