"""The operator's commands: render, validate, templates export, status, --help."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from throwaway import PLUGIN, host_interface

ROOT = Path(__file__).resolve().parents[2]
CONFLIST = str(ROOT / "deploy" / "10-cni-render.conflist")


def cli(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    proc = subprocess.run([PLUGIN, *argv], capture_output=True, text=True, env=env, timeout=120, **kwargs)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def write_config(tmp_path: Path, **changes) -> str:
    config = {
        "cniVersion": "1.0.0",
        "name": "clinet",
        "type": "cni-render",
        "mtu": 1500,
        "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd00:77::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    }
    config.update(changes)
    path = tmp_path / "net.conf"
    path.write_text(json.dumps(config))
    return str(path)


@pytest.mark.parametrize("argv", [[], ["render"], ["validate"], ["templates"], ["templates", "export"], ["status"], ["daemon"], ["install"]])
def test_help_for_every_command(argv):
    proc = cli(*argv, "--help")
    assert "usage: cni-render" in proc.stdout


def test_no_command_prints_help_and_fails():
    proc = cli(check=False)
    assert proc.returncode == 2 and "render" in proc.stdout and "validate" in proc.stdout


def test_render_add_shows_every_batch_and_the_result(tmp_path):
    out = cli("render", "--config", CONFLIST, "--ip", "10.244.0.9", "--ip", "fd00:10:244::9", "--container-id", "web-0").stdout
    assert "nothing is applied" in out
    assert "# node: ip -batch -" in out and "# pod: ip -batch -, inside /var/run/netns/preview" in out
    assert "route add 10.244.0.9/32 dev cr" in out and "addr add fd00:10:244::9/64 dev eth0 noprefixroute nodad" in out
    assert "# node: nft -f -" in out and "add element ip cni-render masq-sources { 10.244.0.9 }" in out
    assert '"cniVersion": "1.0.0"' in out and "templates/routed/add-host.ip.j2" in out


def test_render_touches_nothing(tmp_path):
    state = tmp_path / "state"
    config = write_config(tmp_path, stateDir=str(state), ipam={"type": "cni-render-ipam", "dataDir": str(tmp_path / "ipam"), "subnet": "10.77.0.0/24"})
    cli("render", "--config", config)
    cli("render", "--config", config, "--command", "DEL")
    assert not state.exists() and not (tmp_path / "ipam").exists()


def test_render_del_check_and_json(tmp_path):
    config = write_config(tmp_path, mode="bridge")
    delete = cli("render", "--config", config, "--command", "DEL").stdout
    assert "link del dev cr" in delete and "release 10.77.0.2/24, fd00:77::2/64" in delete
    check = cli("render", "--config", config, "--command", "CHECK").stdout
    assert "node: address 10.77.0.1/24 on cni-render0" in check and "is a port of cni-render0" in check
    document = json.loads(cli("render", "--config", config, "--json").stdout)
    assert document["setup"].startswith("link add name cni-render0 type bridge")
    assert document["result"]["ips"][0]["interface"] == 2


def test_render_refuses_an_invalid_config(tmp_path):
    proc = cli("render", "--config", write_config(tmp_path, mtu="big"), check=False)
    assert proc.returncode == 1 and "$.mtu" in proc.stderr and "code 7" in proc.stderr


def test_validate_reports_every_schema_error_with_its_path(tmp_path):
    proc = cli("validate", write_config(tmp_path, mtu=1, logLevel="loud", ipMasq="x"), check=False)
    assert proc.returncode == 1
    for path in ("$.mtu", "$.logLevel", "$.ipMasq"):
        assert f"FAIL  schema: {path}" in proc.stdout


def test_validate_compiles_and_renders_every_version(tmp_path):
    out = cli("validate", write_config(tmp_path)).stdout
    assert "ok    templates compile: " in out
    for version in ("0.1.0", "0.4.0", "1.1.0"):
        assert f"ok    render for cniVersion {version}" in out
    assert out.rstrip().endswith("all checks passed")


def test_validate_names_a_broken_template(tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "add-pod.ip.j2").write_text("link set dev {{ pod.ifname }} up\n{% if %}\n")
    proc = cli("validate", write_config(tmp_path), "--templates", str(overrides), check=False)
    assert proc.returncode == 1
    assert f"FAIL  templates compile: {overrides}/add-pod.ip.j2:2" in proc.stdout


def test_templates_export(tmp_path):
    out = cli("templates", "export", str(tmp_path / "routed")).stdout
    names = sorted(p.name for p in (tmp_path / "routed").iterdir())
    assert "add-host.ip.j2" in names and "del-host.ip.j2" in names and "pod-routes.ip.j2" in names
    assert out.count("wrote ") == len(names)
    again = cli("templates", "export", str(tmp_path / "routed"), check=False)
    assert again.returncode == 1 and "--force" in again.stdout
    cli("templates", "export", str(tmp_path / "routed"), "--force")
    cli("templates", "export", str(tmp_path / "all"), "--set", "all")
    assert (tmp_path / "all" / "bridge" / "setup-host.ip.j2").exists()
    assert (tmp_path / "all" / "routed" / "add-pod.ip.j2").exists()
    # an exported set, used as an override directory, renders exactly like the built-in one
    config = write_config(tmp_path)
    assert cli("render", "--config", config, "--templates", str(tmp_path / "routed"), "--json").stdout.replace(
        str(tmp_path / "routed"), "X"
    ).count("link add") == cli("render", "--config", config, "--json").stdout.count("link add")


def test_validate_apply_and_status_on_a_node(node, tmp_path):
    """validate --apply runs a sample pod in its own throwaway namespaces; status
    lists what the plugin allocated on a node (run inside that node)."""
    config_path = tmp_path / "node.conf"
    config = node.config()
    config_path.write_text(json.dumps(config))
    out = cli("validate", str(config_path), "--apply").stdout
    for step in ("apply: ADD", "apply: node reaches the pod", "apply: CHECK", "apply: DEL", "apply: nothing left"):
        assert f"ok    {step}" in out, out
    pods = [node.add_pod(), node.add_pod()]
    results = [node.cni("ADD", config, pod).ok().json for pod in pods]
    node.exec(["ip", "link", "del", host_interface(results[1])["name"]])
    status = json.loads(node.exec([PLUGIN, "status", "--config", str(config_path), "--json"]).stdout)
    rows = {row["containerID"]: row for row in status["attachments"]}
    assert rows[pods[0].container_id]["hostInterfacePresent"] is True
    assert rows[pods[1].container_id]["hostInterfacePresent"] is False
    assert rows[pods[0].container_id]["addresses"] == ["10.244.1.2"]
    table = node.exec([PLUGIN, "status", "--config", str(config_path)]).stdout
    assert "2 attachment(s)" in table and "(missing)" in table


def test_validate_apply_reports_a_failing_template_and_leaves_nothing(node, tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "add-pod.ip.j2").write_text("route add 10.99.0.0/16 via 10.98.0.1 dev {{ pod.ifname }}\n")
    config_path = tmp_path / "node.conf"
    config_path.write_text(json.dumps(node.config()))
    proc = cli("validate", str(config_path), "--templates", str(overrides), "--apply", check=False)
    assert proc.returncode == 1
    assert "FAIL  apply: ADD: code 100" in proc.stdout and f"{overrides}/add-pod.ip.j2" in proc.stdout
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith("cnir-validate-")]
