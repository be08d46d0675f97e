"""The ``cni-render`` executable's first steps, kept to what a fresh process can
afford: os, sys and the raw socket module.

* no ``CNI_COMMAND``: the operator CLI;
* ``VERSION``: answered here;
* anything else: handed to the node's cni-render daemon over a unix socket
  when one is listening in the same network namespace and filesystem, else
  done in-process by :func:`cni_render.dispatch.handle`. Both run the same
  code, so the results are identical.

Protocol (one request per connection, root only):
request  ``CNIR1 <netns dev:ino> <root dev:ino> <CNI_NETNS dev:ino|-> <env bytes> <stdin bytes>\\n``
         followed by the environment (``K=V`` joined by NUL) and stdin;
answer   ``<exit code> <stdout bytes> <stderr bytes>\\n`` then both, or
         ``REFUSED <reason>\\n`` when the daemon cannot act for this caller.
"""

from __future__ import annotations

import os
import sys

from .spec import CURRENT_VERSION, SUPPORTED_VERSIONS

DEFAULT_SOCKET = "/run/cni-render/daemon.sock"
SOCKET_VARIABLE = "CNI_RENDER_DAEMON_SOCKET"  # empty: never use a daemon
PROTOCOL = b"CNIR1"


def identity(path: str) -> str:
    """``dev:ino`` of a file, or ``-`` when it cannot be reached."""
    try:
        st = os.stat(path)
    except OSError:
        return "-"
    return f"{st.st_dev}:{st.st_ino}"


def world(netns: str) -> tuple[str, str, str]:
    """What must be the same for the daemon to act for this caller: the network
    namespace, the filesystem root, and the pod namespace as both see it."""
    return identity("/proc/thread-self/ns/net"), identity("/"), identity(netns) if netns else "-"


def requested_version(raw: bytes) -> str:
    """The cniVersion of a VERSION request, read without a JSON parser."""
    text = raw.decode(errors="replace")
    key = text.find('"cniVersion"')
    if key >= 0:
        colon = text.find(":", key + 12)
        start = text.find('"', colon + 1)
        end = text.find('"', start + 1)
        if colon >= 0 and start >= 0 and end > start and not text[colon + 1 : start].strip():
            version = text[start + 1 : end]
            if version in SUPPORTED_VERSIONS:
                return version
    return CURRENT_VERSION


def version_reply(raw: bytes) -> str:
    versions = ", ".join(f'"{v}"' for v in SUPPORTED_VERSIONS)
    return f'{{"cniVersion": "{requested_version(raw)}", "supportedVersions": [{versions}]}}'


def encode_request(environ: dict[str, str], stdin: bytes) -> bytes:
    env = b"\0".join(
        f"{key}={value}".encode("utf-8", "surrogateescape") for key, value in environ.items()
    )
    net, root, netns = world(environ.get("CNI_NETNS", ""))
    header = f"{PROTOCOL.decode()} {net} {root} {netns} {len(env)} {len(stdin)}\n".encode()
    return header + env + stdin


def _receive_all(sock) -> bytes:  # type: ignore[no-untyped-def]
    chunks = []
    while True:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


# The runtime's own timeout for a pod's network is about 4 minutes.
ANSWER_TIMEOUT_SECONDS = 220.0
NO_ANSWER = (
    11,
    b'{"cniVersion": "1.1.0", "code": 11, "msg": "Try again later", '
    b'"details": "the cni-render daemon did not finish answering"}\n',
    b"",
)


def ask_daemon(environ: dict[str, str], stdin: bytes) -> tuple[int, bytes, bytes] | str:
    """(exit code, stdout, stderr) from the daemon, or why it did not answer.

    Until the whole request is sent the daemon cannot have acted (it refuses
    a request cut short), so the caller may do the work itself; once it is
    sent, a lost answer is code 11, never a second attempt.
    """
    path = environ.get(SOCKET_VARIABLE, DEFAULT_SOCKET)
    if not path:
        return "disabled"
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            return f"no daemon at {path} ({exc.strerror})"
        try:
            sock.sendall(encode_request(environ, stdin))
            sock.shutdown(_socket.SHUT_WR)
        except OSError as exc:
            return f"the daemon at {path} did not take the request ({exc.strerror})"
        try:
            sock.settimeout(ANSWER_TIMEOUT_SECONDS)
            answer = _receive_all(sock)
        except OSError:
            return NO_ANSWER
    finally:
        sock.close()
    header, _, body = answer.partition(b"\n")
    if header.startswith(b"REFUSED"):
        return f"the daemon at {path} refused: {header[8:].decode(errors='replace')}"
    try:
        code, out_len, err_len = (int(part) for part in header.split())
    except ValueError:
        return NO_ANSWER
    if len(body) < out_len + err_len:
        return NO_ANSWER
    return code, body[:out_len], body[out_len : out_len + err_len]


def in_process(environ: dict[str, str], stdin: bytes) -> tuple[int, bytes]:
    """Do the work in this process, logging straight to stderr."""
    from .dispatch import handle

    outcome = handle(environ, stdin, sys.stderr)
    return outcome.exit_code, (outcome.stdout + "\n").encode() if outcome.stdout else b""


def main() -> int:
    environ = dict(os.environ)
    command = environ.get("CNI_COMMAND")
    if command is None:
        from .cli import cli_main

        return cli_main(sys.argv[1:], sys.stdout, sys.stderr)
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        sys.stdout.write(
            f'{{"cniVersion": "{CURRENT_VERSION}", "code": 5, "msg": "I/O failure", '
            f'"details": "reading stdin: {exc.strerror}"}}\n'
        )
        return 1
    if command == "VERSION":
        sys.stdout.write(version_reply(stdin) + "\n")
        return 0
    answer = ask_daemon(environ, stdin)
    if isinstance(answer, str):
        if answer != "disabled" and not answer.startswith("no daemon"):
            sys.stderr.write(f"cni-render: {answer}; working in-process\n")
        code, out = in_process(environ, stdin)
    else:
        code, out, err = answer
        sys.stderr.buffer.write(err)
        sys.stderr.flush()
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return code
