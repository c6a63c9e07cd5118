"""The blocking WebSocket object over real loopback sockets: messages, threads, closing, limits, keepalive.

Timeouts here are hang guards (GUARD) or option values under test; no test
asserts that something was fast.
"""

import os
import queue
import threading
import time
from typing import Any, Callable, List

import pytest

import simplews
from simplews import frames
from simplews.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from _peers import GUARD, FakeServer, RawClient, wait_until
from conftest import echo

MiB = 1 << 20


def run_guarded(target: Callable[[], Any], timeout: float = GUARD) -> Any:
    """Run ``target`` in a thread; fail (instead of hanging) if it does not return."""
    result = queue.Queue()  # type: queue.Queue

    def run() -> None:
        try:
            result.put((True, target()))
        except BaseException as exc:
            result.put((False, exc))

    thread = threading.Thread(target=run, name="guarded-call")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "call did not return within %ss" % timeout
    ok, value = result.get_nowait()
    if not ok:
        raise value
    return value


def outcome_of(call: Callable[[], Any], box: "queue.Queue[Any]") -> None:
    """Put the return value or the exception of ``call`` in ``box``."""
    try:
        box.put(call())
    except Exception as exc:
        box.put(exc)


# ---------------------------------------------------------------------- messages


@pytest.mark.parametrize("message", [
    "hello", "ünïcödé ☃ 𝄞", "", b"", b"\x00\x01\xfe\xff", "x" * 125, "y" * 126, b"z" * 65535, b"w" * 65536,
], ids=["text", "unicode", "empty-text", "empty-binary", "binary", "125", "126", "65535", "65536"])
def test_echo_round_trips_message_and_type(serve: Any, message: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        ws.send(message)
        reply = ws.recv(timeout=GUARD)
    assert reply == message
    assert type(reply) is type(message)


@pytest.mark.parametrize("compression", ["default", None])
def test_echo_one_mebibyte_messages(serve: Any, compression: Any) -> None:
    binary = os.urandom(MiB)  # exactly the default max_message_size, incompressible
    text = "é" * (MiB // 2)  # 1 MiB of UTF-8
    server = serve(echo, compression=compression)
    with simplews.connect(server.url, compression=compression) as ws:
        ws.send(binary)
        ws.send(text)
        assert ws.recv(timeout=GUARD) == binary
        assert ws.recv(timeout=GUARD) == text


def test_bytearray_and_memoryview_are_sent_as_binary(serve: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        ws.send(bytearray(b"abc"))
        ws.send(memoryview(b"defg")[1:])
        assert ws.recv(timeout=GUARD) == b"abc"
        assert ws.recv(timeout=GUARD) == b"efg"


def test_fragmented_send_arrives_as_one_message(serve: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        ws.send(["frag", "mented ", "", "text ☃"])
        ws.send(iter([b"a", b"", b"b" * 70000]))
        ws.send(chunk for chunk in ("single",))
        ws.send([])  # nothing to send: no message at all
        ws.send("after")
        assert ws.recv(timeout=GUARD) == "fragmented text ☃"
        assert ws.recv(timeout=GUARD) == b"a" + b"b" * 70000
        assert ws.recv(timeout=GUARD) == "single"
        assert ws.recv(timeout=GUARD) == "after"


@pytest.mark.parametrize("chunks", [
    lambda: ["text", b"then bytes"],
    lambda: (c if c != "boom" else 1 // 0 for c in ("first", "second", "boom")),
], ids=["mixed-types", "generator-raises"])
def test_fragmented_send_that_cannot_finish_fails_the_connection(serve: Any, chunks: Any) -> None:
    """A started message can't be withdrawn: the connection closes with 1011 and the error propagates."""
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        with pytest.raises((TypeError, ZeroDivisionError)):
            ws.send(chunks())
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=GUARD)
        assert info.value.code == frames.CLOSE_INTERNAL_ERROR
        with pytest.raises(ConnectionClosed):
            ws.send("no longer possible")


def test_server_fragmented_send_arrives_as_one_message(serve: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        ws.send("part%d " % i for i in range(5))
        ws.send([b"\x00", b"\x01"])

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("go")
        assert ws.recv(timeout=GUARD) == "part0 part1 part2 part3 part4 "
        assert ws.recv(timeout=GUARD) == b"\x00\x01"


def test_send_rejects_non_messages(serve: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        for bad in (42, {"a": 1}, None):
            with pytest.raises(TypeError):
                ws.send(bad)
        ws.send("still fine")
        assert ws.recv(timeout=GUARD) == "still fine"


def test_frames_sent_with_the_handshake_are_not_lost(serve: Any) -> None:
    server = serve(echo)
    with RawClient(server.port) as raw:
        raw.send(raw.request_bytes() + frames.build_frame(frames.OP_TEXT, b"early", mask=True))
        status, _, rest = raw.read_head()
        assert status == 101
        raw.parser.feed(rest)
        frame = raw.recv_frame()
        assert frame is not None and (frame.opcode, frame.payload) == (frames.OP_TEXT, b"early")
        raw.send_frame(frames.OP_CLOSE, frames.encode_close(1000))
        remaining = raw.frames_until_eof()
    assert [f.opcode for f in remaining] == [frames.OP_CLOSE]


def test_client_gets_frames_sent_with_the_101(serve: Any) -> None:
    early = frames.build_frame(frames.OP_TEXT, b"hello with the handshake")
    with FakeServer(after_head=early) as fake:
        ws = simplews.connect(fake.url, close_timeout=0.3, compression=None)
        try:
            assert ws.recv(timeout=GUARD) == "hello with the handshake"
        finally:
            ws.abort()


# ---------------------------------------------------------------------- concurrency

THREADS = 8
PER_THREAD = 200


def _message(thread: int, index: int) -> Any:
    body = chr(ord("a") + thread) * ((index * 37 + thread * 101) % 3000)
    text = "%d:%d:%s" % (thread, index, body)
    return text.encode("ascii") if index % 2 else text


def _send_all(ws: simplews.WebSocket, thread: int) -> None:
    for index in range(PER_THREAD):
        message = _message(thread, index)
        if index % 10 == 4:  # some fragmented sends, which must not interleave either
            ws.send([message[:5], message[5:20], message[20:]])
        else:
            ws.send(message)


def _run_senders(ws: simplews.WebSocket) -> None:
    errors = []  # type: List[BaseException]

    def sender(thread: int) -> None:
        try:
            _send_all(ws, thread)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(t,), name="sender-%d" % t) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(GUARD * 3)
    assert not any(thread.is_alive() for thread in threads), "a sender hung"
    assert errors == []


def _check_received(messages: List[Any]) -> None:
    assert len(messages) == THREADS * PER_THREAD
    next_index = [0] * THREADS
    for message in messages:
        text = message.decode("ascii") if isinstance(message, bytes) else message
        thread, index, _ = text.split(":", 2)
        thread_no, index_no = int(thread), int(index)
        assert index_no == next_index[thread_no], "messages of one sender out of order"
        assert message == _message(thread_no, index_no), "message corrupted (interleaved frames?)"
        next_index[thread_no] += 1
    assert next_index == [PER_THREAD] * THREADS


@pytest.mark.parametrize("compression", ["default", None])
def test_concurrent_senders_client_to_server(serve: Any, compression: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def collector(ws: simplews.WebSocket) -> None:
        box.put([ws.recv(timeout=GUARD * 3) for _ in range(THREADS * PER_THREAD)])
        ws.send("done")

    server = serve(collector, compression=compression)
    with simplews.connect(server.url, compression=compression) as ws:
        _run_senders(ws)
        assert ws.recv(timeout=GUARD * 3) == "done"
    _check_received(box.get(timeout=GUARD))


def test_concurrent_senders_server_to_client(serve: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        _run_senders(ws)
        ws.recv()

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("go")
        messages = [ws.recv(timeout=GUARD * 3) for _ in range(THREADS * PER_THREAD)]
        ws.send("done")
    _check_received(messages)


# ---------------------------------------------------------------------- closing


def test_close_from_another_thread_wakes_client_recv(serve: Any) -> None:
    server = serve(echo)
    ws = simplews.connect(server.url)
    box = queue.Queue()  # type: queue.Queue
    reader = threading.Thread(target=outcome_of, args=(ws.recv, box), name="blocked-recv")
    reader.start()
    time.sleep(0.2)  # let the reader block in recv(); correctness does not depend on it
    run_guarded(ws.close)
    exc = box.get(timeout=GUARD)
    reader.join(GUARD)
    assert isinstance(exc, ConnectionClosedOK), exc
    assert exc.code == 1000
    assert ws.closed and ws.close_code == 1000


def test_close_from_another_thread_wakes_server_recv(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        outcome_of(ws.recv, box)

    server = serve(handler)
    with simplews.connect(server.url) as client:
        wait_until(lambda: len(server.server.connections) == 1, message="connection registered")
        (server_ws,) = list(server.server.connections)
        time.sleep(0.2)  # let the handler block in recv()
        closer = threading.Thread(target=server_ws.close, args=(1000, "server bye"), name="closer")
        closer.start()
        with pytest.raises(ConnectionClosedOK) as info:
            client.recv(timeout=GUARD)
        closer.join(GUARD)
        assert not closer.is_alive()
    assert (info.value.code, info.value.reason) == (1000, "server bye")
    exc = box.get(timeout=GUARD)
    assert isinstance(exc, ConnectionClosedOK), exc
    assert server_ws.closed and server_ws.close_code == 1000


@pytest.mark.parametrize("code, reason, expected", [
    (1000, "", ConnectionClosedOK),
    (1001, "going away", ConnectionClosedOK),
    (1008, "policy", ConnectionClosedError),
    (4000, "custom ☃", ConnectionClosedError),
])
def test_client_close_code_and_reason_reach_the_server(serve: Any, code: int, reason: str,
                                                       expected: type) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        try:
            ws.recv()
            box.put("no exception")
        except ConnectionClosed as exc:
            box.put((exc, ws.close_code, ws.close_reason))

    server = serve(handler)
    ws = simplews.connect(server.url)
    run_guarded(lambda: ws.close(code, reason))
    exc, close_code, close_reason = box.get(timeout=GUARD)
    assert type(exc) is expected
    assert (exc.code, exc.reason) == (code, reason)
    assert (close_code, close_reason) == (code, reason)
    assert ws.closed and ws.close_code == code  # the server echoed the code


@pytest.mark.parametrize("code, reason, expected", [
    (1000, "bye", ConnectionClosedOK),
    (1001, "restarting", ConnectionClosedOK),
    (1011, "oops", ConnectionClosedError),
    (4999, "x" * 123, ConnectionClosedError),
])
def test_server_close_code_and_reason_reach_the_client(serve: Any, code: int, reason: str,
                                                       expected: type) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        ws.close(code, reason)

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=GUARD)
    assert type(info.value) is expected
    assert (info.value.code, info.value.reason) == (code, reason)
    assert (ws.close_code, ws.close_reason) == (code, reason)


def test_close_twice_is_harmless_and_recv_send_after_close_raise(serve: Any) -> None:
    server = serve(echo)
    ws = simplews.connect(server.url)
    assert not ws.closed and ws.close_code is None and ws.close_reason is None
    run_guarded(ws.close)
    run_guarded(ws.close)
    run_guarded(lambda: ws.close(4000, "ignored"))
    assert ws.closed and (ws.close_code, ws.close_reason) == (1000, "")
    with pytest.raises(ConnectionClosedOK):
        ws.recv(timeout=1)
    with pytest.raises(ConnectionClosedOK):
        ws.recv()
    with pytest.raises(ConnectionClosed):
        ws.send("too late")
    with pytest.raises(ConnectionClosed):
        ws.ping()
    assert list(ws) == []


def test_server_side_close_twice_and_recv_after_close(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        ws.close(1000, "first")
        ws.close(1001, "second")
        outcome_of(ws.recv, box)
        outcome_of(lambda: ws.send("late"), box)

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("go")
        with pytest.raises(ConnectionClosedOK) as info:
            ws.recv(timeout=GUARD)
    assert info.value.reason == "first"
    assert isinstance(box.get(timeout=GUARD), ConnectionClosedOK)
    assert isinstance(box.get(timeout=GUARD), ConnectionClosed)


def test_client_close_ends_after_close_timeout_when_the_peer_never_answers() -> None:
    with FakeServer() as fake:  # completes the handshake, then never reads nor writes
        ws = simplews.connect(fake.url, close_timeout=0.5)
        started = time.monotonic()
        run_guarded(ws.close)
        waited = time.monotonic() - started
    assert ws.closed
    assert ws.close_code == 1000  # the code we sent; nothing came back
    assert waited >= 0.45, "close() gave up before close_timeout"


def test_server_close_ends_after_close_timeout_when_the_peer_never_answers(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        started = time.monotonic()
        ws.close(1000, "bye")
        box.put((time.monotonic() - started, ws.closed))

    server = serve(handler, close_timeout=0.5)
    with RawClient(server.port) as raw:
        raw.handshake()
        waited, closed = box.get(timeout=GUARD)  # the raw client reads nothing meanwhile
        received = raw.frames_until_eof()
    assert closed
    assert waited >= 0.45, "close() gave up before close_timeout"
    assert [f.opcode for f in received] == [frames.OP_CLOSE]
    assert frames.decode_close(received[0].payload) == (1000, "bye")


def test_peer_dropping_tcp_gives_1006(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        outcome_of(ws.recv, box)
        box.put(ws.close_code)

    server = serve(handler)
    with RawClient(server.port) as raw:
        raw.handshake()
    exc = box.get(timeout=GUARD)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1006
    assert box.get(timeout=GUARD) == 1006


# ---------------------------------------------------------------------- recv timeout


def test_recv_timeout_raises_and_the_connection_still_works(serve: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.1)
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0)
        ws.send("still works")
        assert ws.recv(timeout=GUARD) == "still works"
        assert not ws.closed


def test_recv_timeout_in_the_middle_of_a_frame_keeps_the_message() -> None:
    frame = frames.build_frame(frames.OP_TEXT, b"hello world " * 100)
    second_half = threading.Event()

    def script(conn: Any) -> None:
        conn.sendall(frame[:500])
        second_half.wait(GUARD)
        conn.sendall(frame[500:])

    with FakeServer(script=script) as fake:
        ws = simplews.connect(fake.url, compression=None)
        try:
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.2)
            second_half.set()
            assert ws.recv(timeout=GUARD) == "hello world " * 100
        finally:
            second_half.set()
            ws.abort()


# ---------------------------------------------------------------------- limits


@pytest.mark.parametrize("compression", ["default", None])
def test_message_over_the_server_limit_closes_with_1009(serve: Any, compression: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        outcome_of(ws.recv, box)
        outcome_of(ws.recv, box)

    server = serve(handler, max_message_size=1000, compression=compression)
    with simplews.connect(server.url, compression=compression) as ws:
        ws.send("a" * 1000)  # at the limit: fine
        ws.send("a" * 1001)
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=GUARD)
    assert info.value.code == 1009
    assert box.get(timeout=GUARD) == "a" * 1000
    exc = box.get(timeout=GUARD)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1009


@pytest.mark.parametrize("compression", ["default", None])
def test_message_over_the_client_limit_closes_with_1009(serve: Any, compression: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        ws.send(b"b" * 1000)
        ws.send(b"b" * 1001)
        outcome_of(ws.recv, box)

    server = serve(handler, compression=compression)
    with simplews.connect(server.url, max_message_size=1000, compression=compression) as ws:
        ws.send("go")
        assert ws.recv(timeout=GUARD) == b"b" * 1000
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=GUARD)
    assert info.value.code == 1009
    exc = box.get(timeout=GUARD)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1009


def test_max_queue_bounds_background_reading(serve: Any) -> None:
    """While the handler does not read, the housekeeping drain stops at max_queue and TCP pushes back."""
    count, size = 160, 100000  # 16 MB: more than loopback buffers hold
    release = threading.Event()
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        release.wait(GUARD * 2)
        box.put([ws.recv(timeout=GUARD) for _ in range(count)])

    server = serve(handler, max_queue=2, compression=None)
    ws = simplews.connect(server.url, compression=None)
    try:
        sender = threading.Thread(
            target=lambda: [ws.send(b"%06d" % i + b"." * (size - 6)) for i in range(count)], name="sender")
        sender.start()
        try:
            wait_until(lambda: len(server.server.connections) == 1, message="connection registered")
            (server_ws,) = list(server.server.connections)
            wait_until(lambda: len(server_ws._messages) >= 1, message="the housekeeping drain to read")
            time.sleep(1.5)  # more drain rounds: they must not read past max_queue
            queued = len(server_ws._messages)
            sender_blocked = sender.is_alive()
        finally:
            release.set()
        sender.join(GUARD * 3)
        assert not sender.is_alive()
        assert queued <= 2
        assert sender_blocked, "the sender was never blocked: no backpressure"
        received = box.get(timeout=GUARD * 3)
        assert [m[:6] for m in received] == [b"%06d" % i for i in range(count)]
        assert all(len(m) == size for m in received)
    finally:
        release.set()
        run_guarded(ws.close)


# ---------------------------------------------------------------------- ping


def test_ping_wait_returns_true_with_latency(serve: Any) -> None:
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        ping = ws.ping()
        assert ping.wait(GUARD) is True
        assert ping.done and ping.latency is not None and ping.latency >= 0
        named = ws.ping(b"payload")
        text = ws.ping("text payload")
        assert named.wait(GUARD) and text.wait(GUARD)
        assert (named.data, text.data) == (b"payload", b"text payload")
        ws.send("after pings")
        assert ws.recv(timeout=GUARD) == "after pings"


def test_server_ping_wait_returns_true(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        ws.recv()
        ping = ws.ping()
        box.put((ping.wait(GUARD), ping.latency))
        ws.send("done")
        ws.recv()

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        ws.send("go")
        assert ws.recv(timeout=GUARD) == "done"  # reading answers the server's ping
    answered, latency = box.get(timeout=GUARD)
    assert answered is True and latency is not None and latency >= 0


def test_one_pong_answers_every_earlier_ping(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        pings = [ws.ping(data) for data in (b"first", b"second", b"third")]
        later = ws.ping(b"later")
        resolved = pings[-1].wait(GUARD)
        box.put((resolved, [p.done for p in pings], later.done, [p.wait(0) for p in pings]))
        ws.recv()

    server = serve(handler)
    with RawClient(server.port) as raw:
        raw.handshake()
        received = [raw.recv_frame() for _ in range(4)]
        assert [(f.opcode, f.payload) for f in received if f is not None] == [
            (frames.OP_PING, b"first"), (frames.OP_PING, b"second"), (frames.OP_PING, b"third"),
            (frames.OP_PING, b"later")]
        raw.send_frame(frames.OP_PONG, b"third")  # only the third one is answered
        resolved, done, later_done, waited = box.get(timeout=GUARD)
        raw.send_frame(frames.OP_CLOSE, frames.encode_close(1000))
        raw.frames_until_eof()
    assert resolved is True
    assert done == [True, True, True]
    assert later_done is False
    assert waited == [True, True, True]


def test_ping_wait_false_on_timeout_and_duplicate_payload_refused() -> None:
    with FakeServer() as fake:  # never answers pings
        ws = simplews.connect(fake.url, close_timeout=0.3)
        try:
            ping = ws.ping(b"same")
            assert ping.wait(0.2) is False
            assert not ping.done and ping.latency is None
            with pytest.raises(ValueError):
                ws.ping(b"same")
            with pytest.raises(ValueError):
                ws.ping(b"x" * 126)  # control frames carry at most 125 bytes
        finally:
            ws.abort()
        assert ping.wait(1) is False  # closed: never answered


# ---------------------------------------------------------------------- keepalive


def test_keepalive_timeout_closes_with_1011_and_wakes_the_handler(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        outcome_of(ws.recv, box)

    server = serve(handler, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as raw:
        raw.handshake()  # then never answers the pings
        exc = box.get(timeout=GUARD)
        received = raw.frames_until_eof()
    assert isinstance(exc, ConnectionClosedError), exc
    assert exc.code == 1011
    assert received and received[0].opcode == frames.OP_PING
    assert received[-1].opcode == frames.OP_CLOSE
    assert frames.decode_close(received[-1].payload)[0] == 1011


def test_keepalive_pings_answered_keep_the_connection_open(serve: Any) -> None:
    # ping_timeout above the housekeeping drain interval (1 s): a client that is
    # not reading answers pings from its own housekeeping thread, once a second
    server = serve(echo, ping_interval=0.2, ping_timeout=3)
    with simplews.connect(server.url) as ws:
        time.sleep(1.5)  # several pings while nobody reads
        ws.send("still open")
        assert ws.recv(timeout=GUARD) == "still open"


def test_client_keepalive_timeout_closes_with_1011() -> None:
    with FakeServer() as fake:  # never answers pings
        ws = simplews.connect(fake.url, ping_interval=0.2, ping_timeout=0.3, close_timeout=0.3)
        try:
            with pytest.raises(ConnectionClosedError) as info:
                ws.recv(timeout=GUARD)
        finally:
            ws.abort()
    assert info.value.code == 1011


def test_busy_handler_still_answers_pings(serve: Any) -> None:
    release = threading.Event()

    def handler(ws: simplews.WebSocket) -> None:
        release.wait(GUARD)  # busy elsewhere: not reading
        for message in ws:
            ws.send(message)

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        try:
            ping = ws.ping()
            answered = ping.wait(GUARD)
            handler_was_busy = not release.is_set()
        finally:
            release.set()
        assert answered, "the server's housekeeping did not answer the ping"
        assert handler_was_busy
        ws.send("after")
        assert ws.recv(timeout=GUARD) == "after"


# ---------------------------------------------------------------------- write timeout


def test_send_to_a_peer_that_never_reads_fails_after_write_timeout(serve: Any, caplog: Any) -> None:
    caplog.set_level("INFO", logger="simplews")
    box = queue.Queue()  # type: queue.Queue
    payload = os.urandom(MiB)

    def handler(ws: simplews.WebSocket) -> None:
        try:
            for _ in range(200):  # bounded: a working timeout stops it after a few MiB
                ws.send(payload)
            box.put("everything sent")
        except ConnectionClosed as exc:
            box.put(exc)
        box.put(ws.closed)

    server = serve(handler, write_timeout=0.5)
    with RawClient(server.port, rcvbuf=16384) as raw:
        raw.handshake()
        exc = box.get(timeout=GUARD * 3)
        assert isinstance(exc, ConnectionClosedError), exc
        assert exc.code == 1006
        assert box.get(timeout=GUARD) is True
    assert "write timed out" in caplog.text


# ---------------------------------------------------------------------- compression


def test_compression_is_negotiated_by_default(serve: Any) -> None:
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        box.put(ws.response_headers.get("Sec-WebSocket-Extensions"))
        echo(ws)

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        offered = ws.request_headers.get("Sec-WebSocket-Extensions")
        accepted = ws.response_headers.get("Sec-WebSocket-Extensions")
        message = "compressible " * 60000
        ws.send(message)
        assert ws.recv(timeout=GUARD) == message
    assert offered is not None and offered.startswith("permessage-deflate")
    assert accepted is not None and accepted.startswith("permessage-deflate")
    assert box.get(timeout=GUARD) == accepted


@pytest.mark.parametrize("server_compression, client_compression", [
    (None, "default"), ("default", None), (None, None)])
def test_compression_off_on_either_side_means_no_extension(serve: Any, server_compression: Any,
                                                           client_compression: Any) -> None:
    server = serve(echo, compression=server_compression)
    with simplews.connect(server.url, compression=client_compression) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response_headers
        if client_compression is None:
            assert "Sec-WebSocket-Extensions" not in ws.request_headers
        text = "abc" * 300000
        binary = b"\x00" * 900000
        ws.send(text)
        ws.send(binary)
        assert ws.recv(timeout=GUARD) == text
        assert ws.recv(timeout=GUARD) == binary


def test_compressed_messages_round_trip_many_times(serve: Any) -> None:
    """The compression context carries over between messages; every one must still decode."""
    server = serve(echo)
    with simplews.connect(server.url) as ws:
        for i in range(50):
            message = ("message %d " % i) * (i * 50 + 1)
            ws.send(message)
            assert ws.recv(timeout=GUARD) == message
        ws.send(b"x" * 10)  # below the compression threshold
        assert ws.recv(timeout=GUARD) == b"x" * 10


def test_iteration_ends_on_close(serve: Any) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        for word in ("one", "two", "three"):
            ws.send(word)
        ws.close()

    server = serve(handler)
    with simplews.connect(server.url) as ws:
        assert list(ws) == ["one", "two", "three"]
        assert ws.closed and ws.close_code == 1000


def test_repr_and_state(serve: Any) -> None:
    server = serve(echo)
    ws = simplews.connect(server.url + "path")
    assert "OPEN" in repr(ws) and "/path" in repr(ws)
    assert ws.state is simplews.State.OPEN
    run_guarded(ws.close)
    assert ws.state is simplews.State.CLOSED and "CLOSED" in repr(ws)


# ---------------------------------------------------------------------- streaming a message


def send_on_request(ws: simplews.WebSocket) -> None:
    """Each request names what to send back: "frames N SIZE" (binary, fragmented), "text", or "whole"."""
    for request in ws:
        words = str(request).split()
        if words[0] == "frames":
            count, size = int(words[1]), int(words[2])
            ws.send(bytes((i % 256,)) * size for i in range(count))
        elif words[0] == "text":
            ws.send(iter(["snow", "man \u2603".encode("utf-8")[:5].decode("utf-8", "ignore"), " \u2603 done"]))
        else:
            ws.send("whole message")


def test_recv_streaming_yields_each_frame_without_holding_the_message(serve: Any) -> None:
    server = serve(send_on_request)
    # 40 frames of 64 KiB: 2.5 MiB in all, over the 1 MiB limit, which bounds each frame when streaming.
    with simplews.connect(server.url, max_message_size=MiB, compression=None) as ws:
        ws.send("frames 40 65536")
        pieces = list(ws.recv_streaming(timeout=GUARD))
        assert [len(piece) for piece in pieces] == [65536] * 40
        assert [piece[:1] for piece in pieces] == [bytes((i,)) for i in range(40)]
        ws.send("whole")
        assert ws.recv(timeout=GUARD) == "whole message"  # one stream, then whole messages again


def test_recv_streaming_text_and_whole_messages(serve: Any) -> None:
    server = serve(send_on_request)
    with simplews.connect(server.url) as ws:
        ws.send("text")
        pieces = list(ws.recv_streaming(timeout=GUARD))
        assert all(isinstance(piece, str) for piece in pieces)
        assert "".join(pieces) == "snowman  \u2603 done"
        ws.send("whole")
        assert list(ws.recv_streaming(timeout=GUARD)) == ["whole message"]


def test_recv_streaming_message_already_queued_comes_whole(serve: Any) -> None:
    server = serve(send_on_request)
    with simplews.connect(server.url, compression=None) as ws:
        ws.send("frames 3 10")
        ws.send("whole")
        assert ws.recv(timeout=GUARD) == b"".join(bytes((i,)) * 10 for i in range(3))
        # Each ping().wait() reads the socket until its pong: once the reply has come, it is
        # queued (the server may read "whole" and the ping together and pong before replying).
        wait_until(lambda: ws.ping().wait(GUARD) and bool(ws._messages), message="the reply, queued")
        assert list(ws._messages) == ["whole message"]
        assert list(ws.recv_streaming(timeout=GUARD)) == ["whole message"]


def test_abandoned_stream_discards_the_rest_of_its_message(serve: Any) -> None:
    server = serve(send_on_request)
    with simplews.connect(server.url, compression=None) as ws:
        ws.send("frames 5 100")
        ws.send("whole")
        stream = ws.recv_streaming(timeout=GUARD)
        assert next(stream) == b"\x00" * 100
        stream.close()  # the caller stops reading after the first piece
        assert ws.recv(timeout=GUARD) == "whole message"


def test_recv_after_an_empty_streaming_timeout_gets_the_whole_message(serve: Any) -> None:
    release = threading.Event()

    def late(ws: simplews.WebSocket) -> None:
        release.wait(GUARD)
        ws.send(iter([b"ab", b"cd", b"ef"]))
        ws.recv(timeout=GUARD)

    server = serve(late)
    with simplews.connect(server.url, compression=None) as ws:
        with pytest.raises(TimeoutError):
            next(ws.recv_streaming(timeout=0.05))  # asks for the next message as a stream, gets nothing
        release.set()
        assert ws.recv(timeout=GUARD) == b"abcdef"  # the fragments are put back together
        ws.send("bye")


def test_recv_streaming_raises_when_closed_mid_message(serve: Any) -> None:
    def half_then_close(ws: simplews.WebSocket) -> None:
        ws.recv(timeout=GUARD)
        frame = ws._proto.send_fragment(b"first half", fin=False)
        with ws._lock:
            ws._write(frame)
        ws._proto._send_opcode = 0  # test only: a close may not follow a started message otherwise
        ws.close(1011, "gave up")

    server = serve(half_then_close)
    with simplews.connect(server.url, compression=None) as ws:
        ws.send("go")
        stream = ws.recv_streaming(timeout=GUARD)
        assert next(stream) == b"first half"
        with pytest.raises(ConnectionClosedError) as info:
            next(stream)
        assert info.value.code == 1011
