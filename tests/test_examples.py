"""The examples and the demo, run as a user runs them: as processes on a loopback port."""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import simplews
from simplews import demo
from simplews.http11 import Headers

from _peers import EXAMPLES, PROCESS_TIMEOUT, ROOT, ServerProcess, subprocess_env

TIMEOUT = PROCESS_TIMEOUT  # seconds: a hang guard, never a measure of speed
LISTENING = re.compile(r"listening on wss?://127\.0\.0\.1:(\d+)")
_env = subprocess_env


class ExampleProcess(ServerProcess):
    """An example server started with ``--port 0`` (or ``port``); :attr:`port` is the one it printed."""

    def __init__(self, *args: str, port: int = 0) -> None:
        super().__init__([sys.executable] + list(args) + ["--host", "127.0.0.1", "--port", str(port)])
        try:
            self.port = int(self.wait_for_line(LISTENING, "'listening on'").group(1))
        except BaseException:
            self.stop(signal.SIGKILL)
            raise

    @classmethod
    def example(cls, name: str) -> "ExampleProcess":
        return cls(os.path.join(EXAMPLES, name))

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d/" % self.port


@pytest.fixture
def start() -> Any:
    """``start(*args)`` runs an example server; every one is stopped (and reaped) after the test."""
    started = []  # type: List[ExampleProcess]

    def run(*args: str, port: int = 0) -> ExampleProcess:
        process = ExampleProcess(*args, port=port)
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


# ---------------------------------------------------------------------- helpers for the examples of issue 9

class LineReader(object):
    """Collects the lines of a pipe on a thread, so a test can wait for one without blocking forever."""

    def __init__(self, pipe: Any, name: str) -> None:
        self.pipe = pipe
        self.lines = []  # type: List[str]
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for raw in iter(self.pipe.readline, b""):
            with self.changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.changed.notify_all()
        with self.changed:
            self.lines.append("")  # EOF marker: nothing more will come
            self.changed.notify_all()

    def wait_for(self, pattern: str, start: int = 0, timeout: float = TIMEOUT) -> Tuple[int, Any]:
        """(index, match) of the first line from index ``start`` on that matches ``pattern`` (bounded wait)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for index in range(start, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        return index, match
                eof = bool(self.lines) and self.lines[-1] == "" and not self.thread.is_alive()
                remaining = deadline - time.monotonic()
                if eof or remaining <= 0:
                    pytest.fail("no line matching %r; got:\n%s" % (pattern, "\n".join(self.lines)))
                self.changed.wait(remaining)

    def text(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.pipe.close()


def readings(ws: simplews.WebSocket, count: int) -> List[dict]:
    """The next ``count`` live readings of the sensor dashboard (history messages are skipped)."""
    seen = []  # type: List[dict]
    for _ in range(count * 10):
        message = json.loads(ws.recv(timeout=TIMEOUT))
        if message["type"] == "reading":
            seen.append(message)
            if len(seen) == count:
                return seen
    pytest.fail("not %d readings: %r" % (count, seen))


def assert_increasing(readings_seen: List[dict]) -> None:
    seqs = [r["seq"] for r in readings_seen]
    times = [r["time"] for r in readings_seen]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # none missed, none repeated
    assert all(a < b for a, b in zip(times, times[1:])), times


# ---------------------------------------------------------------------- sensor_dashboard.py

def test_sensor_dashboard_serves_a_self_contained_page(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "sensor_dashboard.py"), "--interval", "0.05")
    status, content_type, body = http_get(server.port, "/")
    assert status == 200 and content_type == "text/html; charset=utf-8"
    page = body.decode("utf-8")
    assert '<canvas id="chart"' in page and "new WebSocket(url)" in page and "setTimeout(connect" in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # no CDN
    assert "open http://127.0.0.1:%d/ in a browser" % server.port in server.output
    server.assert_stops_cleanly()


def test_sensor_dashboard_pushes_the_same_readings_to_every_client(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "sensor_dashboard.py"), "--interval", "0.05")
    with simplews.connect(server.url) as first:
        assert json.loads(first.recv(timeout=TIMEOUT))["type"] == "history"
        early = readings(first, 3)
        assert_increasing(early)
        with simplews.connect(server.url + "ws") as second:
            history = json.loads(second.recv(timeout=TIMEOUT))
            assert history["type"] == "history"
            assert history["readings"][-1]["seq"] >= early[-1]["seq"]  # the recent past, up to now
            assert_increasing(history["readings"])
            live = readings(second, 5)
            assert_increasing(live)
            assert live[0]["seq"] == history["readings"][-1]["seq"] + 1  # history, then live: no gap
            assert all(isinstance(r["celsius"], float) and 0 < r["celsius"] < 50 for r in live)
            seen_by_first = {}  # type: dict
            for _ in range(100000):  # bounded: the first client catches up with the second
                message = json.loads(first.recv(timeout=TIMEOUT))
                seen_by_first[message["seq"]] = message
                if message["seq"] >= live[-1]["seq"]:
                    break
            assert_increasing(sorted(seen_by_first.values(), key=lambda r: r["seq"]))
            for reading in live:  # a broadcast: both got the very same readings
                assert seen_by_first[reading["seq"]] == reading
    server.assert_stops_cleanly()


# ---------------------------------------------------------------------- streaming_client.py

class Collector(object):
    """A server handler that keeps every reading it receives, in order."""

    def __init__(self) -> None:
        self.readings = []  # type: List[dict]
        self.changed = threading.Condition()

    def __call__(self, ws: simplews.WebSocket) -> None:
        for message in ws:
            with self.changed:
                self.readings.append(json.loads(message))
                self.changed.notify_all()

    def wait_for(self, wanted: Callable[[List[dict]], bool]) -> List[dict]:
        with self.changed:
            if not self.changed.wait_for(lambda: wanted(self.readings), TIMEOUT):
                pytest.fail("the server did not get the expected readings; it got %r" % (self.readings,))
            return list(self.readings)


def start_streaming_client(*args: str) -> "subprocess.Popen[bytes]":
    return subprocess.Popen([sys.executable, os.path.join(EXAMPLES, "streaming_client.py")] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=ROOT, env=_env())


def test_streaming_client_sends_count_readings_and_exits(serve: Any) -> None:
    collector = Collector()
    server = serve(collector)
    client = start_streaming_client(server.url, "--count", "5", "--interval", "0.01")
    try:
        _, stderr = client.communicate(timeout=TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    log = stderr.decode("utf-8", "replace")
    assert client.returncode == 0, log
    received = collector.wait_for(lambda got: len(got) == 5)
    assert [r["seq"] for r in received] == [1, 2, 3, 4, 5]
    assert all(r["device"] == "sensor-1" and isinstance(r["celsius"], float) for r in received)
    assert "connected to %s" % server.url in log
    assert "done: 5 readings taken, 0 not sent, 0 dropped" in log
    assert "Traceback" not in log


def test_streaming_client_buffers_while_the_server_restarts(serve: Any) -> None:
    first = Collector()
    server = serve(first)
    port = server.port
    client = start_streaming_client(server.url, "--interval", "0.05", "--ping-interval", "5")
    log = LineReader(client.stderr, "streaming-client-log")
    try:
        before = first.wait_for(lambda got: len(got) >= 3)
        server.stop()  # the server goes away (close code 1001)...
        gone, _ = log.wait_for(r"disconnected \(code 1001")
        buffered = int(log.wait_for(r"reading #(\d+): .* buffered", start=gone)[1].group(1))
        second = Collector()
        serve(second, port=port)  # ...and comes back on the same port
        second.wait_for(lambda got: bool(got) and got[-1]["seq"] > buffered)
        client.send_signal(signal.SIGINT)  # graceful: ends between two readings, sends what waits
        assert client.wait(TIMEOUT) == 0, log.text()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(TIMEOUT)
        log.close()
    taken = int(log.wait_for(r"done: (\d+) readings taken, 0 not sent, 0 dropped")[1].group(1))
    seqs = [r["seq"] for r in second.wait_for(lambda got: bool(got) and got[-1]["seq"] == taken)]
    assert buffered in seqs  # kept while disconnected, sent after the reconnection
    assert seqs == sorted(seqs) and seqs[0] > before[-1]["seq"]  # in order, nothing sent twice
    assert seqs[-1] == taken  # the last reading taken before the signal went out too
    assert re.search(r"connected to ws://127\.0\.0\.1:%d/; sent [1-9]\d* buffered reading" % port, log.text())
    assert "SIGINT: stopping after sending what is buffered" in log.text()
    assert "Traceback" not in log.text()


def test_streaming_client_sigterm_with_the_server_down_gives_up_after_the_drain_timeout(serve: Any) -> None:
    first = Collector()
    server = serve(first)
    client = start_streaming_client(server.url, "--interval", "0.05", "--drain-timeout", "0.5")
    log = LineReader(client.stderr, "streaming-client-log")
    try:
        first.wait_for(lambda got: len(got) >= 1)
        server.stop()
        gone, _ = log.wait_for(r"disconnected \(code 1001")
        log.wait_for(r"reading #\d+: .* buffered", start=gone)  # the server is gone and stays gone
        client.send_signal(signal.SIGTERM)
        assert client.wait(TIMEOUT) == 1, log.text()  # not every reading could be sent
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(TIMEOUT)
        log.close()
    assert "SIGTERM: stopping after sending what is buffered" in log.text()
    assert re.search(r"done: \d+ readings taken, [1-9]\d* not sent, 0 dropped", log.text()), log.text()
    assert "Traceback" not in log.text()


# ---------------------------------------------------------------------- json_rpc.py

def rpc(ws: simplews.WebSocket, request: Any) -> Any:
    ws.send(request if isinstance(request, (str, bytes)) else json.dumps(request))
    return json.loads(ws.recv(timeout=TIMEOUT))


def run_json_rpc(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, os.path.join(EXAMPLES, "json_rpc.py")] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, encoding="utf-8", timeout=TIMEOUT, cwd=ROOT, env=_env())


def test_json_rpc_answers_requests(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "json_rpc.py"))
    with simplews.connect(server.url) as ws:
        assert rpc(ws, {"id": 1, "method": "add", "params": [1, 2]}) == {"jsonrpc": "2.0", "id": 1, "result": 3}
        assert rpc(ws, {"jsonrpc": "2.0", "id": "a", "method": "add", "params": [1.5, 2, 3]})["result"] == 6.5
        assert rpc(ws, {"id": 2, "method": "echo", "params": {"value": ["ünï", {"x": None}]}})["result"] == \
            ["ünï", {"x": None}]
        now = rpc(ws, {"id": 3, "method": "time"})["result"]
        assert isinstance(now, float) and now > 1.6e9
        assert rpc(ws, {"id": 4, "method": "sleep", "params": [0]})["result"]["slept"] == 0
        ws.send(json.dumps({"method": "echo", "params": ["a notification"]}))  # no id: no answer...
        assert rpc(ws, {"id": 5, "method": "echo", "params": ["next"]}) == \
            {"jsonrpc": "2.0", "id": 5, "result": "next"}  # ...so the next answer is for id 5
    server.assert_stops_cleanly()


@pytest.mark.parametrize("request_text, code, answer_id", [
    ('{"id": 1, "method": "add", "params": [1, 2]', -32700, None),   # parse error: not JSON
    (b'{"id": 1, "method": "add"}', -32700, None),                   # binary: not a JSON text
    ('[{"id": 1, "method": "add"}]', -32600, None),                  # invalid request: a batch
    ('"add"', -32600, None),
    ('{"id": 7, "params": [1]}', -32600, 7),                         # no method
    ('{"id": 7, "method": 3}', -32600, 7),
    ('{"id": [7], "method": "add"}', -32600, None),                  # an id must be a string or number
    ('{"id": 7, "method": "add", "params": 3}', -32600, 7),          # params: array or object
    ('{"jsonrpc": "1.0", "id": 7, "method": "add"}', -32600, 7),
    ('{"id": 7, "method": "divide", "params": [1, 2]}', -32601, 7),  # method not found
    ('{"id": 7, "method": "add", "params": [1, "x"]}', -32602, 7),   # invalid params
    ('{"id": 7, "method": "echo", "params": [1, 2]}', -32602, 7),
    ('{"id": 7, "method": "echo", "params": {"wrong": 1}}', -32602, 7),
    ('{"id": 7, "method": "sleep", "params": [-1]}', -32602, 7),
    ('{"id": 7, "method": "sleep", "params": [11]}', -32602, 7),
])
def test_json_rpc_error_kinds(start: Any, request_text: Any, code: int, answer_id: Any) -> None:
    server = start(os.path.join(EXAMPLES, "json_rpc.py"))
    with simplews.connect(server.url) as ws:
        answer = rpc(ws, request_text)
        assert answer["jsonrpc"] == "2.0" and answer["id"] == answer_id and "result" not in answer
        assert answer["error"]["code"] == code and answer["error"]["message"]
        assert rpc(ws, {"id": 8, "method": "add", "params": [2, 2]})["result"] == 4  # still serving
    server.assert_stops_cleanly()
    assert "Traceback" not in server.errors


def test_json_rpc_sleep_does_not_hold_up_other_connections(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "json_rpc.py"))
    with simplews.connect(server.url) as sleeper, simplews.connect(server.url) as other:
        sleeper.send(json.dumps({"id": 1, "method": "sleep", "params": [2]}))
        times = []  # type: List[float]
        answer = None
        for _ in range(100000):  # the other connection keeps asking the time while the first one sleeps
            times.append(rpc(other, {"id": len(times), "method": "time"})["result"])
            try:
                answer = json.loads(sleeper.recv(timeout=0.01))
                break
            except TimeoutError:
                continue
        assert answer is not None and answer["id"] == 1
        started, finished = answer["result"]["started"], answer["result"]["finished"]
        assert any(started < t < finished for t in times)  # answered during the sleep
    server.assert_stops_cleanly()


def test_json_rpc_call_mode(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "json_rpc.py"))
    result = run_json_rpc("--call", "add", "1", "2.5", "--url", server.url)
    assert (result.returncode, result.stdout) == (0, "3.5\n"), result.stderr
    result = run_json_rpc("--call", "echo", "plain words", "--url", server.url)
    assert (result.returncode, result.stdout) == (0, '"plain words"\n'), result.stderr
    result = run_json_rpc("--call", "echo", '{"a": [1, true]}', "--url", server.url)
    assert json.loads(result.stdout) == {"a": [1, True]}
    result = run_json_rpc("--call", "nope", "--url", server.url)
    assert result.returncode == 1 and result.stdout == ""
    assert "method not found: 'nope' (code -32601)" in result.stderr and "Traceback" not in result.stderr
    server.assert_stops_cleanly()


def test_json_rpc_call_function_in_process(serve: Any) -> None:
    sys.path.insert(0, EXAMPLES)
    try:
        import json_rpc
    finally:
        sys.path.remove(EXAMPLES)
    server = serve(json_rpc.serve_connection)
    assert json_rpc.call(server.url, "add", 40, 2) == 42
    with pytest.raises(json_rpc.RPCError) as caught:
        json_rpc.call(server.url, "add", "forty", 2)
    assert caught.value.code == json_rpc.INVALID_PARAMS


# ---------------------------------------------------------------------- static_and_ws.py

def http_request(port: int, method: str, path: str) -> Any:
    """(status, headers dict, body) of one request, with the path sent exactly as given."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw_exchange(port: int, request: bytes) -> bytes:
    """Every byte the server sends in answer to ``request``, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_static_and_ws_serves_its_page_and_echoes_on_the_same_port(start: Any) -> None:
    server = start(os.path.join(EXAMPLES, "static_and_ws.py"))
    with open(os.path.join(EXAMPLES, "static", "index.html"), "rb") as f:
        index = f.read()
    for path in ("/", "/index.html", "/?v=2"):
        status, headers, body = http_request(server.port, "GET", path)
        assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8", index)
    assert b"new WebSocket(url)" in index and b"location.host" in index
    status, headers, body = http_request(server.port, "HEAD", "/index.html")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8" and body == b""
    raw = raw_exchange(server.port, b"HEAD /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert raw.endswith(b"\r\n\r\n")  # HEAD: every byte the server sent is headers, no body
    assert b"\r\nContent-Length: %d\r\n" % len(index) in raw  # ...and they are the headers of a GET
    for path in ("/ws", "/"):
        with simplews.connect(server.url.rstrip("/") + path) as ws:
            ws.send("hello " + path)
            assert ws.recv(timeout=TIMEOUT) == "hello " + path
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=TIMEOUT) == b"\x00\x01"
    assert "serving %s at http://127.0.0.1:%d/" % (os.path.join(EXAMPLES, "static"), server.port) in server.output
    server.assert_stops_cleanly()


def test_static_and_ws_keeps_to_its_root(start: Any, tmp_path: Any) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "style.css").write_bytes(b"body { color: red }\n")
    (root / "data.json").write_bytes(b'{"ok": true}\n')
    (root / "picture.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "blob.unknown-ext").write_bytes(b"\x00\x01")
    (root / "with space.txt").write_bytes(b"spaced\n")
    (root / "sub" / "index.html").write_bytes(b"<p>sub</p>\n")
    (root / ".secret").write_bytes(b"hidden\n")
    (tmp_path / "outside.txt").write_bytes(b"outside the root\n")
    os.symlink(str(tmp_path / "outside.txt"), str(root / "link.txt"))
    os.symlink(str(tmp_path), str(root / "up"))
    server = start(os.path.join(EXAMPLES, "static_and_ws.py"), "--root", str(root))

    def get(path: str) -> Any:
        status, headers, body = http_request(server.port, "GET", path)
        return status, headers.get("Content-Type"), body

    assert get("/style.css") == (200, "text/css; charset=utf-8", b"body { color: red }\n")
    assert get("/data.json") == (200, "application/json; charset=utf-8", b'{"ok": true}\n')
    assert get("/picture.png") == (200, "image/png", b"\x89PNG\r\n\x1a\n")
    assert get("/blob.unknown-ext") == (200, "application/octet-stream", b"\x00\x01")
    assert get("/with%20space.txt") == (200, "text/plain; charset=utf-8", b"spaced\n")
    assert get("/sub/") == (200, "text/html; charset=utf-8", b"<p>sub</p>\n")
    assert get("/sub") == get("/sub/")
    for path in ("/missing.html", "/sub/missing", "/.secret", "/%2esecret", "/../outside.txt",
                 "/sub/../../outside.txt", "/%2e%2e/outside.txt", "/..%2foutside.txt", "/link.txt",
                 "/up/outside.txt", "//etc/passwd", "/nul%00.txt"):
        status, content_type, body = get(path)
        assert (status, body) == (404, b"Not Found\n"), path
    assert b"outside the root" not in get("/../outside.txt")[2]
    server.assert_stops_cleanly()
    assert "Traceback" not in server.errors


def test_static_and_ws_refuses_a_missing_root(tmp_path: Any) -> None:
    result = subprocess.run([sys.executable, os.path.join(EXAMPLES, "static_and_ws.py"),
                             "--root", str(tmp_path / "nowhere"), "--port", "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=TIMEOUT, cwd=ROOT, env=_env())
    assert result.returncode == 2 and "is not a folder" in result.stderr


# ---------------------------------------------------------------------- tls_server.py

@pytest.fixture
def certificate(tmp_path: Any) -> Any:
    """(CA, fullchain.pem path, privkey.pem path): a test CA and a certificate for 127.0.0.1 and localhost."""
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the TLS certificates")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    fullchain = tmp_path / "fullchain.pem"
    fullchain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    privkey = tmp_path / "privkey.pem"
    privkey.write_bytes(cert.private_key_pem.bytes())
    return ca, str(fullchain), str(privkey)


def test_tls_server_echoes_over_wss(start: Any, certificate: Any) -> None:
    import ssl
    ca, fullchain, privkey = certificate
    server = start(os.path.join(EXAMPLES, "tls_server.py"), "--cert", fullchain, "--key", privkey)
    assert "listening on wss://127.0.0.1:%d" % server.port in server.output
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with simplews.connect("wss://127.0.0.1:%d/" % server.port, ssl_context=trusting) as ws:
        ws.send("over TLS ✓")
        assert ws.recv(timeout=TIMEOUT) == "over TLS ✓"
        ws.send(b"\x00" * 100000)
        assert ws.recv(timeout=TIMEOUT) == b"\x00" * 100000
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=TIMEOUT, context=trusting)
    try:  # the demo page, for a browser at https://
        connection.request("GET", "/")
        response = connection.getresponse()
        assert response.status == 200 and b"new WebSocket(url)" in response.read()
    finally:
        connection.close()
    server.assert_stops_cleanly()


def test_tls_server_is_refused_by_a_client_without_the_ca(start: Any, certificate: Any) -> None:
    import ssl
    _, fullchain, privkey = certificate
    server = start(os.path.join(EXAMPLES, "tls_server.py"), "--cert", fullchain, "--key", privkey)
    with pytest.raises(ssl.SSLError) as caught:  # SSLCertVerificationError on Python 3.7+
        simplews.connect("wss://127.0.0.1:%d/" % server.port, ssl_context=ssl.create_default_context())
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    server.assert_stops_cleanly()


def test_tls_server_needs_a_certificate_and_key(tmp_path: Any) -> None:
    def run(*args: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([sys.executable, os.path.join(EXAMPLES, "tls_server.py"), "--port", "0"] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=TIMEOUT, cwd=ROOT, env=_env())

    result = run()
    assert result.returncode == 2 and "--cert" in result.stderr and "--key" in result.stderr
    assert "self-signed" in run("--help").stdout
    result = run("--cert", str(tmp_path / "missing.pem"), "--key", str(tmp_path / "missing.pem"))
    assert result.returncode == 2 and "cannot load --cert" in result.stderr and "Traceback" not in result.stderr
