"""Pod start-up on the local cluster: cni-render (the DaemonSet) against the
reference ptp + host-local, on the same nodes, one after the other.

    python3 benchmarks/pod_startup.py [--pods 30] [--burst 30]

Needs `make cluster daemonset`. For each plugin: --pods pods created one at a
time (each timed from `kubectl create` to the pod Ready, seen by a watch), then
--burst pods created at once (each timed from the same start). The reference
runs by a `05-ptp-bench.conflist` on every node, which containerd prefers to
cni-render's `10-` file while it is there; it is removed afterwards. Prints
p50/p99 and the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KUBECTL = str(REPO / "cluster" / "kubectl")
NODE = str(REPO / "cluster" / "node")
NAMESPACE = "cni-render-bench"
IMAGE = "localhost/cni-render-testimg:1"
REFERENCE_CONFLIST = "/etc/cni/net.d/05-ptp-bench.conflist"


def kubectl(*args: str, input: str | None = None) -> str:
    return subprocess.run([KUBECTL, *args], input=input, capture_output=True, text=True, check=True).stdout


class ReadyWatch:
    """Client-side times at which pods of the namespace first turn Ready."""

    def __init__(self) -> None:
        self.ready: dict[str, float] = {}
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [KUBECTL, "-n", NAMESPACE, "get", "pods", "--watch", "--output-watch-events", "-o", "json"],
            stdout=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        decoder = json.JSONDecoder()
        buffer = ""
        assert self.process.stdout
        for line in self.process.stdout:
            buffer += line
            try:
                event, end = decoder.raw_decode(buffer.lstrip())
            except ValueError:
                continue
            buffer = buffer.lstrip()[end:]
            pod = event.get("object", {})
            name = pod.get("metadata", {}).get("name")
            conditions = pod.get("status", {}).get("conditions", [])
            if name and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                with self.changed:
                    self.ready.setdefault(name, time.monotonic())
                    self.changed.notify_all()

    def wait(self, names: list[str], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not all(n in self.ready for n in names):
                if not self.changed.wait(deadline - time.monotonic()):
                    raise SystemExit(f"pods not Ready in {timeout}s: {[n for n in names if n not in self.ready]}")

    def close(self) -> None:
        self.process.terminate()


def pod(name: str, node: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "web", "image": IMAGE, "imagePullPolicy": "IfNotPresent"}]},
    }


def create(pods: list[dict]) -> float:
    started = time.monotonic()
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    return started


def run(label: str, nodes: list[str], serial: int, burst: int) -> dict[str, list[float]]:
    kubectl("create", "namespace", NAMESPACE)
    watch = ReadyWatch()
    try:
        one = []
        for i in range(serial):
            name = f"{label}-s{i}"
            started = create([pod(name, nodes[i % len(nodes)])])
            watch.wait([name])
            one.append(watch.ready[name] - started)
        names = [f"{label}-b{i}" for i in range(burst)]
        started = create([pod(n, nodes[i % len(nodes)]) for i, n in enumerate(names)])
        watch.wait(names)
        return {"serial": one, "burst": [watch.ready[n] - started for n in names]}
    finally:
        watch.close()
        kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=300s")


def reference_conflist(cidr: str) -> str:
    return json.dumps({
        "cniVersion": "1.0.0", "name": "ptp-bench",
        "plugins": [{"type": "ptp", "ipam": {"type": "host-local", "dataDir": "/run/ptp-bench",
                                              "ranges": [[{"subnet": cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}}],
    })


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=30, help="pods created one at a time, per plugin")
    parser.add_argument("--burst", type=int, default=30, help="pods created at once, per plugin")
    args = parser.parse_args()
    items = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    nodes = [n["metadata"]["name"] for n in items]
    cidrs = {n["metadata"]["name"]: [c for c in n["spec"]["podCIDRs"] if ":" not in c][0] for n in items}

    results = {"cni-render": run("cr", nodes, args.pods, args.burst)}
    for node in nodes:
        subprocess.run([NODE, node, "--", "sh", "-c", f"cat > {REFERENCE_CONFLIST}.tmp && mv {REFERENCE_CONFLIST}.tmp {REFERENCE_CONFLIST}"],
                       input=reference_conflist(cidrs[node]), text=True, check=True)
    try:
        time.sleep(2)  # containerd notices the new file
        results["ptp + host-local"] = run("ptp", nodes, args.pods, args.burst)
    finally:
        for node in nodes:
            subprocess.run([NODE, node, "--", "rm", "-rf", REFERENCE_CONFLIST, "/run/ptp-bench"], check=True)

    print(f"pod start-up, {len(nodes)} nodes: create -> Ready (client-side watch), seconds")
    print(f"| | {args.pods} pods one at a time p50 | p99 | {args.burst} at once p50 | p99 |")
    print("|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {statistics.median(r['serial']):.2f} | {percentile(r['serial'], 99):.2f} | "
              f"{statistics.median(r['burst']):.2f} | {percentile(r['burst'], 99):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
