"""The fast path: the C shim, the Python client and the node daemon.

The whole namespace suite already runs twice (``node`` is parametrised over
in-process and daemon); these tests pin what is specific to the fast path:
identical results, refusals that fall back, the daemon's own lifecycle, and
that cheap commands stay cheap.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from cni_render.client import version_reply
from netns import PLUGIN, Node, run

VERSION_INPUTS = [b"", b"{}", b'{"cniVersion":"0.4.0"}', b'{"cniVersion": "1.0.0", "name": "x"}', b'{"cniVersion":"9.9"}', b"garbage", b'{"cniVersion" : "0.3.1"}']


@pytest.mark.parametrize("stdin", VERSION_INPUTS)
def test_shim_and_python_answer_version_alike(launcher_dir, stdin):
    shim = subprocess.run([f"{launcher_dir}/cni-render"], input=stdin, env={"CNI_COMMAND": "VERSION"}, capture_output=True)
    python = subprocess.run([PLUGIN], input=stdin, env={"CNI_COMMAND": "VERSION"}, capture_output=True)
    assert shim.stdout == python.stdout == (version_reply(stdin) + "\n").encode()
    assert json.loads(shim.stdout)["supportedVersions"][-1] == "1.1.0"


def test_install_writes_a_shim_a_fallback_and_ipam(launcher_dir):
    shim = open(f"{launcher_dir}/cni-render", "rb").read(4)
    assert shim == b"\x7fELF"
    ipam = open(f"{launcher_dir}/cni-render-ipam").readline()
    assert ipam.startswith("#!") and ipam.rstrip().endswith(" -IS")
    for name in ("cni-render", "cni-render-ipam"):
        assert os.stat(f"{launcher_dir}/{name}").st_mode & stat.S_IXUSR
    assert not [n for n in os.listdir(launcher_dir) if n.startswith(".")]  # no temporary files left


def normalized(result: dict, netns: str) -> str:
    return json.dumps(result, sort_keys=True).replace(netns, "<netns>")


def test_daemon_and_in_process_give_identical_results(launcher_dir, netns_ok):
    nodes = [Node(mode="in-process", plugin_dir=launcher_dir), Node(mode="daemon", plugin_dir=launcher_dir)]
    try:
        outputs = []
        for node in nodes:
            pod = node.add_pod()
            pod.container_id = "same-container"
            config = node.config(cniVersion="1.1.0", ipam={
                "type": "cni-render-ipam", "dataDir": node.data_dir,
                "ranges": [[{"subnet": "10.244.1.0/24"}], [{"subnet": "fd00:1::/64"}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            })
            add = node.cni("ADD", config, pod).ok()
            check = node.cni("CHECK", dict(config, prevResult=add.json), pod).ok()
            bad = node.cni("ADD", dict(config, mtu=1), pod)
            status = node.cni("STATUS", config).ok()
            outputs.append((normalized(add.json, pod.netns), check.stdout, bad.stdout, bad.exit_code, status.stdout))
            node.cni("DEL", config, pod).ok()
        assert outputs[0] == outputs[1]
        assert "ADD same-container/eth0 -> 0" in nodes[1].daemon_log()
    finally:
        for node in nodes:
            node.close()


def test_a_caller_in_another_namespace_is_refused_and_works_in_process(launcher_dir, netns_ok):
    serving = Node(mode="daemon", plugin_dir=launcher_dir)
    other = Node(mode="in-process", plugin_dir=launcher_dir)
    try:
        pod = other.add_pod()
        config = other.config()
        call = other.cni("ADD", config, pod, extra_env={"CNI_RENDER_DAEMON_SOCKET": serving.socket}).ok()
        assert "refused: the caller is in another network namespace; working in-process" in call.stderr
        assert len(other.pod_links()) == 1 and serving.links() == ["lo"]  # the work happened where it was asked
        other.cni("DEL", config, pod, extra_env={"CNI_RENDER_DAEMON_SOCKET": serving.socket}).ok()
        assert other.pod_links() == []
    finally:
        serving.close()
        other.close()


def test_daemon_socket_is_root_only_and_rejects_garbage(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o600
        # from outside the node: refused by what the kernel says about the caller
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(node.socket)
            sock.sendall(b"CNIR1 1:1 1:1 - 0 0\n")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b"REFUSED the caller is in another network namespace\n"
        # from inside the node: a request that is not the protocol, or is cut short
        for request, answer in ((b"HELLO\n", b"REFUSED unknown protocol"), (b"CNIR1 - - - 10 5\nshort", b"REFUSED the request was cut short")):
            code = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({node.socket!r}); s.sendall({request!r}); s.shutdown(socket.SHUT_WR); print(s.recv(100))"
            assert repr(answer)[:-1] in node.exec([sys.executable, "-c", code]).stdout
    finally:
        node.close()


def test_daemon_restarts_over_a_stale_socket_and_refuses_a_twin(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        twin = node.exec([PLUGIN, "daemon", "--socket", node.socket], check=False)
        assert twin.returncode != 0 and "already listening" in twin.stderr
        for pid in [node.daemon.pid, *map(int, run(["pgrep", "-P", str(node.daemon.pid)]).stdout.split())]:
            os.kill(pid, signal.SIGKILL)
        node.daemon.wait()
        node.daemon = None
        assert os.path.exists(node.socket)  # stale
        pod = node.add_pod()
        call = node.cni("ADD", node.config(), pod).ok()  # nobody listens: in-process
        assert "working in-process" not in call.stderr
        node.start_daemon()
        node.cni("DEL", node.config(), pod).ok()
        assert f"DEL {pod.container_id}/eth0 -> 0" in node.daemon_log()
    finally:
        node.close()


def test_a_dead_worker_is_replaced(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        workers = run(["pgrep", "-P", str(node.daemon.pid)]).stdout.split()
        assert len(workers) >= 2
        os.kill(int(workers[0]), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while "died; starting another" not in node.daemon_log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(run(["pgrep", "-P", str(node.daemon.pid)]).stdout.split()) == len(workers)
        pod = node.add_pod()
        node.cni("ADD", node.config(), pod).ok()
    finally:
        node.close()


def imported_modules(command: str, environ: dict, stdin: bytes, netns: str) -> set[str]:
    """Modules a fresh Python plugin process imports for one call."""
    code = "import sys; from cni_render.entry import plugin_main; sys.exit(plugin_main())"
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-X", "importtime", "-c", code],
        input=stdin,
        env={**environ, "CNI_COMMAND": command, "PATH": os.environ["PATH"]},
        capture_output=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.split("|")[-1].strip() for line in proc.stderr.decode().splitlines() if line.startswith("import time:")}


HEAVY = {"jinja2", "jsonschema"}


def test_version_and_status_import_neither_jinja2_nor_jsonschema(plain_node):
    config = json.dumps(plain_node.config(cniVersion="1.1.0")).encode()
    env = {"CNI_RENDER_DAEMON_SOCKET": ""}
    assert not HEAVY & imported_modules("VERSION", env, b"", plain_node.name)
    # a config never seen before: STATUS still does not validate it with jsonschema
    assert not HEAVY & imported_modules("STATUS", env, config, plain_node.name)
    assert not HEAVY & imported_modules("STATUS", env, config, plain_node.name)


def test_the_python_client_of_a_daemon_imports_neither(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        pod = node.add_pod()
        environ = {"CNI_RENDER_DAEMON_SOCKET": node.socket, "CNI_CONTAINERID": pod.container_id,
                   "CNI_NETNS": pod.netns, "CNI_IFNAME": "eth0", "CNI_PATH": launcher_dir}
        config = json.dumps(node.config()).encode()
        assert not HEAVY & imported_modules("ADD", environ, config, node.name)
        assert not HEAVY & imported_modules("DEL", environ, config, node.name)
        assert f"ADD {pod.container_id}/eth0 -> 0" in node.daemon_log()
    finally:
        node.close()
