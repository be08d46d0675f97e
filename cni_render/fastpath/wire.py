"""The wire protocol between cni-render's clients and its node daemon.

The clients are :mod:`cni_render.fastpath.client` (Python) and ``shim/cni-render-shim.c``
(C, which mirrors these constants); the server is :mod:`cni_render.fastpath.daemon`.
One call per connection:

request   ``CNIR2 <CNI_NETNS dev:ino|-> <env bytes> <stdin bytes>\\n``, then the
          environment (``K=V`` joined by NUL) and stdin.
first     one line, written before the daemon does anything for the call:
line      ``ACK`` the call starts now;
          ``REFUSED <reason>`` the daemon will not act for this caller;
          ``BUSY <reason>`` not now (stopping, too many calls): nothing ran.
answer    after ``ACK``: ``<exit code> <stdout bytes> <stderr bytes>\\n`` then both.

A connection that ends before ``ACK`` (the daemon stopped, crashed or was
busy) means the call never started: the client may work in-process, or on a
node without Python ask again. A connection that ends after ``ACK`` without
the whole answer is code 11: the call may have run. Kept import-free: the
client's VERSION path imports this module.
"""

from __future__ import annotations

from cni_render.cni.spec import CURRENT_VERSION, SUPPORTED_VERSIONS

DEFAULT_SOCKET = "/run/cni-render/daemon.sock"
SOCKET_VARIABLE = "CNI_RENDER_DAEMON_SOCKET"  # empty: the Python client never uses a daemon
PROTOCOL = b"CNIR2"
ACK = b"ACK"
REFUSED = b"REFUSED"
BUSY = b"BUSY"
MAX_LINE = 4096
MAX_PAYLOAD = 16 << 20  # environment or stdin
MAX_ANSWER = 64 << 20  # stdout + stderr
MAX_EXIT_CODE = 255


def identity(path: str) -> str:
    """``dev:ino`` of a file, or ``-`` when it cannot be reached."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_dev}:{st.st_ino}"


def _number(field: bytes, limit: int) -> int | None:
    """A decimal without sign, spaces or leading zeros, at most ``limit``."""
    if not field or not field.isdigit() or (len(field) > 1 and field[:1] == b"0") or len(field) > 10:
        return None
    value = int(field)
    return value if value <= limit else None


def parse_answer_header(line: bytes) -> tuple[int, int, int] | None:
    """(exit code, stdout length, stderr length) of an answer line, read
    strictly (exactly three plain decimals separated by single spaces), or None."""
    fields = line.split(b" ")
    if len(fields) != 3:
        return None
    code = _number(fields[0], MAX_EXIT_CODE)
    out_length = _number(fields[1], MAX_ANSWER)
    err_length = _number(fields[2], MAX_ANSWER)
    if code is None or out_length is None or err_length is None:
        return None
    return code, out_length, err_length


def requested_version(raw: bytes) -> str:
    """The request's cniVersion, read without a JSON parser (the current
    version when there is none or it is not one cni-render speaks)."""
    text = raw.decode(errors="replace")
    key = text.find('"cniVersion"')
    if key >= 0:
        colon = text.find(":", key + 12)
        start = text.find('"', colon + 1)
        end = text.find('"', start + 1)
        if colon >= 0 and start >= 0 and end > start and not text[key + 12 : colon].strip() and not text[colon + 1 : start].strip():
            version = text[start + 1 : end]
            if version in SUPPORTED_VERSIONS:
                return version
    return CURRENT_VERSION


def version_reply(raw: bytes) -> str:
    versions = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
    return f'{{"cniVersion": "{requested_version(raw)}", "supportedVersions": [{versions}]}}'


def error_document(raw: bytes, code: int, msg: str, details: str) -> bytes:
    """One CNI error, in the request's cniVersion."""
    import json

    document = {"cniVersion": requested_version(raw), "code": code, "msg": msg, "details": details}
    return (json.dumps(document) + "\n").encode()
