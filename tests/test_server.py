"""SimpleWSServer over real loopback sockets: handlers, handshake rejections, hooks, shutdown, broadcast."""

import base64
import http.client
import logging
import os
import queue
import signal
import socket
import threading
from typing import Any, Callable, Dict, List, Optional

import pytest

import simplews
from simplews import frames
from simplews.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from _peers import GUARD, RawClient, assert_one_info_line, client_hello, has_ipv6_loopback, header, wait_until
from conftest import echo

MiB = 1 << 20


# ---------------------------------------------------------------------- handlers and attributes


def test_function_handler_sees_connection_attributes(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        box.put({
            "path": ws.path,
            "request_headers": ws.request_headers,
            "response_headers": ws.response_headers,
            "subprotocol": ws.subprotocol,
            "remote_address": ws.remote_address,
            "local_address": ws.local_address,
        })
        echo(ws)

    server = serve(handler, subprotocols=["chat"], extra_headers=[("X-Server-Hello", "1")])
    with simplews.connect(server.url + "room/42?user=ann", subprotocols=["chat"],
                          headers={"X-Client-Hello": "2"}) as ws:
        ws.send("hi")
        assert ws.recv(timeout=GUARD) == "hi"
        client_side = {
            "path": ws.path,
            "request_headers": ws.request_headers,
            "response_headers": ws.response_headers,
            "subprotocol": ws.subprotocol,
            "remote_address": ws.remote_address,
            "local_address": ws.local_address,
        }
    seen = box.get(timeout=GUARD)
    assert seen["path"] == client_side["path"] == "/room/42?user=ann"
    assert seen["request_headers"]["X-Client-Hello"] == "2"
    assert client_side["request_headers"]["X-Client-Hello"] == "2"
    assert seen["request_headers"]["Host"] == "127.0.0.1:%d" % server.port
    assert seen["request_headers"]["Sec-WebSocket-Key"] == client_side["request_headers"]["Sec-WebSocket-Key"]
    assert seen["response_headers"]["X-Server-Hello"] == "1"
    assert client_side["response_headers"]["X-Server-Hello"] == "1"
    assert client_side["response_headers"]["Sec-WebSocket-Accept"] == \
        seen["response_headers"]["Sec-WebSocket-Accept"]
    assert client_side["response_headers"]["Server"].startswith("simplews/")
    assert seen["subprotocol"] == client_side["subprotocol"] == "chat"
    assert tuple(client_side["remote_address"][:2]) == ("127.0.0.1", server.port)
    assert tuple(seen["local_address"][:2]) == ("127.0.0.1", server.port)
    assert tuple(seen["remote_address"][:2]) == tuple(client_side["local_address"][:2])


class Recorder(simplews.WebSocketHandler):
    def __init__(self) -> None:
        self.events = queue.Queue()  # type: queue.Queue

    def on_open(self, ws: simplews.WebSocket) -> None:
        self.events.put(("open", ws, ws.path))

    def on_message(self, ws: simplews.WebSocket, message: Any) -> None:
        self.events.put(("message", ws, message))
        ws.send(message)

    def on_close(self, ws: simplews.WebSocket, code: int, reason: str) -> None:
        self.events.put(("close", ws, code, reason))


def test_websocket_handler_callbacks_get_the_right_arguments(serve: Any) -> None:
    handler = Recorder()
    server = serve(handler)
    ws = simplews.connect(server.url + "events")
    ws.send("text")
    ws.send(b"bytes")
    assert ws.recv(timeout=GUARD) == "text"
    assert ws.recv(timeout=GUARD) == b"bytes"
    ws.close(4001, "done here")
    events = [handler.events.get(timeout=GUARD) for _ in range(4)]
    kinds = [event[0] for event in events]
    assert kinds == ["open", "message", "message", "close"]
    server_ws = events[0][1]
    assert all(event[1] is server_ws for event in events)
    assert events[0][2] == "/events"
    assert events[1][2] == "text" and events[2][2] == b"bytes"
    assert events[3][2:] == (4001, "done here")


def test_websocket_handler_on_close_gets_1006_when_tcp_drops(serve: Any) -> None:
    handler = Recorder()
    server = serve(handler)
    with RawClient(server.port) as raw:
        raw.handshake()
        assert handler.events.get(timeout=GUARD)[0] == "open"
    event = handler.events.get(timeout=GUARD)
    assert event[0] == "close" and event[2:] == (1006, "")


def test_websocket_handler_on_close_gets_the_server_close_code(serve: Any) -> None:
    class Closer(Recorder):
        def on_message(self, ws: simplews.WebSocket, message: Any) -> None:
            ws.close(4002, "closing you")

    handler = Closer()
    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("close me")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=GUARD)
    assert (info.value.code, info.value.reason) == (4002, "closing you")
    events = [handler.events.get(timeout=GUARD) for _ in range(2)]
    # RFC 6455 §7.1.5: the close code is the one in the close frame received (the client's echo)
    assert events[-1][0] == "close" and events[-1][2] == 4002


def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError):
        simplews.SimpleWSServer("not a handler", port=0)  # type: ignore[arg-type]


def test_unknown_option_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        simplews.SimpleWSServer(echo, port=0, no_such_option=1)


# ---------------------------------------------------------------------- handshake rejections (raw sockets)

GOOD_ORIGIN = "https://good.example"


def _request(**kwargs: Any) -> Callable[[RawClient], bytes]:
    return lambda raw: raw.request_bytes(**kwargs)


REJECTIONS = [
    ("bad-origin", _request(headers={"Origin": "https://evil.example"}), 403, {}),
    ("missing-upgrade", _request(headers={"Upgrade": None}), 426, {"Sec-WebSocket-Version": "13"}),
    ("upgrade-not-websocket", _request(headers={"Upgrade": "h2c"}), 426, {"Sec-WebSocket-Version": "13"}),
    ("missing-connection-upgrade", _request(headers={"Connection": "keep-alive"}), 426,
     {"Sec-WebSocket-Version": "13"}),
    ("bad-version", _request(headers={"Sec-WebSocket-Version": "8"}), 426, {"Sec-WebSocket-Version": "13"}),
    ("missing-version", _request(headers={"Sec-WebSocket-Version": None}), 426,
     {"Sec-WebSocket-Version": "13"}),
    ("bad-key", _request(headers={"Sec-WebSocket-Key": "not base64!"}), 400, {}),
    ("short-key", _request(headers={"Sec-WebSocket-Key": base64.b64encode(b"8 bytes!").decode()}), 400, {}),
    ("missing-key", _request(headers={"Sec-WebSocket-Key": None}), 400, {}),
    ("missing-host", _request(headers={"Host": None}), 400, {}),
    ("http-1.0", _request(version="HTTP/1.0"), 400, {}),
    ("garbage", lambda raw: b"\x00\x01\x02\x03garbage\r\n\r\n", 400, {}),
    ("bare-lf", lambda raw: raw.request_bytes().replace(b"\r\n", b"\n"), 400, {}),
    ("tls-client-hello", lambda raw: client_hello(), 400, {}),
    ("post", _request(method="POST"), 405, {"Allow": "GET"}),
    ("100kb-header-line", _request(headers={"X-Big": "a" * 100000}), 431, {}),
    ("200-header-lines", _request(headers={"X-H%d" % i: "v" for i in range(200)}), 431, {}),
    ("long-request-line", _request(path="/" + "a" * 10000), 414, {}),
]


@pytest.mark.parametrize("make_request, status, expected_headers",
                         [case[1:] for case in REJECTIONS], ids=[case[0] for case in REJECTIONS])
def test_raw_handshake_rejections(serve: Any, caplog: Any, make_request: Callable[[RawClient], bytes],
                                  status: int, expected_headers: Dict[str, str]) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo, origins=[GOOD_ORIGIN, None])
    with RawClient(server.port) as raw:
        raw.send(make_request(raw))
        got_status, headers, body = raw.read_response()  # reads until the server closes
        port = raw.local_port
    assert got_status == status, body
    for name, value in expected_headers.items():
        assert header(headers, name) == value
    assert "close" in (header(headers, "Connection") or "").lower()
    assert body.startswith(b"Failed to open a WebSocket connection: ")
    assert header(headers, "Sec-WebSocket-Accept") is None
    server.stop()  # every connection thread is done: all its log lines are in
    assert_one_info_line(caplog, port, "HTTP %d" % status)


def test_missing_origin_is_refused_when_origins_are_listed(serve: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo, origins=[GOOD_ORIGIN])
    with RawClient(server.port) as raw:
        raw.send(raw.request_bytes())
        status, _, body = raw.read_response()
        port = raw.local_port
    assert status == 403 and b"Origin" in body
    with RawClient(server.port) as raw:  # the listed origin is accepted
        raw.handshake(headers={"Origin": GOOD_ORIGIN})
        raw.send_frame(frames.OP_CLOSE, frames.encode_close(1000))
        raw.frames_until_eof()
    server.stop()
    assert_one_info_line(caplog, port, "HTTP 403")


def test_server_keeps_serving_after_rejections(serve: Any) -> None:
    server = serve(echo)
    for _ in range(3):
        with RawClient(server.port) as raw:
            raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.read_response()[0] == 426
    with simplews.connect(server.url) as ws:
        ws.send("still serving")
        assert ws.recv(timeout=GUARD) == "still serving"


def test_slowloris_is_cut_off_after_open_timeout(serve: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo, open_timeout=0.5)
    with RawClient(server.port) as raw:
        request = raw.request_bytes()
        raw.send(request[:len(request) // 2])  # half a request, then silence
        assert raw.sock.recv(1024) == b"", "the server answered instead of closing"
        port = raw.local_port
    with RawClient(server.port) as silent:  # says nothing at all
        assert silent.sock.recv(1024) == b""
        silent_port = silent.local_port
    with simplews.connect(server.url) as ws:  # others are still served
        ws.send("ok")
        assert ws.recv(timeout=GUARD) == "ok"
    server.stop()
    assert_one_info_line(caplog, port, "timed out")
    assert_one_info_line(caplog, silent_port, "timed out")


# ---------------------------------------------------------------------- process_request


def _process_request(path: str, headers: Any) -> Any:
    if path == "/health":
        return 200, [("Content-Type", "text/plain"), ("X-Health", "good")], b"OK\n"
    if path == "/private" and headers.get("Authorization") != "Bearer s3cret":
        return 401, {"WWW-Authenticate": "Bearer"}, "unauthorized\n"
    if path == "/boom":
        raise RuntimeError("process_request exploded")
    return None


def _http_get(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def test_process_request_serves_plain_http(serve: Any) -> None:
    server = serve(echo, process_request=_process_request)
    status, headers, body = _http_get(server.port, "/health")
    assert status == 200 and body == b"OK\n"
    assert header(headers, "X-Health") == "good"
    assert header(headers, "Content-Length") == "3"
    status, headers, body = _http_get(server.port, "/")  # not an upgrade: 426
    assert status == 426 and header(headers, "Upgrade") == "websocket"


def test_process_request_401_and_none(serve: Any) -> None:
    server = serve(echo, process_request=_process_request)
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url + "private")
    exc = info.value
    assert exc.status == 401
    assert ("WWW-Authenticate", "Bearer") in exc.headers
    assert exc.body == b"unauthorized\n"
    with simplews.connect(server.url + "private", headers={"Authorization": "Bearer s3cret"}) as ws:
        ws.send("authorized")
        assert ws.recv(timeout=GUARD) == "authorized"


def test_process_request_raising_answers_500(serve: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo, process_request=_process_request)
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url + "boom")
    assert info.value.status == 500
    server.stop()
    errors = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "process_request exploded" in str(errors[0].exc_info[1])


# ---------------------------------------------------------------------- subprotocols


@pytest.mark.parametrize("offered, expected", [
    (["superchat", "chat"], "superchat"),
    (["chat", "superchat"], "chat"),
    (["xmpp", "chat"], "chat"),
    (["xmpp"], None),
    (None, None),
])
def test_server_subprotocol_follows_client_preference(serve: Any, offered: Any, expected: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        box.put(ws.subprotocol)

    server = serve(handler, subprotocols=["chat", "superchat"])
    with simplews.connect(server.url, subprotocols=offered) as ws:
        assert ws.subprotocol == expected
        assert ws.response_headers.get("Sec-WebSocket-Protocol") == expected
    assert box.get(timeout=GUARD) == expected


def test_select_subprotocol_callable(serve: Any) -> None:
    calls = queue.Queue()  # type: queue.Queue

    def select(offered: List[str]) -> Optional[str]:
        calls.put(list(offered))
        return offered[-1] if "pick-last" in offered else None

    server = serve(echo, select_subprotocol=select)
    with simplews.connect(server.url, subprotocols=["a", "b", "pick-last", "c"]) as ws:
        assert ws.subprotocol == "c"
    assert calls.get(timeout=GUARD) == ["a", "b", "pick-last", "c"]
    with simplews.connect(server.url, subprotocols=["a"]) as ws:
        assert ws.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in ws.response_headers
    assert calls.get(timeout=GUARD) == ["a"]


def test_select_subprotocol_returning_an_unoffered_one_is_refused(serve: Any) -> None:
    server = serve(echo, select_subprotocol=lambda offered: "never-offered")
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url, subprotocols=["a"])
    assert info.value.status == 500  # the server's own bug, not the client's


# ---------------------------------------------------------------------- handler failures


def test_handler_exception_is_logged_and_closes_with_1011(serve: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")

    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            if message == "boom":
                raise ValueError("handler exploded")
            ws.send(message)

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=GUARD)
    assert info.value.code == 1011
    with simplews.connect(server.url) as ws:  # the server keeps serving
        ws.send("fine")
        assert ws.recv(timeout=GUARD) == "fine"
    server.stop()
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1
    assert failures[0].levelno == logging.ERROR
    assert isinstance(failures[0].exc_info[1], ValueError)
    assert "Traceback" in caplog.text


def test_on_close_exception_is_logged_not_fatal(serve: Any, caplog: Any) -> None:
    class Broken(simplews.WebSocketHandler):
        def on_message(self, ws: simplews.WebSocket, message: Any) -> None:
            ws.send(message)

        def on_close(self, ws: simplews.WebSocket, code: int, reason: str) -> None:
            raise KeyError("on_close exploded")

    server = serve(Broken())
    for _ in range(2):
        with simplews.connect(server.url) as ws:
            ws.send("x")
            assert ws.recv(timeout=GUARD) == "x"
    server.stop()
    assert len([r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], KeyError)]) == 2


# ---------------------------------------------------------------------- write timeout, broadcast


def test_stuck_client_does_not_stop_the_server(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue
    payload = os.urandom(MiB)

    def handler(ws: simplews.WebSocket) -> None:
        if ws.path != "/flood":
            echo(ws)
            return
        try:
            for _ in range(200):
                ws.send(payload)
            box.put("everything sent")
        except ConnectionClosed as exc:
            box.put(exc)

    server = serve(handler, write_timeout=0.5, compression=None)
    with RawClient(server.port, rcvbuf=16384) as raw:
        raw.handshake(path="/flood")  # and never reads
        with simplews.connect(server.url) as ws:  # served while the flood handler is blocked
            ws.send("meanwhile")
            assert ws.recv(timeout=GUARD) == "meanwhile"
        exc = box.get(timeout=GUARD * 3)
        assert isinstance(exc, ConnectionClosedError), exc
    with simplews.connect(server.url) as ws:
        ws.send("afterwards")
        assert ws.recv(timeout=GUARD) == "afterwards"


def _idle(ws: simplews.WebSocket) -> None:
    for _ in ws:
        pass


def test_broadcast_reaches_every_client(serve: Any) -> None:
    server = serve(_idle)
    clients = [simplews.connect(server.url) for _ in range(4)]
    try:
        wait_until(lambda: len(server.server.connections) == 4, message="4 connections")
        assert server.server.broadcast("to everyone") == 4
        assert server.server.broadcast(b"\x00binary") == 4
        for ws in clients:
            assert ws.recv(timeout=GUARD) == "to everyone"
            assert ws.recv(timeout=GUARD) == b"\x00binary"
    finally:
        for ws in clients:
            ws.close()


def test_broadcast_with_a_stuck_client_still_reaches_the_others(serve: Any) -> None:
    count = 12
    payload = os.urandom(MiB)
    server = serve(_idle, write_timeout=0.5, compression=None)
    clients = [simplews.connect(server.url, compression=None) for _ in range(3)]
    received = [[] for _ in clients]  # type: List[List[Any]]
    errors = []  # type: List[BaseException]

    def reader(ws: simplews.WebSocket, into: List[Any]) -> None:
        try:
            for _ in range(count):
                into.append(ws.recv(timeout=GUARD * 2))
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(ws, into), name="reader")
               for ws, into in zip(clients, received)]
    try:
        with RawClient(server.port, rcvbuf=16384) as stuck:
            stuck.handshake()  # and never reads
            wait_until(lambda: len(server.server.connections) == 4, message="4 connections")
            for thread in readers:
                thread.start()
            results = [server.server.broadcast(payload) for _ in range(count)]
            for thread in readers:
                thread.join(GUARD * 3)
            wait_until(lambda: len(server.server.connections) == 3, message="the stuck client dropped")
    finally:
        for ws in clients:
            ws.close()
        for thread in readers:
            if thread.ident is not None:
                thread.join(GUARD)
    assert errors == []
    assert all(len(messages) == count and all(m == payload for m in messages) for messages in received)
    assert all(result >= 3 for result in results)
    assert results[-1] == 3


# ---------------------------------------------------------------------- connections and shutdown


def test_connections_tracks_live_connections(serve: Any) -> None:
    server = serve(echo)
    assert server.server.connections == set()
    clients = [simplews.connect(server.url) for _ in range(3)]
    try:
        wait_until(lambda: len(server.server.connections) == 3, message="3 connections")
        assert all(isinstance(ws, simplews.WebSocket) for ws in server.server.connections)
        clients[0].close()
        wait_until(lambda: len(server.server.connections) == 2, message="2 connections")
    finally:
        for ws in clients:
            ws.close()
    wait_until(lambda: len(server.server.connections) == 0, message="no connections")


def test_shutdown_with_live_connections_sends_1001(serve: Any) -> None:
    server = serve(echo)
    clients = [simplews.connect(server.url) for _ in range(3)]
    try:
        wait_until(lambda: len(server.server.connections) == 3, message="3 connections")
        stopper = threading.Thread(target=server.stop, name="stopper")
        stopper.start()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=GUARD)
            assert info.value.code == 1001
            assert ws.close_code == 1001
        stopper.join(GUARD * 2)
        assert not stopper.is_alive()
        assert not server.thread.is_alive(), "serve_forever did not return"
        assert server.server.connections == set()
    finally:
        for ws in clients:
            ws.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=GUARD).close()


def test_shutdown_from_inside_a_handler(serve: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            if message == "stop":
                server.server.shutdown()
                return
            ws.send(message)

    server = serve(handler)
    other = simplews.connect(server.url)
    try:
        with simplews.connect(server.url) as ws:
            ws.send("stop")
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=GUARD)
            assert info.value.code == 1001
        with pytest.raises(ConnectionClosedOK):
            other.recv(timeout=GUARD)
    finally:
        other.close()
    server.thread.join(GUARD * 2)
    assert not server.thread.is_alive(), "serve_forever did not return"


def test_shutdown_from_a_handler_never_closes_sockets_under_the_accept_loop() -> None:
    """The listener and wake-up pair are in the accept loop's selector: closed under a
    running epoll_wait they can swallow the wake-up, and serve_forever() never returns
    (seen under load). A shutdown() that cannot wait for the loop leaves them to it."""
    for _ in range(20):
        closes = []  # type: List[bool]  # was the accept loop running when they were closed?

        def handler(ws: simplews.WebSocket) -> None:
            ws.recv(timeout=GUARD)
            server.shutdown()

        server = simplews.SimpleWSServer(handler, host="127.0.0.1", port=0)
        close_loop_sockets = server._close_loop_sockets

        def recording() -> None:
            closes.append(server._accepting)
            close_loop_sockets()

        server._close_loop_sockets = recording  # type: ignore[assignment]
        thread = threading.Thread(target=server.serve_forever, name="serve-forever")
        thread.start()
        try:
            with simplews.connect(server.url) as ws:
                ws.send("stop")
                with pytest.raises(ConnectionClosedOK):
                    ws.recv(timeout=GUARD)
        finally:
            thread.join(GUARD * 2)
        assert not thread.is_alive(), "serve_forever did not return"
        assert server._all_closed.wait(GUARD), "the handler's shutdown() did not finish"
        assert closes and not any(closes), closes  # closed once the loop had ended, never under it
        assert server._socket.fileno() == -1 and server._wake_r.fileno() == -1


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
@pytest.mark.parametrize("mode", ["threaded", "selectors"])
def test_shutdown_from_a_signal_handler_on_the_serving_thread(mode: str) -> None:
    """serve_forever on the main thread, shutdown() in the SIGTERM-style handler that
    interrupts it: shutdown() must not wait for the loop it is running on."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread only")
    class Echo(simplews.WebSocketHandler):
        def on_message(self, ws: simplews.WebSocket, message: Any) -> None:
            ws.send(message)

    server = simplews.SimpleWSServer(Echo(), host="127.0.0.1", port=0, mode=mode)
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: server.shutdown())
    main = threading.main_thread().ident
    assert main is not None
    results = {}  # type: Dict[str, Any]

    def client() -> None:
        try:
            with simplews.connect(server.url) as ws:
                ws.send("before")
                results["echo"] = ws.recv(timeout=GUARD)
                signal.pthread_kill(main, signal.SIGUSR1)  # as systemd's SIGTERM would
                try:
                    ws.recv(timeout=GUARD)
                except ConnectionClosedOK as exc:
                    results["closed"] = exc.code
        except Exception as exc:  # reported below, on the main thread
            results["error"] = exc
            signal.pthread_kill(main, signal.SIGUSR1)

    thread = threading.Thread(target=client, name="signal-test-client")
    thread.start()
    try:
        server.serve_forever()  # returns once the handler's shutdown() has taken effect
    finally:
        signal.signal(signal.SIGUSR1, previous)
        thread.join(GUARD)
        server.shutdown()
    assert "error" not in results, results
    assert results == {"echo": "before", "closed": 1001}
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=GUARD).close()


def test_server_as_context_manager() -> None:
    with simplews.SimpleWSServer(echo, host="127.0.0.1", port=0) as server:
        thread = threading.Thread(target=server.serve_forever, name="serve-forever")
        thread.start()
        try:
            assert server.url == "ws://127.0.0.1:%d/" % server.port
            with simplews.connect(server.url) as ws:
                ws.send("managed")
                assert ws.recv(timeout=GUARD) == "managed"
            live = simplews.connect(server.url)
        except BaseException:
            server.shutdown()
            thread.join(GUARD)
            raise
    try:
        thread.join(GUARD * 2)
        assert not thread.is_alive(), "serve_forever did not return"
        with pytest.raises(ConnectionClosedOK):
            live.recv(timeout=GUARD)
    finally:
        live.close()


def test_server_closed_without_serving() -> None:
    server = simplews.SimpleWSServer(echo, host="127.0.0.1", port=0)
    server.server_close()
    with pytest.raises(RuntimeError):
        server.serve_forever()
    server.shutdown()  # harmless afterwards


def test_port_in_use_raises() -> None:
    first = simplews.SimpleWSServer(echo, host="127.0.0.1", port=0)
    try:
        with pytest.raises(OSError):
            simplews.SimpleWSServer(echo, host="127.0.0.1", port=first.port)
    finally:
        first.server_close()


# ---------------------------------------------------------------------- IPv6


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_server_and_client(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        box.put((ws.remote_address, ws.request_headers["Host"]))
        echo(ws)

    server = serve(handler, host="::1")
    assert server.url == "ws://[::1]:%d/" % server.port
    with simplews.connect("ws://[::1]:%d/" % server.port) as ws:
        ws.send("over IPv6")
        assert ws.recv(timeout=GUARD) == "over IPv6"
        assert ws.remote_address[0] == "::1"
    remote, host = box.get(timeout=GUARD)
    assert remote[0] == "::1"
    assert host == "[::1]:%d" % server.port


def test_shutdown_aborts_a_handshake_in_progress(serve: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server = serve(echo)  # open_timeout: the default 10 s
    with RawClient(server.port) as raw:
        raw.send(b"GET / HTTP/1.1\r\n")  # and the rest never comes
        wait_until(lambda: any(t.name.startswith("simplews-127.0.0.1") for t in threading.enumerate()),
                   message="the connection thread")
        server.stop()
        assert raw.sock.recv(1024) == b""
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "simplews")
