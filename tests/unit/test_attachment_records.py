"""Attachment records survive a SIGKILL at any step (issue 13).

An attachment's record, ``<network>/.attachments/<hash of containerID and
ifname>``, lists its addresses; each address's owner file names the
attachment. ADD writes the record entry, then links the owner file; DEL
unlinks the owner file, then rewrites the record. A SIGKILL can land between
any two system calls, so between the two halves of either pair: the record
then names an address nobody holds (and that another attachment may get
next). Such an entry is an orphan: the owner file is the truth, and the
record's name must match the attachment the owner file names.

Each test kills a child process right before its nth file-system call (for
every n, until the operation runs to its end without meeting the kill), then
checks what the next calls make of the state left: no address is hidden from
its attachment, an address another attachment took meanwhile is never
released by the retried DEL or by GC, and once the runtime's DEL has
succeeded (or GC has run) no record is left that names nobody's address.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
from typing import Callable

from cni_render.ipam.executable import handle_ipam
from cni_render.ipam.local import LocalIpam
from cni_render.ipam.model import parse_ipam_config
from cni_render.ipam.store import Store

DUAL = [[{"subnet": "10.9.0.0/29"}], [{"subnet": "fd00:9::/125"}]]
# Every call that changes the disk (or opens what will change it).
FILE_SYSTEM_CALLS = ("open", "write", "fsync", "link", "rename", "replace", "unlink", "mkdir")
ATTACHMENT_A = ("a", "eth0")
ATTACHMENT_B = ("b", "eth0")


def ipam(tmp_path, attachment: tuple[str, str], requested: tuple[str, ...] = ()) -> LocalIpam:
    config = parse_ipam_config({"type": "cni-render-ipam", "ranges": DUAL, "dataDir": str(tmp_path)})
    return LocalIpam(
        config=config, network="net", container_id=attachment[0], ifname=attachment[1],
        requested=tuple(ipaddress.ip_address(ip) for ip in requested),
    )


def killed_before_call(step: int, operation: Callable[[], object]) -> bool:
    """Run ``operation`` in a child process SIGKILLed right before its
    ``step``th file-system call; True when the kill landed, False when the
    operation ended first."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            calls = 0

            def counted(original: Callable[..., object]) -> Callable[..., object]:
                def call(*args: object, **kwargs: object) -> object:
                    nonlocal calls
                    calls += 1
                    if calls >= step:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return original(*args, **kwargs)

                return call

            for name in FILE_SYSTEM_CALLS:
                setattr(os, name, counted(getattr(os, name)))
            operation()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


# --- what is on the disk ----------------------------------------------------------


def owners(directory: str) -> dict[str, tuple[str, str]]:
    """address -> (container ID, ifname), from the owner files."""
    store = Store(os.path.dirname(directory), os.path.basename(directory))
    return {ip: (cid, ifname) for ip, cid, ifname in store.allocations()}


def records(directory: str) -> dict[str, list[str]]:
    """record name -> the addresses it lists (temporaries left out)."""
    index = os.path.join(directory, ".attachments")
    if not os.path.isdir(index):
        return {}
    found = {}
    for name in os.listdir(index):
        if not name.startswith("."):
            with open(os.path.join(index, name)) as handle:
                found[name] = handle.read().split()
    return found


def record_name(directory: str, attachment: tuple[str, str]) -> str:
    store = Store(os.path.dirname(directory), os.path.basename(directory))
    return os.path.basename(store._index_path(*attachment))


def orphaned_entries(directory: str) -> list[tuple[str, str]]:
    """(record, address) of entries naming an address their attachment does not hold."""
    held = owners(directory)
    return [
        (name, ip)
        for name, entries in records(directory).items()
        for ip in entries
        if ip not in held or record_name(directory, held[ip]) != name
    ]


def index_temporaries(directory: str) -> list[str]:
    index = os.path.join(directory, ".attachments")
    return [n for n in os.listdir(index) if n.startswith(".")] if os.path.isdir(index) else []


def assert_nothing_hidden(directory: str) -> None:
    """Every attachment finds every address it holds (its record, when it has
    one, lists them all): a crash never hides an address from DEL."""
    held = owners(directory)
    store = Store(os.path.dirname(directory), os.path.basename(directory))
    for attachment in set(held.values()):
        mine = sorted(ip for ip, owner in held.items() if owner == attachment)
        assert sorted(store.find(*attachment)) == mine, f"{attachment} holds {mine}"


def take_orphans(tmp_path, directory: str, attachment: tuple[str, str]) -> list[str]:
    """``attachment`` ADDs, asking for the free addresses A's record still
    names, as the next pod on the node would get them: returns them."""
    free = [ip for ip in records(directory).get(record_name(directory, ATTACHMENT_A), []) if ip not in owners(directory)]
    ipam(tmp_path, attachment, requested=tuple(free)).add()
    return free


def assert_b_untouched(directory: str, b_addresses: list[str]) -> None:
    held = owners(directory)
    assert sorted(ip for ip, owner in held.items() if owner == ATTACHMENT_B) == b_addresses
    assert sorted(records(directory).get(record_name(directory, ATTACHMENT_B), [])) == b_addresses


def crash_points(operation: Callable[[int], bool]) -> int:
    """Run ``operation(step)`` for step 1, 2, ... until it reports that the
    kill no longer landed; returns how many crash points were checked."""
    step = 1
    while operation(step):
        step += 1
        assert step < 200, "the operation never ended"
    return step - 1


# --- the windows --------------------------------------------------------------


def test_a_kill_at_any_step_of_add_leaves_nothing_once_del_succeeds(tmp_path):
    """Window 1: ADD killed between writing A's record entry and linking the
    owner file (the entry names a free address, which B then takes)."""
    directory = str(tmp_path / "net")
    orphans_seen = 0

    def at(step: int) -> bool:
        nonlocal orphans_seen
        landed = killed_before_call(step, ipam(tmp_path, ATTACHMENT_A).add)
        assert_nothing_hidden(directory)
        taken = take_orphans(tmp_path, directory, ATTACHMENT_B)
        orphans_seen += bool(taken)
        b_addresses = sorted(ip for ip, owner in owners(directory).items() if owner == ATTACHMENT_B)
        ipam(tmp_path, ATTACHMENT_A).delete()  # the runtime's DEL, retried until it succeeds
        assert_b_untouched(directory, b_addresses)
        assert set(owners(directory).values()) == {ATTACHMENT_B}
        assert orphaned_entries(directory) == [], f"step {step}: a record names a released address"
        assert list(records(directory)) == [record_name(directory, ATTACHMENT_B)]
        ipam(tmp_path, ATTACHMENT_B).delete()
        assert owners(directory) == {} and records(directory) == {}
        assert index_temporaries(directory) == [], f"step {step}: a killed write's temporary is left"
        return landed

    assert crash_points(at) > 10
    assert orphans_seen, "no crash point left a record entry naming a free address"


def test_a_kill_at_any_step_of_del_leaves_nothing_once_del_succeeds(tmp_path):
    """Window 2: DEL killed between unlinking an owner file and rewriting the
    record (the entry names a released address, which B then takes)."""
    directory = str(tmp_path / "net")
    orphans_seen = 0

    def at(step: int) -> bool:
        nonlocal orphans_seen
        ipam(tmp_path, ATTACHMENT_A).add()
        landed = killed_before_call(step, ipam(tmp_path, ATTACHMENT_A).delete)
        assert_nothing_hidden(directory)
        taken = take_orphans(tmp_path, directory, ATTACHMENT_B)
        orphans_seen += bool(taken)
        b_addresses = sorted(ip for ip, owner in owners(directory).items() if owner == ATTACHMENT_B)
        ipam(tmp_path, ATTACHMENT_A).delete()
        assert_b_untouched(directory, b_addresses)
        assert orphaned_entries(directory) == [], f"step {step}: a record names a released address"
        assert list(records(directory)) == [record_name(directory, ATTACHMENT_B)]
        ipam(tmp_path, ATTACHMENT_B).delete()
        assert owners(directory) == {} and records(directory) == {}
        assert index_temporaries(directory) == [], f"step {step}: a killed write's temporary is left"
        return landed

    assert crash_points(at) > 5
    assert orphans_seen, "no crash point left a record entry naming a released address"


def test_gc_removes_orphaned_records_and_never_an_address_held_by_another(tmp_path):
    """After a kill in ADD or DEL and another attachment taking the address,
    GC (with both attachments still valid) drops the orphaned entries, and
    releases nothing: not B's address, not what A still holds."""
    directory = str(tmp_path / "net")
    collected = 0

    def at(step: int, delete_first: bool) -> bool:
        nonlocal collected
        if delete_first:
            ipam(tmp_path, ATTACHMENT_A).add()
        operation = ipam(tmp_path, ATTACHMENT_A).delete if delete_first else ipam(tmp_path, ATTACHMENT_A).add
        landed = killed_before_call(step, operation)
        take_orphans(tmp_path, directory, ATTACHMENT_B)
        before = owners(directory)
        collected += len(orphaned_entries(directory))
        assert ipam(tmp_path, ATTACHMENT_A).gc({ATTACHMENT_A, ATTACHMENT_B}) == []
        assert owners(directory) == before, "GC released an address of a valid attachment"
        assert orphaned_entries(directory) == [], f"step {step}: GC left an orphaned record entry"
        assert_nothing_hidden(directory)
        assert index_temporaries(directory) == [], f"step {step}: GC left a killed write's temporary"
        for attachment in (ATTACHMENT_A, ATTACHMENT_B):
            ipam(tmp_path, attachment).delete()
        assert owners(directory) == {} and records(directory) == {}
        return landed

    assert crash_points(lambda step: at(step, delete_first=False)) > 10
    assert crash_points(lambda step: at(step, delete_first=True)) > 5
    assert collected, "no crash point left an orphaned entry for GC"


def test_a_record_alone_never_releases_an_address(tmp_path):
    """A record of A naming B's address (planted whole, as a crash and a
    re-allocation leave it): A's DEL and the executable's GC leave B's
    address, and both drop the entry."""
    directory = str(tmp_path / "net")
    b_addresses = sorted(ip["address"].split("/")[0] for ip in ipam(tmp_path, ATTACHMENT_B).add()["ips"])
    store = Store(str(tmp_path), "net")
    for ip in b_addresses:
        store._index_add(*ATTACHMENT_A, ip)
    assert ipam(tmp_path, ATTACHMENT_A).held() == []
    assert ipam(tmp_path, ATTACHMENT_A).delete() == []
    assert sorted(ip for ip, owner in owners(directory).items() if owner == ATTACHMENT_B) == b_addresses
    assert list(records(directory)) == [record_name(directory, ATTACHMENT_B)]
    for ip in b_addresses:
        store._index_add(*ATTACHMENT_A, ip)
    document = {
        "cniVersion": "1.1.0", "name": "net", "type": "any", "stateDir": str(tmp_path / "state"),
        "ipam": {"type": "cni-render-ipam", "dataDir": str(tmp_path), "ranges": DUAL},
        "cni.dev/valid-attachments": [{"containerID": "b", "ifname": "eth0"}],
    }
    environ = {"CNI_COMMAND": "GC", "CNI_PATH": "/nonexistent"}
    outcome = handle_ipam(environ, json.dumps(document).encode(), None)
    assert outcome.exit_code == 0, outcome.stdout
    assert sorted(ip for ip, owner in owners(directory).items() if owner == ATTACHMENT_B) == b_addresses
    assert list(records(directory)) == [record_name(directory, ATTACHMENT_B)]
