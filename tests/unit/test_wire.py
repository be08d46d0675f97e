"""The wire protocol between the clients and the daemon: every message encoded
and decoded again by the one module that knows the bytes, and strict parsing
turning away what is not exactly a header. No socket, no root."""

from __future__ import annotations

import pytest

from cni_render.fastpath.wire import (
    ACK,
    BUSY,
    MAX_ANSWER,
    MAX_LINE,
    MAX_PAYLOAD,
    REFUSED,
    AnswerError,
    RequestError,
    decode_answer,
    decode_request,
    encode_answer,
    encode_first_line,
    encode_request,
    parse_answer_header,
    parse_first_line,
    parse_request_header,
)

ENVIRON = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/var/run/netns/pod",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
    "EMPTY": "",
    "WITH_EQUALS": "a=b=c",
    "NOT_UTF8": b"caf\xe9".decode("utf-8", "surrogateescape"),
}
STDIN = b'{"cniVersion": "1.0.0", "name": "net"}\n'


def decode(data: bytes) -> tuple[str, dict[str, str], bytes]:
    """What the worker does with the bytes once it has them all."""
    line, _, body = data.partition(b"\n")
    request = decode_request(parse_request_header(line), body)
    return request.netns_identity, request.environ, request.stdin


# -- the request --------------------------------------------------------------


@pytest.mark.parametrize("environ, stdin", [(ENVIRON, STDIN), ({}, b""), ({"CNI_COMMAND": "STATUS"}, b"")])
def test_a_request_decodes_to_what_was_encoded(environ: dict[str, str], stdin: bytes) -> None:
    assert decode(encode_request(environ, stdin, "66:4026532451")) == ("66:4026532451", environ, stdin)


def test_a_request_has_the_documented_bytes() -> None:
    encoded = encode_request({"CNI_COMMAND": "DEL", "A": "1"}, b"{}", "-")
    assert encoded == b"CNIR2 - 19 2\nCNI_COMMAND=DEL\0A=1{}"


def test_an_environment_entry_without_a_name_is_skipped() -> None:
    body = b"CNI_COMMAND=ADD\0\0JUNK\0X=1"
    request = decode_request(("-", len(body), 0), body)
    assert request.environ == {"CNI_COMMAND": "ADD", "X": "1"}


def test_a_cni_variable_set_twice_is_refused() -> None:
    body = b"CNI_NETNS=/a\0CNI_NETNS=/b"
    with pytest.raises(RequestError, match="sets CNI_NETNS twice"):
        decode_request(("-", len(body), 0), body)


def test_another_variable_set_twice_keeps_the_last() -> None:
    body = b"X=1\0X=2"
    assert decode_request(("-", len(body), 0), body).environ == {"X": "2"}


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"CNIR2 - 1",
        b"CNIR2 - 1 2 3",
        b"CNIR1 - 1 2",
        b"cnir2 - 1 2",
        b"CNIR2  - 1 2",
        b"CNIR2 - 1 2 ",
        b"CNIR2 - +1 2",
        b"CNIR2 - -1 2",
        b"CNIR2 - 01 2",
        b"CNIR2 - 1 ",
        b"CNIR2 - 1\t 2",
        b"CNIR2 - 1 0x2",
        b"CNIR2 - 1 1000000000",
        "CNIR2 - 1 \u0662".encode(),
    ],
)
def test_a_malformed_request_header_is_an_unknown_protocol(line: bytes) -> None:
    with pytest.raises(RequestError, match="^unknown protocol$"):
        parse_request_header(line)


def test_a_request_larger_than_the_limit_is_refused() -> None:
    assert parse_request_header(f"CNIR2 - {MAX_PAYLOAD} 0".encode()) == ("-", MAX_PAYLOAD, 0)
    with pytest.raises(RequestError, match="^request too large$"):
        parse_request_header(f"CNIR2 - 0 {MAX_PAYLOAD + 1}".encode())


def test_a_body_that_does_not_match_its_header_is_refused() -> None:
    with pytest.raises(RequestError, match="longer than its header says"):
        decode(b"CNIR2 - 3 1\nA=1{}")
    with pytest.raises(RequestError, match="longer than its header says"):
        decode(b"CNIR2 - 3 1\nA=1")


# -- the first line -----------------------------------------------------------


@pytest.mark.parametrize(
    "word, reason",
    [(ACK, ""), (REFUSED, "only root may use the cni-render daemon"), (BUSY, "the daemon is stopping"), (REFUSED, "")],
)
def test_a_first_line_decodes_to_what_was_encoded(word: bytes, reason: str) -> None:
    line = encode_first_line(word, reason)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_first_line(line[:-1]) == (word, reason)


def test_the_first_lines_have_the_documented_bytes() -> None:
    assert encode_first_line(ACK) == b"ACK\n"
    assert encode_first_line(BUSY, "too many connections from this process") == b"BUSY too many connections from this process\n"
    assert encode_first_line(REFUSED, "the request was cut short") == b"REFUSED the request was cut short\n"


def test_a_long_or_unencodable_reason_still_fits_one_line() -> None:
    line = encode_first_line(REFUSED, "x" * (2 * MAX_LINE))
    assert len(line) <= MAX_LINE and line.count(b"\n") == 1
    assert encode_first_line(REFUSED, "sets CNI_\udce9 twice") == b"REFUSED sets CNI_? twice\n"


@pytest.mark.parametrize("line", [b"", b"ACK ", b"ACK now", b"ack", b"REFUSEDX why", b" REFUSED why", b"0 0 0"])
def test_any_other_first_line_is_not_this_protocol(line: bytes) -> None:
    assert parse_first_line(line) is None


# -- the answer ---------------------------------------------------------------


@pytest.mark.parametrize(
    "code, stdout, stderr", [(0, b'{"cniVersion": "1.0.0"}\n', b""), (1, b"", b"log\n"), (255, b"a\nb", b"\n\n"), (0, b"", b"")]
)
def test_an_answer_decodes_to_what_was_encoded(code: int, stdout: bytes, stderr: bytes) -> None:
    assert decode_answer(encode_answer(code, stdout, stderr)) == (code, stdout, stderr)


def test_an_answer_has_the_documented_bytes() -> None:
    assert encode_answer(7, b"out", b"er") == b"7 3 2\nouter"


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"0 0",
        b"0 0 0 0",
        b"0  0 0",
        b" 0 0 0",
        b"0 0 0 ",
        b"00 0 0",
        b"0 01 0",
        b"-1 0 0",
        b"+0 0 0",
        b"256 0 0",
        f"0 {MAX_ANSWER + 1} 0".encode(),
        b"0 0 12345678901",
        b"0 x 0",
        b"ACK",
    ],
)
def test_a_malformed_answer_header_is_rejected(line: bytes) -> None:
    assert parse_answer_header(line) is None
    with pytest.raises(AnswerError, match="malformed"):
        decode_answer(line + b"\n")


def test_the_largest_answer_header_is_read() -> None:
    assert parse_answer_header(f"255 {MAX_ANSWER} 0".encode()) == (255, MAX_ANSWER, 0)


def test_an_answer_without_its_header_line_was_cut_short() -> None:
    with pytest.raises(AnswerError, match="cut short"):
        decode_answer(b"0 3 0")


@pytest.mark.parametrize("body", [b"ab", b"abcd"])
def test_an_answer_of_the_wrong_length_is_rejected(body: bytes) -> None:
    with pytest.raises(AnswerError, match=f"holds {len(body)} bytes, not 3"):
        decode_answer(b"0 2 1\n" + body)
