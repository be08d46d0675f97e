"""What a rendered batch may hold (cni_render/datapath/checks.py): every
built-in template and worked example passes; a command, a file outside
/proc/sys/net or a foreign nft table is refused naming file, line and word,
however it is spelt. ``ip`` is read the way ip reads a batch (checked against
the real binary in the module's comments: ``n`` is neighbour, ``net`` netns)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cni_render.cni import config as config_module
from cni_render.cni.errors import TemplateError
from cni_render.datapath import checks
from cni_render.datapath.checks import POD_TABLES, check_batch, check_ip_batch, check_nft, check_sysctls
from cni_render.datapath.preview import preview, request_for
from cni_render.datapath.render import Renderer
from cni_render.datapath.template_sets import SETS
from cni_render.datapath.validate import validate
from cni_render.node.masquerade import TABLE, render_masquerade
from cni_render.node.routes import Route, RoutePlan, render_routes
from cni_render.node.templates import AGENT_TABLES, MASQUERADE, render_node_template

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
GOLDEN = ROOT / "tests" / "golden"
VALID_CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "case.json").is_file() and not p.name.startswith("invalid_"))


def refusal(check, text: str, *args) -> str:
    with pytest.raises(TemplateError) as info:
        check(text, "the-file.j2", *args)
    assert info.value.code == 7
    return info.value.details


def assert_refused(check, text: str, line: int, word: str, *args) -> str:
    details = refusal(check, text, *args)
    assert details.startswith(f"the-file.j2: rendered line {line} "), details
    assert f"{word!r} is refused" in details, details
    return details


# --- what passes ---------------------------------------------------------------------------


def every_batch(rendered) -> list[tuple[str, str]]:
    return [
        ("setup-host.ip.j2", rendered.add.setup_batch),
        ("add-host.ip.j2", rendered.add.host_batch),
        ("add-pod.ip.j2", rendered.add.pod_batch),
        ("add-host.nft.j2", rendered.add.host_nft),
        ("del-host.ip.j2", rendered.teardown.host_batch),
        ("del-pod.ip.j2", rendered.teardown.pod_batch),
        ("del-host.nft.j2", rendered.teardown.host_nft),
    ]


@pytest.mark.parametrize("case", VALID_CASES)
def test_every_built_in_template_passes_for_every_golden_case(case, tmp_path):
    spec = json.loads((GOLDEN / case / "case.json").read_text())
    for masquerade in (False, True):
        document = dict(spec["config"], stateDir=str(tmp_path), ipMasq=masquerade)
        config = config_module.load(json.dumps(document).encode(), cache=False)
        rendered = preview(request_for(spec["container_id"], spec["netns"], spec["ifname"]), config, Renderer(config.mode))
        for name, text in every_batch(rendered):  # rendering checked them; check again, explicitly
            check_batch(name, text, name)
        assert rendered.add.host_batch and (rendered.add.host_nft or not masquerade)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_the_documented_examples_pass(example, tmp_path):
    document = json.loads((EXAMPLES / "example.conflist").read_text())["plugins"][0]
    document = dict(document, name="example", cniVersion="1.0.0", stateDir=str(tmp_path))
    assert validate(document, str(EXAMPLES / example)).passed


def test_the_agent_templates_pass_and_stay_in_the_agent_table():
    assert TABLE in AGENT_TABLES and not AGENT_TABLES & POD_TABLES
    for enabled in (True, False):
        batch = render_masquerade(enabled, {4: ["10.244.0.0/16"], 6: ["fd00:10:244::/56"]})
        check_nft(batch, "masquerade.nft.j2", AGENT_TABLES)
    plan = RoutePlan(add=[Route("10.244.2.0/24", "192.168.1.3", "node-b")], delete=[Route("10.244.9.0/24", "192.168.1.9")])
    check_ip_batch(render_routes(plan), "routes.ip.j2")
    # the agent may not touch the pods' table, nor the pods the agent's
    assert_refused(check_nft, "add table ip cni-render\n", 1, "cni-render", AGENT_TABLES)
    assert_refused(check_nft, f"delete table inet {TABLE}\n", 1, TABLE)


def test_the_agent_checks_what_its_templates_render():
    with pytest.raises(TemplateError) as info:
        render_node_template(MASQUERADE, {"table": "filter", "enabled": False, "families": []})
    assert info.value.details.startswith("agent/masquerade.nft.j2: rendered line ")
    assert "'filter' is refused" in info.value.details


def test_comments_blank_lines_tabs_and_every_allowed_verb_pass():
    check_ip_batch(
        "# a comment\n\n   \n"
        "link add name x type veth peer name y netns /var/run/netns/p\n"
        "l\tset dev x up   # trailing comment\n"
        "a add 10.0.0.1/32 dev x\naddr replace 10.0.0.1/32 dev x\naddress del 10.0.0.1/32 dev x\n"
        "r add 10.0.0.0/24 via 10.0.0.1\nro replace default via 10.0.0.1\nroute append 10.1.0.0/16 dev x\n"
        "route del 10.1.0.0/16 proto 245\nroute get 10.0.0.1\nru add from 10.0.0.0/24 table 100\n"
        "rule del pref 100\nn add 10.0.0.9 lladdr 02:00:00:00:00:01 dev x\nneigh replace 10.0.0.9 dev x\n"
        "neighbour flush dev x\nlink\nroute\nlink delete dev x\nlink set dev x netns 1\n",
        "f",
    )
    check_sysctls("# comment\n\nnet.ipv4.ip_forward = 1\nnet/ipv4/conf/eth0.100/rp_filter = 2\n", "f")


# --- what is refused, and how it is named ---------------------------------------------------


@pytest.mark.parametrize(
    "text,line,word",
    [
        ("netns exec pod /bin/sh -c id\n", 1, "netns"),  # runs a command as root
        ("link set dev eth0 up\n\nnetns add evil\n", 3, "netns"),
        ("net exec pod id\n", 1, "net"),  # ip reads net as netns
        ("netn exec pod id\n", 1, "netn"),
        ("n exec pod id\n", 1, "exec"),  # ip reads n as neighbour: no such verb
        ("vrf exec blue id\n", 1, "vrf"),
        ("monitor\n", 1, "monitor"),
        ("NETNS exec pod id\n", 1, "NETNS"),  # ip knows no upper case; neither do we
        ("Link set dev eth0 up\n", 1, "Link"),
        ('"netns" exec pod id\n', 1, "netns"),  # a quoted word is the word
        ("'net' exec pod id\n", 1, "net"),
        ("\t  netns\texec pod id\n", 1, "netns"),
        ("ne\\\ntns exec pod id\n", 1, "netns"),  # the backslash joins the lines
        ("link set dev eth0 up\nroute add 10.0.0.0/8 dev eth0 \\\nexec x\n", 2, "exec"),
        ("-n pod link set dev eth0 up\n", 1, "-n"),  # options switch namespaces
        ("-netns pod link set dev eth0 up\n", 1, "-netns"),
        ("--netns pod link set dev eth0 up\n", 1, "--netns"),
        ("link set dev eth0 -netns pod\n", 1, "-netns"),
        ("link set dev eth0 xdp obj prog.o\n", 1, "xdp"),  # loads code
        ("link set dev eth0 xdpgeneric pinned /sys/fs/bpf/p\n", 1, "xdpgeneric"),
        ("route add 10.9.0.0/16 encap bpf in obj prog.o dev eth0\n", 1, "bpf"),
        ("route add fc00::1/128 encap seg6local action End.BPF endx obj p.o dev eth0\n", 1, "End.BPF"),
        ("link EXEC\n", 1, "EXEC"),
        ("route restore\n", 1, "restore"),
        ("addr save\n", 1, "save"),
        ("link help\n", 1, "help"),
        ("tuntap add dev t0 mode tap\n", 1, "tuntap"),
        ("xfrm state flush\n", 1, "xfrm"),
        ("addrl add prefix ::/0 label 1\n", 1, "addrl"),  # addrlabel, not address
    ],
)
def test_forbidden_ip_lines_are_refused_naming_line_and_word(text, line, word):
    assert_refused(check_ip_batch, text, line, word)


def test_a_comment_ends_the_line_and_its_continuation_as_in_ip():
    # '#' cuts the line before the backslash: the next line is a command of its own
    assert_refused(check_ip_batch, "link set dev eth0 up # \\\nnetns exec pod id\n", 2, "netns")
    # and what follows '#' is never read: a comment may say anything
    check_ip_batch("link set dev eth0 up # netns exec pod id\n", "f")


def test_the_refusal_names_the_allow_list():
    details = refusal(check_ip_batch, "netns exec pod id\n")
    assert "runs commands" in details and "link" in details and "route" in details
    assert "'netns exec pod id'" in details


@pytest.mark.parametrize(
    "word,obj",
    [("a", "address"), ("addr", "address"), ("addrl", "addrlabel"), ("l", "link"), ("n", "neighbor"),
     ("ne", "neighbor"), ("net", "netns"), ("r", "route"), ("ru", "rule"), ("m", "maddress"),
     ("t", "tunnel"), ("v", "vrf"), ("", None), ("links", None)],
)  # fmt: skip
def test_objects_resolve_by_prefix_in_ips_order(word, obj):
    assert checks.ip_object(word) == obj


@pytest.mark.parametrize(
    "text,line,word",
    [
        ("kernel.core_pattern = |/tmp/x\n", 1, "kernel"),
        ("net.ipv4.ip_forward = 1\nkernel/core_pattern = 1\n", 2, "kernel"),
        ("net/ipv4/../../kernel/core_pattern = 1\n", 1, ".."),
        ("net/ipv4/conf/../../../../etc/passwd = 1\n", 1, ".."),
        ("/proc/sys/net/ipv4/ip_forward = 1\n", 1, "/proc/sys/net/ipv4/ip_forward"),
        ("net//ipv4/ip_forward = 1\n", 1, "//"),
        ("net/./ipv4/ip_forward = 1\n", 1, "."),
        ("net..ipv4.ip_forward = 1\n", 1, ".."),
        ("net.ipv4.ip_forward. = 1\n", 1, ".."),
        ("NET.ipv4.ip_forward = 1\n", 1, "NET"),
        ("vm/overcommit_memory = 1\n", 1, "vm"),
        ("net.core.bpf_jit_harden = 0\n", 1, "bpf_jit_harden"),
        ("net/core/bpf_jit_enable = 1\n", 1, "bpf_jit_enable"),
    ],
)
def test_sysctl_keys_outside_net_are_refused(text, line, word):
    assert_refused(check_sysctls, text, line, word)


@pytest.mark.parametrize(
    "text,line,word",
    [
        ("add table ip cni-render\nflush ruleset\n", 2, "ruleset"),
        ("FLUSH RULESET\n", 1, "RULESET"),
        ('include "/etc/nftables.conf"\n', 1, "include"),
        ("define t = filter\nadd rule ip $t input drop\n", 1, "define"),
        ("add rule ip $t input drop\n", 1, "$t"),
        ("add rule inet filter input accept\n", 1, "filter"),
        ("add table ip cni-render; delete table ip nat\n", 1, "nat"),
        ("table ip cni-render {\n  chain c { type nat hook postrouting priority 0; }\n}\ndelete table inet filter\n", 4, "filter"),
        ("table ip cni-render { } delete table inet filter\n", 1, "filter"),
        ("delete table ip handle 7\n", 1, "handle"),
        ("add table ip cni-render-node\n", 1, "cni-render-node"),
        ("list ruleset\n", 1, "ruleset"),
        ("monitor\n", 1, "monitor"),
        ("add chain ip cni-render c\nreset counters\n", 2, "reset"),
        ("add ct helper ip cni-render h\n", 1, "ct"),
        ("add table ip cni-render \\\nadd table ip filter\n", 1, "\\"),
    ],
)
def test_nft_outside_the_projects_tables_is_refused(text, line, word):
    assert_refused(check_nft, text, line, word)


def test_nft_comments_quotes_and_blocks_in_the_projects_table_pass():
    check_nft(
        '# add table ip filter\nadd table ip "cni-render"  # flush ruleset\n'
        "add set ip cni-render s { type ipv4_addr; flags interval; }\n"
        'add rule ip cni-render c ip saddr @s counter comment "not # a comment" masquerade\n'
        "add element cni-render s { 10.0.0.0/8 }; delete element ip cni-render s { 10.0.0.0/8 }\n"
        "table ip cni-render {\n\tchain c {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n",
        "f",
    )


# --- where the checks run ------------------------------------------------------------------


def routed_config(tmp_path, **extra):
    document = {"cniVersion": "1.0.0", "name": "net", "type": "cni-render", "mtu": 1500,
                "stateDir": str(tmp_path / "state"),
                "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": "10.66.0.0/24"}]]}, **extra}  # fmt: skip
    return document


@pytest.mark.parametrize("template_set", SETS)
def test_the_renderer_refuses_an_override_naming_its_file(template_set, tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "del-host.ip.j2").write_text('{% include "builtin/del-host.ip.j2" %}\nnetns exec x /bin/sh\n')
    config = config_module.load(json.dumps(routed_config(tmp_path, mode=template_set)).encode(), cache=False)
    with pytest.raises(TemplateError) as info:
        preview(request_for("c1", "/var/run/netns/c1", "eth0"), config, Renderer(template_set, str(overrides)))
    assert info.value.details.startswith(f"{overrides}/del-host.ip.j2: rendered line 2 'netns exec x /bin/sh'")


def test_validate_checks_the_nft_templates_even_without_ipmasq(tmp_path):
    overrides = tmp_path / "templates"
    overrides.mkdir()
    (overrides / "add-host.nft.j2").write_text("flush ruleset\n")
    validation = validate(routed_config(tmp_path), str(overrides))
    assert not validation.passed
    assert any("add-host.nft.j2: rendered line 1 'flush ruleset'" in str(p) for p in validation.problems)
