"""Tests for simplews.http11: head reading with limits, parsing and serialising."""

from typing import List, Optional, Tuple

import pytest

from simplews import http11
from simplews.exceptions import InvalidHandshake
from simplews.http11 import (
    MAX_HEAD,
    MAX_HEADERS,
    MAX_LINE,
    HeadReader,
    Headers,
    Request,
    Response,
    content_length,
    is_token,
    parse_request,
    parse_response,
    serialize_request,
    serialize_response,
)

# RFC 6455 §1.2 / §4.1 sample client handshake.
RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

RFC_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Protocol: chat\r\n"
    b"\r\n"
)

TLS_CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def feed_bytewise(reader: HeadReader, data: bytes) -> Optional[Tuple[bytes, bytes]]:
    """Feed one byte at a time; return the first non-None result."""
    for index in range(len(data)):
        result = reader.feed(data[index:index + 1])
        if result is not None:
            head, leftover = result
            return head, leftover + data[index + 1:]
    return None


def feed_until_error(reader: HeadReader, chunks: List[bytes]) -> Tuple[InvalidHandshake, int]:
    """Feed chunks until the reader raises; return the error and bytes fed."""
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            assert reader.feed(chunk) is None
        except InvalidHandshake as exc:
            return exc, fed
    raise AssertionError("no InvalidHandshake raised after %d bytes" % fed)


# --- Headers ---------------------------------------------------------------------


class TestHeaders:
    def test_case_insensitive_lookup(self) -> None:
        headers = Headers([("Content-Type", "text/plain")])
        assert headers["content-type"] == "text/plain"
        assert headers["CONTENT-TYPE"] == "text/plain"
        assert "cOnTeNt-TyPe" in headers
        assert "Content-Length" not in headers
        assert 42 not in headers  # type: ignore

    def test_multi_valued_join_and_get_all(self) -> None:
        headers = Headers()
        headers.add("X-A", "1")
        headers.add("x-a", "2")
        assert headers["X-A"] == "1, 2"
        assert headers.get("x-A") == "1, 2"
        assert headers.get_all("X-a") == ["1", "2"]
        assert len(headers) == 2

    def test_missing(self) -> None:
        headers = Headers()
        with pytest.raises(KeyError):
            headers["Host"]
        assert headers.get("Host") is None
        assert headers.get("Host", "x") == "x"
        assert headers.get_all("Host") == []
        with pytest.raises(KeyError):
            del headers["Host"]

    def test_setitem_replaces_all_in_place(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3"), ("C", "4")])
        headers["A"] = "new"
        assert headers.items() == [("A", "new"), ("B", "2"), ("C", "4")]
        headers["D"] = "5"
        assert headers.items()[-1] == ("D", "5")

    def test_delitem_removes_all(self) -> None:
        headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        del headers["a"]
        assert headers.items() == [("B", "2")]

    def test_iter_names_once_in_first_spelling(self) -> None:
        headers = Headers([("Set-Cookie", "a"), ("Host", "h"), ("set-cookie", "b")])
        assert list(headers) == ["Set-Cookie", "Host"]
        assert len(headers) == 3

    def test_items_is_a_copy(self) -> None:
        headers = Headers([("A", "1")])
        headers.items().append(("B", "2"))
        assert len(headers) == 1

    def test_copy_is_independent(self) -> None:
        headers = Headers([("A", "1")])
        other = headers.copy()
        other.add("B", "2")
        assert headers.items() == [("A", "1")]
        assert other.items() == [("A", "1"), ("B", "2")]

    def test_eq_ignores_name_case_not_order(self) -> None:
        assert Headers([("A", "1"), ("B", "2")]) == Headers([("a", "1"), ("b", "2")])
        assert Headers([("A", "1"), ("B", "2")]) != Headers([("B", "2"), ("A", "1")])
        assert Headers([("A", "1")]) != Headers([("A", "2")])
        assert Headers() != [("A", "1")]

    def test_repr(self) -> None:
        assert repr(Headers([("A", "1")])) == "Headers([('A', '1')])"


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert is_token("!#$%&'*+-.^_`|~09azAZ")
    for text in ["", "a b", "a,b", "a;b", 'a"', "a=b", "é", "a\n", "a/b"]:
        assert not is_token(text), text


def test_request_and_response_objects() -> None:
    request = Request("GET", "/")
    assert request.version == "HTTP/1.1"
    assert request.headers == Headers()
    assert request == Request("GET", "/", "HTTP/1.1", Headers())
    assert request != Request("GET", "/x")
    assert "GET" in repr(request)
    response = Response(101, "Switching Protocols")
    assert response.body == b""
    assert response == Response(101, "Switching Protocols", "HTTP/1.1", Headers(), b"")
    assert response != Response(101, "Switching Protocols", body=b"x")
    assert "101" in repr(response)


# --- HeadReader ----------------------------------------------------------------------


class TestHeadReader:
    def test_one_chunk(self) -> None:
        assert HeadReader().feed(RFC_REQUEST) == (RFC_REQUEST, b"")

    def test_byte_by_byte_same_result(self) -> None:
        data = RFC_REQUEST + b"\x81\x05hello"
        whole = HeadReader().feed(data)
        assert whole == (RFC_REQUEST, b"\x81\x05hello")
        assert feed_bytewise(HeadReader(), data) == whole

    def test_incomplete_returns_none(self) -> None:
        reader = HeadReader()
        assert reader.feed(RFC_REQUEST[:-1]) is None
        assert reader.feed(b"") is None
        assert reader.feed(b"\n") == (RFC_REQUEST, b"")

    def test_leftover_preserved(self) -> None:
        result = HeadReader().feed(RFC_REQUEST + b"GET / HTTP/1.1\r\n\r\n")
        assert result == (RFC_REQUEST, b"GET / HTTP/1.1\r\n\r\n")

    def test_crlf_split_across_feeds(self) -> None:
        reader = HeadReader()
        assert reader.feed(b"GET / HTTP/1.1\r") is None
        assert reader.feed(b"\nHost: x\r\n\r") is None
        assert reader.feed(b"\nrest") == (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"rest")

    def test_response_head(self) -> None:
        reader = HeadReader(is_request=False)
        assert reader.feed(RFC_RESPONSE + b"\x81\x00") == (RFC_RESPONSE, b"\x81\x00")
        assert feed_bytewise(HeadReader(is_request=False), RFC_RESPONSE) == (RFC_RESPONSE, b"")

    def test_leading_crlf_tolerated_and_dropped(self) -> None:
        assert HeadReader().feed(b"\r\n" + RFC_REQUEST) == (RFC_REQUEST, b"")
        assert feed_bytewise(HeadReader(), b"\r\n\r\n" + RFC_REQUEST) == (RFC_REQUEST, b"")

    def test_leading_crlf_not_tolerated_for_response(self) -> None:
        with pytest.raises(InvalidHandshake, match="not an HTTP response"):
            HeadReader(is_request=False).feed(b"\r\n" + RFC_RESPONSE)

    def test_feed_after_completion_raises(self) -> None:
        reader = HeadReader()
        reader.feed(RFC_REQUEST)
        with pytest.raises(RuntimeError):
            reader.feed(b"more")

    def test_feed_after_failure_raises(self) -> None:
        reader = HeadReader()
        with pytest.raises(InvalidHandshake):
            reader.feed(TLS_CLIENT_HELLO)
        with pytest.raises(RuntimeError):
            reader.feed(b"GET")

    def test_bare_lf_rejected(self) -> None:
        with pytest.raises(InvalidHandshake, match="bare LF") as info:
            HeadReader().feed(b"GET / HTTP/1.1\nHost: x\n\n")
        assert info.value.status == 400
        with pytest.raises(InvalidHandshake, match="bare LF"):
            feed_bytewise(HeadReader(), b"GET / HTTP/1.1\r\nHost: x\n\r\n")

    def test_line_of_exactly_max_line_is_accepted(self) -> None:
        line = b"GET /" + b"a" * (MAX_LINE - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        assert len(line) == MAX_LINE
        head = line + b"\r\n\r\n"
        assert HeadReader().feed(head) == (head, b"")
        reader = HeadReader()
        assert reader.feed(line + b"\r") is None  # the CR does not count
        assert reader.feed(b"\n\r\n") == (head, b"")

    def test_request_line_too_long_414_early(self) -> None:
        chunks = [b"GET /"] + [b"a" * 1024] * 9
        error, fed = feed_until_error(HeadReader(), chunks)
        assert error.status == 414
        assert "request line too long" in str(error)
        assert fed <= MAX_LINE + 1024 + 5

    def test_request_line_too_long_in_one_chunk(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            HeadReader().feed(b"GET /" + b"a" * 9 * 1024 + b" HTTP/1.1\r\n\r\n")
        assert info.value.status == 414

    def test_status_line_too_long_400(self) -> None:
        with pytest.raises(InvalidHandshake, match="status line too long") as info:
            HeadReader(is_request=False).feed(b"HTTP/1.1 200 " + b"a" * MAX_LINE)
        assert info.value.status == 400

    def test_header_line_100k_raises_431_after_about_8k(self) -> None:
        chunks = [b"GET / HTTP/1.1\r\nX-Big: "] + [b"b" * 512] * 200  # ~100 KB
        error, fed = feed_until_error(HeadReader(), chunks)
        assert error.status == 431
        assert "header line longer than" in str(error)
        assert fed <= MAX_LINE + 512 + 64

    def test_too_many_header_lines_431(self) -> None:
        data = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10000 + b"\r\n"
        with pytest.raises(InvalidHandshake, match="more than 100 header lines") as info:
            HeadReader().feed(data)
        assert info.value.status == 431
        chunks = [b"GET / HTTP/1.1\r\n"] + [b"X: y\r\n"] * 10000
        error, fed = feed_until_error(HeadReader(), chunks)
        assert error.status == 431
        assert fed == 16 + 6 * (MAX_HEADERS + 1)

    def test_exactly_max_headers_accepted(self) -> None:
        head = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * MAX_HEADERS + b"\r\n"
        assert HeadReader().feed(head) == (head, b"")

    def test_head_too_big_431(self) -> None:
        line = b"X: " + b"v" * 8000 + b"\r\n"
        chunks = [b"GET / HTTP/1.1\r\n"] + [line] * 20
        error, fed = feed_until_error(HeadReader(), chunks)
        assert error.status == 431
        assert "HTTP head is longer than" in str(error)
        assert fed <= MAX_HEAD + len(line)

    def test_head_too_big_while_line_incomplete(self) -> None:
        line = b"X: " + b"v" * 8000 + b"\r\n"
        data = b"GET / HTTP/1.1\r\n" + line * 8 + b"Y: " + b"w" * 2000
        assert len(data) > MAX_HEAD
        with pytest.raises(InvalidHandshake, match="longer than") as info:
            HeadReader().feed(data)
        assert info.value.status == 431

    def test_tls_client_hello_rejected_immediately(self) -> None:
        with pytest.raises(InvalidHandshake, match="not an HTTP request.*TLS") as info:
            HeadReader().feed(TLS_CLIENT_HELLO)
        assert info.value.status == 400
        with pytest.raises(InvalidHandshake, match="not an HTTP request"):
            HeadReader().feed(TLS_CLIENT_HELLO[:1])

    def test_binary_garbage_rejected(self) -> None:
        with pytest.raises(InvalidHandshake, match="not an HTTP request: it starts with byte 0x00"):
            HeadReader().feed(b"\x00\x01\x02")

    def test_non_http_response_rejected_early(self) -> None:
        reader = HeadReader(is_request=False)
        assert reader.feed(b"HTT") is None
        with pytest.raises(InvalidHandshake, match="not an HTTP response"):
            reader.feed(b"X/1.1 200 OK")
        with pytest.raises(InvalidHandshake, match="not an HTTP response"):
            HeadReader(is_request=False).feed(b"SSH-2.0-OpenSSH\r\n")

    def test_http2_preface_reads_then_fails_to_parse(self) -> None:
        head, leftover = HeadReader().feed(HTTP2_PREFACE)  # type: ignore
        assert head == b"PRI * HTTP/2.0\r\n\r\n"
        assert leftover == b"SM\r\n\r\n"
        with pytest.raises(InvalidHandshake, match="unsupported HTTP version 'HTTP/2.0'") as info:
            parse_request(head)
        assert info.value.status == 400

    def test_does_not_rescan(self) -> None:
        # 64 KiB fed byte by byte would take ~2 G byte comparisons if rescanned.
        head = b"GET / HTTP/1.1\r\n" + (b"X: " + b"v" * 600 + b"\r\n") * 100 + b"\r\n"
        assert len(head) < MAX_HEAD
        assert feed_bytewise(HeadReader(), head) == (head, b"")
        reader = HeadReader()
        searched = []
        for index in range(len(head)):
            reader.feed(head[index:index + 1])
            searched.append(reader._search)
        assert searched == list(range(1, len(head) + 1))


# --- parse_request -------------------------------------------------------------------


class TestParseRequest:
    def test_rfc_sample(self) -> None:
        request = parse_request(RFC_REQUEST)
        assert request.method == "GET"
        assert request.target == "/chat"
        assert request.version == "HTTP/1.1"
        assert request.headers["Host"] == "server.example.com"
        assert request.headers["origin"] == "http://example.com"
        assert request.headers.get_all("Sec-WebSocket-Protocol") == ["chat, superchat"]
        assert request.headers["SEC-WEBSOCKET-VERSION"] == "13"
        assert len(request.headers) == 7

    def test_http10_parses(self) -> None:
        request = parse_request(b"GET / HTTP/1.0\r\n\r\n")
        assert request.version == "HTTP/1.0"
        assert len(request.headers) == 0

    def test_leading_crlf(self) -> None:
        assert parse_request(b"\r\n" + RFC_REQUEST) == parse_request(RFC_REQUEST)

    def test_mixed_case_and_duplicate_headers(self) -> None:
        request = parse_request(
            b"GET / HTTP/1.1\r\nhost: a\r\nSEC-websocket-KEY: k1\r\nsec-websocket-key: k2\r\n\r\n")
        assert request.headers["Host"] == "a"
        assert request.headers.get_all("Sec-WebSocket-Key") == ["k1", "k2"]
        assert list(request.headers) == ["host", "SEC-websocket-KEY"]

    def test_value_whitespace_stripped_latin1_decoded(self) -> None:
        request = parse_request(b"GET / HTTP/1.1\r\nX: \t a\tb \t\r\nY:\r\nZ: caf\xe9\r\n\r\n")
        assert request.headers["X"] == "a\tb"
        assert request.headers["Y"] == ""
        assert request.headers["Z"] == "caf\xe9"

    @pytest.mark.parametrize("head, message", [
        (TLS_CLIENT_HELLO + b"\r\n\r\n", "not an HTTP request"),
        (b"GET /\xff HTTP/1.1\r\n\r\n", "not an HTTP request"),
        (b"GET\t/ HTTP/1.1\r\n\r\n", "not an HTTP request"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", "malformed request line"),
        (b"GET  / HTTP/1.1\r\n\r\n", "malformed request line"),
        (b"GET /\r\n\r\n", "malformed request line"),
        (b"G(T / HTTP/1.1\r\n\r\n", "invalid method 'G\\(T'"),
        (b" / HTTP/1.1\r\n\r\n", "invalid method ''"),
        (b"GET  HTTP/1.1\r\n\r\n", "empty request target"),
        (b"GET / HTTP/1.1 \r\n\r\n", "malformed request line"),
        (b"GET / HTTP/11\r\n\r\n", "malformed HTTP version 'HTTP/11'"),
        (b"GET / http/1.1\r\n\r\n", "malformed HTTP version"),
        (b"GET / HTTP/1.1.1\r\n\r\n", "malformed HTTP version"),
        (b"GET / HTTP/0.9\r\n\r\n", "unsupported HTTP version"),
        (b"PRI * HTTP/2.0\r\n\r\n", "unsupported HTTP version"),
        (b"GET / HTTP/1.1\r\nHost\r\n\r\n", "has no colon"),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "whitespace before the colon"),
        (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", "whitespace before the colon"),
        (b"GET / HTTP/1.1\r\nA: b\r\n  c\r\n\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", "obsolete line folding"),
        (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "invalid header name ''"),
        (b"GET / HTTP/1.1\r\nA(b: x\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nA\xe9: x\r\n\r\n", "invalid header name"),
        (b"GET / HTTP/1.1\r\nA: x\x00y\r\n\r\n", "control character in the value of header 'A'"),
        (b"GET / HTTP/1.1\r\nA: x\ry\r\n\r\n", "control character"),
        (b"GET / HTTP/1.1\r\nA: x\x7f\r\n\r\n", "control character"),
        (b"GET / HTTP/1.1\r\nA: x\ny\r\n\r\n", "bare LF"),
        (b"GET / HTTP/1.1\r\n", "incomplete HTTP request head"),
    ])
    def test_invalid(self, head: bytes, message: str) -> None:
        with pytest.raises(InvalidHandshake, match=message) as info:
            parse_request(head)
        assert info.value.status == 400

    def test_error_message_truncates_garbage(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            parse_request(b"GET / HTTP/1.1\r\n" + b"x" * 5000 + b"\r\n\r\n")
        assert len(str(info.value)) < 200


# --- parse_response -----------------------------------------------------------------


class TestParseResponse:
    def test_rfc_sample(self) -> None:
        response = parse_response(RFC_RESPONSE)
        assert response.status == 101
        assert response.reason == "Switching Protocols"
        assert response.version == "HTTP/1.1"
        assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert response.body == b""

    @pytest.mark.parametrize("line, status, reason", [
        (b"HTTP/1.1 101", 101, ""),
        (b"HTTP/1.1 404 ", 404, ""),
        (b"HTTP/1.0 200 OK", 200, "OK"),
        (b"HTTP/1.1 503 Try  again later", 503, "Try  again later"),
        (b"HTTP/1.1 200 caf\xe9", 200, "caf\xe9"),
    ])
    def test_status_lines(self, line: bytes, status: int, reason: str) -> None:
        response = parse_response(line + b"\r\n\r\n")
        assert (response.status, response.reason) == (status, reason)

    @pytest.mark.parametrize("head, message", [
        (b"HTTP/1.1\r\n\r\n", "malformed status line"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP response"),
        (b"HTTP/1.x 101 OK\r\n\r\n", "malformed HTTP version"),
        (b"HTTP/2.0 101 OK\r\n\r\n", "unsupported HTTP version"),
        (b"HTTP/1.1 1O1 OK\r\n\r\n", "invalid status code '1O1'"),
        (b"HTTP/1.1 1010 OK\r\n\r\n", "invalid status code"),
        (b"HTTP/1.1  101 OK\r\n\r\n", "invalid status code ''"),
        (b"HTTP/1.1 101 O\x00K\r\n\r\n", "control character in the reason phrase"),
        (b"HTTP/1.1 101 OK\r\nUpgrade websocket\r\n\r\n", "has no colon"),
        (b"HTTP/1.1 101 OK\r\nUpgrade: websocket", "incomplete HTTP response head"),
    ])
    def test_invalid(self, head: bytes, message: str) -> None:
        with pytest.raises(InvalidHandshake, match=message):
            parse_response(head)


# --- serialisation ----------------------------------------------------------------------


class TestSerialize:
    def test_request_round_trip(self) -> None:
        headers = parse_request(RFC_REQUEST).headers
        data = serialize_request("GET", "/chat", headers)
        assert data == RFC_REQUEST
        assert parse_request(data) == parse_request(RFC_REQUEST)

    def test_response_round_trip(self) -> None:
        headers = parse_response(RFC_RESPONSE).headers
        assert serialize_response(101, headers) == RFC_RESPONSE
        assert serialize_response(101, headers, reason="Switching Protocols") == RFC_RESPONSE

    def test_response_body_appended(self) -> None:
        data = serialize_response(404, Headers([("Content-Length", "2")]), b"no")
        assert data == b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"
        head, body = HeadReader(is_request=False).feed(data)  # type: ignore
        assert body == b"no"
        assert parse_response(head).status == 404

    @pytest.mark.parametrize("status, reason", sorted(http11.REASONS.items()))
    def test_reason_table(self, status: int, reason: str) -> None:
        assert serialize_response(status, Headers()) == ("HTTP/1.1 %d %s\r\n\r\n" % (status, reason)).encode()

    def test_required_reasons_present(self) -> None:
        for status in [101, 200, 204, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405,
                       408, 413, 414, 426, 429, 431, 500, 501, 503, 505]:
            assert status in http11.REASONS
        assert http11.REASONS[426] == "Upgrade Required"

    def test_unknown_and_custom_reason(self) -> None:
        assert serialize_response(599, Headers()) == b"HTTP/1.1 599 Unknown\r\n\r\n"
        assert serialize_response(200, Headers(), reason="") == b"HTTP/1.1 200 \r\n\r\n"
        assert serialize_response(200, Headers(), reason="Fine") == b"HTTP/1.1 200 Fine\r\n\r\n"

    def test_latin1_value(self) -> None:
        data = serialize_request("GET", "/", Headers([("X", "caf\xe9")]))
        assert data == b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n"

    @pytest.mark.parametrize("name, value", [
        ("X", "a\r\nInjected: 1"),
        ("X", "a\nb"),
        ("X", "a\rb"),
        ("X", "a\x00b"),
        ("Bad Name", "v"),
        ("X:", "v"),
        ("", "v"),
        ("X", "\u20ac"),
    ])
    def test_invalid_headers_raise_value_error(self, name: str, value: str) -> None:
        with pytest.raises(ValueError):
            serialize_request("GET", "/", Headers([(name, value)]))
        with pytest.raises(ValueError):
            serialize_response(200, Headers([(name, value)]))

    @pytest.mark.parametrize("method, target", [
        ("GET", ""), ("GET", "/a b"), ("GET", "/\r\n"), ("G ET", "/"), ("", "/"), ("GET", "/\xe9"),
    ])
    def test_invalid_request_line(self, method: str, target: str) -> None:
        with pytest.raises(ValueError):
            serialize_request(method, target, Headers())

    def test_invalid_status_and_reason(self) -> None:
        with pytest.raises(ValueError):
            serialize_response(99, Headers())
        with pytest.raises(ValueError):
            serialize_response(200, Headers(), reason="OK\r\nX: y")


# --- content_length -------------------------------------------------------------------


class TestContentLength:
    def test_absent(self) -> None:
        assert content_length(Headers()) is None

    @pytest.mark.parametrize("values, expected", [
        (["0"], 0),
        (["42"], 42),
        (["007"], 7),
        (["42", "42"], 42),
        (["42, 42"], 42),
    ])
    def test_valid(self, values: List[str], expected: int) -> None:
        headers = Headers(("Content-Length", value) for value in values)
        assert content_length(headers) == expected

    @pytest.mark.parametrize("values, message", [
        ([""], "invalid Content-Length"),
        (["-1"], "invalid Content-Length"),
        (["+1"], "invalid Content-Length"),
        (["1.5"], "invalid Content-Length"),
        (["0x10"], "invalid Content-Length"),
        (["1 2"], "invalid Content-Length"),
        (["\u0661"], "invalid Content-Length"),  # Arabic-Indic digit one
        (["9" * 19], "invalid Content-Length"),
        (["1", "2"], "conflicting Content-Length"),
        (["1, 2"], "conflicting Content-Length"),
    ])
    def test_invalid(self, values: List[str], message: str) -> None:
        headers = Headers(("Content-Length", value) for value in values)
        with pytest.raises(InvalidHandshake, match=message):
            content_length(headers)


def test_limits() -> None:
    assert (MAX_LINE, MAX_HEADERS, MAX_HEAD, http11.MAX_BODY) == (8192, 100, 65536, 65536)
