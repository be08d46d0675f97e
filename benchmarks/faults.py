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

* --cpu-hog: every scenario runs beside one busy-looping process per CPU
  (started before the first scenario, killed after the last, also when one
  fails), as a parallel compile saturates a node; --runs repeats each
  scenario. The leftovers also count IPAM attachment records
  (``<network>/.attachments/*``), none of which may outlive its sandbox.

A disruptor is any callable taking the running :class:`Load` and returning
a count: :class:`PluginKiller`, :class:`DaemonRestarter`, :class:`DaemonKiller`.
``--socket`` sends the calls of the other scenarios to a daemon of your own.

Usage: benchmarks/faults.py [--only kills|reboot|fulldisk|restarts|daemon-kills]
       [--kills 20] [--restarts 20] [--daemon-kills 20] [--pods 40] [--cpu-hog] [--runs 1]
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cni_render.cli.sandbox import BIN_DIR, Pod, Sandbox, SandboxError, descendants, kill_tree

NETWORK = "faults"
SUBNET_V4, SUBNET_V6 = "10.251.0.0/16", "fd00:251::/112"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def new_node(data_dir: str | None = None, socket: str = "") -> Sandbox:
    """A throwaway node with its state on tmpfs; the plugin is the console
    script, in-process unless ``socket`` names a daemon of the caller's."""
    node = Sandbox("faults", plugin_dir=str(BIN_DIR), search_path=(), data_dir=data_dir,
                   tmp_parent="/dev/shm" if os.path.isdir("/dev/shm") else None)
    node.socket = socket
    return node


def faults_config(node: Sandbox, **changes: Any) -> dict[str, Any]:
    config = node.contain({
        "cniVersion": "1.1.0", "name": NETWORK, "type": "cni-render", "ipMasq": True,
        "ipam": {"type": "cni-render-ipam", "ranges": [[{"subnet": SUBNET_V4}], [{"subnet": SUBNET_V6}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]},
    })
    config.update(changes)
    return config


def call(node: Sandbox, command: str, config: dict[str, Any], container_id: str, netns: str) -> tuple[int, Any]:
    done = node.cni(command, config, container_id=container_id, netns=netns, ifname="eth0")
    return done.exit_code, json.loads(done.stdout) if done.stdout.strip() else None


# --- what is left -----------------------------------------------------------


def leftovers(node: Sandbox) -> dict[str, int]:
    routes = [
        r for family in ("-4", "-6") for r in node.routes(family)
        if r.get("table") != "local" and r.get("type") != "multicast" and not r.get("dst", "").startswith("fe80")
    ]
    directory = Path(node.data_dir) / NETWORK
    names = os.listdir(directory) if directory.is_dir() else []
    address_files = node.allocations(NETWORK)
    records_dir = directory / ".attachments"
    record_names = os.listdir(records_dir) if records_dir.is_dir() else []
    temporary = [n for n in names + record_names if n.startswith(".tmp-")]
    empty = [n for n in address_files if (directory / n).stat().st_size == 0]
    pod_links = sum(
        len([link for link in json.loads(pod.exec(["ip", "-j", "link", "show"]).stdout) if link["ifname"] != "lo"])
        for pod in node.pods if os.path.exists(pod.netns)
    )
    return {
        "node links": len([link for link in node.links() if link != "lo"]),
        "node routes": len(routes),
        "address files": len(address_files),
        "temporary files": len(temporary),
        "attachment records": len([n for n in record_names if not n.startswith(".")]),
        "empty owner files": len(empty),
        "nft masquerade elements": masq_elements(node),
        "pod interfaces": pod_links,
    }


def masq_elements(node: Sandbox) -> int:
    count = 0
    for family in ("ip", "ip6"):
        listing = node.exec(["nft", "-j", "list", "set", family, "cni-render", "masq-sources"], check=False).stdout
        for item in json.loads(listing or '{"nftables": []}')["nftables"]:
            count += len(item.get("set", {}).get("elem", []))
    return count


# --- the load and its disruptors ---------------------------------------------


@dataclass
class Load:
    """Pods added and deleted in a loop by worker threads, as a runtime would."""

    node: Sandbox
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
        proc = self.node.start(command, config, container_id=container_id, netns=netns, ifname="eth0")
        with self.lock:
            self.in_flight[proc.pid] = proc
            self.counts["calls"] += 1
        out, _ = proc.communicate()
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

    def worker(self, pod: Pod) -> None:
        netns = pod.netns
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


def run_load(node: Sandbox, pods: int, disrupt: Callable[[Load], int]) -> Load:
    load = Load(node=node, config=faults_config(node))
    workers = [threading.Thread(target=load.worker, args=(node.add_pod(),)) for _ in range(pods)]
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
    with new_node(socket=options.socket) as node:
        started = time.monotonic()
        killer = PluginKiller(options.kills, options.seed)
        load = run_load(node, options.pods, killer)
        figures: dict[str, Any] = {"SIGKILLs sent": killer.sent, **load.counts}
        figures["other failures by code"] = dict(load.codes)
        figures["seconds"] = round(time.monotonic() - started, 1)
        figures.update({f"left: {k}": v for k, v in leftovers(node).items()})
        return figures


# --- the node's daemon: graceful restarts and SIGKILLs -------------------------
# One daemon generation after another on the node's socket (Sandbox.start_daemon
# with retry_refused: a start that finds the old one still listening is tried
# again, as the kubelet restarts a container).


def gone(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(os.path.exists(f"/proc/{pid}") for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def answered(node: Sandbox) -> int:
    """Calls the node's daemons answered (each logs one line per answer)."""
    lines = node.daemon_log().splitlines()
    return sum(1 for line in lines if line.startswith("cni-render daemon: ") and " -> " in line and line.endswith(" ms"))


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

    def __init__(self, node: Sandbox, restarts: int, seed: int) -> None:
        self.node = node
        self.restarts = restarts
        self.random = random.Random(seed)
        self.done = 0
        self.gaps: list[float] = []  # seconds from SIGTERM to the new daemon listening

    def __call__(self, load: Load) -> int:
        while self.done < self.restarts:
            time.sleep(self.random.uniform(0.3, 1.2))
            stopped = time.monotonic()
            assert self.node.daemon is not None
            self.node.daemon.send_signal(signal.SIGTERM)
            self.node.start_daemon(retry_refused=True)
            self.gaps.append(time.monotonic() - stopped)
            self.done += 1
        time.sleep(1.0)  # calls on the last daemon too
        return self.done

    def figures(self) -> dict[str, Any]:
        return {
            "graceful restarts": self.done,
            "new daemon's starts refused (old one still listening)": self.node.refused_starts,
            "seconds without a listening daemon (median, max)": (
                round(sorted(self.gaps)[len(self.gaps) // 2], 2) if self.gaps else 0, round(max(self.gaps, default=0), 2)
            ),
        }


class DaemonKiller:
    """SIGKILLs the daemon ``kills`` times at random moments (all its processes
    and their children) and starts a new one at once."""

    def __init__(self, node: Sandbox, kills: int, seed: int) -> None:
        self.node = node
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
            master = self.node.daemon
            assert master is not None
            pids = descendants(master.pid)
            self.processes += kill_tree(master.pid)
            master.wait()
            if not gone(pids, 10):
                raise SystemExit(f"daemon processes outlived SIGKILL: {pids}")
            self.node.start_daemon(retry_refused=True)
            self.done += 1
        time.sleep(1.0)
        return self.done

    def figures(self) -> dict[str, Any]:
        return {
            "SIGKILLs of the daemon": self.done,
            "processes killed (master, workers, ip/nft)": self.processes,
            "client calls running at the kills (on a daemon or in-process)": self.in_flight,
        }


def daemon_scenario(options: argparse.Namespace, disruptor: Callable[[Sandbox], DaemonRestarter | DaemonKiller]) -> dict[str, Any]:
    with new_node() as node:
        started = time.monotonic()
        node.start_daemon(retry_refused=True)
        disrupt = disruptor(node)
        load = run_load(node, options.pods, disrupt)
        failed = load.counts["failed calls (not killed)"]
        figures = disrupt.figures()
        figures.update({
            "calls": load.counts["calls"],
            "calls answered by a daemon": answered(node),
            "pods added": load.counts["pods added"],
            "failed calls (any error)": failed,
            "failed calls other than code 11": failed - load.codes.get(11, 0),
            "failures by code": dict(load.codes),
            "DEL retries": load.counts["DEL retries"],
            "addresses shared by live pods": load.counts["addresses shared by live pods"],
            "seconds": round(time.monotonic() - started, 1),
        })
        node.stop_daemons()
        figures.update({f"left: {k}": v for k, v in leftovers(node).items()})
        figures["left: daemon processes"] = len(processes_mentioning(node.socket_path))
        return figures


def restarts(options: argparse.Namespace) -> dict[str, Any]:
    return daemon_scenario(options, lambda node: DaemonRestarter(node, options.restarts, options.seed))


def daemon_kills(options: argparse.Namespace) -> dict[str, Any]:
    return daemon_scenario(options, lambda node: DaemonKiller(node, options.daemon_kills, options.seed))


# --- reboot ------------------------------------------------------------------


def reboot(options: argparse.Namespace) -> dict[str, Any]:
    with new_node(socket=options.socket) as node:
        outside = outside_network(node)
        config = faults_config(node)
        old = []
        for _ in range(options.reboot_pods):
            pod = node.add_pod()
            code, result = call(node, "ADD", config, *ids(pod))
            assert code == 0, result
            old.append((pod.container_id, result))
        # the reboot: every pod and its veth gone, nftables and tmpfs state wiped
        for pod in [pod for pod in node.pods if pod is not outside]:
            node.remove_pod(pod)
        node.exec(["nft", "flush", "ruleset"])
        shutil.rmtree(node.state_dir, ignore_errors=True)
        shutil.rmtree(node.data_dir, ignore_errors=True)
        new = []
        for _ in range(options.reboot_pods):
            pod = node.add_pod()
            code, result = call(node, "ADD", config, *ids(pod))
            assert code == 0, result
            pod.serve_http(f"{pod.name}\n")
            new.append((pod, result["ips"][0]["address"].split("/")[0]))
        old_addresses = {r["ips"][0]["address"].split("/")[0] for _, r in old}
        same = sum(1 for _, address in new if address in old_addresses)
        for container_id, result in old:  # the runtime cleans the old sandboxes up
            code, answer = call(node, "DEL", dict(config, prevResult=result), container_id, "")
            assert code == 0, answer
        reachable = sum(1 for pod, address in new if answers(node, pod, address) and masqueraded(node, pod))
        return {
            "new pods": len(new),
            "new pods on an old pod's address": same,
            "new pods with full connectivity": reachable,
            "connectivity": f"{100 * reachable / len(new):.0f}%",
        }


def ids(pod: Pod) -> tuple[str, str]:
    return pod.container_id, pod.netns


def outside_network(node: Sandbox) -> Pod:
    """A namespace that knows only the node's uplink address: pods reach it
    only when masqueraded. Serves HTTP; not a pod, so the reboot keeps it."""
    outside = node.add_pod()
    node.exec(["ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "wan0", "netns", outside.name])
    node.exec(["ip", "addr", "add", "192.0.2.1/24", "dev", "uplink0"])
    node.exec(["ip", "link", "set", "uplink0", "up"])
    outside.exec(["ip", "addr", "add", "192.0.2.2/24", "dev", "wan0"])
    outside.exec(["ip", "link", "set", "wan0", "up"])
    outside.serve_http("outside\n")
    return outside


def answers(node: Sandbox, pod: Pod, address: str) -> bool:
    """The pod answers the node at ``address``."""
    try:
        return node.http_get(address, seconds=3) == f"{pod.name}\n"
    except SandboxError:
        return False


def masqueraded(node: Sandbox, pod: Pod) -> bool:
    """The pod reaches the outside namespace, which has no route back to it."""
    try:
        return node.http_get("192.0.2.2", source=pod, seconds=3) == "outside\n"
    except SandboxError:
        return False


# --- full disk -----------------------------------------------------------------


def fulldisk(options: argparse.Namespace) -> dict[str, Any]:
    mountpoint = tempfile.mkdtemp(prefix="cni-render-fulldisk-")
    sh("mount", "-t", "tmpfs", "-o", f"size={options.disk_kib}k,nr_inodes=4096", "cni-render-fulldisk", mountpoint)
    try:
        with new_node(data_dir=mountpoint, socket=options.socket) as node:
            load = Load(node=node, config=faults_config(node))
            pods = [node.add_pod() for _ in range(options.pods)]
            results: list[tuple[Pod, str, Any]] = []

            def add(pod: Pod) -> None:
                outcome, document = load.run_call("ADD", pod.container_id, pod.netns, load.config)
                results.append((pod, outcome, document))

            threads = [threading.Thread(target=add, args=(pod,)) for pod in pods]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            added = [r for r in results if r[1] == "ok"]
            codes: dict[int, int] = {}
            for _, outcome, document in results:
                if outcome != "ok":
                    code = (document or {}).get("code", -1)
                    codes[code] = codes.get(code, 0) + 1
            for pod, outcome, document in results:
                load.delete_until_gone(pod.container_id, pod.netns, document if outcome == "ok" else None)
            figures: dict[str, Any] = {"ADDs": len(results), "succeeded": len(added), "failed by code": codes}
            figures.update({f"left: {k}": v for k, v in leftovers(node).items()})
            return figures
    finally:
        sh("umount", mountpoint, check=False)
        os.rmdir(mountpoint)


@contextmanager
def cpu_hog(enabled: bool) -> Iterator[int]:
    """One busy-looping process per CPU while the block runs; killed after it,
    whatever happens (and by the kernel if this process dies first)."""
    burners: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(len(os.sched_getaffinity(0)) if enabled else 0):
            burners.append(subprocess.Popen([sys.executable, "-c", BURNER]))
        yield len(burners)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


# PR_SET_PDEATHSIG (1) with SIGKILL: a burner never outlives the benchmark.
BURNER = "import ctypes\nctypes.CDLL(None).prctl(1, 9)\nwhile True:\n    pass\n"

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
    parser.add_argument("--cpu-hog", action="store_true", help="run beside one busy-looping process per CPU")
    parser.add_argument("--runs", type=int, default=1, help="run each scenario this many times")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the scenarios create network namespaces and mount a tmpfs", file=sys.stderr)
        return 1
    with cpu_hog(options.cpu_hog) as burners:
        for name in options.only or list(SCENARIOS):
            for run in range(1, options.runs + 1):
                figures = SCENARIOS[name](options)
                print(f"\n{name}" + (f" (run {run}/{options.runs})" if options.runs > 1 else "")
                      + (f" beside {burners} CPU burners" if burners else ""), flush=True)
                for key, value in figures.items():
                    print(f"  {key:34} {value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
