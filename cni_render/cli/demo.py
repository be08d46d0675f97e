"""``make demo``: cni-render on a throwaway node with two pods, no cluster needed.

A sandbox (:mod:`cni_render.cli.sandbox`): a node namespace and two pod
namespaces, the node's executables written by ``cni-render install`` and the
node daemon running inside the node. ``cni-render`` runs through the CNI
protocol exactly as a container runtime runs it (CNI_* variables, config on
stdin, result on stdout): shows the rendered batches, results and timings,
fetches "It works!" from each pod, checks, deletes, and removes everything
again. Needs root and iproute2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any

from cni_render.cli.sandbox import CniCall, Pod, Sandbox, pod_addresses

BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
NETWORK = {
    "cniVersion": "1.0.0",
    "name": "demo",
    "type": "cni-render",
    "logLevel": "debug",
    "ipam": {
        "type": "cni-render-ipam",
        "ranges": [[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
    },
}


def say(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def cni(node: Sandbox, command: str, config: dict[str, Any], pod: Pod, cni_args: str = "") -> Any:
    """One call as a runtime makes it, shown with its debug log; the result."""
    env = node.cni_env(command, pod, cni_args=cni_args)
    shown = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("CNI_") and v and "SOCKET" not in k)
    print(f"{DIM}$ {shown} {node.plugin_dir}/cni-render < config.json{RESET}")
    call = node.cni(command, config, pod, cni_args=cni_args)
    print(f"{DIM}  ({command} took {call.seconds * 1000:.0f} ms){RESET}")
    show_debug(call)
    if call.exit_code != 0:
        raise SystemExit(f"{command} failed: {call.problem()}\n{call.stderr}")
    return call.json if call.stdout.strip() else None


def show_debug(call: CniCall) -> None:
    for line in call.stderr.splitlines():
        if " debug: " in line:
            print(line.split(" debug: ", 1)[1])
        elif not line[:4].isdigit():  # the rest of a multi-line debug message
            print(f"  {line}")


def main() -> int:
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    if shutil.which("ip") is None:
        print("ip (iproute2) is missing (make deps installs it)", file=sys.stderr)
        return 1
    with Sandbox("demo") as node:
        pods = [node.add_pod(container_id=f"demo-{index}") for index in range(2)]
        say(f"A throwaway node ({node.name}) and two pods, as network namespaces")
        print(f"pods: {', '.join(pod.name for pod in pods)}")
        say("The node's plugin directory and daemon (cni-render install; cni-render daemon)")
        print(node.install(), end="")
        node.start_daemon()
        print(f"daemon listening on {node.socket} inside {node.name}")
        config = node.contain(NETWORK)
        say("The network config (stdin of every call)")
        print(json.dumps(config, indent=2))
        results = [add(node, config, index, pod) for index, pod in enumerate(pods)]
        say("HTTP: node to pods, pod to pod, IPv4 and IPv6")
        for index, result in enumerate(results):
            other = pods[1 - index]
            for address in pod_addresses(result):
                url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
                print(f"node -> {url:<28} {node.http_get(address).strip()}")
                print(f"pod {2 - index} -> {url:<27} {node.http_get(address, source=other).strip()}")
        say("CHECK and DEL")
        for pod, result in zip(pods, results):
            cni(node, "CHECK", dict(config, prevResult=result), pod)
            cni(node, "DEL", dict(config, prevResult=result), pod)
        print(f"links left on the node besides lo: {len(node.pod_links())}; "
              f"addresses still allocated: {len(node.allocations('demo'))}")
        say("It works!")
    return 0


def add(node: Sandbox, config: dict[str, Any], index: int, pod: Pod) -> Any:
    say(f"ADD pod {index + 1}: what cni-render rendered and ran")
    result = cni(node, "ADD", config, pod, f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{index}")
    say(f"Result for pod {index + 1} (what the runtime gets)")
    print(json.dumps(result, indent=2))
    pod.serve_http(f"It works! (pod {index + 1})\n")
    return result


if __name__ == "__main__":
    sys.exit(main())
