"""Rendering: the strict environment, template errors with file and line, and
proof that no untrusted value can inject a batch command."""

from __future__ import annotations

import json

import pytest

from cni_render.cni import config as config_module
from cni_render.cni.errors import CniError, TemplateError
from cni_render.cni.request import parse_cni_args, parse_request
from cni_render.datapath.environment import batch_token
from cni_render.datapath.preview import preview, request_for
from cni_render.datapath.render import Renderer, parse_sysctls

PAYLOADS = [
    "x\nlink del dev eth0",
    "x\rlink del dev eth0",
    "x # comment",
    "x;reboot",
    'x"y',
    "x'y",
    "x\\y",
    "x y",
    "x\ty",
    "x\x00y",
    "$(reboot)",
    "`reboot`",
    "",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_batch_token_refuses_anything_that_is_not_one_token(payload):
    with pytest.raises(ValueError):
        batch_token(payload)


@pytest.mark.parametrize("value", [None, True, False])
def test_batch_token_refuses_non_values(value):
    with pytest.raises(ValueError):
        batch_token(value)


@pytest.mark.parametrize(
    "value", ["10.0.0.1/24", "fd00::1/128", "0a:58:0a:00:00:01", "/var/run/netns/cni-1", "/proc/12/ns/net", 1500, "eth0.100", "cni-render/net/abc/eth0"]
)
def test_batch_token_accepts_plain_values(value):
    assert batch_token(value) == str(value)


def base_config(tmp_path, **changes):
    document = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "cni-render",
        "mtu": 1500,
        "stateDir": str(tmp_path / "state"),
        "capabilities": {"ips": True},
        "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]]},
    }
    document.update(changes)
    return document


ECHO_TEMPLATE = """\
link set dev {{ host.ifname }} alias {{ args.K8S_POD_NAME }}
link set dev {{ host.ifname }} alias {{ runtime_config.podname }}
link set dev {{ host.ifname }} alias {{ container_id }}
link set dev {{ host.ifname }} alias {{ ifname }}
link set dev {{ host.ifname }} alias {{ network }}
link set dev {{ host.ifname }} alias {{ netns }}
"""


def render_with(tmp_path, environ, document):
    """The full path an untrusted value takes: env/config parsing, then rendering."""
    overrides = tmp_path / "templates"
    overrides.mkdir(exist_ok=True)
    (overrides / "add-host.ip.j2").write_text(ECHO_TEMPLATE)
    request = parse_request(environ)
    config = config_module.load(json.dumps(document).encode())
    return preview(request, config, Renderer(override_dir=str(overrides)))


SAFE_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "abc",
    "CNI_NETNS": "/var/run/netns/pod",
    "CNI_IFNAME": "eth0",
    "CNI_ARGS": "K8S_POD_NAME=web-0",
}


def structure(batch: str) -> list[int]:
    return [len(line.split()) for line in batch.splitlines()]


def test_reference_render_is_one_line_per_command(tmp_path):
    rendered = render_with(tmp_path, SAFE_ENV, base_config(tmp_path, runtimeConfig={"podName": "web-0"}))
    assert structure(rendered.add.host_batch) == [6] * 6


SOURCES = ["CNI_ARGS", "runtimeConfig", "CNI_CONTAINERID", "CNI_IFNAME", "name", "CNI_NETNS"]


@pytest.mark.parametrize("payload", [p for p in PAYLOADS if p])
@pytest.mark.parametrize("source", SOURCES)
def test_no_untrusted_value_can_inject_a_command(tmp_path, source, payload):
    environ = dict(SAFE_ENV)
    document = base_config(tmp_path, runtimeConfig={"podName": "web-0"})
    if source == "CNI_ARGS":
        environ["CNI_ARGS"] = f"K8S_POD_NAME={payload.replace(';', '')}x;IgnoreUnknown=1"
    elif source == "runtimeConfig":
        document["runtimeConfig"] = {"podName": payload}
    elif source == "name":
        document["name"] = payload
    else:
        environ[source] = payload
    try:
        rendered = render_with(tmp_path, environ, document)
    except CniError as error:
        assert error.code in (2, 3, 4, 7), error
        return
    # Anything that got through must not have changed the batch's structure.
    assert structure(rendered.add.host_batch) == [6] * 6, rendered.add.host_batch


def test_unsafe_value_error_names_template_file_and_line(tmp_path):
    environ = dict(SAFE_ENV, CNI_ARGS="K8S_POD_NAME=web#0")
    with pytest.raises(TemplateError) as info:
        render_with(tmp_path, environ, base_config(tmp_path, runtimeConfig={"podName": "x"}))
    details = info.value.details
    assert f"{tmp_path}/templates/add-host.ip.j2:1" in details and "'#'" in details
    assert info.value.code == 7


@pytest.mark.parametrize(
    "source,expected",
    [
        ("link add {{ host.ifname }\n", "add-host.ip.j2:1: unexpected '}'"),
        ("\n\nlink {{ nonexistent }}\n", "add-host.ip.j2:3: undefined variable"),
        ("link {{ host.ifname | nosuchfilter }}\n", "add-host.ip.j2:1: No filter named 'nosuchfilter'"),
        ("{% for a in addresses %}\nlink {{ a.cidr | ipmath('x') }}\n{% endfor %}\n", "add-host.ip.j2:2"),
        ("link {{ host.__class__ }}\n", "add-host.ip.j2:1"),
    ],
)
def test_template_errors_name_file_and_line(tmp_path, source, expected):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "add-host.ip.j2").write_text(source)
    request = request_for("abc", "/var/run/netns/pod", "eth0")
    config = config_module.load(json.dumps(base_config(tmp_path)).encode())
    with pytest.raises(TemplateError) as info:
        preview(request, config, Renderer(override_dir=str(overrides)))
    assert expected in info.value.details, info.value.details
    assert info.value.code == 7


def test_result_template_output_is_checked(tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "result.json.j2").write_text('{"interfaces": [], "ips": [{"address": {{ addresses[0].cidr }}, "interface": 3}]}')
    request = request_for("abc", "/var/run/netns/pod", "eth0")
    config = config_module.load(json.dumps(base_config(tmp_path)).encode())
    with pytest.raises(TemplateError) as info:
        preview(request, config, Renderer(override_dir=str(overrides)))
    assert "result.json.j2" in info.value.details and "interface 3" in info.value.details


def test_result_values_are_written_as_json(tmp_path):
    request = request_for("abc", "/var/run/netns/pod", "eth0")
    document = base_config(tmp_path, dns={"nameservers": ["10.0.0.10"], "search": ['a"b']})
    config = config_module.load(json.dumps(document).encode())
    result = preview(request, config, Renderer()).add.result
    assert result["dns"]["search"] == ['a"b']


def test_sysctl_lines_are_parsed_strictly():
    assert parse_sysctls("# c\n\nnet.ipv4.ip_forward = 1\nnet/ipv6/conf/all/forwarding=1\n", "f") == (
        ("net.ipv4.ip_forward", "1"),
        ("net/ipv6/conf/all/forwarding", "1"),
    )
    with pytest.raises(TemplateError):
        parse_sysctls("net.ipv4.ip_forward = 1; reboot\n", "f")


def test_cni_args_parsing_feeds_templates():
    assert parse_cni_args("A=1;K8S_POD_NAME=x")["K8S_POD_NAME"] == "x"


def test_builtin_templates_are_package_data():
    from cni_render.cni.resources import templates_root

    names = {p.name for p in templates_root().joinpath("routed").iterdir()}
    assert {"add-host.ip.j2", "add-pod.ip.j2", "result.json.j2"} <= names
    assert "del-host.ip.j2" in {p.name for p in templates_root().joinpath("common").iterdir()}
    assert "site-packages" in str(templates_root().joinpath("routed").joinpath("add-host.ip.j2"))


def test_a_long_lived_renderer_sees_overrides_appear_change_and_go(tmp_path):
    import os
    import time

    overrides = tmp_path / "templates"
    overrides.mkdir()
    renderer = Renderer(override_dir=str(overrides))
    request = request_for("abc", "/var/run/netns/pod", "eth0")
    config = config_module.load(json.dumps(base_config(tmp_path)).encode())
    shown = preview(request, config, renderer)
    first, host = shown.add.host_batch, shown.plan.host.ifname
    (overrides / "add-host.ip.j2").write_text("link set dev {{ host.ifname }} up\n")
    assert preview(request, config, renderer).add.host_batch == f"link set dev {host} up\n"
    time.sleep(0.01)
    (overrides / "add-host.ip.j2").write_text("link set dev {{ host.ifname }} down\n")
    os.utime(overrides / "add-host.ip.j2", (time.time() + 5, time.time() + 5))
    assert preview(request, config, renderer).add.host_batch.endswith("down\n")
    (overrides / "add-host.ip.j2").unlink()
    assert preview(request, config, renderer).add.host_batch == first


def test_the_node_template_directory_is_the_default(tmp_path, monkeypatch):
    node_dir = tmp_path / "etc-templates"
    monkeypatch.setattr(config_module, "NODE_TEMPLATE_DIR", str(node_dir))
    document = json.dumps(base_config(tmp_path)).encode()
    assert config_module.load(document).template_dir is None
    node_dir.mkdir()
    assert config_module.load(document).template_dir == str(node_dir)
    explicit = json.dumps(base_config(tmp_path, templateDir="/somewhere")).encode()
    assert config_module.load(explicit).template_dir == "/somewhere"
