"""simplews.integration: WebSocket on the port of an http.server or WSGI application.

Everything runs over real loopback sockets: http.server and wsgiref servers in
threads, gunicorn (sync and gthread workers) and the two examples as
subprocesses, stopped and reaped at the end.
"""

import http.client
import http.server
import io
import os
import re
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

import simplews
from simplews import frames
from simplews.exceptions import InvalidHandshake, InvalidStatus
from simplews.integration import (
    TAKEOVER_KEY, ThreadingWSGIServer, WebSocketWSGIRequestHandler, WSGIWebSocketApp, accept, make_wsgi_server,
)
from wsgiref import simple_server

from _peers import EXAMPLES, GUARD, PROCESS_TIMEOUT, RawClient, ServerProcess, header, wait_until

try:
    import gunicorn  # type: ignore[import-untyped]  # noqa: F401
    HAVE_GUNICORN = True
except ImportError:
    HAVE_GUNICORN = False

TIMEOUT = PROCESS_TIMEOUT  # seconds: a hang guard for processes, never a measure of speed
PAGE = b"<html>an ordinary page</html>"
LARGE = bytes(range(256)) * 2048  # 512 KiB, below the default max_message_size


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


def http_get(port: int, path: str = "/") -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=GUARD)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_echoes(url: str, **options: Any) -> simplews.WebSocket:
    """Text, binary and a large message come back; returns the client, closed."""
    with simplews.connect(url, **options) as ws:
        ws.send("héllo")
        assert ws.recv(timeout=GUARD) == "héllo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv(timeout=GUARD) == b"\x00\x01\xff"
        ws.send(LARGE)
        assert ws.recv(timeout=GUARD) == LARGE
    assert ws.close_code == 1000
    return ws


def assert_early_frame_and_clean_close(port: int, path: str) -> None:
    """The handshake and a first frame in one write: the frame is echoed; after
    the closing handshake nothing but the close frame comes (no HTTP answer)."""
    with RawClient(port) as client:
        client.send(client.request_bytes(path) + frames.build_frame(frames.OP_TEXT, b"early", mask=True))
        status, headers, rest = client.read_head()
        assert status == 101, headers
        client.parser.feed(rest)
        frame = client.recv_frame()
        assert frame is not None and frame.opcode == frames.OP_TEXT and frame.payload == b"early"
        client.send_frame(frames.OP_CLOSE, frames.encode_close(1000, "bye"))
        received = client.frames_until_eof()
        assert [f.opcode for f in received] == [frames.OP_CLOSE]
        assert frames.decode_close(received[0].payload)[0] == 1000
        assert client.parser.buffered == 0, "bytes after the close frame"


# ---------------------------------------------------------------------- http.server


class MixinHTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """The Python 3.6 way to a threaded http.server."""

    daemon_threads = True


SERVER_CLASSES = [MixinHTTPServer]  # type: List[Any]
if hasattr(http.server, "ThreadingHTTPServer"):
    SERVER_CLASSES.insert(0, http.server.ThreadingHTTPServer)


class App(http.server.BaseHTTPRequestHandler):
    """A page at /, WebSocket at /ws... (as set on the server); records what happens."""

    protocol_version = "HTTP/1.1"  # keep-alive: the upgrade must still end http.server's request loop

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.append(format % args)  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        server = self.server  # type: Any
        if not self.path.startswith("/ws"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            self.wfile.write(PAGE)
            return
        try:
            if server.handoff:
                ws = accept(self, **server.ws_options)
                thread = threading.Thread(target=server.ws_handler, args=(ws,), name="test-handoff")
                server.threads.append(thread)
                thread.start()
            else:
                ws = accept(self, server.ws_handler, **server.ws_options)
        except InvalidHandshake as exc:
            server.refusals.append(exc)
            return
        server.opened.append(ws)


class HTTPApp(object):
    def __init__(self, server_class: Any, handler: Any, handoff: bool, tls: Any, ws_options: Dict[str, Any]) -> None:
        self.server = server_class(("127.0.0.1", 0), App)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.server.log = []
        self.server.refusals = []
        self.server.opened = []
        self.server.threads = []
        self.server.handoff = handoff
        self.server.ws_handler = handler
        self.server.ws_options = ws_options
        self.errors = []  # type: List[str]
        self.server.handle_error = self._handle_error  # socketserver would print a traceback
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-http-server")
        self.thread.start()

    def _handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(traceback.format_exc())

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d/ws" % self.port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(GUARD)
        for thread in self.server.threads:
            thread.join(GUARD)
        assert not self.errors, "http.server failed on a request:\n" + "\n".join(self.errors)


@pytest.fixture(params=SERVER_CLASSES, ids=lambda cls: cls.__name__)
def http_app(request: Any) -> Iterator[Callable[..., HTTPApp]]:
    """``http_app(handler=echo, handoff=False, tls=None, **accept_options)``: App on a threaded http.server."""
    started = []  # type: List[HTTPApp]

    def start(handler: Any = echo, handoff: bool = False, tls: Any = None, **ws_options: Any) -> HTTPApp:
        app = HTTPApp(request.param, handler, handoff, tls, ws_options)
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


def test_http_server_upgrade_echo(http_app: Any) -> None:
    app = http_app()
    client = assert_echoes(app.url + "?room=1")
    wait_until(lambda: len(app.server.opened) == 1 and app.server.opened[0].closed, message="server side closed")
    ws = app.server.opened[0]
    assert ws.path == "/ws?room=1"
    assert ws.request_headers["Host"] == "127.0.0.1:%d" % app.port
    assert ws.remote_address == client.local_address
    assert ws.close_code == 1000
    assert any('"GET /ws?room=1 HTTP/1.1" 101' in line for line in app.server.log), app.server.log


def test_http_server_serves_pages_beside_websockets(http_app: Any) -> None:
    app = http_app()
    connection = http.client.HTTPConnection("127.0.0.1", app.port, timeout=GUARD)
    try:
        for _ in range(2):  # keep-alive still works for ordinary requests
            connection.request("GET", "/")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, PAGE)
        with simplews.connect(app.url) as ws:
            ws.send("between pages")
            assert ws.recv(timeout=GUARD) == "between pages"
            connection.request("GET", "/other")  # while a WebSocket is open
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, PAGE)
    finally:
        connection.close()


def test_http_server_handshake_and_first_frame_in_one_write(http_app: Any) -> None:
    app = http_app()
    assert_early_frame_and_clean_close(app.port, "/ws")
    wait_until(lambda: len(app.server.opened) == 1 and app.server.opened[0].closed, message="server side closed")


@pytest.mark.parametrize("headers, status, needle", [
    ({"Sec-WebSocket-Key": None}, 400, "missing Sec-WebSocket-Key"),
    ({"Sec-WebSocket-Version": "8"}, 426, "Sec-WebSocket-Version 8"),
    ({"Upgrade": None, "Connection": None}, 426, "missing Upgrade: websocket"),
])
def test_http_server_bad_upgrade_is_refused(http_app: Any, headers: Any, status: int, needle: str) -> None:
    app = http_app()
    with RawClient(app.port) as client:
        client.send(client.request_bytes("/ws", headers=headers))
        answer, response_headers, body = client.read_response()  # reads to EOF: http.server closed it
    assert answer == status
    assert needle in body.decode("utf-8")
    assert body.startswith(b"Failed to open a WebSocket connection: ")
    if status == 426:
        assert header(response_headers, "Sec-WebSocket-Version") == "13"
    wait_until(lambda: len(app.server.refusals) == 1, message="the refusal raised")
    refusal = app.server.refusals[0]
    assert isinstance(refusal, InvalidHandshake) and refusal.status == status
    assert needle in str(refusal)
    assert not app.server.opened
    assert any('"GET /ws HTTP/1.1" %d' % status in line for line in app.server.log), app.server.log


def test_http_server_subprotocols(http_app: Any) -> None:
    app = http_app(subprotocols=["chat.v2", "chat.v1"])
    with simplews.connect(app.url, subprotocols=["chat.v1", "other"]) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.response_headers["Sec-WebSocket-Protocol"] == "chat.v1"
    # Each request has its own thread: wait for the first before the second can overtake it.
    wait_until(lambda: len(app.server.opened) == 1, message="the first connection")
    with simplews.connect(app.url, subprotocols=["other"]) as ws:
        assert ws.subprotocol is None
    wait_until(lambda: len(app.server.opened) == 2, message="two connections")
    assert [ws.subprotocol for ws in app.server.opened] == ["chat.v1", None]


def test_http_server_trusted_proxies(http_app: Any) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}  # the client, then a trusted hop
    app = http_app(handoff=True, trusted_proxies=["127.0.0.1"])
    with simplews.connect(app.url, headers=forwarded) as client:
        wait_until(lambda: len(app.server.opened) == 1, message="the connection")
        ws = app.server.opened[0]
        assert ws.remote_address == ("203.0.113.7", 0)  # the right-most untrusted entry
        assert ws.peer_address == client.local_address  # the TCP peer: the "proxy"
    untrusting = http_app(handoff=True)  # without trusted_proxies the header is anybody's word: ignored
    with simplews.connect(untrusting.url, headers=forwarded) as client:
        wait_until(lambda: len(untrusting.server.opened) == 1, message="the connection")
        ws = untrusting.server.opened[0]
        assert ws.remote_address == ws.peer_address == client.local_address


def test_http_server_select_subprotocol(http_app: Any) -> None:
    offers = []  # type: List[List[str]]

    def select(offered: List[str]) -> Optional[str]:
        offers.append(offered)
        return offered[-1]

    app = http_app(select_subprotocol=select)
    with simplews.connect(app.url, subprotocols=["a", "b"]) as ws:
        assert ws.subprotocol == "b"
    assert offers == [["a", "b"]]


def test_http_server_compression(http_app: Any) -> None:
    app = http_app()
    text = "compress me " * 20000
    with simplews.connect(app.url) as ws:
        assert "permessage-deflate" in ws.response_headers["Sec-WebSocket-Extensions"]
        assert ws._proto.deflate is not None
        ws.send(text)
        assert ws.recv(timeout=GUARD) == text
    wait_until(lambda: len(app.server.opened) == 1, message="the connection")
    assert app.server.opened[0]._proto.deflate is not None


def test_http_server_compression_off(http_app: Any) -> None:
    app = http_app(compression=None, max_message_size=1 << 21)
    with simplews.connect(app.url, max_message_size=1 << 21) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        ws.send(LARGE * 3)
        assert ws.recv(timeout=GUARD) == LARGE * 3


def test_http_server_origins(http_app: Any) -> None:
    app = http_app(origins=["https://ok.example"])
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(app.url, origin="https://evil.example")
    assert info.value.status == 403
    with simplews.connect(app.url, origin="https://ok.example") as ws:
        ws.send("ok")
        assert ws.recv(timeout=GUARD) == "ok"


def test_http_server_websocket_outlives_do_get(http_app: Any) -> None:
    """Handed to another thread, the WebSocket keeps working after do_GET
    returned and http.server finished (and "closed") the request."""
    handed = threading.Event()
    proceed = threading.Event()

    def later(ws: simplews.WebSocket) -> None:
        handed.set()
        proceed.wait(GUARD)
        echo(ws)

    app = http_app(handler=later, handoff=True)
    finished = []  # type: List[Any]
    original = app.server.shutdown_request

    def shutdown_request(request: Any) -> None:
        original(request)
        finished.append(request)

    app.server.shutdown_request = shutdown_request
    with simplews.connect(app.url) as ws:
        handed.wait(GUARD)
        wait_until(lambda: bool(finished), message="http.server done with the request")
        proceed.set()
        ws.send("still here")
        assert ws.recv(timeout=GUARD) == "still here"
    assert ws.close_code == 1000


def test_http_server_over_tls(http_app: Any) -> None:
    """A TLS socket cannot be detached from http.server: the WebSocket runs inside do_GET."""
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the TLS certificates")
    import ssl
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    app = http_app(tls=server_context)
    url = "wss://127.0.0.1:%d/ws" % app.port
    assert_echoes(url, ssl_context=client_context)
    wait_until(lambda: len(app.server.opened) == 1 and app.server.opened[0].closed, message="server side closed")
    assert app.server.opened[0].close_code == 1000


class Recorder(simplews.WebSocketHandler):
    def __init__(self) -> None:
        self.events = []  # type: List[Any]

    def on_open(self, ws: simplews.WebSocket) -> None:
        self.events.append("open")

    def on_message(self, ws: simplews.WebSocket, message: Any) -> None:
        self.events.append(message)
        ws.send(message.upper())

    def on_close(self, ws: simplews.WebSocket, code: int, reason: str) -> None:
        self.events.append(("close", code))


def test_http_server_websocket_handler_class(http_app: Any) -> None:
    recorder = Recorder()
    app = http_app(handler=recorder)
    with simplews.connect(app.url) as ws:
        ws.send("abc")
        assert ws.recv(timeout=GUARD) == "ABC"
    wait_until(lambda: len(recorder.events) == 3, message="on_close")
    assert recorder.events == ["open", "abc", ("close", 1000)]


def test_http_server_failing_handler_closes_1011(http_app: Any) -> None:
    def broken(ws: simplews.WebSocket) -> None:
        ws.recv()
        raise RuntimeError("bug")

    app = http_app(handler=broken)
    with simplews.connect(app.url) as ws:
        ws.send("boom")
        with pytest.raises(simplews.ConnectionClosed):
            ws.recv(timeout=GUARD)
    assert ws.close_code == 1011


def test_accept_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="BaseHTTPRequestHandler"):
        accept(object())
    with pytest.raises(TypeError, match="unknown option"):
        accept(object(), no_such_option=1)
    with pytest.raises(TypeError, match="handler must be"):
        accept(object(), handler=42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- wsgiref


def page_app(environ: Any, start_response: Any) -> List[bytes]:
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(PAGE)))])
    return [PAGE]


class QuietHandler(WebSocketWSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.append(format % args)  # type: ignore[attr-defined]

    def get_stderr(self) -> Any:
        return self.server.stderr  # type: ignore[attr-defined]  # where wsgiref writes tracebacks


class QuietPlainHandler(simple_server.WSGIRequestHandler):
    """wsgiref's own handler: it does not offer the connection."""

    def log_message(self, format: str, *args: Any) -> None:
        self.server.log.append(format % args)  # type: ignore[attr-defined]

    def get_stderr(self) -> Any:
        return self.server.stderr  # type: ignore[attr-defined]


class WSGIRunner(object):
    def __init__(self, app: Any, handler_class: Any) -> None:
        self.server = make_wsgi_server("127.0.0.1", 0, app, handler_class=handler_class)
        self.server.log = []  # type: ignore[attr-defined]
        self.server.stderr = io.StringIO()  # type: ignore[attr-defined]
        self.errors = []  # type: List[str]
        self.server.handle_error = self._handle_error  # type: ignore[assignment]
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-wsgiref")
        self.thread.start()

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d/ws" % self.port

    def _handle_error(self, request: Any, client_address: Any) -> None:
        self.errors.append(traceback.format_exc())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(GUARD)
        assert not self.errors, "wsgiref failed on a request:\n" + "\n".join(self.errors)
        stderr = self.server.stderr.getvalue()  # type: ignore[attr-defined]
        assert "Traceback" not in stderr, stderr


@pytest.fixture
def wsgiref_app() -> Iterator[Callable[..., WSGIRunner]]:
    started = []  # type: List[WSGIRunner]

    def start(app: Any, handler_class: Any = QuietHandler) -> WSGIRunner:
        runner = WSGIRunner(app, handler_class)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


def test_wsgiref_echo_and_fallback(wsgiref_app: Any) -> None:
    seen = []  # type: List[Any]

    def handler(ws: simplews.WebSocket) -> None:
        seen.append((ws.path, ws.request_headers["Host"], ws.remote_address))
        echo(ws)

    runner = wsgiref_app(WSGIWebSocketApp(handler, fallback=page_app))
    assert http_get(runner.port, "/")[::2] == (200, PAGE)
    client = assert_echoes(runner.url + "?a=b%20c")
    assert http_get(runner.port, "/ws")[::2] == (200, PAGE)  # not an upgrade: the fallback answers
    assert seen == [("/ws?a=b%20c", "127.0.0.1:%d" % runner.port, client.local_address)]
    wait_until(lambda: any('"GET /ws?a=b%20c HTTP/1.1" 101' in line for line in runner.server.log),
               message="the access log line")


def test_wsgiref_trusted_proxies(wsgiref_app: Any) -> None:
    seen = []  # type: List[Any]

    def handler(ws: simplews.WebSocket) -> None:
        seen.append((ws.remote_address, ws.peer_address))
        echo(ws)

    runner = wsgiref_app(WSGIWebSocketApp(handler, trusted_proxies=["127.0.0.0/8"]))
    client = assert_echoes(runner.url, headers={"X-Real-IP": "2001:db8::5"})
    wait_until(lambda: len(seen) == 1, message="the handler")
    assert seen == [(("2001:db8::5", 0), client.local_address)]
    other = wsgiref_app(WSGIWebSocketApp(handler, trusted_proxies=["192.0.2.1"]))  # not our peer
    client = assert_echoes(other.url, headers={"X-Real-IP": "2001:db8::5"})
    wait_until(lambda: len(seen) == 2, message="the handler")
    assert seen[1] == (client.local_address, client.local_address)


def test_wsgiref_without_fallback_answers_426(wsgiref_app: Any) -> None:
    runner = wsgiref_app(WSGIWebSocketApp(echo))
    status, headers, body = http_get(runner.port, "/ws")
    assert status == 426
    assert headers["Sec-WebSocket-Version"] == "13"
    assert body == b"Failed to open a WebSocket connection: missing Upgrade: websocket header; " \
                   b"this is a WebSocket endpoint.\n"


def test_wsgiref_handshake_and_first_frame_in_one_write(wsgiref_app: Any) -> None:
    runner = wsgiref_app(WSGIWebSocketApp(echo))
    assert_early_frame_and_clean_close(runner.port, "/ws")


def test_wsgiref_bad_upgrade_is_refused(wsgiref_app: Any) -> None:
    runner = wsgiref_app(WSGIWebSocketApp(echo, fallback=page_app))
    with RawClient(runner.port) as client:
        client.send(client.request_bytes("/ws", headers={"Sec-WebSocket-Key": "short"}))
        status, headers, body = client.read_response()
    assert status == 400
    assert b"Sec-WebSocket-Key 'short'" in body
    wait_until(lambda: any('"GET /ws HTTP/1.1" 400' in line for line in runner.server.log),
               message="the access log line")


def test_wsgiref_subprotocol_and_options(wsgiref_app: Any) -> None:
    app = WSGIWebSocketApp(echo, subprotocols=["v1"], compression=None, max_message_size=1000)
    assert app.options.max_message_size == 1000  # type: ignore[attr-defined]
    runner = wsgiref_app(app)
    with simplews.connect(runner.url, subprotocols=["v1"]) as ws:
        assert ws.subprotocol == "v1"
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        ws.send("x" * 2000)
        with pytest.raises(simplews.ConnectionClosed):
            ws.recv(timeout=GUARD)
    assert ws.close_code == 1009


def test_wsgiref_handler_without_takeover_answers_500(wsgiref_app: Any, caplog: Any) -> None:
    runner = wsgiref_app(WSGIWebSocketApp(echo), handler_class=QuietPlainHandler)
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(runner.url)
    assert info.value.status == 500
    assert b"does not give the application its connection" in info.value.body
    assert "WebSocketWSGIRequestHandler" in caplog.text


def test_wsgi_app_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="handler must be"):
        WSGIWebSocketApp(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fallback"):
        WSGIWebSocketApp(echo, fallback=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown option"):
        WSGIWebSocketApp(echo, no_such_option=1)


def test_takeover_key_is_offered(wsgiref_app: Any) -> None:
    found = []  # type: List[bool]

    def app(environ: Any, start_response: Any) -> List[bytes]:
        found.append(callable(environ.get(TAKEOVER_KEY)))
        return page_app(environ, start_response)

    runner = wsgiref_app(app)
    assert http_get(runner.port)[0] == 200
    assert found == [True]
    assert issubclass(ThreadingWSGIServer, simple_server.WSGIServer)


# ---------------------------------------------------------------------- subprocesses


LISTENING = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)/")


@pytest.mark.parametrize("example", ["http_server_upgrade.py", "wsgi_app.py"])
def test_example(example: str) -> None:
    process = ServerProcess([sys.executable, os.path.join(EXAMPLES, example), "--host", "127.0.0.1", "--port", "0"])
    try:
        port = int(process.wait_for_line(LISTENING).group(1))
        status, headers, body = http_get(port, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"/ws" in body
        assert_echoes("ws://127.0.0.1:%d/ws" % port)
        assert http_get(port, "/ws")[0] == 426  # a plain request on the WebSocket route
        assert http_get(port, "/nothing")[0] == 404
        code = process.stop(signal.SIGINT)
    finally:
        process.stop(signal.SIGKILL)
    assert code == 0, process.errors
    assert "Traceback" not in process.errors, process.errors


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def _gunicorn_args(worker: str, port: int) -> List[str]:
    args = [sys.executable, "-m", "gunicorn", "--worker-class", worker, "--workers", "1",
            "--bind", "127.0.0.1:%d" % port, "--log-level", "debug", "--graceful-timeout", "10"]
    if worker == "gthread":
        args += ["--threads", "4"]
    from gunicorn.config import Config  # type: ignore[import-untyped]
    setting = Config().settings.get("control_socket_disable")
    if setting is not None and setting.cli:  # recent gunicorn: no control socket in $HOME
        args.append(setting.cli[0])
    return args + ["examples.wsgi_app:app"]


class Gunicorn(object):
    """gunicorn serving examples/wsgi_app.py on a free loopback port.

    gunicorn cannot report a port it picked itself, so a free one is chosen
    first; if another process takes it meanwhile, gunicorn fails to bind and
    a new port is tried.
    """

    def __init__(self, worker: str) -> None:
        for _ in range(5):
            self.port = _free_port()
            self.process = ServerProcess(_gunicorn_args(worker, self.port))
            if self._wait_listening():
                return
            self.process.stop(signal.SIGKILL)
            if "Address already in use" not in self.process.errors:
                pytest.fail("gunicorn did not start: %s" % self.process.errors)
        pytest.fail("gunicorn found no free port in 5 attempts")

    def _wait_listening(self) -> bool:
        """Wait for the worker: it logs "Booting worker" and then serves the port."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process.proc.poll() is not None:
                return False
            if "Booting worker" in self.process.error_output():
                try:
                    status = http_get(self.port, "/")[0]
                except OSError:
                    status = None
                if status == 200:
                    return True
            time.sleep(0.05)
        self.process.stop(signal.SIGKILL)
        pytest.fail("gunicorn not serving within %ss: %s" % (TIMEOUT, self.process.errors))

    def stop(self) -> None:
        code = self.process.stop(signal.SIGTERM)
        assert code == 0, self.process.errors
        assert "Traceback" not in self.process.errors, self.process.errors


@pytest.fixture(scope="module", params=["sync", "gthread"])
def gunicorn_server(request: Any) -> Iterator[Gunicorn]:
    if not HAVE_GUNICORN:
        pytest.skip("gunicorn is not installed (pip install gunicorn, or the 'test' extra)")
    server = Gunicorn(request.param)
    try:
        yield server
    finally:
        server.stop()


def test_gunicorn_echo_large_message_and_close(gunicorn_server: Gunicorn) -> None:
    ws = assert_echoes("ws://127.0.0.1:%d/ws" % gunicorn_server.port)
    assert ws.response_headers["Server"].startswith("gunicorn")


def test_gunicorn_page_and_426(gunicorn_server: Gunicorn) -> None:
    status, headers, body = http_get(gunicorn_server.port, "/")
    assert status == 200 and b"/ws" in body
    status, headers, body = http_get(gunicorn_server.port, "/ws")
    assert status == 426 and headers["Sec-WebSocket-Version"] == "13"
    assert b"this is a WebSocket endpoint" in body


def test_gunicorn_handshake_and_first_frame_in_one_write(gunicorn_server: Gunicorn) -> None:
    assert_early_frame_and_clean_close(gunicorn_server.port, "/ws")


def test_gunicorn_bad_upgrade_is_refused(gunicorn_server: Gunicorn) -> None:
    with RawClient(gunicorn_server.port) as client:
        client.send(client.request_bytes("/ws", headers={"Sec-WebSocket-Version": "7"}))
        status, headers, body = client.read_response()
    assert status == 426
    assert header(headers, "Sec-WebSocket-Version") == "13"
    assert b"Sec-WebSocket-Version 7 is not supported" in body


def test_gunicorn_two_connections_in_turn(gunicorn_server: Gunicorn) -> None:
    """The worker is free again once a WebSocket ends (sync: one at a time)."""
    for index in range(2):
        with simplews.connect("ws://127.0.0.1:%d/ws" % gunicorn_server.port) as ws:
            ws.send("turn %d" % index)
            assert ws.recv(timeout=GUARD) == "turn %d" % index
