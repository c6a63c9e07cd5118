"""simplews.connect / SimpleWSClient against a real server and against hand-driven fake servers."""

import base64
import logging
import queue
import socket
from typing import Any, List

import pytest

import simplews
from simplews.exceptions import InvalidHandshake, InvalidStatus, InvalidURI, NegotiationError

from _peers import GUARD, FakeServer, assert_one_info_line, has_ipv6_loopback
from conftest import echo


def _headers_seen(box: "queue.Queue[Any]") -> Any:
    def handler(ws: simplews.WebSocket) -> None:
        box.put(ws.request_headers)
        echo(ws)
    return handler


# ---------------------------------------------------------------------- rejections seen by the client


def _client_port(caplog: Any) -> int:
    """The client's port, from the server's one rejection line ("127.0.0.1:PORT: rejected ...")."""
    lines = [r.getMessage() for r in caplog.records if "rejected handshake" in r.getMessage()]
    assert len(lines) == 1, lines
    return int(lines[0].split(":")[1])


@pytest.mark.parametrize("kwargs, status, header, body_part", [
    ({"origin": "https://evil.example"}, 403, None, b"origin"),
    ({"headers": {"Sec-WebSocket-Version": "8"}}, 426, ("Sec-WebSocket-Version", "13"), b"Version"),
    ({"headers": {"Sec-WebSocket-Key": "bad key"}}, 400, None, b"Sec-WebSocket-Key"),
    ({"headers": {"Upgrade": "not-websocket"}}, 426, ("Upgrade", "websocket"), b"Upgrade"),
], ids=["403-origin", "426-version", "400-key", "426-upgrade"])
def test_rejection_raises_invalid_status(serve: Any, caplog: Any, kwargs: Any, status: int,
                                         header: Any, body_part: bytes) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo, origins=["https://good.example", None])
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url, **kwargs)
    exc = info.value
    assert exc.status == status
    assert str(status) in str(exc)
    assert isinstance(exc.headers, list) and all(isinstance(item, tuple) for item in exc.headers)
    if header is not None:
        assert header in exc.headers
    assert ("Content-Type", "text/plain; charset=utf-8") in exc.headers
    assert exc.body.startswith(b"Failed to open a WebSocket connection: ")
    assert body_part in exc.body
    server.stop()
    assert_one_info_line(caplog, _client_port(caplog), "HTTP %d" % status)


def test_invalid_status_from_a_fake_server_keeps_status_headers_body() -> None:
    body = b"come back later"
    with FakeServer(answer=False, script=lambda conn: conn.sendall(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))) as fake:
        with pytest.raises(InvalidStatus) as info:
            simplews.connect(fake.url)
    assert info.value.status == 503
    assert ("Retry-After", "7") in info.value.headers
    assert info.value.body == body


def test_server_closing_during_the_handshake() -> None:
    with FakeServer(answer=False, script=lambda conn: conn.shutdown(socket.SHUT_RDWR)) as fake:
        with pytest.raises(InvalidHandshake):
            simplews.connect(fake.url)


def test_handshake_timeout_on_a_silent_server() -> None:
    with FakeServer(answer=False) as fake:  # reads the request, never answers
        with pytest.raises(TimeoutError):
            simplews.connect(fake.url, timeout=0.3)


def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with pytest.raises(ConnectionRefusedError):
        simplews.connect("ws://127.0.0.1:%d/" % port, timeout=GUARD)


@pytest.mark.parametrize("uri", ["http://127.0.0.1/", "ws://", "ws://host/#fragment", "not a uri"])
def test_invalid_uri(uri: str) -> None:
    with pytest.raises(InvalidURI):
        simplews.connect(uri)


def test_ssl_context_for_ws_uri_is_refused() -> None:
    import ssl
    with pytest.raises(ValueError):
        simplews.connect("ws://127.0.0.1:1/", ssl_context=ssl.create_default_context())


# ---------------------------------------------------------------------- negotiation


@pytest.mark.parametrize("offered, answered", [
    (["a"], "b"),
    (None, "b"),
    (["a", "b"], "a, b"),
])
def test_subprotocol_not_offered_is_a_negotiation_error(offered: Any, answered: str) -> None:
    with FakeServer(extra_headers=[("Sec-WebSocket-Protocol", answered)]) as fake:
        with pytest.raises(NegotiationError):
            simplews.connect(fake.url, subprotocols=offered)


def test_subprotocol_offered_and_answered_is_accepted() -> None:
    with FakeServer(extra_headers=[("Sec-WebSocket-Protocol", "b")]) as fake:
        ws = simplews.connect(fake.url, subprotocols=["a", "b"], close_timeout=0.3)
        try:
            assert ws.subprotocol == "b"
        finally:
            ws.abort()


def test_extension_not_offered_is_a_negotiation_error() -> None:
    with FakeServer(extra_headers=[("Sec-WebSocket-Extensions", "permessage-deflate")]) as fake:
        with pytest.raises(NegotiationError):
            simplews.connect(fake.url, compression=None)


def test_wrong_accept_key_is_refused() -> None:
    with FakeServer(answer=False, script=lambda conn: conn.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")) as fake:
        with pytest.raises(InvalidHandshake) as info:
            simplews.connect(fake.url)
    assert not isinstance(info.value, InvalidStatus)
    assert "Sec-WebSocket-Accept" in str(info.value)


def test_client_offers_subprotocols_in_order(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue
    server = serve(_headers_seen(box))
    with simplews.connect(server.url, subprotocols=["one", "two"]) as ws:
        assert ws.subprotocol is None  # the server supports none
    assert box.get(timeout=GUARD)["Sec-WebSocket-Protocol"] == "one, two"


# ---------------------------------------------------------------------- request details


def test_basic_auth_from_the_uri(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue
    server = serve(_headers_seen(box))
    with simplews.connect("ws://user:pa%%20ss@127.0.0.1:%d/secret" % server.port) as ws:
        ws.send("authenticated")
        assert ws.recv(timeout=GUARD) == "authenticated"
        assert ws.path == "/secret"
    headers = box.get(timeout=GUARD)
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:pa ss").decode("ascii")
    assert headers["Host"] == "127.0.0.1:%d" % server.port  # no credentials in Host


def test_origin_and_extra_headers_reach_the_server(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue
    server = serve(_headers_seen(box))
    with simplews.connect(server.url, origin="https://app.example",
                          headers=[("X-One", "1"), ("X-Many", "a"), ("X-Many", "b"),
                                   ("User-Agent", "custom-agent/1")]):
        pass
    headers = box.get(timeout=GUARD)
    assert headers["Origin"] == "https://app.example"
    assert headers["X-One"] == "1"
    assert headers.get_all("X-Many") == ["a", "b"]
    assert headers.get_all("User-Agent") == ["custom-agent/1"]


def test_simplewsclient_connect(serve: Any) -> None:
    server = serve(echo)
    client = simplews.SimpleWSClient(server.url + "x?y=1")
    with client.connect() as ws:
        ws.send("via SimpleWSClient")
        assert ws.recv(timeout=GUARD) == "via SimpleWSClient"
        assert ws.path == "/x?y=1"
    assert ws.closed


def test_many_sequential_connections(serve: Any) -> None:
    server = serve(echo)
    for i in range(20):
        with simplews.connect(server.url) as ws:
            ws.send(str(i))
            assert ws.recv(timeout=GUARD) == str(i)


def test_many_concurrent_connections(serve: Any) -> None:
    server = serve(echo)
    clients = []  # type: List[simplews.WebSocket]
    try:
        for i in range(20):
            clients.append(simplews.connect(server.url))
        for i, ws in enumerate(clients):
            ws.send("client %d" % i)
        for i, ws in enumerate(clients):
            assert ws.recv(timeout=GUARD) == "client %d" % i
    finally:
        for ws in clients:
            ws.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_client_to_ipv6_literal(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue
    server = serve(_headers_seen(box), host="::1")
    with simplews.connect("ws://[::1]:%d/" % server.port) as ws:
        ws.send("v6")
        assert ws.recv(timeout=GUARD) == "v6"
        assert ws.local_address[0] == "::1"
    assert box.get(timeout=GUARD)["Host"] == "[::1]:%d" % server.port


def test_connect_honours_open_timeout_and_timeout_wins() -> None:
    """``connect(open_timeout=...)`` is used; ``timeout=`` is its other name and wins."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)  # accepts TCP, never answers the handshake
    url = "ws://127.0.0.1:%d/" % listener.getsockname()[1]
    try:
        for kwargs, expected in (({"open_timeout": 0.2}, "0.2"), ({"open_timeout": 30, "timeout": 0.3}, "0.3")):
            with pytest.raises(TimeoutError) as info:
                simplews.connect(url, **kwargs)
            assert "after %ss" % expected in str(info.value), info.value
    finally:
        listener.close()
