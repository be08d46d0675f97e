"""The ``cni-render`` executable's first steps, kept to what a fresh process can
afford: os, sys and the raw socket module.

* (no ``CNI_COMMAND`` never gets here: :mod:`cni_render.entry` runs the CLI)
* ``VERSION``: answered here;
* anything else: handed to the node's cni-render daemon over a unix socket
  (protocol: :mod:`cni_render.fastpath.wire`), else done in-process by
  :func:`cni_render.commands.dispatch.handle`. Both run the same code, so the results
  are identical.

The daemon acknowledges a call before it acts on it. Whatever happens before
that acknowledgement (no daemon, a refusal, a busy or stopping daemon, a
connection that ends) means the call never started, so this process does
the work itself; once acknowledged, a lost answer is code 11 (try again
later), never a second attempt.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from cni_render.fastpath.wire import (
    ACK,
    DEFAULT_SOCKET,
    MAX_ANSWER,
    MAX_LINE,
    REFUSED,
    SOCKET_VARIABLE,
    Answer,
    AnswerError,
    decode_answer,
    encode_request,
    error_document,
    identity,
    parse_first_line,
    requested_version,
    version_reply,
)

__all__ = ["DEFAULT_SOCKET", "SOCKET_VARIABLE", "ask_daemon", "main", "requested_version", "version_reply"]

CONNECT_SECONDS = 5.0  # connect() waits only while the daemon's backlog is full
ACK_SECONDS = 30.0  # the daemon acknowledges as soon as it has read and checked the request
# The runtime's own timeout for a pod's network is about 4 minutes.
ANSWER_SECONDS = 220.0


@dataclass(frozen=True)
class NotStarted:
    """The daemon did not start the call: why (for the operator's log)."""

    reason: str
    quiet: bool = False  # no daemon at all: the ordinary in-process path


def _lost(raw: bytes, why: str) -> Answer:
    details = f"the cni-render daemon did not finish answering ({why}); the call may have run"
    return 1, error_document(raw, 11, "Try again later", details), b""


def _timeval(seconds: float) -> bytes:
    import struct

    return struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))


def _read_line(sock, limit: int = MAX_LINE) -> tuple[bytes, bytes] | None:  # type: ignore[no-untyped-def]
    """(first line without its newline, what came after it), or None at EOF."""
    received = b""
    while b"\n" not in received:
        if len(received) > limit:
            return None
        chunk = sock.recv(1 << 16)
        if not chunk:
            return None
        received += chunk
    line, _, rest = received.partition(b"\n")
    return line, rest


def _read_answer(sock, raw: bytes, received: bytes) -> Answer:  # type: ignore[no-untyped-def]
    """The answer after ACK, its lengths read strictly."""
    chunks = [received]
    size = len(received)
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER + MAX_LINE:
            return _lost(raw, "the answer is too long")
    try:
        return decode_answer(b"".join(chunks))
    except AnswerError as exc:
        return _lost(raw, str(exc))


def _peer_uid(sock) -> int:  # type: ignore[no-untyped-def]
    import _socket
    import struct

    credentials = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", credentials)[1])


def ask_daemon(environ: dict[str, str], stdin: bytes) -> Answer | NotStarted:
    """(exit code, stdout, stderr) from the daemon, or why it never started the call."""
    path = environ.get(SOCKET_VARIABLE, DEFAULT_SOCKET)
    if not path:
        return NotStarted("the daemon is disabled", quiet=True)
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        return _exchange(sock, path, environ, stdin)
    finally:
        sock.close()


def _exchange(sock, path: str, environ: dict[str, str], stdin: bytes) -> Answer | NotStarted:  # type: ignore[no-untyped-def]
    import _socket

    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, _timeval(CONNECT_SECONDS))
    try:
        sock.connect(path)
    except OSError as exc:
        import errno

        quiet = exc.errno in (errno.ENOENT, errno.ECONNREFUSED)  # nothing listens: the ordinary case
        return NotStarted(f"no daemon answered at {path} ({exc.strerror or exc})", quiet=quiet)
    if _peer_uid(sock) != 0:
        return NotStarted(f"the process listening on {path} is not root")
    try:
        netns = environ.get("CNI_NETNS", "")
        sock.sendall(encode_request(environ, stdin, identity(netns) if netns else "-"))
        sock.shutdown(_socket.SHUT_WR)
    except OSError:
        pass  # a daemon that stopped reading may still have said why: read on
    sock.settimeout(ACK_SECONDS)
    try:
        first = _read_line(sock)
    except _socket.timeout:
        return _lost(stdin, f"no acknowledgement within {ACK_SECONDS:.0f} s")
    except OSError as exc:
        return NotStarted(f"the daemon at {path} closed the connection before starting the call ({exc.strerror})")
    if first is None:
        return NotStarted(f"the daemon at {path} closed the connection before starting the call")
    line, rest = first
    parsed = parse_first_line(line)
    if parsed is None:
        return _lost(stdin, "it does not speak this client's protocol")
    word, why = parsed
    if word != ACK:
        state = "refused" if word == REFUSED else "is busy"
        return NotStarted(f"the daemon at {path} {state}: {why}")
    sock.settimeout(ANSWER_SECONDS)
    try:
        return _read_answer(sock, stdin, rest)
    except OSError as exc:
        return _lost(stdin, str(exc.strerror or exc))


def in_process(environ: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """Do the work in this process, logging straight to stderr."""
    from cni_render.commands.dispatch import handle

    outcome = handle(environ, stdin, sys.stderr)
    return outcome.exit_code, (outcome.stdout + "\n").encode() if outcome.stdout else b""


def main() -> int:
    """One CNI call from the runtime (CNI_COMMAND is set): through the daemon,
    else in-process."""
    environ = dict(os.environ)
    command = environ.get("CNI_COMMAND", "")
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        sys.stdout.buffer.write(error_document(b"", 5, "I/O failure", f"reading stdin: {exc.strerror}"))
        return 1
    if command == "VERSION":
        sys.stdout.write(version_reply(stdin) + "\n")
        return 0
    answer = ask_daemon(environ, stdin)
    if isinstance(answer, NotStarted):
        if not answer.quiet:
            sys.stderr.write(f"cni-render: {answer.reason}; working in-process\n")
        code, out = in_process(environ, stdin)
    else:
        code, out, err = answer
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return code
