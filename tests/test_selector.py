"""The selectors mode (simplews.selector) over real loopback sockets.

No timed assertions: sleeps and timeouts are hang guards; every test asserts
behaviour (what arrived, which close code, which thread ran a callback).
"""

import os
import queue
import resource
import select
import socket
import threading
import time
from typing import Any, Callable, Iterator, List, Tuple

import pytest

import simplews
from simplews import frames
from simplews.frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from simplews.selector import SelectorServer, SelectorWebSocket

from _peers import GUARD, RawClient, header, wait_until


class Recorder(simplews.WebSocketHandler):
    """Echoes and records what happened, with the thread each callback ran on."""

    def __init__(self) -> None:
        self.events = queue.Queue()  # type: queue.Queue[Tuple[Any, ...]]
        self.opened = queue.Queue()  # type: queue.Queue[Any]
        self.threads = set()  # type: set

    def on_open(self, ws: Any) -> None:
        self.threads.add(threading.get_ident())
        self.opened.put(ws)
        self.events.put(("open", ws.path))

    def on_message(self, ws: Any, message: Any) -> None:
        self.threads.add(threading.get_ident())
        if message == "boom":
            raise ValueError("boom")
        ws.send(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        self.threads.add(threading.get_ident())
        self.events.put(("close", code, reason))

    def next_close(self) -> Tuple[Any, ...]:
        while True:
            event = self.events.get(timeout=GUARD)
            if event[0] == "close":
                return event


def selectors_serve(serve: Callable[..., Any], handler: Any = None, **options: Any) -> Any:
    return serve(handler if handler is not None else Recorder(), mode="selectors", **options)


def client(url: str, **options: Any) -> simplews.WebSocket:
    options.setdefault("ping_interval", None)  # no client housekeeping thread
    return simplews.connect(url, **options)


# ---------------------------------------------------------------------- construction


def test_function_handler_is_rejected() -> None:
    def echo(ws: Any) -> None:
        pass

    with pytest.raises(TypeError, match="WebSocketHandler"):
        simplews.SimpleWSServer(echo, port=0, mode="selectors")
    with pytest.raises(TypeError, match="instance"):
        simplews.SimpleWSServer(Recorder, port=0, mode="selectors")
    with pytest.raises(ValueError, match="mode"):
        simplews.SimpleWSServer(Recorder(), port=0, mode="asyncio")
    with pytest.raises(ValueError, match="write_limit"):
        simplews.SimpleWSServer(Recorder(), port=0, mode="selectors", write_limit=0)


def test_mode_selects_the_implementation() -> None:
    with simplews.SimpleWSServer(Recorder(), port=0, mode="selectors") as server:
        assert isinstance(server, SelectorServer)
        assert isinstance(server, simplews.SimpleWSServer)
        assert server.port > 0 and server.url == "ws://127.0.0.1:%d/" % server.port
        assert server.connections == set()
    threaded = simplews.SimpleWSServer(Recorder(), port=0)
    try:
        assert not isinstance(threaded, SelectorServer)
    finally:
        threaded.server_close()


# ---------------------------------------------------------------------- messages


def test_echo_and_connection_surface(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, subprotocols=["chat"])
    with client(running.url + "room?x=1", subprotocols=["chat"], compression=None) as ws:
        ws.send("hello")
        assert ws.recv(GUARD) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(GUARD) == b"\x00\x01"
        big = os.urandom(300000)
        ws.send(big)
        assert ws.recv(GUARD) == big
        ws.send(["frag", "mented"])
        assert ws.recv(GUARD) == "fragmented"
        server_ws = handler.opened.get(timeout=GUARD)
        assert isinstance(server_ws, SelectorWebSocket)
        assert server_ws in running.server.connections
        assert server_ws.path == "/room?x=1"
        assert server_ws.subprotocol == "chat"
        assert server_ws.request_headers.get("Sec-WebSocket-Protocol") == "chat"
        assert server_ws.response_headers.get("Sec-WebSocket-Protocol") == "chat"
        assert server_ws.remote_address[1] == ws.local_address[1]
        assert server_ws.local_address[1] == running.port
        assert not server_ws.closed and server_ws.close_code is None
        wait_until(lambda: server_ws.buffered_amount == 0, message="write buffer drained")
        server_ws.custom_state = 42  # per-connection state may live on the object
        with pytest.raises(TypeError, match="on_message"):
            server_ws.recv()
        with pytest.raises(TypeError, match="on_message"):
            iter(server_ws)
    assert handler.next_close() == ("close", 1000, "")
    wait_until(lambda: not running.server.connections, message="connection forgotten")
    assert server_ws.closed and server_ws.close_code == 1000
    assert len(handler.threads) == 1  # every callback on the loop thread
    assert handler.threads == {running.thread.ident}


def test_broadcast_from_any_thread_and_from_the_loop(serve: Any) -> None:
    class Chat(simplews.WebSocketHandler):
        server = None  # type: Any

        def on_message(self, ws: Any, message: Any) -> None:
            reached = self.server.broadcast(message)
            ws.send("reached %d" % reached)

    chat = Chat()
    running = selectors_serve(serve, chat)
    chat.server = running.server
    # a mix: the frame is built once for the uncompressed ones, per connection for the others
    clients = [client(running.url, compression=None if i % 2 else "default") for i in range(6)]
    try:
        wait_until(lambda: len(running.server.connections) == 6, message="6 connections")
        assert running.server.broadcast("to everyone " * 10) == 6
        for ws in clients:
            assert ws.recv(GUARD) == "to everyone " * 10
        clients[0].send(b"from a client")
        for ws in clients:
            assert ws.recv(GUARD) == b"from a client"
        assert clients[0].recv(GUARD) == "reached 6"
        with pytest.raises(TypeError):
            running.server.broadcast(42)
    finally:
        for ws in clients:
            ws.close()


def test_cross_thread_send(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler)
    with client(running.url) as ws:
        server_ws = handler.opened.get(timeout=GUARD)

        def sender(tag: int) -> None:
            for i in range(200):
                server_ws.send("%d:%d" % (tag, i))

        threads = [threading.Thread(target=sender, args=(tag,)) for tag in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD)
        received = {tag: [] for tag in range(4)}  # type: dict
        for _ in range(800):
            tag, i = ws.recv(GUARD).split(":")
            received[int(tag)].append(int(i))
        for tag in range(4):
            assert received[tag] == list(range(200))  # each thread's messages in order
        pings = [server_ws.ping() for _ in range(3)]
        server_ws.send("after the pings")
        assert ws.recv(GUARD) == "after the pings"  # reading answers the pings
        assert all(ping.wait(GUARD) for ping in pings)
        assert all(ping.latency is not None for ping in pings)
        server_ws.close(4000, "bye from another thread")
        with pytest.raises(simplews.ConnectionClosed) as info:
            ws.recv(GUARD)
        assert info.value.code == 4000
    assert handler.next_close() == ("close", 4000, "")  # the code the peer echoed
    with pytest.raises(simplews.ConnectionClosed):
        server_ws.send("too late")


def test_ping_wait_on_the_loop_thread_raises(serve: Any) -> None:
    class Pinger(simplews.WebSocketHandler):
        def on_message(self, ws: Any, message: Any) -> None:
            ping = ws.ping()
            try:
                ping.wait(1)
            except RuntimeError as exc:
                ws.send("RuntimeError: %s" % exc)

    running = selectors_serve(serve, Pinger())
    with client(running.url) as ws:
        ws.send("go")
        assert ws.recv(GUARD).startswith("RuntimeError: Ping.wait() cannot be called on the selectors loop")


def test_call_soon_and_call_later(serve: Any) -> None:
    class Delayed(simplews.WebSocketHandler):
        server = None  # type: Any

        def on_message(self, ws: Any, message: Any) -> None:
            self.server.call_later(0.05, ws.send, "later: " + message)
            cancelled = self.server.call_later(0.01, ws.send, "never")
            cancelled.cancel()
            self.server.call_soon(ws.send, "soon: " + message)

    handler = Delayed()
    running = selectors_serve(serve, handler)
    handler.server = server = running.server
    ran = queue.Queue()  # type: queue.Queue[Tuple[str, int]]
    server.call_soon(lambda tag: ran.put((tag, threading.get_ident())), "soon")
    server.call_later(0.02, lambda: ran.put(("later", threading.get_ident())))
    handle = server.call_later(0.01, lambda: ran.put(("cancelled", threading.get_ident())))
    handle.cancel()
    server.call_soon(lambda: 1 / 0)  # a failing callback is logged; the loop goes on
    results = [ran.get(timeout=GUARD), ran.get(timeout=GUARD)]
    assert sorted(tag for tag, _ in results) == ["later", "soon"]
    assert {ident for _, ident in results} == {running.thread.ident}
    with client(running.url) as ws:
        ws.send("x")
        assert ws.recv(GUARD) == "soon: x"
        assert ws.recv(GUARD) == "later: x"
        ws.send("y")  # "never" would arrive before this answer
        assert ws.recv(GUARD) == "soon: y"
    assert ran.empty()


# ---------------------------------------------------------------------- handshake


def test_handshake_rejections(serve: Any) -> None:
    running = selectors_serve(serve, origins=["http://good.example"])
    with pytest.raises(simplews.InvalidStatus) as info:
        client(running.url, origin="http://evil.example")
    assert info.value.status == 403
    with client(running.url, origin="http://good.example") as ws:
        ws.send("ok")
        assert ws.recv(GUARD) == "ok"
    with RawClient(running.port) as raw:
        raw.send(raw.request_bytes(headers={"Origin": "http://good.example", "Sec-WebSocket-Version": "8"}))
        status, headers, _ = raw.read_response()
        assert status == 426 and header(headers, "Sec-WebSocket-Version") == "13"
    with RawClient(running.port) as raw:
        raw.send(raw.request_bytes(headers={"Origin": "http://good.example", "Sec-WebSocket-Key": None}))
        status, _, body = raw.read_response()
        assert status == 400 and b"Sec-WebSocket-Key" in body
    with RawClient(running.port) as raw:
        raw.send(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _ = raw.read_response()
        assert status == 400
    assert not running.server.connections


def test_process_request(serve: Any) -> None:
    def process_request(path: str, headers: Any) -> Any:
        if path == "/health":
            return 200, {"X-Health": "fine"}, "OK\n"
        if path == "/crash":
            raise RuntimeError("bug")
        return None

    running = selectors_serve(serve, process_request=process_request, extra_headers=[("X-Extra", "1")])
    with RawClient(running.port) as raw:
        raw.send(raw.request_bytes("/health"))
        status, headers, body = raw.read_response()
        assert (status, header(headers, "X-Health"), body) == (200, "fine", b"OK\n")
    with RawClient(running.port) as raw:
        raw.send(raw.request_bytes("/crash"))
        assert raw.read_response()[0] == 500
    with client(running.url + "chat") as ws:
        assert ws.response_headers.get("X-Extra") == "1"
        assert ws.response_headers.get("Server", "").startswith("simplews/")
        ws.send("still a websocket")
        assert ws.recv(GUARD) == "still a websocket"


def test_slow_handshake_times_out(serve: Any) -> None:
    running = selectors_serve(serve, open_timeout=0.5)
    with RawClient(running.port) as raw:
        request = raw.request_bytes()
        closed = False
        for i in range(len(request) - 1):  # slowloris: a byte at a time, never finishing
            try:
                raw.send(request[i:i + 1])
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([raw.sock], [], [], 0.05)
            if readable:
                closed = True
                break
        if not closed:
            readable, _, _ = select.select([raw.sock], [], [], GUARD)
            assert readable
        try:
            assert raw.sock.recv(100) == b""
        except ConnectionResetError:
            pass
    # the loop was never blocked by it
    with client(running.url) as ws:
        ws.send("alive")
        assert ws.recv(GUARD) == "alive"


# ---------------------------------------------------------------------- flow control


def test_slow_reader_is_closed_at_the_write_limit(serve: Any) -> None:
    results = queue.Queue()  # type: queue.Queue[Any]

    class Flood(simplews.WebSocketHandler):
        def on_open(self, ws: Any) -> None:
            try:
                for _ in range(200):
                    ws.send(b"x" * 65536)
            except simplews.ConnectionClosedError as exc:
                results.put(("send raised", exc.code))

        def on_close(self, ws: Any, code: int, reason: str) -> None:
            results.put(("close", code, reason, ws.buffered_amount))

    running = selectors_serve(serve, Flood(), write_limit=256 * 1024, close_timeout=1)
    with RawClient(running.port, rcvbuf=4096) as raw:
        raw.handshake()  # then never read
        assert results.get(timeout=GUARD) == ("send raised", 1008)
        close = results.get(timeout=GUARD)
        assert close[:3] == ("close", 1008, "write buffer limit exceeded")
        assert close[3] == 0
    with client(running.url) as ws:  # other connections are unaffected
        assert ws.recv(GUARD) == b"x" * 65536


def test_one_message_larger_than_the_write_limit_is_fine(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, write_limit=64 * 1024)
    big = os.urandom(1024 * 1024)
    with client(running.url, compression=None) as ws:
        for _ in range(3):
            ws.send(big)
            assert ws.recv(GUARD) == big
    assert handler.next_close()[1] == 1000


def test_client_that_does_not_read_is_slowed_down_not_closed(serve: Any) -> None:
    """Echoes pile up: the loop stops reading that socket (TCP backpressure)
    instead of exceeding the write limit; nothing is lost."""
    handler = Recorder()
    running = selectors_serve(serve, handler, write_limit=1024 * 1024)
    message = os.urandom(4096)
    frame = frames.build_frame(OP_BINARY, message, mask=True)
    with RawClient(running.port, rcvbuf=16384) as raw:
        raw.handshake()
        server_ws = handler.opened.get(timeout=GUARD)
        sock = raw.sock
        sock.setblocking(False)
        pending = b""
        sent = 0
        while sent < 4096:  # up to 16 MiB, much more than the kernel buffers and the write limit
            if not pending:
                pending = frame
            _, writable, _ = select.select([], [sock], [], 2.0)
            if not writable:
                break  # the server stopped reading us
            try:
                count = sock.send(pending)
            except BlockingIOError:
                continue
            pending = pending[count:]
            if not pending:
                sent += 1
        assert sent < 4096, "the server never stopped reading"
        assert not server_ws.closed
        assert server_ws.buffered_amount <= 1024 * 1024
        sock.setblocking(True)
        if pending:
            sock.sendall(pending)
            sent += 1
        received = 0
        while received < sent:
            got = raw.recv_frame()
            assert got is not None and got.opcode == OP_BINARY and got.payload == message
            received += 1
        raw.send_frame(OP_CLOSE, frames.encode_close(1000, ""))
        assert raw.recv_frame().opcode == OP_CLOSE  # type: ignore[union-attr]
    assert handler.next_close()[1] == 1000


def test_pause_and_resume_reading(serve: Any) -> None:
    class Paused(Recorder):
        def on_open(self, ws: Any) -> None:
            ws.pause_reading()  # e.g. while a worker thread is busy
            super().on_open(ws)

    handler = Paused()
    running = selectors_serve(serve, handler)
    with client(running.url) as ws:
        server_ws = handler.opened.get(timeout=GUARD)
        ws.send("queued in TCP")
        time.sleep(0.3)
        ws.send("second")
        with pytest.raises(TimeoutError):
            ws.recv(0.3)  # nothing read, nothing echoed
        server_ws.resume_reading()  # from another thread
        assert ws.recv(GUARD) == "queued in TCP"
        assert ws.recv(GUARD) == "second"


# ---------------------------------------------------------------------- keepalive, errors, shutdown


def test_keepalive_timeout_with_a_peer_that_never_answers(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(running.port) as raw:
        raw.handshake()
        received = raw.frames_until_eof()  # never answers the pings
    assert received and received[0].opcode == OP_PING
    assert received[-1].opcode == OP_CLOSE
    assert frames.decode_close(received[-1].payload) == (1011, "keepalive ping timeout")
    assert handler.next_close()[1] == 1011


def test_keepalive_with_a_peer_that_answers(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, ping_interval=0.05, ping_timeout=0.5)
    with RawClient(running.port) as raw:
        raw.handshake()
        for _ in range(5):
            frame = raw.recv_frame()
            assert frame is not None and frame.opcode == OP_PING
            raw.send_frame(OP_PONG, frame.payload)
        raw.send_frame(OP_TEXT, b"still here")
        while True:
            frame = raw.recv_frame()
            assert frame is not None
            if frame.opcode == OP_TEXT:
                assert frame.payload == b"still here"
                break
            raw.send_frame(OP_PONG, frame.payload)


def test_handler_exception_closes_with_1011_and_server_keeps_serving(serve: Any, caplog: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler)
    with client(running.url) as ws:
        ws.send("boom")
        with pytest.raises(simplews.ConnectionClosedError) as info:
            ws.recv(GUARD)
        assert info.value.code == 1011
    assert handler.next_close()[1] == 1011
    assert "handler failed" in caplog.text
    with client(running.url) as ws:
        ws.send("fine")
        assert ws.recv(GUARD) == "fine"


def test_protocol_error_from_the_peer(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler)
    with RawClient(running.port) as raw:
        raw.handshake()
        raw.send_frame(OP_TEXT, b"\xff\xfe")  # invalid UTF-8
        received = raw.frames_until_eof()
    assert received[-1].opcode == OP_CLOSE
    assert frames.decode_close(received[-1].payload)[0] == 1007
    assert handler.next_close()[1] == 1007


def test_frames_sent_with_the_request_and_abrupt_disconnect(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, compression=None)
    with RawClient(running.port) as raw:
        raw.send(raw.request_bytes() + frames.build_frame(OP_TEXT, b"early", mask=True))
        status, _, rest = raw.read_head()
        assert status == 101
        raw.parser.feed(rest)
        frame = raw.recv_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (OP_TEXT, b"early")
    # the raw client vanished without a close frame
    assert handler.next_close()[1] == 1006


def test_message_too_big(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, max_message_size=1000)
    with client(running.url) as ws:
        ws.send("x" * 1000)
        assert ws.recv(GUARD) == "x" * 1000
        ws.send("x" * 1001)
        with pytest.raises(simplews.ConnectionClosedError) as info:
            ws.recv(GUARD)
        assert info.value.code == 1009
    assert handler.next_close()[1] == 1009


def test_shutdown_closes_everyone_with_1001(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler)
    clients = [client(running.url) for _ in range(3)]
    outcomes = queue.Queue()  # type: queue.Queue[Any]

    def read(ws: simplews.WebSocket) -> None:
        try:
            ws.recv(GUARD)
        except Exception as exc:
            outcomes.put(exc)

    readers = [threading.Thread(target=read, args=(ws,)) for ws in clients]
    try:
        wait_until(lambda: len(running.server.connections) == 3, message="3 connections")
        for reader in readers:
            reader.start()
        with RawClient(running.port) as raw:  # a handshake in progress is dropped
            raw.send(b"GET / HTTP/1.1\r\n")
            running.stop()  # shutdown() returns once serve_forever has
            try:  # dropped: FIN, or a reset when the loop had not read the partial request yet
                assert raw.sock.recv(100) == b""
            except ConnectionResetError:
                pass
        for _ in clients:
            exc = outcomes.get(timeout=GUARD)
            assert isinstance(exc, simplews.ConnectionClosedOK) and exc.code == 1001
        codes = sorted(handler.next_close()[1] for _ in range(3))
        assert codes == [1001, 1001, 1001]
        assert not running.server.connections
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", running.port), timeout=GUARD).close()
    finally:
        for reader in readers:
            if reader.ident is not None:
                reader.join(GUARD)
        for ws in clients:
            ws.close()


def test_shutdown_from_a_handler(serve: Any) -> None:
    class Stopper(simplews.WebSocketHandler):
        server = None  # type: Any

        def on_message(self, ws: Any, message: Any) -> None:
            self.server.shutdown()  # returns at once on the loop thread

    handler = Stopper()
    running = selectors_serve(serve, handler)
    handler.server = running.server
    with client(running.url) as ws:
        ws.send("stop")
        with pytest.raises(simplews.ConnectionClosedOK):
            ws.recv(GUARD)
    running.thread.join(GUARD)
    assert not running.thread.is_alive()


# ---------------------------------------------------------------------- compression and TLS


def test_compression(serve: Any) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler)
    text = "compressible text " * 1000
    with client(running.url) as ws:
        assert "permessage-deflate" in ws.response_headers.get("Sec-WebSocket-Extensions", "")
        for _ in range(3):
            ws.send(text)
            assert ws.recv(GUARD) == text
        assert running.server.broadcast(text) == 1
        assert ws.recv(GUARD) == text
    with client(running.url, compression=None) as ws:
        assert ws.response_headers.get("Sec-WebSocket-Extensions") is None
        ws.send(text)
        assert ws.recv(GUARD) == text


def test_tls(serve: Any, tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is not installed (pip install trustme)")
    import ssl
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    handler = Recorder()
    running = selectors_serve(serve, handler, ssl_context=server_context)
    assert running.url.startswith("wss://")
    big = os.urandom(200000)
    with client(running.url, ssl_context=client_context) as ws:
        for _ in range(3):
            ws.send("over TLS")
            assert ws.recv(GUARD) == "over TLS"
            ws.send(big)
            assert ws.recv(GUARD) == big
        assert running.server.broadcast("tls broadcast") == 1
        assert ws.recv(GUARD) == "tls broadcast"
    assert handler.next_close()[1] == 1000
    # a client that is not speaking TLS does not hurt the loop
    with RawClient(running.port) as raw:
        raw.send(b"GET / HTTP/1.1\r\n\r\n")
        try:
            while raw.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    with client(running.url, ssl_context=client_context) as ws:
        ws.send("after garbage")
        assert ws.recv(GUARD) == "after garbage"


def test_tls_handshake_that_stalls_is_dropped(serve: Any) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is not installed (pip install trustme)")
    import ssl
    from _peers import client_hello
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    running = selectors_serve(serve, ssl_context=server_context, open_timeout=0.3)
    with RawClient(running.port) as raw:
        raw.send(client_hello()[:20])  # a partial ClientHello, then nothing
        try:
            assert raw.sock.recv(65536) == b""
        except ConnectionResetError:
            pass
    with RawClient(running.port) as raw:  # a complete ClientHello, then nothing
        raw.send(client_hello())
        try:
            while raw.sock.recv(65536):
                pass
        except ConnectionResetError:
            pass
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with client(running.url, ssl_context=client_context) as ws:
        ws.send("fine")
        assert ws.recv(GUARD) == "fine"


# ---------------------------------------------------------------------- scale and parity


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip("RLIMIT_NOFILE hard limit %d is below %d" % (hard, wanted))
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_one_thousand_concurrent_connections(serve: Any, many_fds: None) -> None:
    handler = Recorder()
    running = selectors_serve(serve, handler, backlog=1024)
    clients = []  # type: List[simplews.WebSocket]
    try:
        for _ in range(1000):
            clients.append(client(running.url, compression=None))
        wait_until(lambda: len(running.server.connections) == 1000, message="1000 connections")
        for index, ws in enumerate(clients):
            ws.send("n%d" % index)
        for index, ws in enumerate(clients):
            assert ws.recv(GUARD) == "n%d" % index
        assert running.server.broadcast(b"all of you") == 1000
        for ws in clients:
            assert ws.recv(GUARD) == b"all of you"
    finally:
        for ws in clients:
            ws.close()
    wait_until(lambda: not running.server.connections, message="all closed")
    codes = [handler.next_close()[1] for _ in range(1000)]
    assert set(codes) == {1000}


class Script(simplews.WebSocketHandler):
    """One handler class for both modes; records what it saw."""

    def __init__(self) -> None:
        self.log = queue.Queue()  # type: queue.Queue[Any]

    def on_open(self, ws: Any) -> None:
        ws.count = 0
        self.log.put(("open", ws.path, ws.subprotocol))
        ws.send("welcome")

    def on_message(self, ws: Any, message: Any) -> None:
        ws.count += 1
        self.log.put(("message", message))
        if message == "close me":
            ws.close(4001, "as requested")
        elif message == "fail":
            raise KeyError("fail")
        else:
            ws.send(message * 2 if isinstance(message, str) else message[::-1])
            ws.send("count %d" % ws.count)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        self.log.put(("close", code, reason))


def _run_script(serve: Any, mode: str) -> Tuple[List[Any], List[Any]]:
    handler = Script()
    running = serve(handler, mode=mode, subprotocols=["v1"])
    seen = []  # type: List[Any]
    for ending in ("close me", "fail", None):
        ws = client(running.url + "script", subprotocols=["v1"])
        try:
            seen.append(ws.recv(GUARD))
            for message in ("ab", b"xyz"):
                ws.send(message)
                seen.append(ws.recv(GUARD))
                seen.append(ws.recv(GUARD))
            if ending is not None:
                ws.send(ending)
                with pytest.raises(simplews.ConnectionClosed) as info:
                    ws.recv(GUARD)
                seen.append(("closed", info.value.code, info.value.reason))
        finally:
            ws.close()
        log = []
        while True:
            event = handler.log.get(timeout=GUARD)
            log.append(event)
            if event[0] == "close":
                break
        seen.append(log)
    return seen, []


def test_same_handler_class_in_both_modes(serve: Any) -> None:
    threaded, _ = _run_script(serve, "threaded")
    selected, _ = _run_script(serve, "selectors")
    assert selected == threaded, (threaded, selected)
    assert threaded[0] == "welcome"
    assert ("closed", 4001, "as requested") in threaded
    assert ("closed", 1011, "internal server error") in threaded
