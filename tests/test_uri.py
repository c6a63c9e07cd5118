"""Tests for simplews.uri: ws:// and wss:// URIs (RFC 6455 §3)."""

import pytest

from simplews.exceptions import InvalidURI, WebSocketError
from simplews.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize("uri, expected", [
    ("ws://example.com", WebSocketURI(False, "example.com", 80, "/", None)),
    ("ws://example.com/", WebSocketURI(False, "example.com", 80, "/", None)),
    ("wss://example.com", WebSocketURI(True, "example.com", 443, "/", None)),
    ("wss://example.com/", WebSocketURI(True, "example.com", 443, "/", None)),
    ("ws://example.com:8765", WebSocketURI(False, "example.com", 8765, "/", None)),
    ("wss://example.com:80/", WebSocketURI(True, "example.com", 80, "/", None)),
    ("ws://example.com:443/", WebSocketURI(False, "example.com", 443, "/", None)),
    ("ws://127.0.0.1:65535/x", WebSocketURI(False, "127.0.0.1", 65535, "/x", None)),
    ("ws://[::1]/", WebSocketURI(False, "::1", 80, "/", None)),
    ("wss://[::1]:8443/chat", WebSocketURI(True, "::1", 8443, "/chat", None)),
    ("ws://[2001:db8::7]:1234/a?b=c", WebSocketURI(False, "2001:db8::7", 1234, "/a?b=c", None)),
    ("ws://example.com/chat/room?id=1&x=%20y", WebSocketURI(False, "example.com", 80, "/chat/room?id=1&x=%20y", None)),
    ("ws://example.com?q=1", WebSocketURI(False, "example.com", 80, "/?q=1", None)),
    ("ws://example.com/path/", WebSocketURI(False, "example.com", 80, "/path/", None)),
])
def test_valid(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


def test_fields_by_name() -> None:
    parsed = parse_uri("wss://example.com:9000/a?b")
    assert parsed.secure is True
    assert parsed.host == "example.com"
    assert parsed.port == 9000
    assert parsed.resource == "/a?b"
    assert parsed.credentials is None


def test_scheme_and_host_are_case_insensitive() -> None:
    parsed = parse_uri("WSS://Example.COM/Path")
    assert parsed.secure and parsed.port == 443
    assert parsed.host.lower() == "example.com"
    assert parsed.resource == "/Path"  # the path is case-sensitive


@pytest.mark.parametrize("uri, credentials", [
    ("ws://user:pass@example.com/", ("user", "pass")),
    ("ws://user%20name:p%40ss%3Aword@example.com/", ("user name", "p@ss:word")),
    ("ws://us%C3%A9r:%E2%82%AC@example.com/", ("usér", "€")),
    ("wss://user@example.com/", ("user", "")),
    ("ws://user:@example.com/", ("user", "")),
    ("ws://:secret@example.com:81/", ("", "secret")),
])
def test_credentials(uri: str, credentials: object) -> None:
    parsed = parse_uri(uri)
    assert parsed.credentials == credentials
    assert parsed.host == "example.com"
    assert "@" not in parsed.resource


def test_credentials_with_ipv6_and_port() -> None:
    assert parse_uri("ws://a:b@[::1]:9/x") == WebSocketURI(False, "::1", 9, "/x", ("a", "b"))


def test_non_ascii_resource_is_percent_encoded() -> None:
    parsed = parse_uri("ws://example.com/ä b?q=ü")
    assert parsed.resource == "/%C3%A4%20b?q=%C3%BC"
    assert all(0x21 <= ord(c) <= 0x7E for c in parsed.resource)


@pytest.mark.parametrize("uri", [
    "ws://example.com/#frag",
    "ws://example.com/path?q=1#frag",
    "wss://example.com#",
    "ws://example.com/#",
])
def test_fragment_is_invalid(uri: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(uri)
    assert "fragment" in str(info.value)


@pytest.mark.parametrize("uri", [
    "http://example.com/",
    "https://example.com/",
    "ftp://example.com/",
    "example.com/chat",
    "//example.com/",
    "wsx://example.com/",
    "",
])
def test_wrong_scheme(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize("uri", [
    "ws://",
    "ws:///path",
    "wss://:443/",
    "ws://user:pass@/",
    "ws:example.com",
])
def test_missing_host(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


@pytest.mark.parametrize("uri", [
    "ws://example.com:abc/",
    "ws://example.com:99999/",
    "ws://example.com:65536/",
    "ws://example.com:-1/",
    "ws://example.com:8o/",
    "ws://[::1/",
    "ws://[::1]:x/",
])
def test_bad_port_or_host_syntax(uri: str) -> None:
    with pytest.raises(InvalidURI):
        parse_uri(uri)


def test_not_a_string() -> None:
    with pytest.raises(InvalidURI):
        parse_uri(b"ws://example.com/")  # type: ignore[arg-type]


def test_invalid_uri_is_a_websocket_error() -> None:
    with pytest.raises(WebSocketError):
        parse_uri("http://example.com/")
