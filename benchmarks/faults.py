#!/usr/bin/env python3
"""Fault figures (issue 9): what is left behind when things go wrong.

Every scenario runs in a throwaway node namespace with pods as further
namespaces and removes all of it afterwards; the plugin runs as a runtime
runs it, a new process per call (``ip netns exec NODE cni-render``),
in-process (no daemon), with ipMasq on and dual-stack pods.

* kills: --pods workers (40) each ADD and DEL pods in a loop, a new
  container ID per sandbox, while --kills (20) SIGKILLs hit plugin calls in
  flight at random moments; a killed or failed call is followed by the
  runtime's DEL, retried until it succeeds (with the cached prevResult when
  the ADD had answered). Then every sandbox is gone, so whatever is left is
  a leak: node links, node routes, address files, temporary files, nft
  masquerade elements, pod interfaces. Live pods that ever shared an
  address are counted as they come and go (goal 0 everywhere).
* reboot: --reboot-pods (20) pods are added and their results kept (the
  runtime's /var/lib/cni/results), then a reboot is simulated: every pod
  namespace (and with it every veth) goes, the nftables ruleset and the
  state on tmpfs (stateDir, IPAM dataDir) are wiped. As many new pods
  start (and get the same addresses), then the old sandboxes are DELeted
  with their cached prevResult. Every new pod must still answer the node
  and reach, masqueraded, an "outside" namespace that has no route back to
  the pods (goal 100%).
* fulldisk: the IPAM dataDir is a tmpfs of --disk-kib (64) KiB, mounted in
  a temporary directory and unmounted afterwards; a burst of --pods
  concurrent ADDs fills it. Every failure must be a CNI error (code 5),
  and after the DELs nothing is left: no link, no address file, no
  temporary or empty file.

* restarts: the same load, every call through the client (``cni-render``
  with the node's daemon socket: it works in-process only when the daemon
  never started the call), while the node's daemon is restarted --restarts
  (20) times as a DaemonSet upgrade does: SIGTERM to its master and a new
  daemon started at once on the same socket (a start that finds the old one
  still listening is retried, as the kubelet restarts a container). Counts
  every call that failed, and apart the code 11s (the spec's "try again
  later", which a runtime retries); goal 0 for both.
* daemon-kills: the same load and client while the node's daemon is
  SIGKILLed --daemon-kills (20) times at random moments: master, workers and
  the ip/nft they run, frozen first so that none escapes (as a cgroup kill
  does), and a new daemon started at once. Failed calls (code 11 after the
  acknowledgement) are followed by the runtime's DEL retries; then the same
  leftovers as in kills and live pods that ever shared an address (goal 0).

A disruptor is any callable taking the running :class:`Load` and returning
a count: :class:`PluginKiller`, :class:`DaemonRestarter`, :class:`DaemonKiller`.
``--socket`` sends the calls of the other scenarios to a daemon of your own.

Usage: benchmarks/faults.py [--only kills|reboot|fulldisk|restarts|daemon-kills]
       [--kills 20] [--restarts 20] [--daemon-kills 20] [--pods 40]
Run as root. Prints one table of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

BIN_DIR = Path(sys.executable).parent
PLUGIN = str(BIN_DIR / "cni-render")
NETWORK = "faults"
SUBNET_V4, SUBNET_V6 = "10.251.0.0/16", "fd00:251::/112"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


class Node:
    """A throwaway node namespace with state in its own temporary directory."""

    def __init__(self, data_dir: str | None = None, socket: str = "") -> None:
        self.socket = socket  # empty: in-process calls
        self.name = f"crf-{uuid.uuid4().hex[:8]}"
        self.tmp = Path(tempfile.mkdtemp(prefix="cni-render-faults-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        self.data_dir = data_dir or str(self.tmp / "ipam")
        self.namespaces: list[str] = []  # the pods'
        self.others: list[str] = []
        self.made = 0
        self.processes: list[subprocess.Popen] = []
        sh("ip", "netns", "add", self.name)
        self.exec("ip", "link", "set", "lo", "up")

    def exec(self, *argv: str, check: bool = True) -> str:
        return sh("ip", "netns", "exec", self.name, *argv, check=check)

    def new_namespace(self) -> str:
        self.made += 1
        name = f"{self.name}-{self.made}"
        sh("ip", "netns", "add", name)
        sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        self.namespaces.append(name)
        return name

    def config(self, **changes: Any) -> dict[str, Any]:
        config = {
            "cniVersion": "1.1.0", "name": NETWORK, "type": "cni-render", "ipMasq": True,
            "stateDir": str(self.tmp / "state"),
            "ipam": {"type": "cni-render-ipam", "dataDir": self.data_dir,
                     "ranges": [[{"subnet": SUBNET_V4}], [{"subnet": SUBNET_V6}]],
                     "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
        }
        config.update(changes)
        return config

    def start(self, command: str, config: dict[str, Any], container_id: str, netns: str) -> subprocess.Popen:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_IFNAME": "eth0",
            "CNI_NETNS": netns, "CNI_PATH": str(BIN_DIR), "CNI_RENDER_DAEMON_SOCKET": self.socket,
        }
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, PLUGIN],  # ip netns exec execs: the pid is the plugin's
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        try:
            proc.stdin.write(json.dumps(config).encode())  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # it ended before reading: its exit status says how
        return proc

    def call(self, command: str, config: dict[str, Any], container_id: str, netns: str) -> tuple[int, Any]:
        proc = self.start(command, config, container_id, netns)
        out = proc.stdout.read()  # type: ignore[union-attr]
        proc.wait()
        return proc.returncode, json.loads(out) if out.strip() else None

    # --- what is left -----------------------------------------------------

    def leftovers(self) -> dict[str, int]:
        links = [link["ifname"] for link in json.loads(self.exec("ip", "-j", "link", "show"))]
        routes = [
            r for family in ("-4", "-6") for r in json.loads(self.exec("ip", "-j", family, "route", "show", "table", "all"))
            if r.get("table") != "local" and r.get("type") != "multicast" and not r.get("dst", "").startswith("fe80")
        ]
        directory = Path(self.data_dir) / NETWORK
        names = os.listdir(directory) if directory.is_dir() else []
        address_files = [n for n in names if n != "lock" and not n.startswith(("last_reserved_ip.", "."))]
        temporary = [n for n in names if n.startswith(".tmp-")]
        empty = [n for n in address_files if (directory / n).stat().st_size == 0]
        pod_links = sum(
            len([link for link in json.loads(sh("ip", "-n", ns, "-j", "link", "show")) if link["ifname"] != "lo"])
            for ns in self.namespaces if os.path.exists(f"/var/run/netns/{ns}")
        )
        return {
            "node links": len([link for link in links if link != "lo"]),
            "node routes": len(routes),
            "address files": len(address_files),
            "temporary files": len(temporary),
            "empty owner files": len(empty),
            "nft masquerade elements": self.masq_elements(),
            "pod interfaces": pod_links,
        }

    def masq_elements(self) -> int:
        count = 0
        for family in ("ip", "ip6"):
            listing = self.exec("nft", "-j", "list", "set", family, "cni-render", "masq-sources", check=False)
            for item in json.loads(listing or '{"nftables": []}')["nftables"]:
                count += len(item.get("set", {}).get("elem", []))
        return count

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait()
        for ns in self.namespaces + self.others:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "netns", "del", self.name, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the load and its disruptors ---------------------------------------------


@dataclass
class Load:
    """Pods added and deleted in a loop by worker threads, as a runtime would."""

    node: Node
    config: dict[str, Any]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: dict[int, subprocess.Popen] = field(default_factory=dict)
    holders: dict[str, set[str]] = field(default_factory=dict)  # address -> live container IDs
    counts: dict[str, int] = field(default_factory=lambda: {
        "calls": 0, "killed calls (the rest had just ended)": 0, "failed calls (not killed)": 0, "DEL retries": 0, "pods added": 0,
        "addresses shared by live pods": 0,
    })
    codes: dict[int, int] = field(default_factory=dict)

    def run_call(self, command: str, container_id: str, netns: str, config: dict[str, Any]) -> tuple[str, Any]:
        """("ok" | "killed" | "failed", document) of one plugin process."""
        proc = self.node.start(command, config, container_id, netns)
        with self.lock:
            self.in_flight[proc.pid] = proc
            self.counts["calls"] += 1
        out = proc.stdout.read()  # type: ignore[union-attr]
        proc.wait()
        with self.lock:
            self.in_flight.pop(proc.pid, None)
        if proc.returncode == -signal.SIGKILL:
            with self.lock:
                self.counts["killed calls (the rest had just ended)"] += 1
            return "killed", None
        document = json.loads(out) if out.strip() else None
        if proc.returncode != 0:
            with self.lock:
                self.counts["failed calls (not killed)"] += 1
                code = (document or {}).get("code", -1)
                self.codes[code] = self.codes.get(code, 0) + 1
            return "failed", document
        return "ok", document

    def delete_until_gone(self, container_id: str, netns: str, prev: Any) -> None:
        config = dict(self.config, prevResult=prev) if prev else self.config
        attempts = 0
        while self.run_call("DEL", container_id, netns, config)[0] != "ok":
            attempts += 1
            with self.lock:
                self.counts["DEL retries"] += 1
            if attempts > 50:
                raise SystemExit(f"DEL of {container_id} never succeeded")

    def worker(self, netns_name: str) -> None:
        netns = f"/var/run/netns/{netns_name}"
        while not self.stop.is_set():
            container_id = uuid.uuid4().hex
            outcome, result = self.run_call("ADD", container_id, netns, self.config)
            addresses = [ip["address"].split("/")[0] for ip in (result or {}).get("ips", [])] if outcome == "ok" else []
            with self.lock:
                if outcome == "ok":
                    self.counts["pods added"] += 1
                for address in addresses:
                    holders = self.holders.setdefault(address, set())
                    if holders:
                        self.counts["addresses shared by live pods"] += 1
                    holders.add(container_id)
            time.sleep(random.uniform(0, 0.2))
            self.delete_until_gone(container_id, netns, result if outcome == "ok" else None)
            with self.lock:
                for address in addresses:
                    self.holders[address].discard(container_id)


class PluginKiller:
    """SIGKILLs ``kills`` plugin calls in flight, each at a random moment."""

    def __init__(self, kills: int, seed: int) -> None:
        self.kills = kills
        self.sent = 0
        self.random = random.Random(seed)

    def __call__(self, load: Load) -> int:
        done = 0
        while done < self.kills:
            time.sleep(self.random.uniform(0.05, 0.4))
            with load.lock:
                candidates = list(load.in_flight.values())
            if not candidates:
                continue
            victim = self.random.choice(candidates)
            time.sleep(self.random.uniform(0, 0.15))  # somewhere inside the call
            if victim.poll() is None:
                try:
                    os.kill(victim.pid, signal.SIGKILL)
                    done += 1
                except ProcessLookupError:
                    pass
        self.sent = done
        return done


def run_load(node: Node, pods: int, disrupt: Callable[[Load], int]) -> Load:
    load = Load(node=node, config=node.config())
    namespaces = [node.new_namespace() for _ in range(pods)]
    workers = [threading.Thread(target=load.worker, args=(ns,)) for ns in namespaces]
    for worker in workers:
        worker.start()
    try:
        disrupt(load)
    finally:
        load.stop.set()
        for worker in workers:
            worker.join()
    return load


def kills(options: argparse.Namespace) -> dict[str, Any]:
    node = Node(socket=options.socket)
    try:
        started = time.monotonic()
        killer = PluginKiller(options.kills, options.seed)
        load = run_load(node, options.pods, killer)
        figures: dict[str, Any] = {"SIGKILLs sent": killer.sent, **load.counts}
        figures["other failures by code"] = dict(load.codes)
        figures["seconds"] = round(time.monotonic() - started, 1)
        figures.update({f"left: {k}": v for k, v in node.leftovers().items()})
        return figures
    finally:
        node.close()


# --- the node's daemon: graceful restarts and SIGKILLs -------------------------


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from /proc, threads excluded)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_tree(root: int) -> int:
    """SIGKILL ``root`` and all below it at once: frozen first (SIGSTOP, again
    until no new process appears), so nothing forks or finishes a step in
    between, as a cgroup kill. The number of processes killed."""
    frozen: set[int] = set()
    for _ in range(20):
        new = [pid for pid in descendants(root) if pid not in frozen]
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
            frozen.add(pid)
    for pid in frozen:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(frozen)


def gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Daemon:
    """The node's cni-render daemon, one generation after another on one socket
    (node.socket), each logging to its own file."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.generations: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.refused_starts = 0  # the previous daemon still listened

    @property
    def current(self) -> subprocess.Popen:
        return self.generations[-1]

    def start(self, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        env = {k: v for k, v in os.environ.items() if k != "CNI_COMMAND"}
        while True:
            log_path = self.node.tmp / f"daemon-{len(self.logs)}.log"
            self.logs.append(log_path)
            with open(log_path, "wb") as log:
                self.generations.append(subprocess.Popen(
                    ["ip", "netns", "exec", self.node.name, PLUGIN, "daemon", "--socket", self.node.socket],
                    stdout=log, stderr=log, env=env,
                ))
            while True:
                text = log_path.read_text(errors="replace")
                if "listening on" in text:
                    return
                if self.current.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the daemon did not start within {seconds:g} s: {text}")
                time.sleep(0.02)
            if "already listening" not in text or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {text}")
            self.refused_starts += 1
            time.sleep(0.05)

    def answered(self) -> int:
        """Calls the daemons answered (each logs one line per answer)."""
        lines = (line for path in self.logs if path.exists() for line in path.read_text(errors="replace").splitlines())
        return sum(1 for line in lines if line.startswith("cni-render daemon: ") and " -> " in line and line.endswith(" ms"))

    def close(self) -> int:
        """Stop every generation (SIGTERM, then SIGKILL of the whole tree past
        the daemon's stop deadline); the number of processes left after that."""
        for proc in self.generations:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.generations:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_tree(proc.pid)
                proc.wait()
        return len(processes_mentioning(self.node.socket))


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line holds ``text``."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


class DaemonRestarter:
    """Restarts the daemon ``restarts`` times as an upgrade does: SIGTERM to the
    master (the socket refuses new callers at once, calls in flight finish)
    and a new daemon started at once."""

    def __init__(self, daemon: Daemon, restarts: int, seed: int) -> None:
        self.daemon = daemon
        self.restarts = restarts
        self.random = random.Random(seed)
        self.done = 0
        self.gaps: list[float] = []  # seconds from SIGTERM to the new daemon listening

    def __call__(self, load: Load) -> int:
        while self.done < self.restarts:
            time.sleep(self.random.uniform(0.3, 1.2))
            stopped = time.monotonic()
            self.daemon.current.send_signal(signal.SIGTERM)
            self.daemon.start()
            self.gaps.append(time.monotonic() - stopped)
            self.done += 1
        time.sleep(1.0)  # calls on the last daemon too
        return self.done

    def figures(self) -> dict[str, Any]:
        return {
            "graceful restarts": self.done,
            "new daemon's starts refused (old one still listening)": self.daemon.refused_starts,
            "seconds without a listening daemon (median, max)": (
                round(sorted(self.gaps)[len(self.gaps) // 2], 2) if self.gaps else 0, round(max(self.gaps, default=0), 2)
            ),
        }


class DaemonKiller:
    """SIGKILLs the daemon ``kills`` times at random moments (all its processes
    and their children) and starts a new one at once."""

    def __init__(self, daemon: Daemon, kills: int, seed: int) -> None:
        self.daemon = daemon
        self.kills = kills
        self.random = random.Random(seed)
        self.done = 0
        self.processes = 0
        self.in_flight = 0  # client calls running at the moment of a kill

    def __call__(self, load: Load) -> int:
        while self.done < self.kills:
            time.sleep(self.random.uniform(0.2, 1.5))
            with load.lock:
                self.in_flight += len(load.in_flight)
            master = self.daemon.current
            pids = descendants(master.pid)
            self.processes += kill_tree(master.pid)
            master.wait()
            if not gone(pids, 10):
                raise SystemExit(f"daemon processes outlived SIGKILL: {pids}")
            self.daemon.start()
            self.done += 1
        time.sleep(1.0)
        return self.done

    def figures(self) -> dict[str, Any]:
        return {
            "SIGKILLs of the daemon": self.done,
            "processes killed (master, workers, ip/nft)": self.processes,
            "client calls running at the kills (on a daemon or in-process)": self.in_flight,
        }


def daemon_scenario(options: argparse.Namespace, disruptor: Callable[[Daemon], DaemonRestarter | DaemonKiller]) -> dict[str, Any]:
    node = Node()
    daemon = Daemon(node)
    try:
        node.socket = str(node.tmp / "daemon.sock")
        started = time.monotonic()
        daemon.start()
        disrupt = disruptor(daemon)
        load = run_load(node, options.pods, disrupt)
        failed = load.counts["failed calls (not killed)"]
        figures = disrupt.figures()
        figures.update({
            "calls": load.counts["calls"],
            "calls answered by a daemon": daemon.answered(),
            "pods added": load.counts["pods added"],
            "failed calls (any error)": failed,
            "failed calls other than code 11": failed - load.codes.get(11, 0),
            "failures by code": dict(load.codes),
            "DEL retries": load.counts["DEL retries"],
            "addresses shared by live pods": load.counts["addresses shared by live pods"],
            "seconds": round(time.monotonic() - started, 1),
        })
        left = daemon.close()
        figures.update({f"left: {k}": v for k, v in node.leftovers().items()})
        figures["left: daemon processes"] = left
        return figures
    finally:
        daemon.close()
        node.close()


def restarts(options: argparse.Namespace) -> dict[str, Any]:
    return daemon_scenario(options, lambda daemon: DaemonRestarter(daemon, options.restarts, options.seed))


def daemon_kills(options: argparse.Namespace) -> dict[str, Any]:
    return daemon_scenario(options, lambda daemon: DaemonKiller(daemon, options.daemon_kills, options.seed))


# --- reboot ------------------------------------------------------------------


def reboot(options: argparse.Namespace) -> dict[str, Any]:
    node = Node(socket=options.socket)
    try:
        outside_network(node)
        config = node.config()
        old = []
        for _ in range(options.reboot_pods):
            ns = node.new_namespace()
            container_id = uuid.uuid4().hex
            code, result = node.call("ADD", config, container_id, f"/var/run/netns/{ns}")
            assert code == 0, result
            old.append((container_id, result))
        # the reboot: every pod and its veth gone, nftables and tmpfs state wiped
        for ns in list(node.namespaces):
            sh("ip", "netns", "del", ns)
            node.namespaces.remove(ns)
        node.exec("nft", "flush", "ruleset")
        shutil.rmtree(node.tmp / "state", ignore_errors=True)
        shutil.rmtree(node.data_dir, ignore_errors=True)
        new = []
        for _ in range(options.reboot_pods):
            ns = node.new_namespace()
            code, result = node.call("ADD", config, uuid.uuid4().hex, f"/var/run/netns/{ns}")
            assert code == 0, result
            new.append((ns, result["ips"][0]["address"].split("/")[0]))
        old_addresses = {r["ips"][0]["address"].split("/")[0] for _, r in old}
        same = sum(1 for _, address in new if address in old_addresses)
        for container_id, result in old:  # the runtime cleans the old sandboxes up
            code, answer = node.call("DEL", dict(config, prevResult=result), container_id, "")
            assert code == 0, answer
        reachable = sum(1 for ns, address in new if pod_answers(node, address) and masqueraded(ns))
        return {
            "new pods": len(new),
            "new pods on an old pod's address": same,
            "new pods with full connectivity": reachable,
            "connectivity": f"{100 * reachable / len(new):.0f}%",
        }
    finally:
        node.close()


def outside_network(node: Node) -> str:
    """A namespace that knows only the node's uplink address: pods reach it
    only when masqueraded. Serves HTTP."""
    outside = node.new_namespace()
    node.exec("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "wan0", "netns", outside)
    node.exec("ip", "addr", "add", "192.0.2.1/24", "dev", "uplink0")
    node.exec("ip", "link", "set", "uplink0", "up")
    sh("ip", "-n", outside, "addr", "add", "192.0.2.2/24", "dev", "wan0")
    sh("ip", "-n", outside, "link", "set", "wan0", "up")
    root = node.tmp / "www"
    root.mkdir()
    (root / "index.html").write_text("outside\n")
    node.processes.append(subprocess.Popen(
        ["ip", "netns", "exec", outside, "busybox", "httpd", "-f", "-p", "80", "-h", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))
    node.namespaces.remove(outside)  # not a pod: the reboot keeps it
    node.others.append(outside)
    time.sleep(0.1)
    return outside


def pod_answers(node: Node, address: str) -> bool:
    ping = subprocess.run(["ip", "netns", "exec", node.name, "busybox", "ping", "-c", "1", "-W", "2", address],
                          capture_output=True, check=False)
    return ping.returncode == 0


def masqueraded(ns: str) -> bool:
    got = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "-m", "3", "http://192.0.2.2/"],
                         capture_output=True, text=True, check=False)
    return got.stdout == "outside\n"


# --- full disk -----------------------------------------------------------------


def fulldisk(options: argparse.Namespace) -> dict[str, Any]:
    mountpoint = tempfile.mkdtemp(prefix="cni-render-fulldisk-")
    sh("mount", "-t", "tmpfs", "-o", f"size={options.disk_kib}k,nr_inodes=4096", "cni-render-fulldisk", mountpoint)
    try:
        node = Node(data_dir=mountpoint, socket=options.socket)
        try:
            load = Load(node=node, config=node.config())
            namespaces = [node.new_namespace() for _ in range(options.pods)]
            results: list[tuple[str, str, str, Any]] = []

            def add(ns: str) -> None:
                container_id = uuid.uuid4().hex
                outcome, document = load.run_call("ADD", container_id, f"/var/run/netns/{ns}", load.config)
                results.append((ns, container_id, outcome, document))

            threads = [threading.Thread(target=add, args=(ns,)) for ns in namespaces]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            added = [r for r in results if r[2] == "ok"]
            codes: dict[int, int] = {}
            for _, _, outcome, document in results:
                if outcome != "ok":
                    code = (document or {}).get("code", -1)
                    codes[code] = codes.get(code, 0) + 1
            for ns, container_id, outcome, document in results:
                load.delete_until_gone(container_id, f"/var/run/netns/{ns}", document if outcome == "ok" else None)
            figures: dict[str, Any] = {"ADDs": len(results), "succeeded": len(added), "failed by code": codes}
            figures.update({f"left: {k}": v for k, v in node.leftovers().items()})
            return figures
        finally:
            node.close()
    finally:
        sh("umount", mountpoint, check=False)
        os.rmdir(mountpoint)


SCENARIOS = {"kills": kills, "reboot": reboot, "fulldisk": fulldisk, "restarts": restarts, "daemon-kills": daemon_kills}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(SCENARIOS))
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--daemon-kills", type=int, default=20)
    parser.add_argument("--pods", type=int, default=40)
    parser.add_argument("--reboot-pods", type=int, default=20)
    parser.add_argument("--disk-kib", type=int, default=64)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--socket", default="", help="send the calls to a cni-render daemon listening here (inside the node)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the scenarios create network namespaces and mount a tmpfs", file=sys.stderr)
        return 1
    for name in options.only or list(SCENARIOS):
        figures = SCENARIOS[name](options)
        print(f"\n{name}")
        for key, value in figures.items():
            print(f"  {key:34} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
