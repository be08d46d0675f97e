"""``make demo``: cni-render on a throwaway node with two pods, no cluster needed.

Creates a node namespace and two pod namespaces, installs the node's
executables (``cni-render install``) and starts the node daemon inside the
node, then runs ``cni-render`` through the CNI protocol exactly as a
container runtime would (CNI_* variables, config on stdin, result on
stdout): shows the rendered batches, results and timings, fetches "It
works!" from each pod, checks, deletes, and removes everything again. Needs
root, iproute2, curl, busybox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

CONSOLE_SCRIPT = str(Path(sys.executable).parent / "cni-render")
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(title: str) -> None:
    print(f"\n{BOLD}== {title}{RESET}")


def sh(*argv: str, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60, **kwargs)


def cni(node: str, bin_dir: Path, socket: str, command: str, config: dict[str, Any], container_id: str,
        netns: str, args: str = "") -> dict[str, Any] | None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container_id,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": str(bin_dir),
        "CNI_ARGS": args,
        "CNI_RENDER_DAEMON_SOCKET": socket,
    }
    shown = " ".join(f"{k}={v}" for k, v in env.items() if k.startswith("CNI_") and v and "SOCKET" not in k)
    print(f"{DIM}$ {shown} {bin_dir}/cni-render < config.json{RESET}")
    started = time.perf_counter()
    proc = subprocess.run(
        ["ip", "netns", "exec", node, str(bin_dir / "cni-render")],
        input=json.dumps(config),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(f"{DIM}  ({command} took {(time.perf_counter() - started) * 1000:.0f} ms){RESET}")
    for line in proc.stderr.splitlines():
        if " debug: " in line:
            print(line.split(" debug: ", 1)[1])
        elif not line[:4].isdigit():  # the rest of a multi-line debug message
            print(f"  {line}")
    if proc.returncode != 0:
        raise SystemExit(f"{command} failed: {proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def main() -> int:
    if os.geteuid() != 0:
        print("the demo creates network namespaces: run it as root", file=sys.stderr)
        return 1
    for tool in ("ip", "curl", "busybox"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (make deps installs it)", file=sys.stderr)
            return 1
    tag = uuid.uuid4().hex[:6]
    node, pods = f"demo-node-{tag}", [f"demo-pod{i}-{tag}" for i in (1, 2)]
    tmp = Path(tempfile.mkdtemp(prefix="cni-render-demo-"))
    bin_dir, socket = tmp / "bin", str(tmp / "daemon.sock")
    servers: list[subprocess.Popen[bytes]] = []
    daemon: subprocess.Popen[bytes] | None = None
    config = {
        "cniVersion": "1.0.0",
        "name": "demo",
        "type": "cni-render",
        "logLevel": "debug",
        "stateDir": str(tmp / "state"),
        "ipam": {
            "type": "cni-render-ipam",
            "dataDir": str(tmp / "ipam"),
            "ranges": [[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
        },
    }
    try:
        say(f"A throwaway node ({node}) and two pods, as network namespaces")
        for name in (node, *pods):
            sh("ip", "netns", "add", name)
            sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        say("The node's plugin directory and daemon (cni-render install; cni-render daemon)")
        print(sh(CONSOLE_SCRIPT, "install", "--bin-dir", str(bin_dir)).stdout, end="")
        daemon = subprocess.Popen(["ip", "netns", "exec", node, CONSOLE_SCRIPT, "daemon", "--socket", socket],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(socket) and daemon.poll() is None:
            time.sleep(0.05)
        print(f"daemon listening on {socket} inside {node}")
        say("The network config (stdin of every call)")
        print(json.dumps(config, indent=2))
        results = []
        for index, pod in enumerate(pods):
            say(f"ADD pod {index + 1}: what cni-render rendered and ran")
            result = cni(node, bin_dir, socket, "ADD", config, f"demo-{index}-{tag}", f"/var/run/netns/{pod}",
                         f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-{index}")
            assert result is not None
            say(f"Result for pod {index + 1} (what the runtime gets)")
            print(json.dumps(result, indent=2))
            results.append(result)
            root = tmp / f"www{index}"
            root.mkdir()
            (root / "index.html").write_text(f"It works! (pod {index + 1})\n")
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", pod, "busybox", "httpd", "-f", "-p", "80", "-h", str(root)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.2)
        say("HTTP: node to pods, pod to pod, IPv4 and IPv6")
        for index, result in enumerate(results):
            for ip in result["ips"]:
                address = ip["address"].split("/")[0]
                url = f"http://[{address}]/" if ":" in address else f"http://{address}/"
                from_node = sh("ip", "netns", "exec", node, "curl", "-sS", "-m", "3", url).stdout.strip()
                other = pods[1 - index]
                from_pod = sh("ip", "netns", "exec", other, "curl", "-sS", "-m", "3", url).stdout.strip()
                print(f"node -> {url:<28} {from_node}")
                print(f"pod {2 - index} -> {url:<27} {from_pod}")
        say("CHECK and DEL")
        for index, (pod, result) in enumerate(zip(pods, results)):
            cni(node, bin_dir, socket, "CHECK", dict(config, prevResult=result), f"demo-{index}-{tag}",
                f"/var/run/netns/{pod}")
            cni(node, bin_dir, socket, "DEL", dict(config, prevResult=result), f"demo-{index}-{tag}",
                f"/var/run/netns/{pod}")
        links = sh("ip", "netns", "exec", node, "ip", "-o", "link").stdout.count("\n")
        left = [p.name for p in (tmp / "ipam" / "demo").iterdir() if p.name[0].isdigit()]
        print(f"links left on the node besides lo: {links - 1}; addresses still allocated: {len(left)}")
        say("It works!")
        return 0
    finally:
        for server in servers:
            server.kill()
            server.wait()
        if daemon is not None:
            daemon.terminate()
            daemon.wait()
        for name in (*pods, node):
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
