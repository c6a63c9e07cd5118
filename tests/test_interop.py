"""Interoperability with the two most used third-party WebSocket packages.

``websockets`` and ``websocket-client`` are test-only dependencies (the ``test``
extra); simplews itself stays stdlib-only. Each group skips when its package is
not installed for the running Python.

* simplews server <- ``websockets`` client: the sync client
  (``websockets.sync.client``, websockets >= 11) when there is one, else the
  asyncio client driven from an event loop in a thread (websockets 9.x, the
  last release for Python 3.6).
* simplews server <- ``websocket-client`` (``import websocket``), including
  hand-made fragmented messages.
* simplews client -> ``websockets`` server: the sync server when there is one,
  else the asyncio server in a thread with its own loop.
"""

import asyncio
import gc
import os
import queue
import random
import struct
import threading
from http import HTTPStatus
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

import simplews

TIMEOUT = 10.0  # a hang guard only; nothing here is timed

SNOWMAN = "h\u00e9llo \u2603 \U0001f600"


def _window_probe(seed: int) -> str:
    """Text whose repeats lie 3000 characters apart: a compressor that uses a
    larger window than agreed (e.g. 32 KiB instead of 1 KiB) emits back-references
    the peer's smaller window cannot resolve."""
    rng = random.Random(seed)
    chunk = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(3000))
    return chunk * 4


def _import_websockets() -> Any:
    return pytest.importorskip(
        "websockets", reason="the 'websockets' package is not installed for this Python (pip install -e .[test])")


def _import_websocket_client() -> Any:
    return pytest.importorskip(
        "websocket", reason="the 'websocket-client' package is not installed for this Python (pip install -e .[test])")


def _has_sync_api(module: str) -> bool:
    """True when websockets has its threading API (websockets >= 11, Python >= 3.7)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _close_info(exc: Any) -> Tuple[Optional[int], Optional[str]]:
    """(code, reason) of the close frame a websockets ConnectionClosed received."""
    if hasattr(exc, "rcvd"):  # websockets >= 10
        rcvd = exc.rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)
    return exc.code, exc.reason  # websockets 9


class _LoopThread(object):
    """An asyncio event loop running in its own thread, for websockets' asyncio API."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name)
        self.thread.start()

    def run(self, coro: Any, timeout: float = TIMEOUT) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "event loop thread did not stop"
        self.loop.close()


# ---------------------------------------------------------------------- websockets clients

class _SyncClient(object):
    """websockets' threading client (websockets >= 11)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        from websockets.sync.client import connect
        # __enter__ is how websockets >= 17.1 wants a connection to be opened
        # without a deprecation warning; before that it simply returns the connection.
        self.ws = connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **kwargs).__enter__()

    @property
    def response_headers(self) -> Any:
        return self.ws.response.headers

    @property
    def subprotocol(self) -> Optional[str]:
        return self.ws.subprotocol  # type: ignore[no-any-return]

    @property
    def extensions(self) -> List[str]:
        return [extension.name for extension in self.ws.protocol.extensions]

    def send(self, message: Any) -> None:
        self.ws.send(message)

    def recv(self) -> Any:
        return self.ws.recv(timeout=TIMEOUT)

    def ping(self) -> bool:
        return self.ws.ping().wait(TIMEOUT)  # type: ignore[no-any-return]

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.ws.close(code, reason)


class _AsyncioClient(object):
    """websockets' asyncio client (websockets < 11), driven from a loop in a thread."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        import websockets
        self._runner = _LoopThread("interop-websockets-client")
        self._closed = False

        if _major_version(websockets) >= 10:  # open_timeout arrived in websockets 10
            kwargs["open_timeout"] = TIMEOUT

        async def connect() -> Any:
            return await websockets.connect(url, close_timeout=TIMEOUT, **kwargs)

        try:
            self.ws = self._runner.run(connect())
        except BaseException:
            self._runner.stop()
            raise

    @property
    def response_headers(self) -> Any:
        return self.ws.response_headers

    @property
    def subprotocol(self) -> Optional[str]:
        return self.ws.subprotocol  # type: ignore[no-any-return]

    @property
    def extensions(self) -> List[str]:
        return [extension.name for extension in self.ws.extensions]

    def send(self, message: Any) -> None:
        self._runner.run(self.ws.send(message))

    def recv(self) -> Any:
        return self._runner.run(asyncio.wait_for(self.ws.recv(), TIMEOUT), TIMEOUT + 5)

    def ping(self) -> bool:
        async def ping() -> bool:
            waiter = await self.ws.ping()
            await asyncio.wait_for(waiter, TIMEOUT)
            return True
        return self._runner.run(ping(), TIMEOUT + 5)  # type: ignore[no-any-return]

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._runner.run(self.ws.close(code, reason), TIMEOUT + 5)
        finally:
            self._runner.stop()


def _major_version(websockets: Any) -> int:
    version = getattr(websockets, "__version__", None) or websockets.version.version
    return int(version.split(".")[0])


@pytest.fixture
def ws_client() -> Iterator[Callable[..., Any]]:
    """``ws_client(url, **kwargs)``: a connected websockets client, closed after the test."""
    _import_websockets()
    client_class = _SyncClient if _has_sync_api("websockets.sync.client") else _AsyncioClient
    clients = []  # type: List[Any]

    def connect(url: str, **kwargs: Any) -> Any:
        client = client_class(url, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


def _recorder(results: "queue.Queue[Any]") -> Callable[[simplews.WebSocket], None]:
    """An echo handler that reports how the connection ended."""
    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send(message)
        results.put((ws.close_code, ws.close_reason))
    return handler


# ---------------------------------------------------------------------- simplews server <- websockets client

def test_websockets_client_echo_text_and_binary(serve: Any, ws_client: Any) -> None:
    server = serve(echo)
    client = ws_client(server.url)
    client.send(SNOWMAN)
    assert client.recv() == SNOWMAN
    client.send(b"\x00\xff\x80binary")
    assert client.recv() == b"\x00\xff\x80binary"
    client.send("")
    assert client.recv() == ""
    client.send(b"")
    assert client.recv() == b""


def test_websockets_client_large_messages(serve: Any, ws_client: Any) -> None:
    server = serve(echo, max_message_size=2 << 20)
    client = ws_client(server.url, max_size=2 << 20)
    incompressible = os.urandom(1 << 20)
    client.send(incompressible)
    assert client.recv() == incompressible
    compressible = ("simplews \u2603 " * (1 << 17))[:1 << 19]  # 512 Ki characters, ~1.5 MiB of UTF-8
    client.send(compressible)
    assert client.recv() == compressible


def test_websockets_client_negotiates_permessage_deflate(serve: Any, ws_client: Any) -> None:
    offered = queue.Queue()  # type: queue.Queue[Any]

    def handler(ws: simplews.WebSocket) -> None:
        offered.put((ws.request_headers.get("Sec-WebSocket-Extensions"),
                     ws.response_headers.get("Sec-WebSocket-Extensions")))
        echo(ws)

    server = serve(handler)
    client = ws_client(server.url)
    request_extensions, response_extensions = offered.get(timeout=TIMEOUT)
    assert "permessage-deflate" in request_extensions
    assert response_extensions is not None and response_extensions.startswith("permessage-deflate")
    assert client.response_headers.get("Sec-WebSocket-Extensions") == response_extensions
    assert client.extensions == ["permessage-deflate"]
    for _ in range(3):  # several messages: the compression context carries over between them
        text = "compress me " * 5000
        client.send(text)
        assert client.recv() == text
        data = bytes(range(256)) * 100
        client.send(data)
        assert client.recv() == data


def test_websockets_client_without_compression_server(serve: Any, ws_client: Any) -> None:
    server = serve(echo, compression=None)
    client = ws_client(server.url)
    assert client.response_headers.get("Sec-WebSocket-Extensions") is None
    assert client.extensions == []
    client.send("plain " * 1000)
    assert client.recv() == "plain " * 1000


def _extension_params(header: str) -> List[str]:
    """``["permessage-deflate", "server_max_window_bits=10", ...]`` from one extension header value."""
    return [part.strip().replace(" ", "") for part in header.split(";")]


@pytest.mark.parametrize("params, expected", [
    ({"server_no_context_takeover": True, "client_no_context_takeover": True},
     ["server_no_context_takeover", "client_no_context_takeover"]),
    ({"server_max_window_bits": 10, "client_max_window_bits": 10},
     ["server_max_window_bits=10", "client_max_window_bits=10"]),
    ({"server_max_window_bits": 9, "client_max_window_bits": 9},
     ["server_max_window_bits=9", "client_max_window_bits=9"]),
    ({"client_max_window_bits": True}, []),
])
def test_websockets_client_deflate_parameters(serve: Any, ws_client: Any, params: Any, expected: List[str]) -> None:
    """simplews' server accepts the parameters websockets' client asks for, and both
    sides compress within them."""
    _import_websockets()
    from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
    server = serve(echo)
    client = ws_client(server.url, extensions=[ClientPerMessageDeflateFactory(**params)])
    header = client.response_headers.get("Sec-WebSocket-Extensions")
    assert header is not None
    agreed = _extension_params(header)
    assert agreed[0] == "permessage-deflate"
    for param in expected:
        assert param in agreed[1:]
    assert client.extensions == ["permessage-deflate"]
    for seed in range(3):
        text = _window_probe(seed)
        client.send(text)
        assert client.recv() == text
        client.send(text.encode("ascii"))
        assert client.recv() == text.encode("ascii")


@pytest.mark.parametrize("config", ["low_memory", "no_context_takeover"])
def test_websockets_client_with_tuned_server_deflate(serve: Any, ws_client: Any, config: str) -> None:
    """simplews' server imposing its own parameters on websockets' default offer."""
    if config == "low_memory":
        compression = simplews.DeflateConfig.low_memory()
        expected = ["server_max_window_bits=10", "client_max_window_bits=10"]
    else:
        compression = simplews.DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
        expected = ["server_no_context_takeover", "client_no_context_takeover"]
    server = serve(echo, compression=compression)
    client = ws_client(server.url)
    header = client.response_headers.get("Sec-WebSocket-Extensions")
    assert header is not None
    agreed = _extension_params(header)
    assert agreed[0] == "permessage-deflate"
    for param in expected:
        assert param in agreed[1:]
    for seed in range(3):
        text = _window_probe(seed)
        client.send(text)
        assert client.recv() == text


def test_websockets_client_subprotocol(serve: Any, ws_client: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        ws.send(ws.subprotocol or "none")
        echo(ws)

    server = serve(handler, subprotocols=["chat", "superchat"])
    client = ws_client(server.url, subprotocols=["superchat", "unknown"])
    assert client.subprotocol == "superchat"
    assert client.response_headers.get("Sec-WebSocket-Protocol") == "superchat"
    assert client.recv() == "superchat"


def test_websockets_client_ping_pong_both_ways(serve: Any, ws_client: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            if message == "ping me":
                ws.send("pong received: %s" % ws.ping(b"from server").wait(TIMEOUT))
            else:
                ws.send(message)

    server = serve(handler)
    client = ws_client(server.url)
    assert client.ping() is True
    client.send("ping me")
    assert client.recv() == "pong received: True"
    assert client.ping() is True
    client.send("still open")
    assert client.recv() == "still open"


@pytest.mark.parametrize("code, reason", [(1000, ""), (4001, "client says bye \u2603")])
def test_websockets_client_closes(serve: Any, ws_client: Any, code: int, reason: str) -> None:
    results = queue.Queue()  # type: queue.Queue[Any]
    server = serve(_recorder(results))
    client = ws_client(server.url)
    client.send("hello")
    assert client.recv() == "hello"
    client.close(code, reason)
    assert results.get(timeout=TIMEOUT) == (code, reason)


def test_websockets_client_sees_server_close_code(serve: Any, ws_client: Any) -> None:
    import websockets.exceptions
    results = queue.Queue()  # type: queue.Queue[Any]

    def handler(ws: simplews.WebSocket) -> None:
        ws.recv(timeout=TIMEOUT)
        ws.close(4000, "bye")
        results.put((ws.close_code, ws.close_reason))

    server = serve(handler)
    client = ws_client(server.url)
    client.send("go away")
    with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
        client.recv()
    assert _close_info(info.value) == (4000, "bye")
    assert results.get(timeout=TIMEOUT) == (4000, "bye")  # websockets echoed the code


# ---------------------------------------------------------------------- simplews server <- websocket-client

@pytest.fixture
def wsc() -> Iterator[Callable[..., Any]]:
    """``wsc(url, **kwargs)``: a websocket-client connection, shut down after the test."""
    websocket = _import_websocket_client()
    connections = []  # type: List[Any]

    def connect(url: str, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", TIMEOUT)
        connection = websocket.create_connection(url, **kwargs)
        connections.append(connection)
        return connection

    yield connect
    for connection in connections:
        connection.shutdown()


def test_websocket_client_echo_text_and_binary(serve: Any, wsc: Any) -> None:
    server = serve(echo)
    ws = wsc(server.url)
    ws.send(SNOWMAN)
    assert ws.recv() == SNOWMAN
    ws.send_binary(b"\x00\xff\x80binary")
    assert ws.recv() == b"\x00\xff\x80binary"
    big = os.urandom(300000)  # 64-bit length, several TCP segments
    ws.send_binary(big)
    assert ws.recv() == big
    ws.close()


def test_websocket_client_fragmented_messages(serve: Any, wsc: Any) -> None:
    from websocket import ABNF
    server = serve(echo)
    ws = wsc(server.url)
    snowman = "\u2603".encode("utf-8")
    # Text in three fragments, a UTF-8 sequence split between two of them.
    ws.send_frame(ABNF.create_frame(b"snow " + snowman[:1], ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(ABNF.create_frame(snowman[1:] + b" man", ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame(b"!", ABNF.OPCODE_CONT, fin=1))
    assert ws.recv() == "snow \u2603 man!"
    # Binary in fragments, with a ping between them (control frames may interleave).
    ws.send_frame(ABNF.create_frame(b"\x00\x01", ABNF.OPCODE_BINARY, fin=0))
    ws.send_frame(ABNF.create_frame(b"mid", ABNF.OPCODE_PING))
    ws.send_frame(ABNF.create_frame(b"", ABNF.OPCODE_CONT, fin=0))
    ws.send_frame(ABNF.create_frame(b"\x02\x03", ABNF.OPCODE_CONT, fin=1))
    opcode, frame = ws.recv_data_frame(True)
    assert (opcode, frame.data) == (ABNF.OPCODE_PONG, b"mid")
    assert ws.recv() == b"\x00\x01\x02\x03"
    ws.close()


def test_websocket_client_ping(serve: Any, wsc: Any) -> None:
    from websocket import ABNF
    server = serve(echo)
    ws = wsc(server.url)
    ws.ping("are you there")
    opcode, frame = ws.recv_data_frame(True)
    assert (opcode, frame.data) == (ABNF.OPCODE_PONG, b"are you there")
    ws.send("after ping")
    assert ws.recv() == "after ping"
    ws.close()


@pytest.mark.parametrize("code, reason", [(1000, b""), (4002, b"done here")])
def test_websocket_client_close_code(serve: Any, wsc: Any, code: int, reason: bytes) -> None:
    results = queue.Queue()  # type: queue.Queue[Any]
    server = serve(_recorder(results))
    ws = wsc(server.url)
    ws.send("hello")
    assert ws.recv() == "hello"
    ws.close(status=code, reason=reason)
    assert results.get(timeout=TIMEOUT) == (code, reason.decode("utf-8"))


def test_websocket_client_sees_server_close_code(serve: Any, wsc: Any) -> None:
    from websocket import ABNF

    def handler(ws: simplews.WebSocket) -> None:
        ws.recv(timeout=TIMEOUT)
        ws.close(4000, "bye")

    server = serve(handler)
    ws = wsc(server.url)
    ws.send("go away")
    opcode, frame = ws.recv_data_frame(True)  # answers the close frame itself
    assert opcode == ABNF.OPCODE_CLOSE
    assert frame.data == struct.pack("!H", 4000) + b"bye"


# ---------------------------------------------------------------------- simplews client -> websockets server

def _reject_sync(connection: Any, request: Any) -> Any:
    respond = getattr(connection, "respond", None)  # websockets >= 12
    if respond is not None:
        return respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
    return connection.protocol.reject(HTTPStatus.FORBIDDEN, "Forbidden\n")  # websockets 11


def _serve_sync(behaviour: str, subprotocols: Optional[List[str]]) -> Tuple[int, Callable[[], None]]:
    """websockets' threading server (websockets >= 11) in a thread: (port, stop)."""
    from websockets.sync.server import serve

    def handler(connection: Any) -> None:
        if behaviour == "close":
            connection.recv()
            connection.close(4001, "done")
            return
        for message in connection:
            connection.send(message)

    server = serve(handler, "127.0.0.1", 0, subprotocols=subprotocols,
                   process_request=_reject_sync if behaviour == "reject" else None)
    thread = threading.Thread(target=server.serve_forever, name="interop-websockets-server")
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "websockets' serve_forever did not return after shutdown()"
        gc.collect()  # serve_forever's selector sits in a reference cycle: free its epoll fd now
        watcher = getattr(server, "shutdown_watcher", None)
        if isinstance(watcher, int):  # websockets 11-13 never close their os.pipe() fds
            for fd in (watcher, server.shutdown_notifier):
                os.close(fd)

    return server.socket.getsockname()[1], stop


def _serve_asyncio(behaviour: str, subprotocols: Optional[List[str]]) -> Tuple[int, Callable[[], None]]:
    """websockets' asyncio server (websockets < 11) on a loop in a thread: (port, stop)."""
    import websockets

    async def handler(connection: Any, path: str) -> None:
        if behaviour == "close":
            await connection.recv()
            await connection.close(4001, "done")
            return
        async for message in connection:
            await connection.send(message)

    async def reject(path: str, headers: Any) -> Any:
        return HTTPStatus.FORBIDDEN, [], b"Forbidden\n"

    async def start() -> Any:
        return await websockets.serve(handler, "127.0.0.1", 0, subprotocols=subprotocols,
                                      process_request=reject if behaviour == "reject" else None)

    async def close(server: Any) -> None:
        server.close()
        await server.wait_closed()

    runner = _LoopThread("interop-websockets-server")
    try:
        server = runner.run(start())
    except BaseException:
        runner.stop()
        raise

    def stop() -> None:
        try:
            runner.run(close(server), TIMEOUT + 5)
        finally:
            runner.stop()

    return server.sockets[0].getsockname()[1], stop


@pytest.fixture
def ws_server() -> Iterator[Callable[..., str]]:
    """``ws_server(behaviour, subprotocols=None)``: a websockets server's URL; stopped after the test.

    behaviour: "echo"; "close" (close with 4001 "done" after the first message);
    "reject" (answer the handshake with HTTP 403).
    """
    _import_websockets()
    start = _serve_sync if _has_sync_api("websockets.sync.server") else _serve_asyncio
    stops = []  # type: List[Callable[[], None]]

    def serve(behaviour: str, subprotocols: Optional[List[str]] = None) -> str:
        port, stop = start(behaviour, subprotocols)
        stops.append(stop)
        return "ws://127.0.0.1:%d/" % port

    yield serve
    for stop in stops:
        stop()


def test_client_echo_with_websockets_server(ws_server: Any) -> None:
    url = ws_server("echo")
    with simplews.connect(url, timeout=TIMEOUT) as ws:
        ws.send(SNOWMAN)
        assert ws.recv(timeout=TIMEOUT) == SNOWMAN
        ws.send(b"\x00\xff\x80binary")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff\x80binary"
        ws.send(["frag", "mented ", "\u2603"])  # one message in three frames
        assert ws.recv(timeout=TIMEOUT) == "fragmented \u2603"
        data = os.urandom(500000)
        ws.send(data)
        assert ws.recv(timeout=TIMEOUT) == data
        assert ws.ping().wait(TIMEOUT)
    assert ws.close_code == 1000


def test_client_compression_with_websockets_server(ws_server: Any) -> None:
    url = ws_server("echo")
    with simplews.connect(url, timeout=TIMEOUT) as ws:
        extensions = ws.response_headers.get("Sec-WebSocket-Extensions")
        assert extensions is not None and extensions.startswith("permessage-deflate")
        for _ in range(3):  # several messages: the compression context carries over between them
            text = "compress me \u2603 " * 10000
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
            ws.send(["frag " * 1000, "mented " * 1000])  # a fragmented compressed message
            assert ws.recv(timeout=TIMEOUT) == "frag " * 1000 + "mented " * 1000


@pytest.mark.parametrize("config", ["low_memory", "no_context_takeover", "server_window_9"])
def test_client_tuned_compression_with_websockets_server(ws_server: Any, config: str) -> None:
    """websockets' server accepts what simplews' client asks for, and both sides keep to it."""
    if config == "low_memory":
        compression = simplews.DeflateConfig.low_memory()
        expected = ["server_max_window_bits=10", "client_max_window_bits=10"]
    elif config == "no_context_takeover":
        compression = simplews.DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
        expected = ["server_no_context_takeover", "client_no_context_takeover"]
    else:
        compression = simplews.DeflateConfig(server_max_window_bits=9)
        expected = ["server_max_window_bits=9"]
    url = ws_server("echo")
    with simplews.connect(url, timeout=TIMEOUT, compression=compression) as ws:
        header = ws.response_headers.get("Sec-WebSocket-Extensions")
        assert header is not None
        agreed = _extension_params(header)
        assert agreed[0] == "permessage-deflate"
        for param in expected:
            assert param in agreed[1:]
        for seed in range(3):
            text = _window_probe(seed)
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == text
            ws.send(text.encode("ascii"))
            assert ws.recv(timeout=TIMEOUT) == text.encode("ascii")


def test_client_without_compression_with_websockets_server(ws_server: Any) -> None:
    url = ws_server("echo")
    with simplews.connect(url, timeout=TIMEOUT, compression=None) as ws:
        assert ws.response_headers.get("Sec-WebSocket-Extensions") is None
        ws.send("plain " * 1000)
        assert ws.recv(timeout=TIMEOUT) == "plain " * 1000


def test_client_subprotocol_with_websockets_server(ws_server: Any) -> None:
    url = ws_server("echo", subprotocols=["chat", "superchat"])
    with simplews.connect(url, timeout=TIMEOUT, subprotocols=["superchat"]) as ws:
        assert ws.subprotocol == "superchat"
        ws.send("hi")
        assert ws.recv(timeout=TIMEOUT) == "hi"


def test_client_sees_websockets_server_close(ws_server: Any) -> None:
    url = ws_server("close")
    ws = simplews.connect(url, timeout=TIMEOUT)
    try:
        ws.send("please close")
        with pytest.raises(simplews.ConnectionClosed) as info:
            ws.recv(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason) == (4001, "done")
        assert isinstance(info.value, simplews.ConnectionClosedError)  # 4001 is not a normal closure
        assert (ws.close_code, ws.close_reason) == (4001, "done")
        assert ws.closed
    finally:
        ws.close()


def test_client_rejected_by_websockets_server(ws_server: Any) -> None:
    url = ws_server("reject")
    with pytest.raises(simplews.InvalidStatus) as info:
        simplews.connect(url, timeout=TIMEOUT)
    assert info.value.status == 403
    assert info.value.body.startswith(b"Forbidden")
