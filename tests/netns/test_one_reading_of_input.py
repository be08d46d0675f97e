"""One reading of the input everywhere (issue 9, item 10).

The same config and environment get the same verdict from ADD, DEL and
STATUS: a value the schema refuses for ADD is refused by DEL and STATUS too
(they skip the JSON Schema, so they apply the schema's own patterns to what
they read), and a CNI_* variable set twice in the environment block is
refused with code 4 naming it, whichever command it is.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from throwaway import PLUGIN, Node

BAD_VALUES = {
    "name-newline": ({"name": "testnet\n"}, "$.name"),
    "name-dotdot": ({"name": ".."}, "$.name"),
    "ipam-type-newline": ({"ipam": {"type": "host-local\n"}}, "$.ipam.type"),
    "bridge-dotdot": ({"mode": "bridge", "bridge": ".."}, "$.bridge"),
    "bridge-newline": ({"mode": "bridge", "bridge": "br0\n"}, "$.bridge"),
    "state-dir-newline": ({"stateDir": "/tmp/x\n"}, "$.stateDir"),
    "state-dir-relative": ({"stateDir": "run/x"}, "$.stateDir"),
    "data-dir-newline": ({"ipam": {"type": "cni-render-ipam", "dataDir": "/tmp/x\n", "ranges": [[{"subnet": "10.244.1.0/24"}]]}}, "$.ipam.dataDir"),
}


def verdicts(node: Node, config: dict) -> dict[str, tuple[int, int | None, str]]:
    pod = node.add_pod()
    found = {}
    for command in ("ADD", "DEL", "STATUS"):
        call = node.cni(command, config, pod if command != "STATUS" else None)
        document = json.loads(call.stdout) if call.stdout.strip() else {}
        found[command] = (call.exit_code, document.get("code"), document.get("details", ""))
    return found


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_add_del_and_status_refuse_the_same_value(plain_node, case):
    changes, path = BAD_VALUES[case]
    config = plain_node.config(cniVersion="1.1.0")
    config.update(changes)
    seen = verdicts(plain_node, config)
    for command, (exit_code, code, details) in seen.items():
        expected = 50 if command == "STATUS" else 7
        assert exit_code == 1 and code == expected and path in details, (command, seen)
    assert plain_node.pod_links() == []


def test_a_good_config_is_accepted_by_all_three(plain_node):
    seen = verdicts(plain_node, plain_node.config(cniVersion="1.1.0"))
    assert [exit_code for exit_code, _, _ in seen.values()] == [0, 0, 0], seen


# execve with a hand-made environment block: a dict cannot hold a name twice.
EXEC_WITH_DUPLICATE = textwrap.dedent(
    """
    import ctypes, os, sys
    plugin, command, config = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    env = [f"CNI_COMMAND={command}", "CNI_CONTAINERID=dup1", "CNI_NETNS=/var/run/netns/none",
           "CNI_IFNAME=eth0", "CNI_IFNAME=eth1", "CNI_PATH=/usr/lib/cni",
           "CNI_RENDER_DAEMON_SOCKET=/nonexistent/daemon.sock", "PATH=" + os.environ["PATH"]]
    read, write = os.pipe()
    os.write(write, config)
    os.close(write)
    os.dup2(read, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    argv = (ctypes.c_char_p * 2)(plugin.encode(), None)
    envp = (ctypes.c_char_p * (len(env) + 1))(*[e.encode() for e in env], None)
    libc.execve(plugin.encode(), argv, envp)
    sys.exit(f"execve failed: {ctypes.get_errno()}")
    """
)


@pytest.mark.parametrize("command", ["ADD", "DEL", "STATUS"])
def test_a_cni_variable_set_twice_is_refused_naming_it(tmp_path, command):
    config = {"cniVersion": "1.1.0", "name": "testnet", "type": "cni-render", "stateDir": str(tmp_path / "state"),
              "ipam": {"type": "cni-render-ipam", "dataDir": str(tmp_path / "ipam"), "ranges": [[{"subnet": "10.244.1.0/24"}]]}}
    proc = subprocess.run(
        [sys.executable, "-c", EXEC_WITH_DUPLICATE, PLUGIN, command, json.dumps(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    error = json.loads(proc.stdout)
    assert proc.returncode == 1 and error["code"] == 4, (proc.stdout, proc.stderr)
    assert "CNI_IFNAME" in error["details"] and error["cniVersion"] == "1.1.0"
