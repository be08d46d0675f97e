"""What a rendered batch may contain: exactly what a datapath needs.

Whoever edits the templates (an operator's ``templateDir``, the node agent's
``cni-render-templates`` ConfigMap) writes text that runs as root on the
node. The per-value rule (:func:`cni_render.datapath.environment.batch_token`)
keeps untrusted values inside their token; these checks bound the template
text itself, after rendering and before anything runs:

* ``ip -batch``: every line names one of the objects ``link``, ``address``,
  ``route``, ``rule``, ``neighbour`` and one of the verbs below, read the
  way ``ip`` reads a batch (``#`` comments, backslash continuation, quotes,
  blanks and tabs; an object or verb may be any prefix ``ip`` resolves to
  it). ``netns`` and every other object are refused (``ip netns exec`` and
  ``ip vrf exec`` run commands), so are ``exec``, the options that load BPF
  code (``xdp``, ``xdpgeneric``, ``xdpdrv``, ``xdpoffload``, ``bpf``,
  ``End.BPF``) and anything
  spelled like an option (``-n``, ``-netns``: a batch line takes none);
* sysctls: keys under ``net`` only (but ``net/core/bpf_*``), no empty, ``.``
  or ``..`` component, no absolute path;
* ``nft -f``: only statements that add to, change or delete the project's
  own tables; never ``include``, ``define``, ``flush ruleset`` or another
  table.

A refusal is a :class:`TemplateError` (code 7) naming the template file, the
rendered line and the forbidden word.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Collection, Iterator

from cni_render.cni.errors import TemplateError

# ip's object table, in ip's own order (ip/ip.c, iproute2 6.x): an object word
# is the first entry it is a prefix of ("n" is neighbor, "net" is netns).
IP_OBJECTS = (
    "address", "addrlabel", "maddress", "route", "rule", "neighbor", "neighbour", "ntable", "ntbl",
    "link", "l2tp", "fou", "ila", "macsec", "tunnel", "tunl", "tuntap", "tap", "token", "tcpmetrics",
    "tcp_metrics", "monitor", "xfrm", "mroute", "mrule", "netns", "netconf", "vrf", "sr", "nexthop",
    "mptcp", "ioam", "help", "stats",
)  # fmt: skip

# Each allowed object's verbs in the order its parser tries them; a verb word
# is the first group it is a prefix of ("chg" is matched exactly). None: ip
# has the verb, a batch may not use it.
_SHOW = ("show", "list", "lst")
IP_VERBS: dict[str, tuple[tuple[tuple[str, ...], str | None], ...]] = {
    "address": (
        (("add",), "add"), (("change", "chg"), "change"), (("replace",), "replace"),
        (("delete",), "delete"), (("list", "show", "lst"), "show"), (("flush",), "flush"),
        (("save",), None), (("showdump",), None), (("restore",), None), (("help",), None),
    ),
    "route": (
        (("add",), "add"), (("change", "chg"), "change"), (("replace",), "replace"),
        (("prepend",), "prepend"), (("append",), "append"), (("test",), None), (("delete",), "delete"),
        (("list", "show", "lst"), "show"), (("get",), "get"), (("flush",), "flush"), (("save",), None),
        (("restore",), None), (("showdump",), None), (("help",), None),
    ),
    "rule": (
        (("list", "lst", "show"), "show"), (("save",), None), (("restore",), None), (("add",), "add"),
        (("delete",), "delete"), (("flush",), "flush"), (("help",), None),
    ),
    "neighbor": (
        (("add",), "add"), (("change", "chg"), "change"), (("replace",), "replace"),
        (("delete",), "delete"), (("get",), "get"), (("show", "lst", "list"), "show"),
        (("flush",), "flush"), (("help",), None),
    ),
    "link": (
        (("add",), "add"), (("set", "change"), "set"), (("replace",), "replace"), (("delete",), "delete"),
        (_SHOW, "show"), (("xstats",), None), (("afstats",), None), (("property",), None), (("help",), None),
    ),
}  # fmt: skip
IP_VERBS["neighbour"] = IP_VERBS["neighbor"]
ALLOWED_IP_OBJECTS = ("link", "address", "route", "rule", "neighbour")  # as a refusal names them
REFUSED_IP_OBJECTS = {
    "netns": "ip netns runs commands and switches namespaces",
    "vrf": "ip vrf runs commands",
    "monitor": "ip monitor never ends",
}

# Words no batch line needs and that run commands or load code.
# (ip's own spellings; any case is refused.) Without "xdp*" or "bpf" (the
# encap type) or "End.BPF" (a seg6local action), ip never reads a BPF object.
REFUSED_IP_WORDS = {
    "exec": "runs a command",
    "xdp": "attaches an XDP program",
    "xdpgeneric": "attaches an XDP program",
    "xdpdrv": "attaches an XDP program",
    "xdpoffload": "attaches an XDP program",
    "bpf": "loads a BPF program",
    "end.bpf": "loads a BPF program",
}
_OPTION = re.compile(r"-{1,2}[A-Za-z]")
_IP_WHITESPACE = " \t\r\n"
_IP_WORD = re.compile(r"[^ \t\r\n]+")

# The project's nft tables: the pod templates' (templates/common/*.nft.j2)
# and the node agent's (templates/agent/masquerade.nft.j2).
POD_TABLES = frozenset({"cni-render"})
NFT_FAMILIES = frozenset({"ip", "ip6", "inet", "arp", "bridge", "netdev"})
NFT_COMMANDS = frozenset({"add", "create", "insert", "replace", "delete", "destroy", "flush"})
NFT_OBJECTS = frozenset({"table", "chain", "rule", "set", "map", "element", "flowtable", "counter", "quota", "limit"})
REFUSED_NFT_WORDS = {
    "include": "reads another file",
    "define": "defines a variable (a table name could hide in it)",
    "redefine": "defines a variable (a table name could hide in it)",
    "undefine": "changes a variable",
    "ruleset": "reaches every table of the node",
}

SYSCTL_ROOT = "net"


@dataclass(frozen=True)
class BatchLine:
    """One command of a batch: the rendered line it starts on, its text and words."""

    number: int
    text: str
    words: tuple[str, ...]


def refuse(filename: str, line: BatchLine, word: str, reason: str) -> TemplateError:
    return TemplateError(f"{filename}: rendered line {line.number} {line.text!r}: {word!r} is refused: {reason}")


# --- ip -batch ---------------------------------------------------------------------------------


def ip_batch_lines(text: str) -> Iterator[BatchLine]:
    """The commands of an ``ip -batch`` file, read the way ip reads them:
    a line ends at NUL and at ``#``, a backslash right before the newline
    joins the next line, words split on blanks, tabs and CR, and a word that
    starts with a quote runs to the next quote."""
    physical = text.split("\n")
    index = 0
    while index < len(physical):
        number = index + 1
        line, continues = _ip_physical(physical[index])
        index += 1
        while continues and index < len(physical):
            following, continues = _ip_physical(physical[index])
            line = line[:-1] + following
            index += 1
        words = _ip_words(line)
        if words:
            yield BatchLine(number, line.strip(_IP_WHITESPACE), words)


def _ip_physical(line: str) -> tuple[str, bool]:
    """(what ip reads of a physical line, whether it continues on the next):
    NUL and ``#`` end it, and then its newline is gone too."""
    kept = line.split("\0", 1)[0]
    cut = "\0" in line or "#" in kept
    kept = kept.split("#", 1)[0]
    return kept, not cut and kept.endswith("\\")


def _ip_words(line: str) -> tuple[str, ...]:
    """iproute2's makeargs()."""
    if "'" not in line and '"' not in line:
        return tuple(_IP_WORD.findall(line))
    words: list[str] = []
    position = 0
    while position < len(line):
        while position < len(line) and line[position] in _IP_WHITESPACE:
            position += 1
        if position == len(line):
            break
        if line[position] in "'\"":
            end = line.find(line[position], position + 1)
            if end < 0:  # ip gives up on the whole batch; so do we, naming the quote
                words.append(line[position:])
                break
            words.append(line[position + 1 : end])
            position = end + 1
        else:
            end = position
            while end < len(line) and line[end] not in _IP_WHITESPACE:
                end += 1
            words.append(line[position:end])
            position = end + 1
    return tuple(words)


def ip_matches(word: str, name: str) -> bool:
    """iproute2's matches(): ``word`` is a non-empty prefix of ``name``."""
    return bool(word) and name.startswith(word)


@functools.lru_cache(maxsize=256)
def ip_object(word: str) -> str | None:
    """The object ip runs for ``word``, or None when ip knows none."""
    return next((name for name in IP_OBJECTS if ip_matches(word, name)), None)


@functools.lru_cache(maxsize=256)
def ip_verb(obj: str, word: str) -> tuple[str, str | None] | None:
    """(the verb ip runs for ``word`` in ``obj``, its allowed name or None)."""
    for names, allowed in IP_VERBS[obj]:
        if any(ip_matches(word, name) if name != "chg" else word == name for name in names):
            return names[0], allowed
    return None


def check_ip_batch(text: str, filename: str) -> None:
    """TemplateError unless every command of ``text`` is allowed."""
    for line in ip_batch_lines(text):
        _check_ip_line(line, filename)


def _check_ip_line(line: BatchLine, filename: str) -> None:
    first = line.words[0]
    if _OPTION.match(first):
        _check_ip_word(first, line, filename)
    obj = ip_object(first)
    allowed = ", ".join(ALLOWED_IP_OBJECTS)
    if obj is None or obj not in IP_VERBS:
        what = f"ip reads it as '{obj}'" if obj else "ip knows no such object"
        what = REFUSED_IP_OBJECTS.get(obj or "", what)
        raise refuse(filename, line, first, f"{what}; a batch may use the objects {allowed}")
    if len(line.words) > 1:
        verb = ip_verb(obj, line.words[1])
        if verb is None or verb[1] is None:
            verbs = sorted({name for _, name in IP_VERBS[obj] if name})
            read = f"ip reads it as '{verb[0]}'; " if verb else ""
            raise refuse(filename, line, line.words[1], f"{read}ip {obj} may use {', '.join(verbs)}")
    for word in line.words[1:]:
        _check_ip_word(word, line, filename)


def _check_ip_word(word: str, line: BatchLine, filename: str) -> None:
    lowered = word.lower()
    if lowered in REFUSED_IP_WORDS:
        raise refuse(filename, line, word, REFUSED_IP_WORDS[lowered])
    if _OPTION.match(word):
        raise refuse(filename, line, word, "a batch line takes no options (-n, -netns switch namespaces)")
    if word[:1] in ("'", '"'):  # only an unclosed quote keeps its quote (ip exits there)
        raise refuse(filename, line, word, "the quote is not closed")


# --- sysctls -----------------------------------------------------------------------------------


def check_sysctls(text: str, filename: str) -> None:
    """TemplateError unless every ``key = value`` line's key stays under
    ``/proc/sys/net`` (a key with ``/`` is a path, one with dots is converted)."""
    for number, raw in enumerate(text.split("\n"), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            continue  # not key = value: parse_sysctls says so
        line = BatchLine(number, stripped, tuple(stripped.split()))
        key = stripped.split("=", 1)[0].strip()
        word, reason = sysctl_key_problem(key)
        if reason:
            raise refuse(filename, line, word, reason)


def sysctl_key_problem(key: str) -> tuple[str, str | None]:
    """(the offending part, why) for a key outside ``net``; ("", None) when fine."""
    separator = "/" if "/" in key else "."
    if key.startswith("/"):
        return key, "a sysctl key is relative to /proc/sys, not an absolute path"
    parts = key.split(separator)
    for part in parts:
        if part in ("", ".", ".."):
            shown = part or separator * 2
            return shown, "a sysctl key may not hold an empty, '.' or '..' component"
    if parts[0] != SYSCTL_ROOT:
        return parts[0], f"a sysctl key must be under {SYSCTL_ROOT}/ (or {SYSCTL_ROOT}.)"
    if parts[1:2] == ["core"] and parts[2:3] and parts[2].startswith("bpf_"):
        return parts[2], "net/core/bpf_* is the kernel's BPF hardening, not the datapath"
    return "", None


# --- nft -f ------------------------------------------------------------------------------------


def nft_statements(text: str) -> Iterator[BatchLine]:
    """Top-level statements of an nft file: split at newlines and ``;``
    outside braces and after a closing brace, ``#`` comments dropped, a
    quoted string one word."""
    words: list[str] = []
    start = 1
    depth = 0
    for word, number in _nft_words(text):
        if word in ("\n", ";") and depth <= 0:
            if words:
                yield BatchLine(start, " ".join(words), tuple(words))
            words = []
            continue
        if word in ("\n", ";"):
            continue
        if not words:
            start = number
        words.append(word)
        if word in "{}":
            depth += 1 if word == "{" else -1
            if depth <= 0 and word == "}":
                yield BatchLine(start, " ".join(words), tuple(words))
                words = []
    if words:
        yield BatchLine(start, " ".join(words), tuple(words))


_NFT_WORD = re.compile(r'"[^"]*"?|#[^\n]*|[{};\n]|[^\s{};#"]+|\s', re.ASCII)


def _nft_words(text: str) -> Iterator[tuple[str, int]]:
    """(word, line) of every word, brace, ``;`` and newline; comments and blanks dropped."""
    number = 1
    for match in _NFT_WORD.finditer(text):
        word = match.group()
        if word == "\n" or not (word.isspace() or word.startswith("#")):
            yield word, number
        number += word.count("\n")


def check_nft(text: str, filename: str, tables: Collection[str] = POD_TABLES) -> None:
    """TemplateError unless every statement of ``text`` stays in ``tables``."""
    for statement in nft_statements(text):
        _check_nft_statement(statement, filename, frozenset(tables))


def _check_nft_statement(statement: BatchLine, filename: str, tables: frozenset[str]) -> None:
    for word in statement.words:
        if word.lower() in REFUSED_NFT_WORDS:
            raise refuse(filename, statement, word, REFUSED_NFT_WORDS[word.lower()])
        if word.startswith("$") or "\\" in word:
            raise refuse(filename, statement, word, "variables and backslashes are not read here")
    words = list(statement.words)
    if words[0] in NFT_COMMANDS:
        words.pop(0)
    elif words[0] not in NFT_OBJECTS:
        raise refuse(filename, statement, words[0], f"nft statements may only {', '.join(sorted(NFT_COMMANDS))}")
    if not words or words[0] not in NFT_OBJECTS:
        word = words[0] if words else statement.words[0]
        raise refuse(filename, statement, word, f"nft may only touch {', '.join(sorted(NFT_OBJECTS))}")
    table_words = words[1:]
    if table_words and table_words[0] in NFT_FAMILIES:
        table_words = table_words[1:]
    table = table_words[0].strip('"') if table_words else ""
    if table not in tables:
        shown = table_words[0] if table_words else words[0]
        raise refuse(filename, statement, shown, f"nft may only touch the tables {', '.join(sorted(tables))}")


# --- one entry for a rendered slot -------------------------------------------------------------


def check_batch(name: str, text: str, filename: str, nft_tables: frozenset[str] = POD_TABLES) -> None:
    """Check ``text``, rendered from the template ``name`` (``*.ip.j2``,
    ``*.sysctl.j2``, ``*.nft.j2``; anything else is not a batch)."""
    kind = name.removesuffix(".j2").rsplit(".", 1)[-1]
    if kind == "ip":
        check_ip_batch(text, filename)
    elif kind == "sysctl":
        check_sysctls(text, filename)
    elif kind == "nft":
        check_nft(text, filename, nft_tables)
