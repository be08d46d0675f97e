"""Delegating IPAM to another plugin (host-local, static, dhcp...) found in CNI_PATH.

As the spec says: the delegate gets the same environment (only CNI_COMMAND
changes) and the complete config cni-render received; its errors are passed on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from cni_render.cni.errors import CniError, DelegateFailed, InvalidConfig
from cni_render.cni.versions import parse_result
from cni_render.host import system
from cni_render.ipam.attachments import with_valid_attachments


@dataclass
class DelegatedIpam:
    plugin_type: str
    environ: Mapping[str, str]
    raw_config: bytes
    cni_path: tuple[str, ...]
    knows_owners = False  # only the delegate knows what it holds

    def _run(self, command: str, stdin: bytes | None = None) -> bytes:
        path = system.find_plugin(self.plugin_type, self.cni_path)
        if path is None:
            raise InvalidConfig(
                f"IPAM plugin {self.plugin_type!r} was not found in CNI_PATH "
                f"({':'.join(self.cni_path) or 'empty'})"
            )
        env = dict(self.environ)
        env["CNI_COMMAND"] = command
        code, stdout, stderr = system.exec_plugin(path, env, self.raw_config if stdin is None else stdin)
        if code != 0:
            raise _delegate_error(self.plugin_type, command, stdout, stderr)
        return stdout

    def add(self) -> dict[str, Any]:
        try:
            stdout = self._run("ADD")
        except DelegateFailed:  # killed past its deadline, or failed without a CNI error: it may hold something
            self._release_quietly()
            raise
        try:
            return parse_result(json.loads(stdout), f"IPAM plugin {self.plugin_type} result")
        except (ValueError, CniError) as exc:
            self._release_quietly()  # it said it succeeded, so it holds something
            raise DelegateFailed(f"IPAM plugin {self.plugin_type} ADD printed no usable result: {exc}") from exc

    def _release_quietly(self) -> None:
        try:
            self._run("DEL")
        except CniError:
            pass

    def held(self) -> list[str]:
        return []  # only the delegate knows; see commands.delete.owned_addresses

    def delete(self) -> list[str]:
        self._run("DEL")
        return []

    def check(self, expected: Iterable[str]) -> None:
        self._run("CHECK")

    def gc(self, valid: set[tuple[str, str]] | None) -> list[tuple[str, str, str]]:
        """Forward GC; ``valid`` (None: as the runtime sent it) replaces the
        runtime's list, so the delegate keeps what cni-render still uses."""
        if valid is None:
            self._run("GC")
            return []
        document = with_valid_attachments(json.loads(self.raw_config), valid)
        self._run("GC", json.dumps(document).encode())
        return []

    def status(self) -> None:
        self._run("STATUS")


def _delegate_error(plugin: str, command: str, stdout: bytes, stderr: bytes) -> CniError:
    try:
        document = json.loads(stdout)
        code = int(document["code"])
    except (ValueError, KeyError, TypeError):
        text = (stdout or stderr).decode(errors="replace").strip()
        return DelegateFailed(f"IPAM plugin {plugin} {command} failed: {text or 'no output'}")
    message = str(document.get("msg", ""))
    details = str(document.get("details", ""))
    return CniError(
        f"IPAM plugin {plugin} {command}: {details or message}",
        code=code,
        msg=message or f"IPAM plugin {plugin} failed",
    )
