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
"cni-render in-process", with the daemon switched off. "cni-render, no mtu"
is the daemon with a config without `mtu`, as the agent's conflist may be:
every ADD needs the uplink's MTU (the node has an uplink with a default
route), and the daemon is restarted first, as after a reboot.

Usage: benchmarks/add_del.py [--rounds 30] [--burst 110] [--only LABEL]
Run as root (make bench). Nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cni_render.cli.sandbox import REFERENCE_PLUGINS, Pod, Sandbox
from cni_render.host.procfs import memory_pss_kib


@dataclass
class Subject:
    """One plugin under test, with its config."""

    label: str
    plugin: str
    config: dict
    env: dict = field(default_factory=dict)


LABELS = ("ptp+host-local", "cni-render", "cni-render, no mtu", "cni-render in-process")


def subjects(node: Sandbox, names: list[str]) -> list[Subject]:
    ranges = [[{"subnet": "10.250.0.0/16"}]]
    routes = [{"dst": "0.0.0.0/0"}]
    launcher = f"{node.plugin_dir}/cni-render"
    config = node.contain({"cniVersion": "1.0.0", "name": "bench", "type": "cni-render", "mtu": 1500,
                           "ipam": {"type": "cni-render-ipam", "ranges": ranges, "routes": routes}})
    found = {
        "ptp+host-local": Subject(
            "ptp+host-local",
            f"{REFERENCE_PLUGINS}/ptp",
            {"cniVersion": "1.0.0", "name": "bench", "type": "ptp", "mtu": 1500,
             "ipam": {"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": str(node.tmp / "host-local")}},
        ),
        "cni-render": Subject("cni-render", launcher, config, {"CNI_RENDER_DAEMON_SOCKET": node.socket}),
        "cni-render, no mtu": Subject("cni-render, no mtu", launcher, {k: v for k, v in config.items() if k != "mtu"},
                                      {"CNI_RENDER_DAEMON_SOCKET": node.socket}),
        "cni-render in-process": Subject("cni-render in-process", launcher, config, {"CNI_RENDER_DAEMON_SOCKET": ""}),
    }
    return [found[name] for name in names]


def add_uplink(node: Sandbox) -> None:
    """An uplink with a default route inside the node (a veth pair whose far end
    stays in the node): what MTU detection reads. Nothing is sent over it."""
    node.exec(["ip", "link", "add", "uplink", "mtu", "1500", "type", "veth", "peer", "name", "uplink-peer"])
    for link in ("uplink-peer", "uplink"):
        node.exec(["ip", "link", "set", link, "up"])
    node.exec(["ip", "addr", "add", "192.0.2.10/24", "dev", "uplink"])
    node.exec(["ip", "route", "add", "default", "via", "192.0.2.1", "dev", "uplink"])


def call(node: Sandbox, subject: Subject, command: str, pod: Pod | None, config: dict | None = None) -> tuple[float, str]:
    """(wall seconds, stdout) of one plugin process (a pod's call, or STATUS for none)."""
    ids: dict[str, Any] = {} if pod is not None else {"container_id": "", "netns": "", "ifname": "eth0"}
    done = node.cni(command, config or subject.config, pod, plugin=subject.plugin, extra_env=subject.env, **ids)
    if done.exit_code != 0:
        raise SystemExit(f"{subject.label} {command} failed: {done.problem()} {done.stderr}")
    return done.seconds, done.stdout


def peak_rss(node: Sandbox, subject: Subject) -> float:
    """Peak RSS (MiB) of the plugin process for one ADD (GNU time inside the node)."""
    pod = node.add_pod(container_id="rss")
    timed = node.cni("ADD", subject.config, pod, plugin=["/usr/bin/time", "-f", "%M", subject.plugin],
                     extra_env=subject.env).ok()
    kib = int(timed.stderr.strip().splitlines()[-1])
    call(node, subject, "DEL", pod)
    node.remove_pod(pod)
    return kib / 1024


def daemon_rss(node: Sandbox) -> float:
    """Peak RSS (MiB) of the largest daemon process (master or worker)."""
    peaks = []
    for pid in node.daemon_pids():
        try:
            with open(f"/proc/{pid}/status") as status:
                peaks += [int(line.split()[1]) for line in status if line.startswith("VmHWM:")]
        except OSError:
            pass
    return max(peaks, default=0) / 1024


def sequential(node: Sandbox, subject: Subject, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"ADD": [], "DEL": [], "ADD+DEL": [], "CHECK": [], "STATUS": []}
    status_config = dict(subject.config, cniVersion="1.1.0")
    for index in range(rounds):
        pod = node.add_pod(container_id=f"seq{index}")
        add, result = call(node, subject, "ADD", pod)
        check, _ = call(node, subject, "CHECK", pod, dict(subject.config, prevResult=json.loads(result)))
        delete, _ = call(node, subject, "DEL", pod)
        node.remove_pod(pod)
        times["ADD"].append(add)
        times["DEL"].append(delete)
        times["ADD+DEL"].append(add + delete)
        times["CHECK"].append(check)
        if subject.label != "ptp+host-local":  # Debian's host-local knows no 1.1.0, so no STATUS
            times["STATUS"].append(call(node, subject, "STATUS", None, status_config)[0])
    return times


def burst(node: Sandbox, subject: Subject, size: int) -> tuple[float, float]:
    pods = [node.add_pod(container_id=f"burst{i}") for i in range(size)]
    with ThreadPoolExecutor(max_workers=size) as pool:
        start = time.perf_counter()
        results = list(pool.map(lambda pod: call(node, subject, "ADD", pod)[1], pods))
        adds = time.perf_counter() - start
        addresses = {ip["address"] for r in results for ip in json.loads(r)["ips"]}
        assert len(addresses) == size, "duplicate addresses in the burst"
        start = time.perf_counter()
        list(pool.map(lambda pod: call(node, subject, "DEL", pod), pods))
        dels = time.perf_counter() - start
    for pod in pods:
        node.remove_pod(pod)
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
    tmpfs = "/dev/shm" if os.path.isdir("/dev/shm") else None
    table: dict[str, dict[str, float]] = {}
    with Sandbox("bench", install=True, daemon=True, tmp_parent=tmpfs) as node:
        add_uplink(node)
        for subject in subjects(node, options.only or list(LABELS)):
            if subject.label == "cni-render, no mtu":
                node.stop_daemon()
                node.start_daemon()
            warmup = node.add_pod(container_id="warmup")
            call(node, subject, "ADD", warmup)  # first-run caches
            call(node, subject, "DEL", warmup)
            node.remove_pod(warmup)
            times = sequential(node, subject, options.rounds)
            row = {name: statistics.median(values) for name, values in times.items() if values}
            if options.burst and "in-process" not in subject.label:
                row["burst ADD"], row["burst DEL"] = burst(node, subject, options.burst)
            row["peak RSS (MiB)"] = peak_rss(node, subject)
            table[subject.label] = row
        daemon_label = next((label for label in ("cni-render, no mtu", "cni-render") if label in table), None)
        if daemon_label:  # the daemon that served the last subject
            table[daemon_label]["daemon RSS (MiB)"] = daemon_rss(node)
            pids = node.daemon_pids()
            table[daemon_label]["daemon PSS (MiB)"] = memory_pss_kib(pids) / 1024
            table[daemon_label]["daemon processes"] = len(pids)
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
