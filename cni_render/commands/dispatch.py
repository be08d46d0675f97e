"""One CNI call from raw input to outcome: parse → validate → run the command.

``handle`` is the whole plugin behind ``cni-render``'s I/O: the environment
and stdin bytes in, an exit code and stdout text out, logs to ``stderr``.
Every failure becomes exactly one CNI error document here.
"""

from __future__ import annotations

import traceback
from typing import Mapping, TextIO

from cni_render.cni import config as config_module
from cni_render.cni.errors import (
    CniError,
    DecodeFailure,
    IncompatibleVersion,
    InvalidConfig,
    LostNamespace,
    NotAvailable,
)
from cni_render.cni.outcome import Outcome
from cni_render.cni.request import parse_request
from cni_render.cni.spec import CURRENT_VERSION
from cni_render.cni.versions import convert_result, has_check, has_gc, has_status
from cni_render.host.log import Log

_VERSION_GATES = {
    "CHECK": (has_check, "0.4.0"),
    "STATUS": (has_status, "1.1.0"),
    "GC": (has_gc, "1.1.0"),
}


def _load_config(command: str, raw: bytes) -> config_module.NetworkConfig:
    """The config; STATUS and DEL check only what they read (DEL must not fail
    for good because a config edit broke the schema: pods could never go)."""
    if command == "DEL":
        return config_module.load(raw, validate=False)
    if command != "STATUS":
        return config_module.load(raw)
    try:
        return config_module.load(raw, validate=False)
    except (InvalidConfig, DecodeFailure) as exc:  # STATUS speaks in codes 50/51
        raise NotAvailable(f"the network config cannot be used: {exc.details}") from exc


def handle(environ: Mapping[str, str], raw: bytes, stderr: TextIO | None) -> Outcome:
    log = Log(stderr)
    version = CURRENT_VERSION
    try:
        request = parse_request(environ)
        config = _load_config(request.command, raw)
        version = config.cni_version
        log.configure(config.log_level, config.log_file)
        gate = _VERSION_GATES.get(request.command)
        if gate and not gate[0](version):
            raise IncompatibleVersion(
                f"config version {version} does not allow {request.command} "
                f"(it needs cniVersion {gate[1]} or later)"
            )
        from cni_render.commands import Invocation, run

        result = run(Invocation(request=request, config=config, log=log))
    except CniError as exc:
        log.error(f"{environ.get('CNI_COMMAND')} {environ.get('CNI_CONTAINERID', '')}: {exc}")
        return Outcome(1, exc.to_json(version))
    except LostNamespace as exc:  # the thread is parked in an empty namespace: the call ends here
        log.error(f"{environ.get('CNI_COMMAND')} {environ.get('CNI_CONTAINERID', '')}: fatal: {exc}")
        return Outcome(1, CniError(str(exc), code=exc.code, msg=exc.msg).to_json(version))
    except Exception as exc:  # a bug: still one JSON error on stdout
        log.error(traceback.format_exc())
        return Outcome(1, CniError(f"internal error: {exc!r}").to_json(version))
    if result is None:
        return Outcome(0, "")
    import json

    return Outcome(0, json.dumps(convert_result(result, version)))
