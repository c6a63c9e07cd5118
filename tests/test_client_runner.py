"""SimpleWSClient.run_forever: callbacks, subclass style, reconnection with backoff, stop() from anywhere."""

import signal
import socket
import threading
import time
from typing import Any, Callable, List, Tuple

import pytest

import simplews
from simplews import SimpleWSClient
from simplews.exceptions import ConnectionClosed, InvalidStatus

from conftest import echo

GUARD = 10.0  # hang guard for every wait, never a timing assertion


def wait_until(predicate: Callable[[], bool], message: str, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(0.01)


def join(thread: threading.Thread) -> None:
    thread.join(GUARD)
    assert not thread.is_alive(), "run_forever did not return"


def free_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port  # type: ignore[no-any-return]


class Log(object):
    """Everything the callbacks saw, in order, thread-safely."""

    def __init__(self) -> None:
        self.events = []  # type: List[Tuple[Any, ...]]
        self.lock = threading.Lock()

    def add(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: str) -> List[Tuple[Any, ...]]:
        with self.lock:
            return [event[1:] for event in self.events if event[0] == kind]


def test_callbacks_receive_the_client(serve: Any) -> None:
    server = serve(echo)
    log = Log()

    def on_open(client: SimpleWSClient) -> None:
        log.add("open", client)
        client.send("hello")

    def on_message(client: SimpleWSClient, message: Any) -> None:
        log.add("message", client, message)
        client.stop()  # from a callback, on the run_forever thread

    def on_close(client: SimpleWSClient, code: int, reason: str) -> None:
        log.add("close", client, code, reason)

    client = SimpleWSClient(server.url, on_open=on_open, on_message=on_message, on_close=on_close,
                            on_error=lambda client, exc: log.add("error", client, exc))
    thread = client.run_in_thread()
    assert thread.daemon
    join(thread)
    assert log.of("open") == [(client,)]
    assert log.of("message") == [(client, "hello")]
    assert log.of("close") == [(client, 1000, "")]
    assert log.of("error") == []
    assert client.ws is None and not client.connected


def test_positional_callbacks(serve: Any) -> None:
    server = serve(echo)
    log = Log()
    client = SimpleWSClient(server.url, lambda c: c.send(b"\x01\x02"),
                            lambda c, m: (log.add("message", m), c.stop()),
                            lambda c, code, reason: log.add("close", code))
    client.run_forever()
    assert log.of("message") == [(b"\x01\x02",)]
    assert log.of("close") == [(1000,)]


class EchoOnce(SimpleWSClient):
    """Subclass style: the methods take no client argument."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.log = Log()

    def on_open(self) -> None:
        self.log.add("open")
        self.send("from subclass")

    def on_message(self, message: Any) -> None:
        self.log.add("message", message)
        self.stop()

    def on_close(self, code: int, reason: str) -> None:
        self.log.add("close", code, reason)

    def on_error(self, exc: BaseException) -> None:
        self.log.add("error", exc)


def test_subclass_style(serve: Any) -> None:
    server = serve(echo)
    client = EchoOnce(server.url)
    join(client.run_in_thread())
    assert client.log.events == [("open",), ("message", "from subclass"), ("close", 1000, "")]


def test_subclass_and_constructor_callbacks_mix(serve: Any) -> None:
    """A subclass overriding only on_message still calls the other callbacks it was given."""
    server = serve(echo)
    log = Log()

    class OnlyMessages(SimpleWSClient):
        def on_message(self, message: Any) -> None:
            log.add("message", message)
            self.stop()

    client = OnlyMessages(server.url, on_open=lambda c: c.send("mixed"),
                          on_close=lambda c, code, reason: log.add("close", code))
    client.run_forever()
    assert log.events == [("message", "mixed"), ("close", 1000)]


def test_reconnects_to_a_new_server_on_the_same_port(serve: Any) -> None:
    first = serve(echo)
    port = first.port
    log = Log()
    opened = threading.Semaphore(0)

    def on_open(client: SimpleWSClient) -> None:
        log.add("open")
        opened.release()

    client = SimpleWSClient(first.url, on_open=on_open,
                            on_message=lambda c, m: log.add("message", m),
                            on_close=lambda c, code, reason: log.add("close", code, reason),
                            on_error=lambda c, exc: log.add("error", exc),
                            backoff_initial=0.05, backoff_max=0.2)
    thread = client.run_in_thread()
    try:
        assert opened.acquire(timeout=GUARD)
        # The server registers the connection just after the client sees it open; a shutdown
        # in between drops it without a close frame (1006), which is not what this test is about.
        wait_until(lambda: first.server.connections, "the server to register the connection")
        first.stop()
        wait_until(lambda: len(log.of("error")) >= 2, "failed reconnection attempts")
        assert all(isinstance(exc, ConnectionRefusedError) for (exc,) in log.of("error"))
        assert log.of("close") == [(1001, "server shutting down")]
        with pytest.raises(ConnectionClosed):
            client.send("nobody is there")
        second = serve(echo, port=port)
        assert second.port == port
        assert opened.acquire(timeout=GUARD)
        wait_until(lambda: client.connected, "the new connection")
        client.send("again")
        wait_until(lambda: log.of("message") == [("again",)], "the echo from the new server")
    finally:
        client.stop()
        join(thread)
    assert log.of("open") == [(), ()]
    assert log.of("close")[-1] == (1000, "")


def test_stop_while_backing_off() -> None:
    log = Log()

    class SlowBackoff(SimpleWSClient):
        def backoff_delay(self, failures: int) -> float:
            log.add("backoff", failures)
            return 3600.0

    client = SlowBackoff("ws://127.0.0.1:%d/" % free_port(), on_error=lambda c, exc: log.add("error", exc))
    thread = client.run_in_thread()
    wait_until(lambda: log.of("backoff"), "the first backoff")
    client.stop()
    join(thread)
    assert log.of("backoff") == [(0,)]
    assert len(log.of("error")) == 1
    assert isinstance(log.of("error")[0][0], ConnectionRefusedError)


def test_stop_while_connecting() -> None:
    """The server accepts TCP but never answers the handshake: stop() aborts the attempt."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    log = Log()
    client = SimpleWSClient("ws://127.0.0.1:%d/" % listener.getsockname()[1], open_timeout=600,
                            on_error=lambda c, exc: log.add("error", exc))
    thread = client.run_in_thread()
    try:
        listener.settimeout(GUARD)
        peer, _ = listener.accept()
        try:
            peer.settimeout(GUARD)
            assert peer.recv(4096).startswith(b"GET / HTTP/1.1\r\n")  # the request is out; now stop
            client.stop()
            join(thread)
        finally:
            peer.close()
    finally:
        client.stop()
        thread.join(GUARD)
        listener.close()
    assert log.of("error") == []  # stopping is not an error


def test_stop_while_connected_closes_with_1000(serve: Any) -> None:
    seen = []  # type: List[Any]
    done = threading.Event()

    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send(message)
        seen.append((ws.close_code, ws.close_reason))
        done.set()

    server = serve(handler)
    log = Log()
    opened = threading.Event()
    client = SimpleWSClient(server.url, on_open=lambda c: opened.set(),
                            on_close=lambda c, code, reason: log.add("close", code))
    thread = client.run_in_thread()
    assert opened.wait(GUARD)
    client.stop()  # from another thread
    join(thread)
    assert done.wait(GUARD)
    assert seen == [(1000, "")]
    assert log.of("close") == [(1000,)]


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
def test_stop_from_a_signal_handler(serve: Any) -> None:
    """run_forever on the main thread, stop() in a signal handler interrupting its recv."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run on the main thread only")
    server = serve(echo)
    opened = threading.Event()
    log = Log()
    client = SimpleWSClient(server.url, on_open=lambda c: opened.set(),
                            on_close=lambda c, code, reason: log.add("close", code))
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: client.stop())
    main = threading.main_thread().ident
    assert main is not None

    def kick() -> None:
        if opened.wait(GUARD):
            signal.pthread_kill(main, signal.SIGUSR1)

    kicker = threading.Thread(target=kick)
    kicker.start()
    try:
        client.run_forever()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        kicker.join(GUARD)
    assert log.of("close") == [(1000,)]


def test_send_while_disconnected_raises() -> None:
    client = SimpleWSClient("ws://127.0.0.1:%d/" % free_port())
    with pytest.raises(ConnectionClosed, match="not connected"):
        client.send("x")


def test_send_from_other_threads(serve: Any) -> None:
    server = serve(echo)
    received = Log()
    opened = threading.Event()
    client = SimpleWSClient(server.url, on_open=lambda c: opened.set(),
                            on_message=lambda c, m: received.add("message", m))
    thread = client.run_in_thread()
    try:
        assert opened.wait(GUARD)
        senders = [threading.Thread(target=lambda n=n: [client.send("%d-%d" % (n, i)) for i in range(20)])
                   for n in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(GUARD)
        wait_until(lambda: len(received.of("message")) == 80, "80 echoes")
    finally:
        client.stop()
        join(thread)
    assert sorted(m for (m,) in received.of("message")) == sorted("%d-%d" % (n, i) for n in range(4) for i in range(20))


def test_no_reconnect_returns_after_a_failure() -> None:
    log = Log()
    client = SimpleWSClient("ws://127.0.0.1:%d/" % free_port(), on_error=lambda c, exc: log.add("error", exc))
    client.run_forever(reconnect=False)
    assert len(log.of("error")) == 1


def test_no_reconnect_returns_when_the_connection_ends(serve: Any) -> None:
    server = serve(lambda ws: ws.close(4000, "bye"))
    log = Log()
    client = SimpleWSClient(server.url, on_close=lambda c, code, reason: log.add("close", code, reason))
    client.run_forever(reconnect=False)
    assert log.of("close") == [(4000, "bye")]


def test_handshake_refusal_goes_to_on_error(serve: Any) -> None:
    server = serve(echo, process_request=lambda path, headers: (403, [], b"go away"))
    log = Log()
    client = SimpleWSClient(server.url, on_error=lambda c, exc: log.add("error", exc))
    client.run_forever(reconnect=False)
    [(exc,)] = log.of("error")
    assert isinstance(exc, InvalidStatus) and exc.status == 403


def test_callback_exception_goes_to_on_error_and_the_connection_goes_on(serve: Any) -> None:
    server = serve(echo)
    log = Log()

    def on_message(client: SimpleWSClient, message: Any) -> None:
        log.add("message", message)
        if message == "boom":
            raise ValueError("callback bug")
        client.stop()

    def on_open(client: SimpleWSClient) -> None:
        client.send("boom")
        client.send("after")

    client = SimpleWSClient(server.url, on_open=on_open, on_message=on_message,
                            on_error=lambda c, exc: log.add("error", exc))
    join(client.run_in_thread())
    assert log.of("message") == [("boom",), ("after",)]
    [(exc,)] = log.of("error")
    assert isinstance(exc, ValueError) and str(exc) == "callback bug"


def test_on_error_failure_is_only_logged() -> None:
    calls = []  # type: List[Any]

    def on_error(client: SimpleWSClient, exc: BaseException) -> None:
        calls.append(exc)
        raise RuntimeError("on_error bug")

    client = SimpleWSClient("ws://127.0.0.1:%d/" % free_port(), on_error=on_error)
    client.run_forever(reconnect=False)
    assert len(calls) == 1


def test_backoff_grows_and_resets_after_a_lasting_connection(serve: Any) -> None:
    """The server closes every connection at once: failures keep counting up unless
    backoff_reset says even such a short connection counts as lasting."""
    server = serve(lambda ws: ws.close())

    def failures_seen(backoff_reset: float) -> List[int]:
        seen = []  # type: List[int]

        class Recording(SimpleWSClient):
            def backoff_delay(self, failures: int) -> float:
                seen.append(failures)
                if len(seen) == 4:
                    self.stop()
                return 0.0

        Recording(server.url, backoff_reset=backoff_reset).run_forever()
        return seen

    assert failures_seen(3600.0) == [0, 1, 2, 3]
    assert failures_seen(0.0) == [0, 0, 0, 0]


def test_backoff_delay_is_full_jitter() -> None:
    client = SimpleWSClient("ws://127.0.0.1:1/", backoff_initial=0.5, backoff_max=30.0, backoff_factor=2.0)
    for failures, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (6, 30.0), (10000, 30.0)]:
        delays = [client.backoff_delay(failures) for _ in range(200)]
        assert all(0.0 <= delay <= ceiling for delay in delays)
        assert max(delays) > ceiling / 4  # jitter spreads over the whole range
    fixed = SimpleWSClient("ws://127.0.0.1:1/", backoff_initial=0.0)
    assert fixed.backoff_delay(5) == 0.0


@pytest.mark.parametrize("options", [
    {"backoff_initial": -1}, {"backoff_max": "x"}, {"backoff_factor": 0.5}, {"max_redirects": -1},
    {"proxy": "socks5://127.0.0.1:1080"},
])
def test_invalid_options(options: Any) -> None:
    with pytest.raises((ValueError, simplews.InvalidURI)):
        SimpleWSClient("ws://127.0.0.1:1/", **options)


def test_run_forever_twice_at_once_is_refused(serve: Any) -> None:
    server = serve(echo)
    opened = threading.Event()
    client = SimpleWSClient(server.url, on_open=lambda c: opened.set())
    thread = client.run_in_thread()
    try:
        assert opened.wait(GUARD)
        with pytest.raises(RuntimeError, match="already running"):
            client.run_forever()
    finally:
        client.stop()
        join(thread)


def test_stop_before_run_makes_it_return_and_the_client_is_reusable(serve: Any) -> None:
    server = serve(echo)
    log = Log()
    client = SimpleWSClient(server.url, on_open=lambda c: (log.add("open"), c.stop()))
    client.stop()
    client.run_forever()
    assert log.of("open") == []
    client.run_forever()  # the earlier stop() was used up
    assert log.of("open") == [()]


def test_keepalive_options_reach_the_connection(serve: Any) -> None:
    server = serve(echo)
    pongs = threading.Event()
    opened = threading.Event()

    def on_open(client: SimpleWSClient) -> None:
        ws = client.ws
        assert ws is not None
        ws.on_pong = lambda data: pongs.set()
        opened.set()

    client = SimpleWSClient(server.url, on_open=on_open, ping_interval=0.05, ping_timeout=GUARD)
    thread = client.run_in_thread()
    try:
        assert opened.wait(GUARD)
        assert pongs.wait(GUARD), "no keepalive pong"
    finally:
        client.stop()
        join(thread)


def test_connect_still_returns_a_websocket(serve: Any) -> None:
    server = serve(echo)
    with SimpleWSClient(server.url).connect() as ws:
        assert isinstance(ws, simplews.WebSocket)
        ws.send("plain")
        assert ws.recv(timeout=GUARD) == "plain"
    with simplews.connect(server.url) as ws:
        ws.send("plain")
        assert ws.recv(timeout=GUARD) == "plain"


def test_tls_verification_failure_goes_to_on_error(serve: Any) -> None:
    """A certificate that does not match is a connection failure (an OSError on every Python)."""
    import ssl
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    server = serve(echo, ssl_context=server_context)
    log = Log()
    client = SimpleWSClient("wss://127.0.0.1:%d/" % server.port, ssl_context=client_context,
                            server_hostname="wrong.example", on_error=lambda c, exc: log.add("error", exc))
    client.run_forever(reconnect=False)
    [(exc,)] = log.of("error")
    assert isinstance(exc, ssl.SSLError)
    assert "wrong.example" in str(exc) or "mismatch" in str(exc).lower()
