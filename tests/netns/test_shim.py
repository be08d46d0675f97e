"""The clients of the node daemon: the static node shim (NODE_MODE, for nodes
without Python), the shim with a Python fallback, and the Python client.

What they share (protocol CNIR2): a call the daemon never acknowledged never
started, so it may go elsewhere (in-process, or on a node without Python, to
the next daemon within the wait); once acknowledged, a lost answer is code 11.
Every error they print carries the request's cniVersion.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cni_render.fastpath.client import version_reply
from cni_render.fastpath.install import elf_problem
from daemon_helpers import FakeDaemon, start_daemon
from throwaway import PLUGIN, Node, pod_addresses, pod_interface, run

ROOT = Path(__file__).resolve().parents[2]
SHIM_SOURCE = ROOT / "cni_render" / "fastpath" / "shim" / "cni-render-shim.c"


@pytest.fixture(scope="session")
def node_shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The static NODE_MODE shim, built by the command an image's build stage runs."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    output = tmp_path_factory.mktemp("node-shim") / "cni-render"
    proc = run([PLUGIN, "install", "--build-static-shim", str(output)], check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return str(output)


def shim_call(shim: str, command: str | None, stdin: bytes = b"", env: dict | None = None, timeout: float = 60,
              argv: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    environ = {"PATH": "/nonexistent", **(env or {})}
    if command is not None:
        environ["CNI_COMMAND"] = command
    return subprocess.run([shim, *argv], input=stdin, env=environ, capture_output=True, timeout=timeout)


# -- the node shim on its own ----------------------------------------------------------


def test_node_shim_is_static_and_can_execute_nothing(node_shim, tmp_path):
    assert elf_problem(open(node_shim, "rb").read()) is None  # no dynamic loader, no libraries
    objects = tmp_path / "shim.o"
    run(["cc", "-c", "-O2", "-DNODE_MODE", "-o", str(objects), str(SHIM_SOURCE)])
    undefined = set(run(["nm", "-u", str(objects)]).stdout.split()) - {"U"}
    spawning = {"execve", "execv", "execvp", "execl", "execlp", "fexecve", "fork", "vfork", "clone", "system",
                "popen", "posix_spawn", "posix_spawnp", "memfd_create"}
    assert not undefined & spawning
    assert {"connect", "nanosleep"} <= undefined  # the object really is the shim


@pytest.mark.parametrize("stdin", [b"", b'{"cniVersion":"0.4.0"}', b'{"cniVersion" : "0.3.1"}', b"garbage"])
def test_node_shim_answers_version_itself(node_shim, stdin):
    proc = shim_call(node_shim, "VERSION", stdin, {"CNI_RENDER_DAEMON_SOCKET": "/nonexistent/daemon.sock"})
    assert proc.returncode == 0 and proc.stdout == (version_reply(stdin) + "\n").encode()


def test_node_shim_run_by_a_person_points_at_the_pod(node_shim):
    proc = shim_call(node_shim, None, argv=("status",))
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"kubectl -n kube-system exec ds/cni-render -- cni-render status" in proc.stderr


@pytest.mark.parametrize("command,wait", [("ADD", 1), ("DEL", 0), ("CHECK", 0), ("STATUS", 0), ("GC", 0)])
def test_node_shim_waits_for_the_daemon_then_says_the_pod_is_not_ready(node_shim, tmp_path, command, wait):
    socket_path = tmp_path / "daemon.sock"
    env = {"CNI_RENDER_DAEMON_SOCKET": str(socket_path), "CNI_RENDER_WAIT_SECONDS": str(wait),
           "CNI_CONTAINERID": "c1", "CNI_IFNAME": "eth0", "CNI_NETNS": "/var/run/netns/x"}
    started = time.monotonic()
    proc = shim_call(node_shim, command, b'{"cniVersion": "0.4.0", "name": "n"}', env)
    elapsed = time.monotonic() - started
    assert wait <= elapsed < wait + 10
    error = json.loads(proc.stdout)
    assert proc.returncode == 1 and error["code"] == 11 and error["cniVersion"] == "0.4.0"
    assert error["msg"] == "Try again later"
    assert "the cni-render pod on this node is not ready" in error["details"] and str(socket_path) in error["details"]


def test_node_shim_defaults_to_the_node_socket_and_20_seconds(node_shim):
    proc = shim_call(node_shim, "DEL", b'{"cniVersion": "1.0.0"}', {"CNI_RENDER_WAIT_SECONDS": "0"})
    assert "/run/cni-render/daemon.sock" in json.loads(proc.stdout)["details"]
    text = SHIM_SOURCE.read_text()
    assert "#define DEFAULT_WAIT_SECONDS 20" in text and '#define DEFAULT_SOCKET "/run/cni-render/daemon.sock"' in text


# -- all three clients against a scripted daemon -------------------------------------


@pytest.fixture
def clients(launcher_dir, node_shim):
    """name -> (executable, whether it can work in-process)."""
    return {"python": (PLUGIN, True), "shim": (f"{launcher_dir}/cni-render", True), "node-shim": (node_shim, False)}


CLIENTS = ["python", "shim", "node-shim"]


def fake_call(node: Node, client: str, fake: FakeDaemon, command: str = "ADD", wait: str = "1"):
    pod = node.add_pod()
    config = node.config()
    extra = {"CNI_RENDER_DAEMON_SOCKET": fake.path, "CNI_RENDER_WAIT_SECONDS": wait}
    return node.cni(command, config, pod, plugin=client, extra_env=extra), pod, config


@pytest.mark.parametrize("client", CLIENTS)
def test_a_connection_closed_before_the_ack_means_the_call_never_started(client, clients, plain_node, tmp_path):
    executable, in_process = clients[client]
    fake = FakeDaemon(tmp_path / "fake.sock", b"")
    try:
        call, pod, config = fake_call(plain_node, executable, fake)
        assert fake.requests and fake.requests[0].startswith(b"CNIR2 ")
        if in_process:  # done here instead, once
            call.ok()
            assert len(plain_node.pod_links()) == 1
            assert "closed the connection before starting the call; working in-process" in call.stderr
            plain_node.cni("DEL", config, pod, extra_env={"CNI_RENDER_DAEMON_SOCKET": ""}).ok()
        else:  # asked again within the wait, then told the pod is not ready
            assert call.exit_code == 1 and call.json["code"] == 11 and call.json["cniVersion"] == "1.0.0"
            assert "not ready" in call.json["details"] and "before starting the call" in call.json["details"]
            assert len(fake.requests) >= 2
            assert plain_node.pod_links() == []
    finally:
        fake.close()


@pytest.mark.parametrize("script", [b"ACK\n", b"ACK\n0 10 0\nshort", b"ACK\n0 +2 0\n{}", b"ACK\n0 2 0\n{}extra",
                                    b"ACK\n0 02 0\n{}", b"ACK\n0  2 0\n{}", b"ACK\n300 2 0\n{}", b"ACK\n0 -1 0\n"],
                         ids=["closed", "short", "plus", "long", "zero", "space", "code", "negative"])
@pytest.mark.parametrize("client", CLIENTS)
def test_after_the_ack_a_lost_or_malformed_answer_is_code_11(client, script, clients, plain_node, tmp_path):
    executable, _ = clients[client]
    fake = FakeDaemon(tmp_path / "fake.sock", script)
    try:
        call, _, _ = fake_call(plain_node, executable, fake)
        assert call.exit_code == 1, call.stdout
        assert call.json["code"] == 11 and call.json["cniVersion"] == "1.0.0"
        assert "may have run" in call.json["details"]
        assert len(fake.requests) == 1  # never a second attempt
        assert plain_node.pod_links() == []  # and never in-process
    finally:
        fake.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_refusal(client, clients, plain_node, tmp_path):
    executable, in_process = clients[client]
    fake = FakeDaemon(tmp_path / "fake.sock", b"REFUSED the caller lacks CAP_NET_ADMIN or CAP_SYS_ADMIN\n")
    try:
        call, pod, config = fake_call(plain_node, executable, fake)
        if in_process:
            call.ok()
            assert "refused: the caller lacks CAP_NET_ADMIN or CAP_SYS_ADMIN; working in-process" in call.stderr
            plain_node.cni("DEL", config, pod, extra_env={"CNI_RENDER_DAEMON_SOCKET": ""}).ok()
        else:
            assert call.exit_code == 1 and call.json["code"] == 4 and call.json["cniVersion"] == "1.0.0"
            assert "refused the call: the caller lacks CAP_NET_ADMIN" in call.json["details"]
            assert len(fake.requests) == 1
    finally:
        fake.close()


def test_a_busy_daemon_is_asked_again_by_the_node_shim(node_shim, plain_node, tmp_path):
    fake = FakeDaemon(tmp_path / "fake.sock", b"BUSY the daemon is stopping\n")
    try:
        call, _, _ = fake_call(plain_node, node_shim, fake, command="DEL", wait="1")
        assert call.json["code"] == 11 and "is busy" in call.json["details"] and len(fake.requests) >= 2
    finally:
        fake.close()


def test_the_python_client_answers_in_the_request_version(plain_node, tmp_path):
    fake = FakeDaemon(tmp_path / "fake.sock", b"ACK\n")
    try:
        pod = plain_node.add_pod()
        extra = {"CNI_RENDER_DAEMON_SOCKET": fake.path}
        call = plain_node.cni("CHECK", plain_node.config(cniVersion="0.4.0"), pod, plugin=PLUGIN, extra_env=extra)
        assert call.json["cniVersion"] == "0.4.0" and call.json["code"] == 11
    finally:
        fake.close()


def test_the_shim_run_by_a_person_hands_its_arguments_to_the_cli(launcher_dir):
    from cni_render import __version__

    proc = subprocess.run([f"{launcher_dir}/cni-render", "--version"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip() == f"cni-render {__version__}"


# -- the node shim with a real daemon -----------------------------------------------


def test_a_daemon_that_starts_within_the_wait_serves_the_call(node_shim, launcher_dir, netns_ok):
    node = Node(plugin_dir=launcher_dir)
    try:
        pod = node.add_pod()
        config = node.config()
        socket_path = str(node.tmp / "daemon.sock")
        env = {"CNI_RENDER_DAEMON_SOCKET": socket_path, "CNI_RENDER_WAIT_SECONDS": "40"}
        calls: list = []
        thread = threading.Thread(target=lambda: calls.append(node.cni("ADD", config, pod, plugin=node_shim, extra_env=env)))
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive()  # waiting for the daemon
        start_daemon(node)
        thread.join(timeout=60)
        (call,) = calls
        result = call.ok().json
        assert pod_interface(result)["sandbox"] == pod.netns
        assert f"ADD {pod.container_id}/eth0 -> 0" in node.daemon_log()
        node.cni("DEL", config, pod, plugin=node_shim, extra_env=env).ok()
        assert node.pod_links() == []
    finally:
        node.close()


def test_node_shim_refused_by_the_daemon_is_a_cni_error(node_shim, launcher_dir, netns_ok):
    serving = Node(mode="daemon", plugin_dir=launcher_dir)
    other = Node(plugin_dir=launcher_dir)
    try:
        pod = other.add_pod()
        env = {"CNI_RENDER_DAEMON_SOCKET": serving.socket}
        call = other.cni("ADD", other.config(cniVersion="0.3.1"), pod, plugin=node_shim, extra_env=env)
        assert call.exit_code == 1 and call.json["code"] == 4 and call.json["cniVersion"] == "0.3.1"
        assert "the caller is in another network namespace" in call.json["details"]
        assert other.pod_links() == [] and serving.links() == ["lo"]
    finally:
        serving.close()
        other.close()


CHROOTED = """
set -eu
mount --bind "$POD_NETNS_FILE" "$ROOT/altrun/netns/pod"
mount --bind "$DAEMON_DIR" "$ROOT/sock"
exec chroot "$ROOT" /cni-render
"""


def test_a_caller_with_another_root_has_its_netns_opened_in_its_own_filesystem(node_shim, launcher_dir, tmp_path, netns_ok):
    """The runtime on the node and the daemon in its pod see different files:
    CNI_NETNS is found inside the caller's root (its /var/run is a symlink to a
    directory the daemon does not have) and used by descriptor."""
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        pod = node.add_pod()
        root = tmp_path / "root"
        (root / "altrun" / "netns").mkdir(parents=True)
        (root / "altrun" / "netns" / "pod").touch()
        (root / "var").mkdir()
        (root / "var" / "run").symlink_to("/altrun")
        (root / "sock").mkdir()
        shutil.copy(node_shim, root / "cni-render")
        assert not os.path.exists("/altrun")
        config = node.config(cniVersion="1.1.0")

        def call(command: str, stdin: dict) -> dict:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ROOT": str(root), "POD_NETNS_FILE": pod.netns,
                   "DAEMON_DIR": str(node.tmp), "CNI_COMMAND": command, "CNI_CONTAINERID": pod.container_id,
                   "CNI_IFNAME": "eth0", "CNI_NETNS": "/var/run/netns/pod", "CNI_PATH": "/opt/cni/bin",
                   "CNI_RENDER_DAEMON_SOCKET": "/sock/daemon.sock", "CNI_RENDER_WAIT_SECONDS": "0"}
            proc = subprocess.run(["ip", "netns", "exec", node.name, "unshare", "--mount", "--propagation", "private",
                                   "sh", "-c", CHROOTED], input=json.dumps(stdin).encode(), env=env,
                                  capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            return json.loads(proc.stdout) if proc.stdout else {}

        result = call("ADD", config)
        assert pod_interface(result)["sandbox"] == "/var/run/netns/pod"  # the caller's path, not the descriptor's
        (address,) = pod_addresses(result)
        assert address in pod.exec(["ip", "-j", "addr", "show", "eth0"]).stdout
        call("CHECK", dict(config, prevResult=result))
        call("DEL", config)
        assert node.pod_links() == [] and pod.exec(["ip", "link", "show", "eth0"], check=False).returncode != 0
        log = node.daemon_log()
        assert f"ADD {pod.container_id}/eth0 -> 0" in log and f"DEL {pod.container_id}/eth0 -> 0" in log
    finally:
        node.close()



# -- install: the prebuilt shim, atomically, and nothing else ---------------------------


def test_install_copies_the_prebuilt_shim_and_nothing_else(node_shim, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "loopback").write_bytes(b"reference plugin")
    (bin_dir / "cni-render").write_bytes(b"old")
    proc = run([PLUGIN, "install", "--bin-dir", str(bin_dir), "--shim", node_shim])
    assert proc.stdout == f"wrote {bin_dir / 'cni-render'}\n"
    assert sorted(os.listdir(bin_dir)) == ["cni-render", "loopback"]  # no launcher, no ipam, no temporary file
    assert (bin_dir / "cni-render").read_bytes() == open(node_shim, "rb").read()
    assert os.stat(bin_dir / "cni-render").st_mode & 0o777 == 0o755
    assert (bin_dir / "loopback").read_bytes() == b"reference plugin"


def test_install_replaces_a_shim_that_is_running(node_shim, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    run([PLUGIN, "install", "--bin-dir", str(bin_dir), "--shim", node_shim])
    env = {"CNI_COMMAND": "DEL", "CNI_RENDER_DAEMON_SOCKET": str(tmp_path / "none.sock"), "CNI_RENDER_WAIT_SECONDS": "3"}
    running = subprocess.Popen([str(bin_dir / "cni-render")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    try:
        time.sleep(0.3)
        run([PLUGIN, "install", "--bin-dir", str(bin_dir), "--shim", node_shim])  # never "text file busy"
        assert sorted(os.listdir(bin_dir)) == ["cni-render"]
    finally:
        assert json.loads(running.communicate(timeout=30)[0])["code"] == 11  # the old one finished its call


def test_install_refuses_what_is_not_a_static_executable_and_leaves_nothing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "script").write_text("#!/bin/sh\n")
    for shim, why in ((tmp_path / "script", "is not an ELF executable"), ("/bin/true", "is dynamically linked"),
                      (tmp_path / "missing", "cannot read the shim")):
        proc = run([PLUGIN, "install", "--bin-dir", str(bin_dir), "--shim", str(shim)], check=False)
        assert proc.returncode == 1 and why in proc.stderr
    assert os.listdir(bin_dir) == []


def test_a_failed_install_leaves_no_temporary_file(node_shim, tmp_path):
    bin_dir = tmp_path / "bin"
    (bin_dir / "cni-render").mkdir(parents=True)  # the rename cannot replace a directory
    proc = run([PLUGIN, "install", "--bin-dir", str(bin_dir), "--shim", node_shim], check=False)
    assert proc.returncode == 1
    assert os.listdir(bin_dir) == ["cni-render"] and os.path.isdir(bin_dir / "cni-render")


def test_several_files_are_written_all_or_none(tmp_path):
    from cni_render.fastpath.install import write_all_or_nothing

    with pytest.raises(OSError):
        write_all_or_nothing([(tmp_path / "first", b"1", 0o644), (tmp_path / "missing-dir" / "second", b"2", 0o644)])
    assert os.listdir(tmp_path) == []
    (tmp_path / "first").write_bytes(b"old")
    (tmp_path / "third").mkdir()
    with pytest.raises(OSError):  # the third cannot replace a directory: the first two are put back
        write_all_or_nothing([(tmp_path / n, b"new", 0o644) for n in ("first", "second", "third")])
    assert sorted(os.listdir(tmp_path)) == ["first", "third"]
    assert (tmp_path / "first").read_bytes() == b"old" and os.path.isdir(tmp_path / "third")


def test_launchers_never_import_from_a_directory_others_can_write(tmp_path, monkeypatch):
    from cni_render.fastpath import install

    assert install.import_path_problem() is None  # this virtualenv: root's all the way up
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setattr(install, "search_path", lambda: [str(shared / "site-packages")])
    assert "writable by everyone" in install.import_path_problem()
    os.chmod(shared, 0o755)
    os.chown(shared, 65534, 65534)
    assert "belongs to uid 65534" in install.import_path_problem()
    with pytest.raises(install.InstallError):
        install.install(str(tmp_path / "bin"))
    assert not (tmp_path / "bin").exists()


def test_node_shim_run_by_an_ordinary_user_fails_at_once(node_shim, launcher_dir, netns_ok):
    node = Node(mode="daemon", plugin_dir=launcher_dir)
    try:
        os.chmod(node.tmp, 0o711)
        shim = shutil.copy(node_shim, node.tmp / "cni-render")  # where an ordinary user may execute it
        code = (f"import os, subprocess, sys; os.setgid(65534); os.setuid(65534); "
                f"sys.exit(subprocess.run([{str(shim)!r}], input=b'{{\"cniVersion\": \"1.0.0\"}}', "
                f"env={{'CNI_COMMAND': 'STATUS', 'CNI_RENDER_DAEMON_SOCKET': {node.socket!r}}}).returncode)")
        started = time.monotonic()
        proc = node.exec([sys.executable, "-c", code], check=False)
        assert time.monotonic() - started < 10  # not the 20 s wait for a daemon
        error = json.loads(proc.stdout)
        assert proc.returncode == 1 and error["code"] == 4 and error["cniVersion"] == "1.0.0"
        assert "only root may use the cni-render daemon" in error["details"]
    finally:
        node.close()
