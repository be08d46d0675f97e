"""Delegated IPAM plugins for namespace tests: Debian's host-local, and a spy
that records what cni-render forwards to it."""

from __future__ import annotations

import stat

from throwaway import Node

SPY = """#!/bin/sh
# Records what cni-render forwards, then behaves like host-local (ADD/DEL/CHECK)
# or answers itself for the 1.1.0 commands Debian's host-local does not know.
stdin=$(cat)
printf '%s %s\\n' "$CNI_COMMAND" "$(printf '%s' "$stdin" | tr -d '\\n')" >> "{log}"
case "$CNI_COMMAND" in
  GC|STATUS) exit 0 ;;
  *) printf '%s' "$stdin" | sed 's/"cniVersion": "1.1.0"/"cniVersion": "1.0.0"/' | exec /usr/lib/cni/host-local ;;
esac
"""


def host_local(node: Node, subnet: str = "10.244.3.0/24", plugin: str = "host-local") -> dict:
    return {"type": plugin, "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": node.data_dir}


def spy_plugin(node: Node) -> tuple[str, str]:
    directory = node.tmp / "plugins"
    directory.mkdir(exist_ok=True)
    log = node.tmp / "spy.log"
    path = directory / "spy-ipam"
    path.write_text(SPY.format(log=log))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(directory), str(log)
