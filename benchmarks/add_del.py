#!/usr/bin/env python3
"""cni-render against the reference ptp + host-local, side by side in one run.

Each plugin runs as a runtime runs it: a new process per call, inside a
throwaway node namespace (ip netns exec), with a fresh pod namespace per pod
whose creation is not timed. Prints medians and the ratio to the reference:

* ADD + DEL of one pod, CHECK and STATUS (sequential, --rounds times),
* a burst of --burst concurrent ADDs followed by as many concurrent DELs,
* the peak RSS of one plugin process,
* the daemon's total memory after the run: PSS of all its processes (master
  and workers) together, which issue 9 wants under 64 MiB.

cni-render runs as a node gets it: the launcher `cni-render install` writes,
with the node daemon (`cni-render daemon`, started inside the node) and, as
"cni-render in-process", with the daemon switched off.

Usage: benchmarks/add_del.py [--rounds 30] [--burst 110] [--only LABEL]
Run as root (make bench). Nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cni_render.host.procfs import memory_pss_kib

BIN_DIR = Path(sys.executable).parent
REFERENCE = "/usr/lib/cni"


@dataclass
class Subject:
    """One plugin under test, with its config."""

    label: str
    plugin: str
    config: dict
    env: dict = field(default_factory=dict)


LABELS = ("ptp+host-local", "cni-render", "cni-render in-process")


def subjects(tmp: Path, names: list[str], socket: str) -> list[Subject]:
    ranges = [[{"subnet": "10.250.0.0/16"}]]
    routes = [{"dst": "0.0.0.0/0"}]
    launcher = str(tmp / "bin" / "cni-render")
    config = {"cniVersion": "1.0.0", "name": "bench", "type": "cni-render", "mtu": 1500, "stateDir": str(tmp / "state"),
              "ipam": {"type": "cni-render-ipam", "ranges": ranges, "routes": routes, "dataDir": str(tmp / "cni-render")}}
    found = {
        "ptp+host-local": Subject(
            "ptp+host-local",
            f"{REFERENCE}/ptp",
            {"cniVersion": "1.0.0", "name": "bench", "type": "ptp", "mtu": 1500,
             "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": str(tmp / "host-local")}},
        ),
        "cni-render": Subject("cni-render", launcher, config, {"CNI_RENDER_DAEMON_SOCKET": socket}),
        "cni-render in-process": Subject("cni-render in-process", launcher, config, {"CNI_RENDER_DAEMON_SOCKET": ""}),
    }
    return [found[name] for name in names]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


class Node:
    def __init__(self, tmp: Path) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        self.pods: list[str] = []
        sh("ip", "netns", "add", self.name)
        sh("ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up")
        self.socket = str(tmp / "daemon.sock")
        sh(str(BIN_DIR / "cni-render"), "install", "--bin-dir", str(tmp / "bin"))
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.name, str(BIN_DIR / "cni-render"), "daemon", "--socket", self.socket],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket) and time.monotonic() < deadline:
            time.sleep(0.05)

    def new_pod(self) -> str:
        name = f"{self.name}-{len(self.pods)}"
        sh("ip", "netns", "add", name)
        self.pods.append(name)
        return name

    def drop_pod(self, name: str) -> None:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        self.pods.remove(name)

    def close(self) -> None:
        self.daemon.terminate()
        self.daemon.wait()
        for pod in list(self.pods):
            self.drop_pod(pod)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def call(node: Node, subject: Subject, command: str, pod: str | None, container_id: str,
         config: dict | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of one plugin process."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": f"/var/run/netns/{pod}" if pod else "",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": f"{BIN_DIR}:{REFERENCE}",
        **subject.env,
    }
    stdin = json.dumps(config or subject.config).encode()
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["ip", "netns", "exec", node.name, subject.plugin],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    out, err = proc.communicate(stdin)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{subject.label} {command} failed: {out.decode()} {err.decode()}")
    return elapsed, out.decode()


def peak_rss(node: Node, subject: Subject) -> float:
    """Peak RSS (MiB) of the plugin process for one ADD (GNU time inside the node)."""
    pod = node.new_pod()
    env = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "rss",
           "CNI_NETNS": f"/var/run/netns/{pod}", "CNI_IFNAME": "eth0", "CNI_PATH": f"{BIN_DIR}:{REFERENCE}", **subject.env}
    proc = subprocess.run(
        ["ip", "netns", "exec", node.name, "/usr/bin/time", "-f", "%M", subject.plugin],
        input=json.dumps(subject.config).encode(), capture_output=True, env=env, check=True,
    )
    kib = int(proc.stderr.decode().strip().splitlines()[-1])
    call(node, subject, "DEL", pod, "rss")
    node.drop_pod(pod)
    return kib / 1024


def daemon_rss(node: Node) -> float:
    """Peak RSS (MiB) of the largest daemon process (master or worker)."""
    pids = [node.daemon.pid]
    children = subprocess.run(["pgrep", "-P", str(node.daemon.pid)], capture_output=True, text=True).stdout.split()
    pids += [int(pid) for pid in children]
    peaks = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as status:
                peaks += [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
        except OSError:
            pass
    return max(peaks, default=0) / 1024


def daemon_pids(node: Node) -> list[int]:
    """The daemon's processes: the one started (`ip netns exec` execs the
    daemon's master in place) and all its descendants (the workers)."""
    pids: list[int] = []
    pending = [node.daemon.pid]
    while pending:
        pid = pending.pop()
        pids.append(pid)
        children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        pending += [int(child) for child in children]
    return pids


def sequential(node: Node, subject: Subject, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"ADD": [], "DEL": [], "ADD+DEL": [], "CHECK": [], "STATUS": []}
    status_config = dict(subject.config, cniVersion="1.1.0")
    for index in range(rounds):
        pod = node.new_pod()
        container_id = f"seq{index}"
        add, result = call(node, subject, "ADD", pod, container_id)
        check, _ = call(node, subject, "CHECK", pod, container_id, dict(subject.config, prevResult=json.loads(result)))
        delete, _ = call(node, subject, "DEL", pod, container_id)
        node.drop_pod(pod)
        times["ADD"].append(add)
        times["DEL"].append(delete)
        times["ADD+DEL"].append(add + delete)
        times["CHECK"].append(check)
        if subject.label != "ptp+host-local":  # Debian's host-local knows no 1.1.0, so no STATUS
            times["STATUS"].append(call(node, subject, "STATUS", None, "", status_config)[0])
    return times


def burst(node: Node, subject: Subject, size: int) -> tuple[float, float]:
    pods = [node.new_pod() for _ in range(size)]
    with ThreadPoolExecutor(max_workers=size) as pool:
        start = time.perf_counter()
        results = list(pool.map(lambda i: call(node, subject, "ADD", pods[i], f"burst{i}")[1], range(size)))
        adds = time.perf_counter() - start
        addresses = {ip["address"] for r in results for ip in json.loads(r)["ips"]}
        assert len(addresses) == size, "duplicate addresses in the burst"
        start = time.perf_counter()
        list(pool.map(lambda i: call(node, subject, "DEL", pods[i], f"burst{i}"), range(size)))
        dels = time.perf_counter() - start
    for pod in pods:
        node.drop_pod(pod)
    return adds, dels


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=110)
    parser.add_argument("--only", action="append", choices=LABELS)
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("run as root: the benchmark creates network namespaces", file=sys.stderr)
        return 1
    # State on tmpfs for both plugins, as on a node (/run is tmpfs).
    tmp = Path(tempfile.mkdtemp(prefix="cni-render-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    node = Node(tmp)
    table: dict[str, dict[str, float]] = {}
    try:
        for subject in subjects(tmp, options.only or list(LABELS), node.socket):
            call(node, subject, "ADD", node.new_pod(), "warmup")  # first-run caches
            call(node, subject, "DEL", node.pods[-1], "warmup")
            node.drop_pod(node.pods[-1])
            times = sequential(node, subject, options.rounds)
            row = {name: statistics.median(values) for name, values in times.items() if values}
            if options.burst and subject.label != "cni-render in-process":
                row["burst ADD"], row["burst DEL"] = burst(node, subject, options.burst)
            row["peak RSS (MiB)"] = peak_rss(node, subject)
            table[subject.label] = row
        if "cni-render" in table:
            table["cni-render"]["daemon RSS (MiB)"] = daemon_rss(node)
            pids = daemon_pids(node)
            table["cni-render"]["daemon PSS (MiB)"] = memory_pss_kib(pids) / 1024
            table["cni-render"]["daemon processes"] = len(pids)
    finally:
        node.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(table, options)
    return 0


def print_table(table: dict[str, dict[str, float]], options: argparse.Namespace) -> None:
    labels = list(table)
    reference = table.get("ptp+host-local")
    print(f"\nmedians of {options.rounds} rounds; burst = {options.burst} concurrent ADDs, then DELs (total wall time)")
    print(f"{'':16}" + "".join(f"{label:>22}" for label in labels) + ("  ratios to " + labels[0] if reference and len(labels) > 1 else ""))
    metrics = ["ADD", "DEL", "ADD+DEL", "CHECK", "STATUS", "burst ADD", "burst DEL", "peak RSS (MiB)", "daemon RSS (MiB)",
               "daemon PSS (MiB)", "daemon processes"]
    for metric in metrics:
        if not any(metric in row for row in table.values()):
            continue
        cells = []
        for label in labels:
            value = table[label].get(metric)
            if value is None:
                cells.append(f"{'n/a':>22}")
            elif "(MiB)" in metric:
                cells.append(f"{value:18.1f} MiB")
            elif metric == "daemon processes":
                cells.append(f"{value:>22.0f}")
            else:
                cells.append(f"{ms(value):>22}")
        ratios = []
        theirs = reference.get(metric) if reference else None
        for label in labels[1:] if reference else []:
            ours = table[label].get(metric)
            ratios.append(f"{ours / theirs:6.2f}x" if ours and theirs else f"{'':7}")
        print(f"{metric:16}" + "".join(cells) + "  " + " ".join(ratios))


if __name__ == "__main__":
    sys.exit(main())
