"""``cni-render-ipam``: the IPAM plugin on its own, for any CNI plugin to delegate to.

It reads host-local's config format from the ``ipam`` object of the network
config and speaks the IPAM side of the protocol: ADD returns addresses,
gateway and routes (no interfaces); DEL, CHECK, GC and STATUS as the spec says.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, TextIO

from cni_render.cni import schema
from cni_render.cni.config import _state_dir, config_version, decode, lower_keys
from cni_render.cni.errors import CniError, IncompatibleVersion, InvalidConfig
from cni_render.cni.outcome import Outcome
from cni_render.cni.request import NAME_RE, parse_request
from cni_render.cni.spec import CURRENT_VERSION
from cni_render.cni.versions import convert_result, has_check, has_gc, has_status
from cni_render.host.log import Log
from cni_render.ipam.local import LocalIpam, requested_addresses
from cni_render.ipam.model import parse_ipam_config


def handle_ipam(environ: Mapping[str, str], raw: bytes, stderr: TextIO | None) -> Outcome:
    log = Log(stderr, prefix="cni-render-ipam")
    version = CURRENT_VERSION
    try:
        request = parse_request(environ)
        document = decode(raw)
        version = config_version(document)
        name = document.get("name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidConfig(f"$.name: {name!r} is not a valid network name")
        ipam_section = document.get("ipam")
        if not isinstance(ipam_section, dict):
            raise InvalidConfig("$.ipam: the IPAM configuration object is missing")
        schema.validate(
            ipam_section,
            schema.IPAM_SCHEMA,
            cache_dir=os.path.join(_state_dir(document), "cache", "validated"),
        )
        _gate(request.command, version)
        raw_args = document.get("args")
        args = raw_args if isinstance(raw_args, dict) else {}
        runtime_config = lower_keys(document.get("runtimeConfig") or {})
        ipam = LocalIpam(
            config=parse_ipam_config(ipam_section),
            network=name,
            container_id=request.container_id,
            ifname=request.ifname,
            requested=tuple(requested_addresses(request.args, args, runtime_config))
            if request.command == "ADD"
            else (),
        )
        output = _run(request.command, ipam, document, log)
    except CniError as exc:
        log.error(f"{environ.get('CNI_COMMAND')} {environ.get('CNI_CONTAINERID', '')}: {exc}")
        return Outcome(1, exc.to_json(version))
    except Exception as exc:  # a bug or an unexpected OS error: still one JSON document
        import traceback

        log.error(traceback.format_exc())
        return Outcome(1, CniError(f"internal error: {exc!r}").to_json(version))
    if output is None:
        return Outcome(0, "")
    return Outcome(0, json.dumps(convert_result(output, version)))


def _gate(command: str, version: str) -> None:
    allowed = {"CHECK": has_check, "STATUS": has_status, "GC": has_gc}.get(command)
    if allowed and not allowed(version):
        raise IncompatibleVersion(f"config version {version} does not allow {command}")


def _run(command: str, ipam: LocalIpam, document: dict[str, Any], log: Log) -> dict[str, Any] | None:
    if command == "ADD":
        return ipam.add()
    if command == "DEL":
        released = ipam.delete()
        log.info(f"DEL {ipam.container_id}/{ipam.ifname}: released {', '.join(released) or 'nothing'}")
        return None
    if command == "CHECK":
        ipam.check(())
        return None
    if command == "STATUS":
        ipam.status()
        return None
    if command == "GC":
        from cni_render.ipam.attachments import valid_attachments

        valid = valid_attachments(document)
        if valid is not None:
            for ip, container_id, ifname in ipam.gc(valid):
                log.info(f"GC: released {ip} of {container_id}/{ifname}")
        return None
    raise InvalidConfig(f"unknown command {command}")
