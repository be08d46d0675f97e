"""Every command cni-render runs is bounded (issue 9, item 11).

``ip -batch``, ``nft -f`` and delegated plugins have a deadline: one that
does not finish is killed with everything it started (its process group)
and the call fails with a CNI error naming the command; and none can
deadlock on a large batch meeting a flood of output. The misbehaving
commands are fakes put first on PATH or CNI_PATH in the test only; the
deadlines are lowered only inside the test's own plugin process.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from throwaway import Node, host_interface, pod_addresses

REAL_IP = "/usr/sbin/ip"

SLEEPER = """#!/bin/sh
# Misbehaves only when given a batch; anything else is the real command.
case " $* " in
  *" -batch "*|*" -f "*) ;;
  *) exec {real} "$@" ;;
esac
echo $$ >> {pids}
sleep 1000 &
echo $! >> {pids}
wait
"""

FLOODER = """#!/bin/sh
case " $* " in
  *" -batch "*|*" -f "*) ;;
  *) exec {real} "$@" ;;
esac
# megabytes of output before reading any input: a caller that writes all
# of stdin first and only then reads would wait forever
head -c 4000000 /dev/zero | tr '\\0' x >&2
cat > /dev/null
exit {status}
"""


def fake(directory: Path, name: str, template: str, **values: object) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(template.format(**values))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ", 1)[1][0] != "Z"


def assert_all_killed(pids_file: Path) -> None:
    pids = [int(line) for line in pids_file.read_text().split()] if pids_file.exists() else []
    assert pids, "the fake never ran"
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids), f"left running: {[p for p in pids if alive(p)]}"


RUN_BATCH = textwrap.dedent(
    """
    import json, sys, time
    from cni_render.host import system
    from cni_render.cni.errors import CniError
    system.COMMAND_TIMEOUT = 1.5
    tool, lines = sys.argv[1], int(sys.argv[2])
    batch = "".join(f"link set dev lo mtu {65536 - i % 100}\\n" for i in range(lines))
    run = system.run_ip_batch if tool == "ip" else system.run_nft_batch
    started = time.monotonic()
    try:
        run(batch, where="node, test")
        outcome = {"code": 0}
    except CniError as exc:
        outcome = {"code": exc.code, "details": exc.details}
    outcome["seconds"] = time.monotonic() - started
    print(json.dumps(outcome))
    """
)


def run_batch(tmp_path: Path, tool: str, lines: int = 3) -> dict:
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    proc = subprocess.run(
        [sys.executable, "-c", RUN_BATCH, tool, str(lines)],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("tool", ["ip", "nft"])
def test_a_command_that_hangs_is_killed_with_its_children_and_named(tmp_path, tool):
    pids = tmp_path / "pids"
    fake(tmp_path / "bin", tool, SLEEPER, real=f"/usr/sbin/{tool}", pids=pids)
    outcome = run_batch(tmp_path, tool)
    assert outcome["code"] == 100, outcome
    assert f"{tool} batch (node, test)" in outcome["details"] and "1.5 s" in outcome["details"], outcome
    assert "killed" in outcome["details"]
    assert outcome["seconds"] < 5
    assert_all_killed(pids)


@pytest.mark.parametrize("status", [0, 1])
def test_a_large_batch_meeting_a_flood_of_output_cannot_deadlock(tmp_path, status):
    fake(tmp_path / "bin", "ip", FLOODER, real=REAL_IP, status=status)
    outcome = run_batch(tmp_path, "ip", lines=60000)  # ~2 MB of batch
    if status == 0:
        assert outcome["code"] == 0, outcome
    else:
        assert outcome["code"] == 100 and len(outcome["details"]) < 4096, outcome["details"][:200]
    assert outcome["seconds"] < 10


# The plugin in-process with lowered deadlines (the test's own process only).
LAUNCHER = """#!{python}
import sys
from cni_render.host import system
system.COMMAND_TIMEOUT = 2.0
system.PLUGIN_TIMEOUT = 2.0
from cni_render.entry import plugin_main
sys.exit(plugin_main())
"""


def launcher(node: Node) -> str:
    return str(fake(node.tmp / "launcher", "cni-render", LAUNCHER, python=sys.executable))


def test_add_with_a_hanging_ip_fails_in_time_and_del_cleans_up(plain_node):
    node = plain_node
    pids = node.tmp / "pids"
    fake(node.tmp / "bin", "ip", SLEEPER, real=REAL_IP, pids=pids)
    broken_path = {"PATH": f"{node.tmp / 'bin'}:{os.environ['PATH']}", "CNI_RENDER_DAEMON_SOCKET": "/nonexistent"}
    pod = node.add_pod()
    started = time.monotonic()
    call = node.cni("ADD", node.config(), pod, plugin=launcher(node), extra_env=broken_path)
    assert time.monotonic() - started < 20
    assert call.exit_code == 1 and call.json["code"] == 100, call.stdout
    assert "ip batch (node" in call.json["details"] and "killed" in call.json["details"]
    assert_all_killed(pids)
    node.cni("DEL", node.config(), pod).ok()  # the runtime's DEL, with a working ip
    assert node.pod_links() == [] and node.allocations() == []


DELEGATE_SLEEPER = """#!/bin/sh
echo $$ >> {pids}
sleep 1000 &
echo $! >> {pids}
wait
"""


def test_a_hanging_delegated_plugin_is_killed_and_named(plain_node):
    node = plain_node
    pids = node.tmp / "pids"
    fake(node.tmp / "plugins", "slow-ipam", DELEGATE_SLEEPER, pids=pids)
    extra = {"CNI_PATH": f"{node.tmp / 'plugins'}:/usr/lib/cni", "CNI_RENDER_DAEMON_SOCKET": "/nonexistent"}
    config = node.config(ipam={"type": "slow-ipam", "ranges": [[{"subnet": "10.244.1.0/24"}]]})
    started = time.monotonic()
    call = node.cni("ADD", config, node.add_pod(), plugin=launcher(node), extra_env=extra)
    assert time.monotonic() - started < 20
    assert call.exit_code == 1 and call.json["code"] == 104, call.stdout
    assert "slow-ipam" in call.json["details"] and "killed" in call.json["details"]
    assert_all_killed(pids)
    assert node.pod_links() == []


def test_commands_still_work_with_their_deadlines(plain_node):
    node = plain_node
    pod = node.add_pod()
    result = node.cni("ADD", node.config(), pod, plugin=launcher(node), extra_env={"CNI_RENDER_DAEMON_SOCKET": "/nonexistent"}).ok().json
    assert host_interface(result)["name"] in node.pod_links()
    pod.serve_http()
    assert node.http_get(pod_addresses(result)[0]) == "It works!\n"
