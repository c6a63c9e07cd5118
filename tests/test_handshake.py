"""Tests for simplews.handshake: RFC 6455 §4 opening handshake rules."""

import base64
from typing import List, Optional, Sequence, Tuple

import pytest

from simplews import handshake
from simplews.exceptions import InvalidHandshake, InvalidStatus, NegotiationError
from simplews.handshake import (
    GUID,
    accept_key,
    build_rejection,
    build_request,
    build_response,
    check_origin,
    check_request,
    check_response,
    generate_key,
    parse_extensions,
    parse_token_list,
    select_subprotocol,
    serialize_extensions,
)
from simplews.http11 import HeadReader, Request, Response, parse_request, parse_response

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

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

UPGRADE_REQUIRED = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")]


def rfc_request(**changes: Optional[str]) -> Request:
    """The RFC sample request with headers replaced (value) or removed (None)."""
    request = parse_request(RFC_REQUEST)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            del request.headers[name]
        else:
            request.headers[name] = value
    return request


def make_response(key: str = RFC_KEY, subprotocol: Optional[str] = None,
                  extra: Sequence[Tuple[str, str]] = ()) -> Response:
    data, _ = build_response(key, subprotocol, extra_headers=extra)
    return parse_response(data)


# --- keys ----------------------------------------------------------------------------


def test_guid() -> None:
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_accept_key_rfc_example() -> None:
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_generate_key() -> None:
    key = generate_key()
    assert len(key) == 24
    assert len(base64.b64decode(key, validate=True)) == 16
    assert generate_key() != key


# --- token lists and extensions -------------------------------------------------------


class TestTokenList:
    def test_basic(self) -> None:
        assert parse_token_list(["chat, superchat"]) == ["chat", "superchat"]

    def test_several_lines_and_empty_elements(self) -> None:
        assert parse_token_list(["a,, b ,", " ", "\tc\t"]) == ["a", "b", "c"]
        assert parse_token_list([]) == []

    def test_invalid_token_names_header(self) -> None:
        with pytest.raises(InvalidHandshake, match="invalid Connection value 'keep alive'") as info:
            parse_token_list(["keep alive"], "Connection")
        assert info.value.status == 400
        with pytest.raises(InvalidHandshake, match="'a/b' is not a token"):
            parse_token_list(["x, a/b"])


class TestExtensions:
    @pytest.mark.parametrize("values, expected", [
        (["permessage-deflate"], [("permessage-deflate", [])]),
        (["permessage-deflate; client_max_window_bits"],
         [("permessage-deflate", [("client_max_window_bits", None)])]),
        (["permessage-deflate; client_max_window_bits=10, x-foo"],
         [("permessage-deflate", [("client_max_window_bits", "10")]), ("x-foo", [])]),
        (['permessage-deflate;client_max_window_bits="10";server_no_context_takeover'],
         [("permessage-deflate", [("client_max_window_bits", "10"), ("server_no_context_takeover", None)])]),
        (['a ; b = "c" , d'], [("a", [("b", "c")]), ("d", [])]),
        (['a; b="\\c"'], [("a", [("b", "c")])]),  # quoted-pair unescapes to a token
        (["a", "b; c=1"], [("a", []), ("b", [("c", "1")])]),
        (["a,, ,b"], [("a", []), ("b", [])]),
        ([""], []),
        ([], []),
        (["\tmux ;\tmax-channels=4 "], [("mux", [("max-channels", "4")])]),
        (["permessage-deflate, permessage-deflate; client_no_context_takeover"],
         [("permessage-deflate", []), ("permessage-deflate", [("client_no_context_takeover", None)])]),
    ])
    def test_valid(self, values: List[str], expected: handshake.ExtensionList) -> None:
        assert parse_extensions(values) == expected

    @pytest.mark.parametrize("value, message", [
        (";a", "expected an extension name at position 0"),
        ("a;", "expected a parameter name at position 2, found end of header"),
        ("a;;b", "expected a parameter name at position 2, found ';'"),
        ("a; =1", "expected a parameter name"),
        ("a; b=", "expected a value for parameter 'b'"),
        ("a; b=,", "expected a value for parameter 'b'"),
        ('a; b="1', "unterminated quoted string"),
        ('a; b="1\\', "unterminated quoted string"),
        ('a; b="1 2"', "quoted value '1 2' of parameter 'b' is not a token"),
        ('a; b=""', "quoted value '' of parameter 'b' is not a token"),
        ('a; b="x,y"', "is not a token"),
        ("a b", "expected ';' or ',' at position 2, found 'b'"),
        ("a; b c", "expected ';' or ','"),
        ("a; b=1 2", "expected ';' or ','"),
        ("a/b", "expected ';' or ','"),
        ('"a"', "expected an extension name"),
        ("caf\xe9", "expected ';' or ','"),
        ("a; b=c=d", "expected ';' or ','"),
    ])
    def test_invalid(self, value: str, message: str) -> None:
        with pytest.raises(InvalidHandshake, match=message) as info:
            parse_extensions([value])
        assert info.value.status == 400
        assert repr(value) in str(info.value)

    def test_serialize(self) -> None:
        exts = [("permessage-deflate", [("client_max_window_bits", "10")]), ("x-foo", [])]
        assert serialize_extensions(exts) == "permessage-deflate; client_max_window_bits=10, x-foo"
        exts2 = [("permessage-deflate", [("server_no_context_takeover", None), ("client_max_window_bits", None)])]
        text = serialize_extensions(exts2)
        assert text == "permessage-deflate; server_no_context_takeover; client_max_window_bits"
        assert parse_extensions([text]) == exts2
        assert serialize_extensions([]) == ""

    @pytest.mark.parametrize("exts", [
        [("bad name", [])],
        [("a", [("b c", None)])],
        [("a", [("b", "1 2")])],
        [("a", [("b", "")])],
    ])
    def test_serialize_invalid(self, exts: handshake.ExtensionList) -> None:
        with pytest.raises(ValueError):
            serialize_extensions(exts)


# --- server side: check_request -------------------------------------------------------


class TestCheckRequest:
    def test_rfc_sample(self) -> None:
        assert check_request(parse_request(RFC_REQUEST)) == RFC_KEY

    def test_case_insensitive_tokens_and_names(self) -> None:
        data = (b"GET / HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
                b"sec-websocket-key: " + RFC_KEY.encode() + b"\r\nsec-websocket-version: 13\r\n\r\n")
        assert check_request(parse_request(data)) == RFC_KEY

    def test_upgrade_with_other_protocols(self) -> None:
        request = rfc_request(Upgrade="HTTP/2.0, websocket")
        assert check_request(request) == RFC_KEY

    def test_connection_split_over_lines(self) -> None:
        request = rfc_request(Connection="keep-alive")
        request.headers.add("Connection", "Upgrade")
        assert check_request(request) == RFC_KEY

    def test_http11_or_later_1x(self) -> None:
        request = rfc_request()
        request.version = "HTTP/1.2"
        assert check_request(request) == RFC_KEY

    def test_method(self) -> None:
        for method in ["POST", "get", "HEAD"]:
            request = rfc_request()
            request.method = method
            with pytest.raises(InvalidHandshake) as info:
                check_request(request)
            assert info.value.status == 405
            assert info.value.headers == [("Allow", "GET")]
            assert str(info.value) == "method %s is not allowed; expected GET" % method

    def test_http10(self) -> None:
        request = parse_request(RFC_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"))
        with pytest.raises(InvalidHandshake, match="HTTP/1.0 is not supported; .*requires HTTP/1.1") as info:
            check_request(request)
        assert info.value.status == 400

    @pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/0.9", "HTTP/1.x", "HTTP/1."])
    def test_other_versions(self, version: str) -> None:
        request = rfc_request()
        request.version = version
        with pytest.raises(InvalidHandshake, match="is not supported") as info:
            check_request(request)
        assert info.value.status == 400

    def test_missing_host(self) -> None:
        with pytest.raises(InvalidHandshake, match="missing Host header") as info:
            check_request(rfc_request(Host=None))
        assert info.value.status == 400

    def test_repeated_host(self) -> None:
        request = rfc_request()
        request.headers.add("Host", "evil.example.com")
        with pytest.raises(InvalidHandshake, match="more than one Host header") as info:
            check_request(request)
        assert info.value.status == 400

    def test_missing_upgrade(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_request(rfc_request(Upgrade=None))
        assert info.value.status == 426
        assert info.value.headers == UPGRADE_REQUIRED
        assert str(info.value) == "missing Upgrade: websocket header; this is a WebSocket endpoint"

    def test_upgrade_without_websocket(self) -> None:
        with pytest.raises(InvalidHandshake, match="Upgrade header 'h2c' has no 'websocket' token") as info:
            check_request(rfc_request(Upgrade="h2c"))
        assert info.value.status == 426
        assert info.value.headers == UPGRADE_REQUIRED

    def test_missing_connection(self) -> None:
        with pytest.raises(InvalidHandshake, match="missing Connection: upgrade header") as info:
            check_request(rfc_request(Connection=None))
        assert info.value.status == 426
        assert info.value.headers == UPGRADE_REQUIRED

    def test_connection_without_upgrade(self) -> None:
        with pytest.raises(InvalidHandshake, match="Connection header 'keep-alive' has no 'upgrade'") as info:
            check_request(rfc_request(Connection="keep-alive"))
        assert info.value.status == 426

    def test_connection_garbage(self) -> None:
        with pytest.raises(InvalidHandshake, match="invalid Connection value") as info:
            check_request(rfc_request(Connection="up grade"))
        assert info.value.status == 400

    def test_missing_version(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_request(rfc_request(Sec_WebSocket_Version=None))
        assert info.value.status == 426
        assert ("Sec-WebSocket-Version", "13") in info.value.headers
        assert str(info.value) == "missing Sec-WebSocket-Version header; expected 13"

    def test_wrong_version(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_request(rfc_request(Sec_WebSocket_Version="8"))
        assert info.value.status == 426
        assert ("Sec-WebSocket-Version", "13") in info.value.headers
        assert str(info.value) == "Sec-WebSocket-Version 8 is not supported; expected 13"

    def test_repeated_version(self) -> None:
        request = rfc_request()
        request.headers.add("Sec-WebSocket-Version", "8")
        with pytest.raises(InvalidHandshake, match="more than one Sec-WebSocket-Version") as info:
            check_request(request)
        assert info.value.status == 400

    def test_missing_key(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_request(rfc_request(Sec_WebSocket_Key=None))
        assert info.value.status == 400
        assert str(info.value) == "missing Sec-WebSocket-Key header"

    def test_repeated_key(self) -> None:
        request = rfc_request()
        request.headers.add("Sec-WebSocket-Key", RFC_KEY)
        with pytest.raises(InvalidHandshake, match="more than one Sec-WebSocket-Key header") as info:
            check_request(request)
        assert info.value.status == 400

    @pytest.mark.parametrize("key, message", [
        ("not base64!", "is not valid base64"),
        ("dGhlIHNhbXBsZSBub25jZQ", "is not valid base64"),  # missing padding
        ("dGhlIHNhbXBsZSBub25j\xe9Q==", "is not valid base64"),
        ("", "decodes to 0 bytes; expected 16"),
        ("dGhlIHNhbXBsZQ==", "decodes to 10 bytes; expected 16"),
        (base64.b64encode(b"x" * 17).decode(), "decodes to 17 bytes; expected 16"),
    ])
    def test_bad_key(self, key: str, message: str) -> None:
        with pytest.raises(InvalidHandshake, match=message) as info:
            check_request(rfc_request(Sec_WebSocket_Key=key))
        assert info.value.status == 400


class TestOrigin:
    def test_none_allows_all(self) -> None:
        check_origin(rfc_request(), None)
        check_origin(rfc_request(Origin=None), None)

    def test_listed(self) -> None:
        check_origin(rfc_request(), ["http://other", "http://example.com"])

    def test_not_listed(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_origin(rfc_request(Origin="http://evil"), ["http://example.com"])
        assert info.value.status == 403
        assert str(info.value) == "origin 'http://evil' is not allowed"

    def test_missing_origin(self) -> None:
        with pytest.raises(InvalidHandshake, match="missing Origin header") as info:
            check_origin(rfc_request(Origin=None), ["http://example.com"])
        assert info.value.status == 403
        check_origin(rfc_request(Origin=None), ["http://example.com", None])

    def test_empty_list_refuses_everything(self) -> None:
        with pytest.raises(InvalidHandshake):
            check_origin(rfc_request(), [])

    def test_repeated_origin(self) -> None:
        request = rfc_request()
        request.headers.add("Origin", "http://evil")
        with pytest.raises(InvalidHandshake, match="more than one Origin header"):
            check_origin(request, ["http://example.com"])


class TestSelectSubprotocol:
    def test_client_preference_wins(self) -> None:
        assert select_subprotocol(rfc_request(), ["superchat", "chat"]) == "chat"
        assert select_subprotocol(rfc_request(), ["superchat"]) == "superchat"

    def test_no_overlap_or_none(self) -> None:
        assert select_subprotocol(rfc_request(), ["mqtt"]) is None
        assert select_subprotocol(rfc_request(), None) is None
        assert select_subprotocol(rfc_request(), []) is None
        assert select_subprotocol(rfc_request(Sec_WebSocket_Protocol=None), ["chat"]) is None

    def test_several_header_lines(self) -> None:
        request = rfc_request(Sec_WebSocket_Protocol="a")
        request.headers.add("Sec-WebSocket-Protocol", "b, chat")
        assert select_subprotocol(request, ["chat", "b"]) == "b"


# --- server side: responses -------------------------------------------------------------


class TestBuildResponse:
    def test_rfc_sample(self) -> None:
        data, headers = build_response(RFC_KEY, "chat")
        assert data == (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Sec-WebSocket-Protocol: chat\r\n"
            b"\r\n"
        )
        assert headers["Sec-WebSocket-Accept"] == RFC_ACCEPT
        assert parse_response(data).headers == headers

    def test_extensions_and_extra_headers(self) -> None:
        data, headers = build_response(RFC_KEY, extensions="permessage-deflate",
                                       extra_headers=[("Server", "test"), ("Set-Cookie", "a=1")])
        assert "Sec-WebSocket-Protocol" not in headers
        assert headers.items()[3:] == [("Sec-WebSocket-Extensions", "permessage-deflate"),
                                       ("Server", "test"), ("Set-Cookie", "a=1")]
        assert data.endswith(b"Server: test\r\nSet-Cookie: a=1\r\n\r\n")

    def test_minimal(self) -> None:
        _, headers = build_response(RFC_KEY)
        assert list(headers) == ["Upgrade", "Connection", "Sec-WebSocket-Accept"]


class TestBuildRejection:
    def test_plain(self) -> None:
        data = build_rejection(404, b"no such path")
        assert data == (
            b"HTTP/1.1 404 Not Found\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 12\r\n"
            b"Connection: close\r\n"
            b"\r\n"
            b"no such path"
        )

    def test_from_invalid_handshake(self) -> None:
        with pytest.raises(InvalidHandshake) as info:
            check_request(rfc_request(Upgrade=None))
        error = info.value
        data = build_rejection(error.status, str(error).encode(), error.headers)
        head, body = HeadReader(is_request=False).feed(data)  # type: ignore
        response = parse_response(head)
        assert response.status == 426
        assert response.reason == "Upgrade Required"
        assert response.headers["Upgrade"] == "websocket"
        assert response.headers.get_all("Connection") == ["Upgrade, close"]
        assert response.headers["Sec-WebSocket-Version"] == "13"
        assert int(response.headers["Content-Length"]) == len(body)
        assert body == str(error).encode()

    def test_head_has_the_get_headers_and_no_body(self) -> None:
        data = build_rejection(200, b"<p>hi</p>", [("Content-Type", "text/html")], head=True)
        assert data == (
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Length: 9\r\n"
            b"Connection: close\r\n"
            b"Content-Type: text/html\r\n"
            b"\r\n"
        )

    def test_405_allow(self) -> None:
        data = build_rejection(405, headers=[("Allow", "GET")])
        response = parse_response(data)
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
        assert response.headers["Content-Length"] == "0"

    def test_custom_content_type_and_length(self) -> None:
        data = build_rejection(200, b"<p>hi</p>", [("Content-Type", "text/html"), ("Content-Length", "999"),
                                                  ("Connection", "close")], content_type="ignored")
        response = parse_response(data[:data.index(b"\r\n\r\n") + 4])
        assert response.headers.get_all("Content-Type") == ["text/html"]
        assert response.headers.get_all("Content-Length") == ["9"]
        assert response.headers.get_all("Connection") == ["close"]
        assert data.endswith(b"\r\n\r\n<p>hi</p>")

    def test_content_type_param(self) -> None:
        data = build_rejection(500, b"{}", content_type="application/json")
        assert b"\r\nContent-Type: application/json\r\n" in data


# --- client side ------------------------------------------------------------------------


class TestBuildRequest:
    def test_rfc_sample(self) -> None:
        data, headers = build_request("server.example.com", 80, "/chat", RFC_KEY, False,
                                      origin="http://example.com", subprotocols=["chat", "superchat"])
        request = parse_request(data)
        expected = parse_request(RFC_REQUEST)
        assert request.method == "GET"
        assert request.target == "/chat"
        assert request.version == "HTTP/1.1"
        for name in expected.headers:
            assert request.headers.get_all(name) == expected.headers.get_all(name)
        assert request.headers["User-Agent"].startswith("simplews/")
        assert request.headers == headers
        assert check_request(request) == RFC_KEY
        assert select_subprotocol(request, ["superchat"]) == "superchat"

    def test_header_order(self) -> None:
        _, headers = build_request("h", 80, "/", RFC_KEY, False, origin="http://h", subprotocols=["p"],
                                   extensions="permessage-deflate", credentials=("u", "p"))
        assert list(headers) == ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                                 "Origin", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions",
                                 "Authorization", "User-Agent"]

    @pytest.mark.parametrize("host, port, secure, expected", [
        ("example.com", 80, False, "example.com"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 80, True, "example.com:80"),
        ("example.com", 8765, False, "example.com:8765"),
        ("127.0.0.1", 8765, False, "127.0.0.1:8765"),
        ("::1", 8765, False, "[::1]:8765"),
        ("::1", 80, False, "[::1]"),
        ("[::1]", 8765, True, "[::1]:8765"),
        ("2001:db8::1", 443, True, "[2001:db8::1]"),
    ])
    def test_host(self, host: str, port: int, secure: bool, expected: str) -> None:
        data, headers = build_request(host, port, "/", RFC_KEY, secure)
        assert headers["Host"] == expected
        assert parse_request(data).headers["Host"] == expected

    def test_minimal(self) -> None:
        data, headers = build_request("h", 80, "/", RFC_KEY, False)
        for name in ["Origin", "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Authorization"]:
            assert name not in headers
        assert data.startswith(b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
        assert build_request("h", 80, "", RFC_KEY, False)[0].startswith(b"GET / HTTP/1.1\r\n")

    def test_target_with_query(self) -> None:
        data, _ = build_request("h", 80, "/a/b?c=d&e", RFC_KEY, False)
        assert parse_request(data).target == "/a/b?c=d&e"

    def test_credentials(self) -> None:
        _, headers = build_request("h", 80, "/", RFC_KEY, False, credentials=("Aladdin", "open sesame"))
        assert headers["Authorization"] == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="  # RFC 7617 §2
        _, headers = build_request("h", 80, "/", RFC_KEY, False, credentials=("test", "123\u00a3"))
        assert headers["Authorization"] == "Basic dGVzdDoxMjPCow=="  # RFC 7617 §2.1 UTF-8 example
        with pytest.raises(ValueError):
            build_request("h", 80, "/", RFC_KEY, False, credentials=("a:b", "c"))

    def test_extra_headers_replace_defaults(self) -> None:
        data, headers = build_request("h", 80, "/", RFC_KEY, False, extra_headers=[
            ("user-agent", "custom/1"), ("Host", "virtual.example"), ("X-Token", "1"), ("X-Token", "2"),
            ("Cookie", "a=1"), ("cookie", "b=2")])
        assert headers.get_all("User-Agent") == ["custom/1"]
        assert headers.get_all("Host") == ["virtual.example"]
        assert headers.items()[0] == ("Host", "virtual.example")
        assert headers.get_all("X-Token") == ["1", "2"]
        assert headers.get_all("Cookie") == ["a=1", "b=2"]
        assert parse_request(data).headers == headers

    def test_invalid_inputs(self) -> None:
        with pytest.raises(ValueError):
            build_request("h", 80, "/", RFC_KEY, False, subprotocols=["bad proto"])
        with pytest.raises(ValueError):
            build_request("h", 80, "/a b", RFC_KEY, False)
        with pytest.raises(ValueError):
            build_request("h", 80, "/", RFC_KEY, False, extra_headers=[("X", "a\r\nEvil: 1")])

    def test_user_agent_version(self) -> None:
        _, headers = build_request("h", 80, "/", RFC_KEY, False)
        try:
            from simplews import __version__  # type: ignore
        except ImportError:
            __version__ = "0"
        assert headers["User-Agent"] == "simplews/%s" % __version__


class TestCheckResponse:
    def test_rfc_sample(self) -> None:
        response = parse_response(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
        assert check_response(response, RFC_KEY, ["chat", "superchat"]) == "chat"

    def test_round_trip_with_generated_key(self) -> None:
        key = generate_key()
        request_bytes, _ = build_request("h", 8765, "/", key, False, subprotocols=["chat", "superchat"])
        request = parse_request(HeadReader().feed(request_bytes)[0])  # type: ignore
        server_key = check_request(request)
        protocol = select_subprotocol(request, ["superchat", "chat"])
        response_bytes, _ = build_response(server_key, protocol)
        head, leftover = HeadReader(is_request=False).feed(response_bytes + b"\x81\x00")  # type: ignore
        assert leftover == b"\x81\x00"
        assert check_response(parse_response(head), key, ["chat", "superchat"]) == "chat"

    def test_no_subprotocol(self) -> None:
        assert check_response(make_response(), RFC_KEY, None) is None
        assert check_response(make_response(), RFC_KEY, ["chat"]) is None

    def test_case_insensitive(self) -> None:
        response = parse_response(
            b"HTTP/1.1 101 OK\r\nupgrade: WEBSOCKET\r\nconnection: upgrade\r\n"
            b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
        assert check_response(response, RFC_KEY, None) is None

    def test_non_101_status(self) -> None:
        response = parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(InvalidStatus) as info:
            check_response(response, RFC_KEY, None)
        assert info.value.status == 403
        assert info.value.reason == "Forbidden"
        assert info.value.headers == [("Content-Length", "0")]
        assert "HTTP 403 Forbidden" in str(info.value)

    def test_http10_response(self) -> None:
        response = make_response()
        response.version = "HTTP/1.0"
        with pytest.raises(InvalidHandshake, match="HTTP/1.0 is not supported"):
            check_response(response, RFC_KEY, None)

    def test_missing_or_wrong_upgrade(self) -> None:
        response = make_response()
        del response.headers["Upgrade"]
        with pytest.raises(InvalidHandshake, match="missing Upgrade: websocket header in the response"):
            check_response(response, RFC_KEY, None)
        response.headers["Upgrade"] = "h2c"
        with pytest.raises(InvalidHandshake, match="Upgrade header 'h2c' has no 'websocket' token"):
            check_response(response, RFC_KEY, None)

    def test_missing_or_wrong_connection(self) -> None:
        response = make_response()
        del response.headers["Connection"]
        with pytest.raises(InvalidHandshake, match="missing Connection: upgrade header in the response"):
            check_response(response, RFC_KEY, None)
        response.headers["Connection"] = "close"
        with pytest.raises(InvalidHandshake, match="Connection header 'close' has no 'upgrade' token"):
            check_response(response, RFC_KEY, None)

    def test_wrong_accept(self) -> None:
        response = make_response(key=generate_key())
        wrong = response.headers["Sec-WebSocket-Accept"]
        with pytest.raises(InvalidHandshake) as info:
            check_response(response, RFC_KEY, None)
        assert str(info.value) == ("Sec-WebSocket-Accept %r does not match the key; expected %r"
                                   % (wrong, RFC_ACCEPT))
        assert not isinstance(info.value, NegotiationError)

    def test_missing_or_repeated_accept(self) -> None:
        response = make_response()
        del response.headers["Sec-WebSocket-Accept"]
        with pytest.raises(InvalidHandshake, match="missing Sec-WebSocket-Accept header"):
            check_response(response, RFC_KEY, None)
        response = make_response(extra=[("Sec-WebSocket-Accept", RFC_ACCEPT)])
        with pytest.raises(InvalidHandshake, match="more than one Sec-WebSocket-Accept header"):
            check_response(response, RFC_KEY, None)

    def test_unoffered_subprotocol(self) -> None:
        response = make_response(subprotocol="superchat")
        with pytest.raises(NegotiationError, match="'superchat', which was not offered; offered: chat"):
            check_response(response, RFC_KEY, ["chat"])
        with pytest.raises(NegotiationError, match="offered: none"):
            check_response(response, RFC_KEY, None)

    def test_several_subprotocols(self) -> None:
        response = make_response(subprotocol="chat, superchat")
        with pytest.raises(NegotiationError, match="more than one subprotocol: chat, superchat"):
            check_response(response, RFC_KEY, ["chat", "superchat"])
        response = make_response(subprotocol="chat", extra=[("Sec-WebSocket-Protocol", "superchat")])
        with pytest.raises(NegotiationError, match="more than one subprotocol"):
            check_response(response, RFC_KEY, ["chat", "superchat"])
