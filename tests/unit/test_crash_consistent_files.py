"""Crash-consistent files (issue 9, item 7).

Every IPAM write (address owner file, attachment index, round-robin cursor)
goes through a temporary file created exclusively without following links,
written, fsynced, renamed (or linked, for an owner file, which must not
replace one), with the directory fsynced; no temporary file is left on any
error, and a full disk during allocation is a clean CNI error (code 5) that
leaves no empty owner file and no half allocation.

The fault-injection tests need no root; the full-disk test mounts a tiny
tmpfs in a private mount namespace, which disappears with the process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, Callable

import pytest

from cni_render.cni.errors import IoFailure
from cni_render.ipam.local import LocalIpam
from cni_render.ipam.model import parse_ipam_config
from cni_render.ipam.store import LINE_BREAK, Store, record_key

DUAL = [[{"subnet": "10.9.0.0/24"}], [{"subnet": "fd00:9::/120"}]]
FAILING_CALLS = ("open", "write", "fsync", "link", "rename", "replace")


def ipam(tmp_path, container_id: str) -> LocalIpam:
    config = parse_ipam_config({"type": "cni-render-ipam", "ranges": DUAL, "dataDir": str(tmp_path)})
    return LocalIpam(config=config, network="net", container_id=container_id, ifname="eth0")


class DiskFull:
    """Makes ``os.<name>`` fail with ENOSPC from its ``nth`` call on, while armed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, nth: int):
        self.calls = 0
        self.nth = nth
        self.armed = True
        original: Callable[..., Any] = getattr(os, name)

        def failing(*args: Any, **kwargs: Any) -> Any:
            if self.armed:
                self.calls += 1
                if self.calls >= self.nth:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return original(*args, **kwargs)

        monkeypatch.setattr(os, name, failing)


def assert_consistent(directory: str, attachments: list[str], settled: bool = False) -> None:
    """No temporary or empty file; every owner file whole; each attachment
    holds one address per range set or none at all. ``settled`` (after the
    DEL): no attachment record names an address its attachment lacks (a
    failed ADD may leave such an orphan; its DEL removes it)."""
    store = Store(os.path.dirname(directory), os.path.basename(directory))
    names = os.listdir(directory)
    leftovers = [n for n in names if n.startswith(".") and n != ".attachments"]
    assert leftovers == [], f"temporary files left: {leftovers}"
    index_dir = os.path.join(directory, ".attachments")
    if os.path.isdir(index_dir):
        assert [n for n in os.listdir(index_dir) if "tmp" in n] == []
    if settled and os.path.isdir(index_dir):  # after DEL: no entry names an address its attachment lacks
        for name in os.listdir(index_dir):
            for ip in open(os.path.join(index_dir, name)).read().split():
                owner = store.owner(ip)
                assert owner is not None and record_key(*owner) == name, f"record {name} names {ip} ({owner})"
    held: dict[str, list[str]] = {}
    for name in store.reserved():
        with open(os.path.join(directory, name), newline="") as handle:
            content = handle.read()
        container_id, sep, ifname = content.partition(LINE_BREAK)
        assert sep and container_id and ifname == "eth0", f"owner file {name} holds {content!r}"
        held.setdefault(container_id, []).append(name)
    for container_id in attachments:
        addresses = held.get(container_id, [])
        assert len(addresses) in (0, 2), f"{container_id} holds half an allocation: {addresses}"
        assert sorted(store.find(container_id, "eth0")) == sorted(addresses)


@pytest.mark.parametrize("call", FAILING_CALLS)
def test_a_failing_write_at_any_step_leaves_no_trace(tmp_path, monkeypatch, call):
    ipam(tmp_path, "before").add()
    directory = str(tmp_path / "net")
    for nth in range(1, 40):
        attachment = f"c-{call}-{nth}"
        fault = DiskFull(monkeypatch, call, nth)
        try:
            ipam(tmp_path, attachment).add()
        except IoFailure as exc:
            assert exc.code == 5 and "No space left on device" in exc.details
        finally:
            fault.armed = False
            monkeypatch.undo()
        assert_consistent(directory, ["before", attachment])
        if fault.calls < nth:  # the whole allocation ran without reaching the fault
            break
        ipam(tmp_path, attachment).delete()
        assert_consistent(directory, ["before", attachment], settled=True)
    assert sorted(ipam(tmp_path, "before").held()) == ["10.9.0.2", "fd00:9::2"]


def test_owner_files_are_never_created_in_place(tmp_path, monkeypatch):
    """An owner file appears whole or not at all: it is linked into place
    from a fsynced temporary file (a crash cannot leave it empty)."""
    created: list[tuple[str, int]] = []
    original = os.open

    def recording_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        created.append((os.fspath(path), flags))
        return original(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    ipam(tmp_path, "a").add()
    monkeypatch.undo()
    writes = [(path, flags) for path, flags in created if flags & os.O_CREAT]
    assert writes, "no file was created"
    for path, flags in writes:
        name = os.path.basename(path)
        if name == "lock" or name.endswith(".lock"):
            continue
        assert name.startswith(".tmp-"), f"{path} written in place"
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW, f"{path} opened without O_EXCL|O_NOFOLLOW"


def test_a_planted_symlink_is_never_followed(tmp_path):
    ipam(tmp_path, "a").add()
    directory = tmp_path / "net"
    victim = tmp_path / "victim"
    victim.write_text("keep")
    for name in os.listdir(directory):
        if name.startswith("last_reserved_ip."):
            os.unlink(directory / name)
            os.symlink(victim, directory / name)
    ipam(tmp_path, "b").add()
    assert victim.read_text() == "keep"


FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from cni_render.cni.errors import CniError
    from cni_render.ipam.local import LocalIpam
    from cni_render.ipam.model import parse_ipam_config

    data_dir = sys.argv[1]
    config = parse_ipam_config({"type": "cni-render-ipam", "dataDir": data_dir,
                                "ranges": [[{"subnet": "10.9.0.0/16"}], [{"subnet": "fd00:9::/112"}]]})
    outcomes = []
    for index in range(2000):
        try:
            LocalIpam(config=config, network="net", container_id=f"c{index}", ifname="eth0").add()
            outcomes.append(0)
        except CniError as exc:
            outcomes.append(exc.code)
            if len([o for o in outcomes if o]) >= 20:
                break
    print(json.dumps(outcomes))

    # the same through the CNI protocol (the cni-render-ipam executable's
    # handler), with every last page of the disk taken
    filler = os.open(os.path.join(data_dir, "filler"), os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(filler, b"x" * 4096)
    except OSError:
        os.close(filler)
    from cni_render.ipam.executable import handle_ipam
    document = {"cniVersion": "1.1.0", "name": "net", "type": "any", "stateDir": sys.argv[2],
                "ipam": {"type": "cni-render-ipam", "dataDir": data_dir, "ranges": [[{"subnet": "10.9.0.0/16"}]]}}
    environ = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "cni-call", "CNI_IFNAME": "eth0", "CNI_NETNS": "/x"}
    outcome = handle_ipam(environ, json.dumps(document).encode(), None)
    print(json.dumps([outcome.exit_code, json.loads(outcome.stdout)]))
    """
)


def test_a_full_disk_during_allocation_is_a_clean_cni_error(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a tmpfs in a private mount namespace needs root and unshare")
    mountpoint = tempfile.mkdtemp(prefix="cni-render-full-")
    try:
        script = tmp_path / "fill.py"
        script.write_text(FULL_DISK_SCRIPT)
        survey = tmp_path / "survey.py"
        survey.write_text(SURVEY_SCRIPT)
        shell = (
            f"mount -t tmpfs -o size=64k,nr_inodes=4096 cni-render-full {mountpoint} && "
            f"{sys.executable} {script} {mountpoint} {tmp_path} && {sys.executable} {survey} {mountpoint}/net"
        )
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        outcomes_line, call_line, survey_line = proc.stdout.splitlines()[-3:]
        outcomes = json.loads(outcomes_line)
        exit_code, error = json.loads(call_line)
        assert exit_code == 1 and error["code"] == 5, error
        assert error["cniVersion"] == "1.1.0" and "No space left on device" in error["details"]
        assert 0 in outcomes, "nothing could be allocated at all"
        assert set(outcomes) <= {0, 5}, f"codes other than I/O failure: {set(outcomes)}"
        assert 5 in outcomes, "the disk never filled up"
        problems = json.loads(survey_line)
        assert problems == [], problems
    finally:
        subprocess.run(["umount", mountpoint], capture_output=True, check=False)  # never mounted here
        os.rmdir(mountpoint)


SURVEY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    directory = sys.argv[1]
    problems = []
    held = {}
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.startswith(".") and name != ".attachments":
            problems.append(f"temporary file {name}")
        elif name == "lock" or name.startswith("last_reserved_ip.") or name == ".attachments":
            continue
        else:
            content = open(path, newline="").read()
            if not content:
                problems.append(f"empty owner file {name}")
            held.setdefault(content.split("\\r\\n")[0], []).append(name)
    for owner, names in held.items():
        if len(names) != 2 or owner == "cni-call":
            problems.append(f"{owner} holds {names}")
    print(json.dumps(problems))
    """
)
