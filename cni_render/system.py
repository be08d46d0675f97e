"""The one place that changes or reads the system: ``ip``, ``nsenter``, ``nft``,
sysctls, /proc and /sys, and executing other CNI plugins.

Everything else in cni-render is pure: it renders text and hands it here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import ApplyFailed, InvalidEnvironment

# The runtime's PATH may lack the sbin directories.
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
)
_FAILED_LINE = re.compile(r"^Command failed (?:-|\S+):(\d+)\s*$")  # iproute2
_NFT_ERROR = re.compile(r"^/dev/stdin:(\d+):[\d-]+: Error: (.*)$")  # nft -f -

# iproute2 messages that mean "already gone": DEL and rollbacks accept them.
GONE_MESSAGES = (
    "Cannot find device",
    "No such device",
    "No such process",
    "No such file or directory",
    "does not exist",
    "Cannot assign requested address",
    "not found",
)


def find_binary(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def _binary(name: str) -> str:
    path = find_binary(name)
    if path is None:
        raise ApplyFailed(f"{name!r} was not found in PATH or the sbin directories; install it")
    return path


@dataclass(frozen=True)
class BatchFailure:
    line_number: int
    line: str
    message: str


def _failures(batch: str, stderr: str) -> list[BatchFailure]:
    """Map iproute2's ``Command failed -:N`` back to the rendered line N."""
    lines = batch.splitlines()
    failures, pending = [], []
    for text in stderr.splitlines():
        nft = _NFT_ERROR.match(text)
        if nft:
            number = int(nft.group(1))
            line = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
            failures.append(BatchFailure(number, line, nft.group(2)))
            pending = []
            break  # nft then echoes the line and a caret marker
        match = _FAILED_LINE.match(text)
        if match:
            number = int(match.group(1))
            line = lines[number - 1].strip() if 0 < number <= len(lines) else "?"
            failures.append(BatchFailure(number, line, " ".join(pending).strip()))
            pending = []
        elif text.strip():
            pending.append(text.strip())
    if pending:
        failures.append(BatchFailure(0, "", " ".join(pending)))
    return failures


def _netns_argv(netns: str | None, argv: list[str]) -> list[str]:
    if not netns:
        return argv
    return [_binary("nsenter"), f"--net={netns}", "--", *argv]


def run_ip_batch(
    batch: str, *, netns: str | None = None, where: str, tolerate_gone: bool = False
) -> None:
    """Run ``batch`` with ``ip -batch -`` (inside ``netns`` when given).

    Without ``tolerate_gone`` the batch stops at the first failing line; with
    it every line runs (``-force``) and "already gone" failures are ignored.
    """
    if not batch.strip():
        return
    argv = [_binary("ip"), *(["-force"] if tolerate_gone else []), "-batch", "-"]
    _run_batch(_netns_argv(netns, argv), batch, f"ip batch ({where})", tolerate_gone)


def run_nft_batch(batch: str, *, where: str, tolerate_gone: bool = False) -> None:
    """Run ``batch`` with ``nft -f -`` (atomic: all or nothing)."""
    if not batch.strip():
        return
    _run_batch([_binary("nft"), "-f", "-"], batch, f"nft batch ({where})", tolerate_gone)


def _run_batch(argv: list[str], batch: str, what: str, tolerate_gone: bool) -> None:
    proc = subprocess.run(argv, input=batch, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return
    failures = _failures(batch, proc.stderr) or [BatchFailure(0, "", proc.stderr.strip())]
    if tolerate_gone:
        failures = [f for f in failures if not any(m in f.message for m in GONE_MESSAGES)]
        if not failures:
            return
    first = failures[0]
    location = f"line {first.line_number} {first.line!r}: " if first.line_number else ""
    raise ApplyFailed(
        f"{what} {location}{first.message or 'failed'}",
        line_number=first.line_number,
        line=first.line,
        reason=first.message,
    )


def read_ip_state(netns: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(links with their addresses, routes of every table) as iproute2 JSON."""
    argv = _netns_argv(netns, [_binary("ip"), "-j", "-d", "-batch", "-"])
    proc = subprocess.run(
        argv, input="addr show\nroute show table all\n", capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ApplyFailed(f"reading state {'in ' + netns if netns else 'on the node'}: {proc.stderr.strip()}")
    documents = _json_stream(proc.stdout)
    if len(documents) != 2:
        raise ApplyFailed(f"unexpected output from ip -j: {proc.stdout[:200]!r}")
    return documents[0], documents[1]


def _json_stream(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    documents, index = [], 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return documents
        document, index = decoder.raw_decode(text, index)
        documents.append(document)


def write_sysctls(pairs: Sequence[tuple[str, str]], *, where: str) -> None:
    for key, value in pairs:
        path = "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise ApplyFailed(f"sysctl ({where}) {key} = {value}: {exc.strerror}") from exc


def link_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


def delete_link(ifname: str) -> None:
    """Delete a node link, ignoring "already gone" (the safety net of rollbacks)."""
    run_ip_batch(f"link del dev {ifname}\n", where="cleanup", tolerate_gone=True)


def link_aliases() -> dict[str, str]:
    """{ifname: alias} of the node's links that have an alias."""
    aliases = {}
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return aliases
    for name in names:
        try:
            with open(f"/sys/class/net/{name}/ifalias") as handle:
                alias = handle.read().strip()
        except OSError:
            continue
        if alias:
            aliases[name] = alias
    return aliases


def default_route_mtu(fallback: int = 1500) -> int:
    """MTU of the interface holding the node's default route (IPv4, else IPv6)."""
    device = _default_route_device()
    if device:
        try:
            with open(f"/sys/class/net/{device}/mtu") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            pass
    return fallback


def _default_route_device() -> str | None:
    try:
        with open("/proc/net/route") as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
                    return fields[0]
    except OSError:
        pass
    try:
        with open("/proc/net/ipv6_route") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) == 10 and fields[0] == "0" * 32 and fields[1] == "00" and fields[9] != "lo":
                    return fields[9]
    except OSError:
        pass
    return None


def netns_problem(netns: str) -> str | None:
    """Why ``netns`` cannot be a pod's network namespace, or None."""
    try:
        target = os.stat(netns)
    except OSError as exc:
        return f"CNI_NETNS {netns!r} cannot be opened: {exc.strerror}"
    own = os.stat("/proc/self/ns/net")
    if target.st_dev != own.st_dev:
        return f"CNI_NETNS {netns!r} is not a namespace file"
    if target.st_ino == own.st_ino:
        return f"CNI_NETNS {netns!r} is the plugin's own network namespace"
    return None


def exec_plugin(
    path: str, env: Mapping[str, str], stdin: bytes, timeout: float = 120.0
) -> tuple[int, bytes, bytes]:
    """Execute a CNI plugin; returns (exit code, stdout, stderr)."""
    try:
        proc = subprocess.run(
            [path], input=stdin, env=dict(env), capture_output=True, timeout=timeout, check=False
        )
    except OSError as exc:
        raise InvalidEnvironment(f"cannot execute {path}: {exc.strerror}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ApplyFailed(f"{path} did not answer within {timeout:.0f}s") from exc
    return proc.returncode, proc.stdout, proc.stderr


def find_plugin(name: str, cni_path: Sequence[str]) -> str | None:
    """The first regular, executable file called ``name`` in CNI_PATH."""
    if "/" in name or not name:
        return None
    for directory in cni_path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def state_dir_problem(path: str) -> str | None:
    """None when ``path`` can hold the plugin's locks and caches, else why not."""
    probe = os.path.join(path, f".probe-{os.getpid()}")
    try:
        os.makedirs(path, mode=0o755, exist_ok=True)
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    return None
