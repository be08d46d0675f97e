"""Config validation: every key of the schema, good and bad, with JSON paths."""

import json
import os

import pytest

from cni_render.cni import config as config_module
from cni_render.cni import schema
from cni_render.cni.errors import (
    CniError,
    DecodeFailure,
    IncompatibleVersion,
    InvalidConfig,
    UnsupportedField,
)


def base(**changes):
    config = {
        "cniVersion": "1.0.0",
        "name": "net1",
        "type": "cni-render",
        "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]]},
    }
    config.update(changes)
    return config


def errors(document):
    return schema.schema_errors(schema.static_part(document), schema.PLUGIN_SCHEMA)


def first_error(document):
    found = errors(document)
    assert found, "expected a schema error"
    return found[0]


GOOD = [
    base(),
    base(mtu=1400),
    base(mtu=9000, ipMasq=True),
    base(dns={"nameservers": ["10.96.0.10", "fd00::10"], "domain": "cluster.local", "search": ["a"], "options": ["ndots:5"]}),
    base(stateDir="/run/x", logFile="/var/log/cni-render.log", logLevel="debug"),
    base(capabilities={"ips": True, "mac": True, "portMappings": False}),
    base(runtimeConfig={"ips": ["10.1.0.9"]}, args={"cni": {"ips": ["10.1.0.9"]}}, prevResult={"ips": []}),
    base(**{"cni.dev/valid-attachments": [], "cni.dev/attachments": []}),
    base(cniVersions=["1.0.0", "1.1.0"], disableCheck=True, disableGC="false"),
    base(ipam={"type": "host-local", "anything": {"goes": 1}}),
    base(ipam={"type": "cni-render-ipam", "subnet": "10.2.0.0/16", "rangeStart": "10.2.1.0", "rangeEnd": "10.2.1.255", "gateway": "10.2.0.1"}),
    base(ipam={"type": "cni-render-ipam", "dataDir": "/run/ipam", "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "10.1.0.10", "rangeEnd": "10.1.0.20", "gateway": "10.1.0.1"}], [{"subnet": "fd00::/64"}]], "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::1", "mtu": 1400, "advmss": 1300, "priority": 10, "table": 100, "scope": 0}]}),
]


@pytest.mark.parametrize("document", GOOD, ids=range(len(GOOD)))
def test_good_configs(document):
    assert errors(document) == []


BAD = [
    (base(name="bad name"), "$.name"),
    (base(name=""), "$.name"),
    (base(type="ptp"), "$.type"),
    (base(mtu=10), "$.mtu"),
    (base(mtu="1500"), "$.mtu"),
    (base(ipMasq="yes"), "$.ipMasq"),
    (base(dns={"nameservers": ["not-an-ip"]}), "$.dns.nameservers[0]"),
    (base(dns={"bogus": 1}), "$.dns"),
    (base(stateDir="relative"), "$.stateDir"),
    (base(logLevel="loud"), "$.logLevel"),
    (base(capabilities={"ips": "yes"}), "$.capabilities.ips"),
    ({k: v for k, v in base().items() if k != "ipam"}, "$"),
    (base(ipam={"ranges": []}), "$.ipam"),
    (base(ipam={"type": "host/local"}), "$.ipam.type"),
    (base(ipam={"type": "cni-render-ipam"}), "$.ipam"),
    (base(ipam={"type": "cni-render-ipam", "ranges": []}), "$.ipam.ranges"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.1/24"}]]}), "$.ipam.ranges[0][0].subnet"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "x"}]]}), "$.ipam.ranges[0][0].rangeStart"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24", "gw": "10.1.0.1"}]]}), "$.ipam.ranges[0][0]"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]], "subnet": "10.1.0.0/24"}), "$.ipam"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"gw": "10.1.0.1"}]}), "$.ipam.routes[0]"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0", "scope": 7}]}), "$.ipam.routes[0].scope"),
    (base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]], "dataDir": "rel"}), "$.ipam.dataDir"),
]


@pytest.mark.parametrize("document,path", BAD, ids=[p for _, p in BAD])
def test_bad_configs_name_the_json_path(document, path):
    error = first_error(document)
    assert isinstance(error, (InvalidConfig, UnsupportedField)) and error.code in (2, 7)
    assert str(error.details).startswith(path), error.details


def test_unknown_key_is_code_2_with_key_and_value():
    error = first_error(base(mut=1500))
    assert isinstance(error, UnsupportedField) and error.code == 2
    assert "'mut'" in error.details and "1500" in error.details


def test_format_errors_explain_why():
    error = first_error(base(ipam={"type": "cni-render-ipam", "ranges": [[{"subnet": "10.1.0.1/24"}]]}))
    assert "host bits set" in error.details


def load(document, tmp_path):
    document = dict(document, stateDir=str(tmp_path))
    return config_module.load(json.dumps(document).encode())


def test_load_decodes_and_checks_the_version_first(tmp_path):
    with pytest.raises(DecodeFailure) as info:
        config_module.load(b"{not json")
    assert info.value.code == 6
    with pytest.raises(IncompatibleVersion):
        load(base(cniVersion="9.9.9"), tmp_path)


def test_missing_cni_version_means_0_1_0(tmp_path):
    document = base()
    del document["cniVersion"]
    assert errors(document) == []
    assert load(document, tmp_path).cni_version == "0.1.0"


def test_runtime_config_keys_are_matched_case_insensitively(tmp_path):
    config = load(base(runtimeConfig={"IPs": ["10.1.0.9"], "PortMappings": [{"HostPort": 80}]}), tmp_path)
    assert config.runtime_config == {"ips": ["10.1.0.9"], "portmappings": [{"hostport": 80}]}


def test_valid_configs_are_cached_by_content(tmp_path):
    load(base(), tmp_path)
    markers = os.listdir(tmp_path / "cache" / "validated")
    assert len(markers) == 1
    # per-call keys do not change the cache key
    load(base(runtimeConfig={"ips": ["10.1.0.2"]}, prevResult={"ips": []}), tmp_path)
    assert os.listdir(tmp_path / "cache" / "validated") == markers
    load(base(mtu=1400), tmp_path)
    assert len(os.listdir(tmp_path / "cache" / "validated")) == 2


def test_invalid_configs_are_not_cached(tmp_path):
    with pytest.raises(CniError):
        load(base(mtu=1), tmp_path)
    assert not (tmp_path / "cache" / "validated").exists() or not os.listdir(tmp_path / "cache" / "validated")


def test_every_schema_property_has_a_description():
    from cni_render.cni.resources import read_schema

    for name in (schema.PLUGIN_SCHEMA, schema.IPAM_SCHEMA):
        document = json.loads(read_schema(name))
        for key, spec in document["properties"].items():
            assert spec.get("description"), f"{name}: {key} has no description"


# --- one reading of the input (issue 9, item 10) ------------------------------

TRAILING_NEWLINE = [
    (base(name="net1\n"), "$.name"),
    (base(ipam={"type": "host-local\n"}), "$.ipam.type"),
    (base(mode="bridge", bridge="br0\n"), "$.bridge"),
    (base(stateDir="/run/x\n"), "$.stateDir"),
    (base(templateDir="/etc/t\n"), "$.templateDir"),
    (base(logFile="/var/log/x\n"), "$.logFile"),
    (base(ipam={"type": "cni-render-ipam", "dataDir": "/run/ipam\n", "ranges": [[{"subnet": "10.1.0.0/24"}]]}), "$.ipam.dataDir"),
]
DOT_NAMES = [
    (base(name="."), "$.name"),
    (base(name=".."), "$.name"),
    (base(mode="bridge", bridge="."), "$.bridge"),
    (base(mode="bridge", bridge=".."), "$.bridge"),
    (base(ipam={"type": ".."}), "$.ipam.type"),
]


@pytest.mark.parametrize("document,path", TRAILING_NEWLINE + DOT_NAMES, ids=lambda v: repr(v) if isinstance(v, str) else "")
def test_patterns_match_the_whole_value(document, path):
    error = first_error(document)
    assert isinstance(error, InvalidConfig) and path in error.details, error.details


def test_dotted_names_that_are_not_dot_or_dotdot_stay_valid():
    assert errors(base(name="a.b", mode="bridge", bridge="br.0")) == []
    assert errors(base(mode="bridge", bridge="...")) == []


def _patterns(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern":
                yield value
            if key == "patternProperties":
                yield from value
            yield from _patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from _patterns(item)


def test_every_end_anchor_refuses_a_trailing_newline():
    """Python's ``$`` (jsonschema uses re.search) also matches before a
    final newline; ECMA's does not. ``$(?!\\n)`` means the same in both."""
    for name in (schema.PLUGIN_SCHEMA, schema.IPAM_SCHEMA):
        for pattern in _patterns(json.loads(schema.read_schema(name))):
            ends = [i for i, c in enumerate(pattern) if c == "$" and (i == 0 or pattern[i - 1] != "\\")]
            for index in ends:
                assert pattern[index:].startswith("$(?!\\n)"), f"{name}: {pattern!r}"
