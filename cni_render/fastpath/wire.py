"""The wire protocol between cni-render's clients and its node daemon: every
byte format, encoded and decoded both ways, here and nowhere else.

The clients are :mod:`cni_render.fastpath.client` (Python) and ``shim/cni-render-shim.c``
(C, which mirrors these formats byte for byte); the server is
:mod:`cni_render.fastpath.worker`. One call per connection:

request   ``CNIR2 <CNI_NETNS dev:ino|-> <env bytes> <stdin bytes>\\n``, then the
          environment (``K=V`` joined by NUL) and stdin.
          :func:`encode_request`; :func:`parse_request_header` + :func:`decode_request`.
first     one line, written before the daemon does anything for the call:
line      ``ACK`` the call starts now;
          ``REFUSED <reason>`` the daemon will not act for this caller;
          ``BUSY <reason>`` not now (stopping, too many calls): nothing ran.
          :func:`encode_first_line`; :func:`parse_first_line`.
answer    after ``ACK``: ``<exit code> <stdout bytes> <stderr bytes>\\n`` then both.
          :func:`encode_answer`; :func:`decode_answer` (:func:`parse_answer_header`).

Numbers are read strictly: plain decimals, no sign, spaces or leading zeros.
A connection that ends before ``ACK`` (the daemon stopped, crashed or was
busy) means the call never started: the client may work in-process, or on a
node without Python ask again. A connection that ends after ``ACK`` without
the whole answer is code 11: the call may have run. Socket I/O stays with the
client and the worker. Kept import-free: the client's VERSION path imports
this module.
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

Answer = tuple[int, bytes, bytes]  # exit code, stdout, stderr


class RequestError(Exception):
    """The daemon will not run this request; the message is the reason it
    sends after ``REFUSED``."""


class AnswerError(Exception):
    """The answer after ``ACK`` is not one: the message says how (the call may have run)."""


class WireRequest:
    """A request as the daemon received it: the ``dev:ino`` the caller saw at
    its ``CNI_NETNS`` (``-``: none), its environment and its stdin."""

    __slots__ = ("netns_identity", "environ", "stdin")

    def __init__(self, netns_identity: str, environ: dict[str, str], stdin: bytes) -> None:
        self.netns_identity = netns_identity
        self.environ = environ
        self.stdin = stdin


def identity(path: str) -> str:
    """``dev:ino`` of a file, or ``-`` when it cannot be reached."""
    import os

    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_dev}:{st.st_ino}"


def _decimal(field: bytes, digits: int) -> int | None:
    """A decimal without sign, spaces or leading zeros, of at most ``digits`` digits."""
    if not field.isdigit() or (len(field) > 1 and field[:1] == b"0") or len(field) > digits:
        return None
    return int(field)


# -- the request: client -> daemon --------------------------------------------


def encode_request(environ: dict[str, str], stdin: bytes, netns_identity: str) -> bytes:
    env = b"\0".join(f"{key}={value}".encode("utf-8", "surrogateescape") for key, value in environ.items())
    header = f"{PROTOCOL.decode()} {netns_identity} {len(env)} {len(stdin)}\n".encode()
    return header + env + stdin


def _size(field: bytes) -> int:
    size = _decimal(field, 9)
    if size is None:
        raise RequestError("unknown protocol")
    if size > MAX_PAYLOAD:
        raise RequestError("request too large")
    return size


def parse_request_header(line: bytes) -> tuple[str, int, int]:
    """(CNI_NETNS identity, environment length, stdin length) of a request's
    first line without its newline, read strictly; else :class:`RequestError`."""
    header = line.split(b" ")
    if len(header) != 4 or header[0] != PROTOCOL:
        raise RequestError("unknown protocol")
    _, claimed, env_field, stdin_field = header
    env_length, stdin_length = _size(env_field), _size(stdin_field)
    return claimed.decode(errors="replace"), env_length, stdin_length


def decode_environment(data: bytes) -> dict[str, str]:
    environ: dict[str, str] = {}
    for pair in data.split(b"\0"):
        if not pair:
            continue
        key, sep, value = pair.partition(b"=")
        if not sep:
            continue
        name = key.decode("utf-8", "surrogateescape")
        if name in environ and name.startswith("CNI_"):
            raise RequestError(f"the environment sets {name} twice")
        environ[name] = value.decode("utf-8", "surrogateescape")
    return environ


def decode_request(header: tuple[str, int, int], body: bytes) -> WireRequest:
    """The request whose header :func:`parse_request_header` read, from what followed it."""
    claimed, env_length, stdin_length = header
    if len(body) != env_length + stdin_length:
        raise RequestError("the request is longer than its header says")
    return WireRequest(claimed, decode_environment(body[:env_length]), body[env_length:])


# -- the first line: daemon -> client -----------------------------------------


def encode_first_line(word: bytes, reason: str = "") -> bytes:
    """``ACK``, or ``REFUSED``/``BUSY`` and why, cut to fit a line the clients read."""
    if word == ACK:
        return ACK + b"\n"
    return word + b" " + reason.encode(errors="replace")[: MAX_LINE - 16] + b"\n"


def parse_first_line(line: bytes) -> tuple[bytes, str] | None:
    """(ACK, ""), (REFUSED or BUSY, why) of the line without its newline, or
    None: the daemon does not speak this protocol."""
    if line == ACK:
        return ACK, ""
    word, _, why = line.partition(b" ")
    if word in (REFUSED, BUSY):
        return word, why.decode(errors="replace")
    return None


# -- the answer: daemon -> client ---------------------------------------------


def encode_answer(code: int, stdout: bytes, stderr: bytes) -> bytes:
    return f"{code} {len(stdout)} {len(stderr)}\n".encode() + stdout + stderr


def _number(field: bytes, limit: int) -> int | None:
    value = _decimal(field, 10)
    return value if value is not None and value <= limit else None


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


def decode_answer(data: bytes) -> Answer:
    """(exit code, stdout, stderr) of everything the daemon sent after ``ACK``;
    else :class:`AnswerError`."""
    header, newline, body = data.partition(b"\n")
    if not newline:
        raise AnswerError("the answer was cut short")
    parsed = parse_answer_header(header)
    if parsed is None:
        raise AnswerError("the answer's header is malformed")
    code, out_length, err_length = parsed
    if len(body) != out_length + err_length:
        raise AnswerError(f"the answer holds {len(body)} bytes, not {out_length + err_length}")
    return code, body[:out_length], body[out_length:]


# -- CNI documents the fast path writes itself ---------------------------------


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
