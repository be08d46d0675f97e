"""The fast path: the C shim, the Python client and the node daemon.

The whole namespace suite already runs twice (``node`` is parametrised over
in-process and daemon); these tests pin what is specific to the fast path:
identical results, refusals that fall back, the daemon's own lifecycle, and
that cheap commands stay cheap.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from cni_render.commands import attachment_lock_path
from cni_render.fastpath import daemon, peer, worker
from cni_render.fastpath.client import version_reply
from cni_render.fastpath.wire import WireRequest
from cni_render.host.locking import file_lock
from cni_render.host.procfs import memory_pss_kib
from daemon_helpers import daemon_master, start_daemon, wait_for
from throwaway import PLUGIN, Node, run

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


def exchange_in(node: Node, request: bytes, shut: bool = True) -> str:
    """What the daemon answers a raw request sent from inside the node (repr of bytes)."""
    code = (
        f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({node.socket!r}); s.sendall({request!r}); "
        + ("s.shutdown(socket.SHUT_WR); " if shut else "")
        + "s.settimeout(30); data = b''\nwhile True:\n    chunk = s.recv(65536)\n    if not chunk: break\n    data += chunk\nprint(repr(data))"
    )
    return node.exec([sys.executable, "-c", code]).stdout.strip()


def test_daemon_socket_is_root_only_and_rejects_garbage(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o600
        # from outside the node: refused by what the kernel says about the caller, before it sends a byte
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(node.socket)
            sock.settimeout(5)
            assert sock.recv(100) == b"REFUSED the caller is in another network namespace\n"
        # from inside the node: a request that is not the protocol, or is cut short, or too long
        for request, answer in (
            (b"HELLO\n", b"REFUSED unknown protocol\n"),
            (b"CNIR1 1:1 1:1 - 0 0\n", b"REFUSED unknown protocol\n"),
            (b"CNIR2 - 010 5\n", b"REFUSED unknown protocol\n"),
            (b"CNIR2 - +1 0\nx", b"REFUSED unknown protocol\n"),
            (b"CNIR2 - 10 5\nshort", b"REFUSED the request was cut short\n"),
            (b"CNIR2 - 1 1\nabc", b"REFUSED the request is longer than its header says\n"),
            (b"CNIR2 - 99999999 0\n", b"REFUSED request too large\n"),
        ):
            assert exchange_in(node, request) == repr(answer), request
    finally:
        node.close()


def status_request(node: Node, stdin: bytes) -> bytes:
    env = b"\0".join([b"CNI_COMMAND=STATUS", b"PATH=" + os.environ["PATH"].encode()])
    return b"CNIR2 - %d %d\n" % (len(env), len(stdin)) + env + stdin


def test_the_daemon_acknowledges_a_whole_request_before_acting(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        stdin = json.dumps(node.config(cniVersion="1.1.0")).encode()
        request = status_request(node, stdin)
        answer = eval(exchange_in(node, request))  # a bytes literal printed by our own helper
        assert answer.startswith(b"ACK\n0 0 ")  # acknowledged, then STATUS: exit 0, no stdout
        # half a request, the connection kept open: never acknowledged, dropped after the read timeout
        started = time.monotonic()
        assert exchange_in(node, request[:-3], shut=False) == repr(b"REFUSED the request was cut short\n")
        assert 4 <= time.monotonic() - started < 30
        assert "STATUS /" in node.daemon_log() and node.daemon_log().count("STATUS /") == 1
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


# -- who costs what: authentication before anything can be held ------------------

HOLD_IDLE = """
import os, socket, sys
os.setgid(65534)
os.setuid(65534)
held = []
for _ in range({count}):
    s = socket.socket(socket.AF_UNIX)
    s.connect({path!r})
    held.append(s)
answers = []
for s in held:
    s.settimeout(20)
    answers.append(s.recv(100))
print(sum(a == b"REFUSED only root may use the cni-render daemon\\n" for a in answers), flush=True)
sys.stdin.read()  # hold every connection until the test is done
"""


def test_idle_connections_of_an_ordinary_process_do_not_delay_a_call(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    holder = None
    try:
        # let anyone reach the socket, as a careless deployment might: the daemon itself must cope
        os.chmod(node.tmp, 0o711)
        os.chmod(node.socket, 0o666)
        code = HOLD_IDLE.format(count=300, path=node.socket)
        holder = subprocess.Popen(["ip", "netns", "exec", node.name, sys.executable, "-c", code],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "300"  # each turned away at once, before reading
        pod = node.add_pod()
        started = time.monotonic()
        node.cni("ADD", node.config(), pod, timeout=10).ok()  # while all 300 are still open
        node.cni("DEL", node.config(), pod, timeout=10).ok()
        assert time.monotonic() - started < 10
        assert holder.poll() is None
    finally:
        if holder is not None:
            holder.stdin.close()
            holder.wait(timeout=30)
        node.close()


def test_an_ordinary_process_cannot_connect_to_the_socket(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        os.chmod(node.tmp, 0o711)  # only the socket's own mode (0600) stands in the way
        code = (f"import os, socket; os.setgid(65534); os.setuid(65534); s = socket.socket(socket.AF_UNIX)\n"
                f"try:\n    s.connect({node.socket!r})\nexcept PermissionError:\n    print('denied')")
        assert node.exec([sys.executable, "-c", code]).stdout.strip() == "denied"
    finally:
        node.close()


HOLD_SILENT = """
import socket, time
held = []
for _ in range({count}):
    s = socket.socket(socket.AF_UNIX)
    s.connect({path!r})
    held.append(s)
started = time.monotonic()
for s in held:
    s.settimeout(30)
    print(repr(s.recv(100)), round(time.monotonic() - started, 1), flush=True)
"""


def test_a_root_caller_that_sends_nothing_is_capped_and_dropped(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        workers = len(run(["pgrep", "-P", str(daemon_master(node))]).stdout.split())
        lines = node.exec([sys.executable, "-c", HOLD_SILENT.format(count=20, path=node.socket)], timeout=90).stdout.splitlines()
        answers = [line.rsplit(" ", 1) for line in lines]
        busy = [a for a, _ in answers if a == repr(b"BUSY too many connections from this process\n")]
        dropped = [float(t) for a, t in answers if a == repr(b"REFUSED the request was cut short\n")]
        assert len(busy) + len(dropped) == 20
        assert len(busy) >= 20 - 4 * workers  # at most 4 per caller process in each worker
        assert dropped and max(dropped) < 20  # each held for the read timeout (5 s), no longer
    finally:
        node.close()


# -- stopping: the socket refuses at once, calls in flight finish or are answered --------


def call_in_background(node: Node, command: str, config: dict, pod, **kwargs):
    calls: list = []
    thread = threading.Thread(target=lambda: calls.append(node.cni(command, config, pod, **kwargs)))
    thread.start()
    return thread, calls


@pytest.mark.parametrize("release_after", [1.0, None], ids=["call-finishes", "deadline-answers"])
def test_stop_refuses_new_callers_at_once_and_settles_calls_in_flight(launcher_dir, netns_ok, release_after):
    node = Node(plugin_dir=launcher_dir)
    try:
        start_daemon(node, "--stop-seconds", "3")
        pod = node.add_pod()
        config = node.config()
        with file_lock(f"{node.data_dir}/testnet/lock"):  # the ADD waits for IPAM inside the daemon
            thread, calls = call_in_background(node, "ADD", config, pod)
            started = attachment_lock_path(node.state_dir, "testnet", pod.container_id, "eth0")
            wait_for(lambda: os.path.exists(started), 20, "the daemon did not start the ADD")
            stopped_at = time.monotonic()
            node.daemon.send_signal(signal.SIGTERM)
            wait_for(lambda: not os.path.exists(node.socket), 5, "the socket stayed")
            with socket.socket(socket.AF_UNIX) as probe:
                with pytest.raises(OSError):
                    probe.connect(node.socket)
            if release_after:
                time.sleep(release_after)
            else:  # the lock outlives the stop deadline
                thread.join(timeout=30)
                (call,) = calls
                assert call.exit_code == 1 and call.json["code"] == 11 and call.json["cniVersion"] == "1.0.0"
                assert "stopped before the call finished" in call.json["details"]
                assert time.monotonic() - stopped_at < 15
        thread.join(timeout=30)
        if release_after:
            (call,) = calls
            call.ok()
        node.cni("DEL", config, pod).ok()  # in-process now: nobody listens
        node.daemon.wait(timeout=30)
        node.daemon = None
        assert "stopped" in node.daemon_log()
    finally:
        node.close()


# -- the socket's directory and path ----------------------------------------------


def test_the_daemon_checks_its_socket_directory_and_touches_only_its_own_socket(tmp_path, netns_ok):
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    proc = run([PLUGIN, "daemon", "--socket", str(open_dir / "daemon.sock")], check=False)
    assert proc.returncode != 0 and "writable by nobody else" in proc.stderr
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    proc = run([PLUGIN, "daemon", "--socket", str(other / "daemon.sock")], check=False)
    assert proc.returncode != 0 and "must be owned by uid 0" in proc.stderr
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (mine / "daemon.sock").write_text("not a socket")
    proc = run([PLUGIN, "daemon", "--socket", str(mine / "daemon.sock")], check=False)
    assert proc.returncode != 0 and "is not a socket" in proc.stderr
    assert (mine / "daemon.sock").read_text() == "not a socket"


def test_stop_leaves_a_socket_that_is_not_its_own(launcher_dir, netns_ok):
    node = Node(plugin_dir=launcher_dir)
    try:
        start_daemon(node)
        replacement = socket.socket(socket.AF_UNIX)
        replacement.bind(str(node.tmp / "next.sock"))
        os.rename(node.tmp / "next.sock", node.socket)  # a newer daemon took the path
        node.stop_daemon()
        assert stat.S_ISSOCK(os.lstat(node.socket).st_mode)
        replacement.close()
    finally:
        node.close()


# -- workers: capped, replaced, retired, and what they cost -------------------------


def test_worker_count_is_capped():
    assert 2 <= daemon.worker_count() <= 4
    assert daemon.worker_count(3) == 3
    assert daemon.worker_count(64) == daemon.MAX_WORKERS


def test_the_daemon_reports_its_memory(launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        pod = node.add_pod()
        node.cni("ADD", node.config(), pod).ok()
        master = daemon_master(node)
        pids = [master, *map(int, run(["pgrep", "-P", str(master)]).stdout.split())]
        total = memory_pss_kib(pids)
        assert 0 < total < 64 * 1024
        wait_for(lambda: "MiB PSS in" in node.daemon_log(), 10, "no memory report")
    finally:
        node.close()


def enter_netns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    assert libc.setns(fd, 0x40000000) == 0, os.strerror(ctypes.get_errno())
    os.close(fd)


def test_a_call_that_cannot_return_to_the_node_fails_and_retires_its_worker(tmp_path, plain_node, monkeypatch):
    """system.in_netns could not return the thread: the call gets code 11, not the
    caller's result, and the worker stops taking calls and exits once others are done."""
    from cni_render.cni.outcome import Outcome

    def stranded(environ, stdin, log):
        enter_netns(plain_node.netns)  # and never back, as a failed setns would leave it
        return Outcome(0, '{"cniVersion": "1.0.0"}')

    monkeypatch.setattr(worker, "handle", stranded)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen(4)
    listener.setblocking(False)
    stranded_worker = worker.Worker(listener, log=io.StringIO(), stop_seconds=5)
    results: list = []
    request = WireRequest("-", {"CNI_COMMAND": "STATUS"}, b'{"cniVersion": "0.4.0"}')
    thread = threading.Thread(target=lambda: results.append(stranded_worker._execute(peer.Prepared({}), request)))
    thread.start()
    thread.join(timeout=10)
    ((code, stdout, _),) = results
    assert code == 1 and json.loads(stdout)["code"] == 11 and json.loads(stdout)["cniVersion"] == "0.4.0"
    assert "lost its network namespace" in json.loads(stdout)["details"]
    assert stranded_worker.stopping.is_set() and stranded_worker.retiring
    assert stranded_worker.serve() == 3  # retires: exit status the master reads as "retired"


def test_the_caller_is_pinned_by_a_pidfd(tmp_path, netns_ok):
    path = str(tmp_path / "s")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    connect = f"import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect({path!r}); sys.stdin.read()"
    try:
        child = subprocess.Popen([sys.executable, "-c", connect], stdin=subprocess.PIPE)
        connection, _ = listener.accept()
        caller = peer.pin_peer(connection)
        assert isinstance(caller, peer.Peer) and caller.pid == child.pid
        assert f"Pid:\t{child.pid}\n" in open(f"/proc/self/fdinfo/{caller.pidfd}").read()
        assert caller.alive()
        child.stdin.close()
        child.wait(timeout=10)
        assert not caller.alive()  # its pid may be reused from now on: the pidfd knows it is not the caller
        caller.close()
        connection.close()
        # a caller gone (and reaped) before the daemon looked is refused, whatever now has its pid
        child = subprocess.Popen([sys.executable, "-c", connect.replace("sys.stdin.read()", "pass")])
        child.wait(timeout=10)
        connection, _ = listener.accept()
        assert peer.pin_peer(connection) == "the caller is gone"
        connection.close()
    finally:
        listener.close()
