"""Real clients: libcni (the Go library containerd and CRI-O use) and podman.

libcni: a small Go program (tests/clients/libcni_client.go) built offline
against Debian's libcni source validates, adds, checks and deletes a conflist
chaining cni-render with the reference portmap, bandwidth and tuning.

podman: two containers on a cni-render network talk HTTP, with --ip honoured.
podman runs inside the throwaway node namespace (nsenter, not ip netns exec,
which hides /sys/fs/cgroup from runc).
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from throwaway import REFERENCE_PLUGINS, Node, host_interface, pod_interface, run

HERE = Path(__file__).parent
GOPATH_SOURCE = "/usr/share/gocode"


@pytest.fixture(scope="session")
def libcni_client(tmp_path_factory) -> str:
    if shutil.which("go") is None or not os.path.isdir(f"{GOPATH_SOURCE}/src/github.com/containernetworking/cni/libcni"):
        pytest.skip("golang-go and golang-github-appc-cni-dev are needed")
    work = tmp_path_factory.mktemp("libcni")
    source = work / "src"
    source.mkdir()
    shutil.copy(HERE / "libcni_client.go", source / "main.go")
    binary = work / "libcni-client"
    env = dict(
        os.environ,
        GO111MODULE="off",
        GOFLAGS="",
        GOPROXY="off",
        GOPATH=f"{work}/gopath:{GOPATH_SOURCE}",
        GOCACHE=str(work / "gocache"),
    )
    run(["go", "build", "-o", str(binary), "."], cwd=source, env=env, timeout=300)
    return str(binary)


def chain(node: Node, plugins: list[str]) -> dict:
    available = {
        "cni-render": {
            "type": "cni-render",
            "mode": node.template_set,
            "stateDir": node.state_dir,
            "ipam": {
                "type": "cni-render-ipam",
                "dataDir": node.data_dir,
                "ranges": [[{"subnet": "10.244.7.0/24"}]],
                "routes": [{"dst": "0.0.0.0/0"}],
            },
        },
        "portmap": {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
        "bandwidth": {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        "tuning": {"type": "tuning", "sysctl": {"net.core.somaxconn": "500"}},
    }
    return {"cniVersion": "1.0.0", "name": "realnet", "plugins": [available[p] for p in plugins]}


CAP_ARGS = {
    "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
    "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 1_000_000, "egressRate": 10_000_000, "egressBurst": 1_000_000},
}


def test_libcni_chain_with_portmap_bandwidth_and_tuning(node, libcni_client):
    full = node.tmp / "full.conflist"
    full.write_text(json.dumps(chain(node, ["cni-render", "portmap", "bandwidth", "tuning"])))
    # Debian's portmap fails its own CHECK on the IPv6 chain, so CHECK runs on the
    # chain without it (same network name: libcni finds the cached result by name).
    without_portmap = node.tmp / "check.conflist"
    without_portmap.write_text(json.dumps(chain(node, ["cni-render", "bandwidth", "tuning"])))
    server, client = node.add_pod(), node.add_pod()

    def libcni(pod, ops, check=True):
        argv = [
            libcni_client, "-conflist", str(full), "-check-conflist", str(without_portmap),
            "-netns", pod.netns, "-id", pod.container_id, "-ifname", "eth0",
            "-bin-dirs", f"{node.plugin_dir}:{REFERENCE_PLUGINS}", "-cache-dir", str(node.tmp / "cache"),
            "-cap-args", json.dumps(CAP_ARGS if pod is server else {"bandwidth": CAP_ARGS["bandwidth"]}),
            "-ops", ops,
        ]
        return node.exec(argv, check=check, env=dict(os.environ, CNI_RENDER_DAEMON_SOCKET=node.socket))

    added = libcni(server, "validate,add")
    assert "capabilities:" in added.stderr and "portMappings" in added.stderr
    result = json.loads(added.stdout)
    names = [i["name"] for i in result["interfaces"]]
    assert pod_interface(result)["name"] == "eth0" and any(n.startswith("bwp") for n in names)
    server_ip = result["ips"][0]["address"].split("/")[0]
    client_result = json.loads(libcni(client, "add").stdout)
    gateway = client_result["ips"][0]["gateway"]

    # the chained plugins really acted on cni-render's interfaces
    assert "tbf" in node.exec(["tc", "qdisc", "show", "dev", host_interface(result)["name"]]).stdout
    assert server.exec(["cat", "/proc/sys/net/core/somaxconn"]).stdout.strip() == "500"
    server.serve_http()
    assert node.http_get(server_ip, source=client) == "It works!\n"
    # hostPort 8080 on the node, reached from the other pod through portmap's DNAT
    assert node.http_get(gateway, source=client, port=8080) == "It works!\n"

    libcni(server, "check")
    libcni(client, "check")
    server.exec(["ip", "route", "del", "default"])
    drift = libcni(server, "check", check=False)
    assert drift.returncode != 0 and "route 0.0.0.0/0" in drift.stderr

    libcni(server, "del")
    libcni(client, "del")
    libcni(client, "del")  # twice, with the cache gone
    assert node.pod_links() == [] and node.allocations("realnet") == []
    assert "CNI-DN" not in node.exec(["iptables-save", "-t", "nat"]).stdout


# --- podman ------------------------------------------------------------------------

APPLETS = ["sh", "httpd", "wget", "timeout", "cat", "sleep", "ip"]
MACHINE_PATHS = ("/var/lib/cni", "/var/lib/containers", "/run/runc", "/run/containers")


class Podman:
    def __init__(self, node: Node):
        self.node = node
        base = node.tmp / "podman"
        self.base = base
        self.env = dict(
            os.environ,
            CONTAINERS_CONF=f"{base}/containers.conf",
            CONTAINERS_STORAGE_CONF=f"{base}/storage.conf",
            CONTAINERS_REGISTRIES_CONF=f"{base}/registries.conf",
            CNI_RENDER_DAEMON_SOCKET=node.socket,
        )

    def __call__(self, *args: str, check: bool = True):
        return run(["nsenter", f"--net={self.node.netns}", "podman", *args], check=check, env=self.env, timeout=180)

    def write_state(self) -> None:
        base = self.base
        for directory in ("cni", "tmp", "root", "runroot", "rootfs/bin", "rootfs/www", "rootfs/etc", "rootfs/tmp", "rootfs/proc", "rootfs/sys", "rootfs/dev"):
            (base / directory).mkdir(parents=True, exist_ok=True)
        (base / "containers.conf").write_text(textwrap.dedent(f"""\
            [containers]
            default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
            log_driver = "k8s-file"

            [network]
            network_backend = "cni"
            network_config_dir = "{base}/cni"
            cni_plugin_dirs = ["{self.node.plugin_dir}", "{REFERENCE_PLUGINS}"]

            [engine]
            runtime = "runc"
            cgroup_manager = "cgroupfs"
            events_logger = "file"
            events_logfile_path = "{base}/events.log"
            tmp_dir = "{base}/tmp"
            lock_type = "file"
            num_locks = 128
            """))
        (base / "storage.conf").write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{base}/root"\nrunroot = "{base}/runroot"\n')
        (base / "registries.conf").write_text("unqualified-search-registries = []\n")
        conflist = {
            "cniVersion": "1.0.0",
            "name": "rendernet",
            "plugins": [
                {
                    "type": "cni-render",
                    "mode": self.node.template_set,
                    "stateDir": self.node.state_dir,
                    "ipam": {"type": "cni-render-ipam", "dataDir": self.node.data_dir, "ranges": [[{"subnet": "10.213.8.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]},
                }
            ],
        }
        (base / "cni" / "rendernet.conflist").write_text(json.dumps(conflist))
        rootfs = base / "rootfs"
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in APPLETS:
            (rootfs / "bin" / applet).symlink_to("busybox")
        (rootfs / "www" / "index.html").write_text("It works!\n")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        run(["tar", "-C", str(rootfs), "-cf", str(base / "rootfs.tar"), "."])


def netns_names() -> set[str]:
    return {line.split()[0] for line in run(["ip", "netns", "list"]).stdout.splitlines() if line.strip()}


@pytest.fixture
def podman(node):
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman and runc are needed")
    existed = {path: os.path.exists(path) for path in MACHINE_PATHS}
    cgroup_existed = os.path.exists("/sys/fs/cgroup/memory/libpod_parent")
    namespaces_before = netns_names()
    client = Podman(node)
    client.write_state()
    try:
        client("import", "--quiet", str(client.base / "rootfs.tar"), "localhost/cni-render-test:latest")
        yield client
    finally:
        client("rm", "-af", "-t", "0", check=False)
        for name in netns_names() - namespaces_before - {node.name}:
            run(["ip", "netns", "del", name], check=False)
        for path, was_there in existed.items():
            if not was_there:
                shutil.rmtree(path, ignore_errors=True)
        if not cgroup_existed:
            for controller in os.listdir("/sys/fs/cgroup"):
                for directory in (f"/sys/fs/cgroup/{controller}/libpod_parent/conmon", f"/sys/fs/cgroup/{controller}/libpod_parent"):
                    try:
                        os.rmdir(directory)
                    except OSError:
                        pass


def test_podman_containers_talk_with_static_ips(node, podman):
    listed = podman("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout
    assert "rendernet cni-render" in listed.splitlines()
    podman("run", "-d", "--name", "web", "--network", "rendernet", "--ip", "10.213.8.10",
           "localhost/cni-render-test", "httpd", "-f", "-p", "80", "-h", "/www")
    inspected = json.loads(podman("inspect", "web").stdout)[0]["NetworkSettings"]["Networks"]["rendernet"]
    assert inspected["IPAddress"] == "10.213.8.10" and inspected["Gateway"] == "10.213.8.1"
    assert inspected["MacAddress"]
    fetch = "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 5 wget -q -O - http://10.213.8.10/ && exit 0; sleep 0.2; done; exit 1"
    answer = podman("run", "--rm", "--network", "rendernet", "--ip", "10.213.8.11", "localhost/cni-render-test", "sh", "-c", fetch)
    assert answer.stdout == "It works!\n"
    # podman does no subnet check for --ip: cni-render-ipam refuses it
    outside = podman("run", "--rm", "--network", "rendernet", "--ip", "10.99.0.5", "localhost/cni-render-test", "true", check=False)
    assert outside.returncode != 0 and "in no configured range" in outside.stderr
    assert node.http_get("10.213.8.10") == "It works!\n"
    podman("rm", "-f", "-t", "0", "web")
    assert node.allocations("rendernet") == [] and node.pod_links() == []
