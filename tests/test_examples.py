"""The examples and the demo, run as a user runs them: as processes on a loopback port."""

import http.client
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, List, Optional

import pytest

import simplews
from simplews import demo
from simplews.http11 import Headers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
TIMEOUT = 60.0  # seconds: a hang guard, never a measure of speed
LISTENING = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")  # the simplews under test
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["LC_ALL"] = "C.UTF-8"  # non-ASCII command-line arguments, even on Python 3.6
    return env


class ExampleProcess(object):
    """An example server started with ``--port 0``; :attr:`port` is the one it printed."""

    def __init__(self, *args: str) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable] + list(args) + ["--host", "127.0.0.1", "--port", "0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
                                     cwd=ROOT, env=_env())
        self.output = ""
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @classmethod
    def example(cls, name: str) -> "ExampleProcess":
        return cls(os.path.join(EXAMPLES, name))

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d/" % self.port

    def _wait_for_port(self) -> int:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                match = LISTENING.search(self.output)
                if match and "\n" in self.output[match.end():]:
                    return int(match.group(1))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail("no 'listening on' line within %ss; stdout: %r; stderr: %s"
                                % (TIMEOUT, self.output, self.error_output()))
                if selector.select(remaining):
                    data = os.read(fd, 4096)
                    if not data:
                        pytest.fail("exited before listening (code %s); stdout: %r; stderr: %s"
                                    % (self.proc.wait(TIMEOUT), self.output, self.error_output()))
                    self.output += data.decode("utf-8", "replace")

    def error_output(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self, signum: int = signal.SIGINT) -> Optional[int]:
        """Signal the process (Ctrl+C by default), wait for it, release its pipes; its exit code."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
            try:
                return self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
                return None
        finally:
            if self.proc.stdout is not None:
                rest = self.proc.stdout.read()
                self.output += rest.decode("utf-8", "replace")
                self.proc.stdout.close()
            self.stderr.seek(0)
            self.errors = self.stderr.read().decode("utf-8", "replace")
            self.stderr.close()

    def assert_stops_cleanly(self, signum: int = signal.SIGINT) -> None:
        code = self.stop(signum)
        assert code == 0, "exit code %r; stderr:\n%s" % (code, self.errors)
        assert "Traceback" not in self.errors, self.errors


@pytest.fixture
def start() -> Any:
    """``start(*args)`` runs an example server; every one is stopped (and reaped) after the test."""
    started = []  # type: List[ExampleProcess]

    def run(*args: str) -> ExampleProcess:
        process = ExampleProcess(*args)
        started.append(process)
        return process

    yield run
    for process in started:
        if not process.stderr.closed:
            process.stop(signal.SIGKILL)


def http_get(port: int, path: str = "/") -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


def recv_until(ws: simplews.WebSocket, wanted: Callable[[Any], bool]) -> List[Any]:
    """Messages received up to and including the first one ``wanted`` accepts (bounded)."""
    seen = []
    for _ in range(50):
        message = ws.recv(timeout=TIMEOUT)
        seen.append(message)
        if wanted(message):
            return seen
    pytest.fail("never received the expected message; got %r" % (seen,))


def run_client(*args: str, stdin: str = "") -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, "client.py")] + list(args),
                          input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, encoding="utf-8", timeout=TIMEOUT, cwd=ROOT, env=_env())


# ---------------------------------------------------------------------- echo_server.py

def test_echo_server_echoes_on_every_path(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "echo_server.py"))
    for path in ("/", "/ws", "/any/path?x=1"):
        with simplews.connect("ws://127.0.0.1:%d%s" % (server.port, path)) as ws:
            ws.send("hello " + path)
            assert ws.recv(timeout=TIMEOUT) == "hello " + path
            ws.send(b"\x00\xffbinary")
            assert ws.recv(timeout=TIMEOUT) == b"\x00\xffbinary"
            ws.send(["frag", "mented"])
            assert ws.recv(timeout=TIMEOUT) == "fragmented"
    server.assert_stops_cleanly()
    assert "open http://127.0.0.1:%d/ in a browser" % server.port in server.output


def test_echo_server_serves_the_demo_page(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "echo_server.py"))
    status, content_type, body = http_get(server.port, "/")
    assert status == 200
    assert content_type == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    assert "new WebSocket(url)" in page and 'location.host + "/ws"' in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    status, _, _ = http_get(server.port, "/ws")  # not an upgrade: the handshake is refused
    assert status in (400, 426)
    server.assert_stops_cleanly()


def test_echo_server_stops_on_sigterm_with_a_client_connected(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "echo_server.py"))
    with simplews.connect(server.url) as ws:
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"
        server.assert_stops_cleanly(signal.SIGTERM)
        with pytest.raises(simplews.ConnectionClosed):
            ws.recv(timeout=TIMEOUT)
        assert ws.close_code == 1001  # going away: the server shut down


# ---------------------------------------------------------------------- client.py

def test_client_sends_arguments_and_prints_replies(serve: Any) -> None:
    server = serve(echo)
    result = run_client(server.url, "one", "two words", "ünïcode ✓")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["one", "two words", "ünïcode ✓"]


def test_client_sends_stdin_lines_and_prints_replies(serve: Any) -> None:
    server = serve(echo)
    result = run_client(server.url, stdin="first\nsecond\n\nfourth\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first", "second", "", "fourth"]


def test_client_prints_binary_replies_as_hex(serve: Any) -> None:
    def binary(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send(message.encode("utf-8") if isinstance(message, str) else message)

    server = serve(binary)
    result = run_client(server.url, "AB")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["<2 bytes: 4142>"]


def test_client_reports_a_refused_connection() -> None:
    with socket.socket() as sock:  # a port nobody listens on (bound, never listening)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = run_client("ws://127.0.0.1:%d/" % port, "hello", "--timeout", "5")
    assert result.returncode == 1
    assert "cannot connect to ws://127.0.0.1:%d/" % port in result.stderr
    assert "Traceback" not in result.stderr


def test_client_against_the_echo_example(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "echo_server.py"))
    result = run_client(server.url, "from one example to another")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from one example to another\n"
    server.assert_stops_cleanly()


# ---------------------------------------------------------------------- chat_server.py

def test_chat_server_broadcasts_to_everyone(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "chat_server.py"))
    status, _, body = http_get(server.port, "/")
    assert status == 200 and b"<title>simplews demo</title>" in body
    with simplews.connect(server.url + "ws") as alice:
        assert alice.recv(timeout=TIMEOUT) == "* welcome, you are guest-1"
        assert alice.recv(timeout=TIMEOUT) == "* guest-1 joined"
        with simplews.connect(server.url + "ws") as bob:
            assert bob.recv(timeout=TIMEOUT) == "* welcome, you are guest-2"
            recv_until(bob, lambda m: m == "* guest-2 joined")
            recv_until(alice, lambda m: m == "* guest-2 joined")
            alice.send("hi bob")
            recv_until(alice, lambda m: m == "guest-1: hi bob")  # the sender gets it too
            recv_until(bob, lambda m: m == "guest-1: hi bob")
            bob.send(b"\x01")
            recv_until(bob, lambda m: m == "* binary messages are not relayed")
        recv_until(alice, lambda m: m == "* guest-2 left")
    server.assert_stops_cleanly()


# ---------------------------------------------------------------------- simplews.demo

def test_demo_main_echoes_and_relays(start: Any) -> None:
    server = start("-m", "simplews.demo")
    with simplews.connect(server.url + "ws") as alice:
        alice.send("first")  # once echoed, her on_open has run: she is guest-1
        assert alice.recv(timeout=TIMEOUT) == "first"
        with simplews.connect(server.url + "ws") as bob:
            assert alice.recv(timeout=TIMEOUT) == "* guest-2 joined (2 online)"
            alice.send("hello")
            assert alice.recv(timeout=TIMEOUT) == "hello"  # the echo, unchanged
            recv_until(bob, lambda m: m == "guest-1: hello")
            bob.send(b"\x00\x01")
            assert bob.recv(timeout=TIMEOUT) == b"\x00\x01"  # binary: echoed, not relayed
            bob.send("back")
            assert bob.recv(timeout=TIMEOUT) == "back"
            assert alice.recv(timeout=TIMEOUT) == "guest-2: back"
        assert alice.recv(timeout=TIMEOUT) == "* guest-2 left (1 online)"
    server.assert_stops_cleanly()


def test_demo_process_request() -> None:
    upgrade = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")])
    browser = Headers([("Accept", "text/html")])
    status, headers, body = demo.process_request("/", browser)
    assert status == 200
    assert ("Content-Type", "text/html; charset=utf-8") in headers
    assert body == demo.PAGE.encode("utf-8")
    assert demo.process_request("/?from=test", browser) is not None
    assert demo.process_request("/index.html", browser) is not None
    assert demo.process_request("/", upgrade) is None  # ws://host:port/ upgrades
    assert demo.process_request("/ws", browser) is None  # the handshake answers (and refuses) it
    assert demo.process_request("/ws", upgrade) is None


def test_demo_make_server_in_process() -> None:
    server = demo.make_server("127.0.0.1", 0, chat=False)
    thread = threading.Thread(target=server.serve_forever, name="demo-serve-forever")
    thread.start()
    try:
        status, content_type, body = http_get(server.port, "/")
        assert status == 200 and content_type.startswith("text/html") and b"new WebSocket" in body
        with simplews.connect(server.url) as one, simplews.connect(server.url + "ws") as two:
            one.send("only for me")
            assert one.recv(timeout=TIMEOUT) == "only for me"
            two.send("me too")
            assert two.recv(timeout=TIMEOUT) == "me too"
            with pytest.raises(TimeoutError):  # no chat: nothing was relayed
                one.recv(timeout=0.2)
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_demo_parse_args() -> None:
    args = demo.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    args = demo.parse_args(["--host", "0.0.0.0", "--port", "0"])
    assert (args.host, args.port) == ("0.0.0.0", 0)
