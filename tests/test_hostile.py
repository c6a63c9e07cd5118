"""Hostile, malformed and broken peers against a live server (both modes) and the client.

After every attack a well-behaved client must still get a handshake and an
echo, and the server's threads and file descriptors must return to what they
were before the attack; the attacks that could make a naive implementation
allocate a lot run under :mod:`tracemalloc` with a bound proportional to
``max_message_size``. Waits are hang guards, never timing assertions.
"""

import contextlib
import logging
import os
import socket
import ssl
import struct
import threading
import tracemalloc
import zlib
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple, Type

import pytest

import simplews
from simplews import frames
from simplews.exceptions import (
    ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, InvalidStatus,
)
from simplews.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT

from _peers import GUARD, FakeServer, RawClient, assert_one_info_line, client_hello, header, wait_until

MODES = ["threaded", "selectors"]
MAX = 64 * 1024                  # max_message_size of the servers under attack
MEMORY_BOUND = 16 * MAX + (1 << 20)  # tracemalloc peak allowed during one attack
WRITE_LIMIT = 256 * 1024         # selectors mode


class Echo(simplews.WebSocketHandler):
    """Echoes; the text "flood" makes it send up to 64 MiB as fast as it can."""

    def on_message(self, ws: Any, message: Any) -> None:
        if message == "flood":
            chunk = b"x" * 65536
            try:
                for _ in range(1024):
                    ws.send(chunk)
            except ConnectionClosed:
                pass
            return
        ws.send(message)


def _open_fds() -> Set[str]:
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:
        return set()


class Target(object):
    """A server under attack, with its resting state (threads, fds) recorded at start."""

    def __init__(self, running: Any, mode: str, client_context: Optional[ssl.SSLContext] = None) -> None:
        self.client_context = client_context
        self.running = running
        self.server = running.server
        self.mode = mode
        self.port = running.port  # type: int
        self.url = running.url.replace("localhost", "127.0.0.1")  # type: str
        self.threads = set(threading.enumerate())
        self.fds = set()  # type: Set[str]
        # warm up (the accept loop's selector exists once a client was served), then record
        self.echo_works()
        wait_until(lambda: not self.server.connections and not self._extra_threads(), message="warm-up")
        self.fds = _open_fds()

    def _extra_threads(self) -> List[threading.Thread]:
        return [t for t in threading.enumerate() if t not in self.threads and t.is_alive()
                and t.name != "simplews-housekeeping"]

    def raw(self, **kwargs: Any) -> RawClient:
        return RawClient(self.port, **kwargs)

    def opened(self, **kwargs: Any) -> RawClient:
        raw = RawClient(self.port, **kwargs)
        try:
            raw.handshake()
        except BaseException:
            raw.close()
            raise
        return raw

    def echo_works(self) -> None:
        """A well-behaved client still gets a handshake and an echo."""
        ws = simplews.connect(self.url, timeout=GUARD, ping_interval=None, ssl_context=self.client_context)
        try:
            ws.send("still serving")
            assert ws.recv(timeout=GUARD) == "still serving"
            ws.send(b"\x00\xff")
            assert ws.recv(timeout=GUARD) == b"\x00\xff"
        finally:
            ws.close()

    def at_rest(self) -> None:
        """Threads and fds back to the state before the attack (a hang guard, then a failure)."""
        def resting() -> bool:
            return (not self._extra_threads() and _open_fds() <= self.fds and not self.server.connections
                    and self.server._slots == 0)  # every max_connections slot released
        try:
            wait_until(resting, message="server resting state")
        except AssertionError:
            extra_threads = [t.name for t in threading.enumerate() if t not in self.threads]
            raise AssertionError("not back to rest: threads %s, fds %s, connections %d" % (
                extra_threads, sorted(_open_fds() - self.fds), len(self.server.connections)))

    def survived(self) -> None:
        self.echo_works()
        self.at_rest()


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: Any) -> Iterator[None]:
    """No attack may make simplews log an error or a traceback (INFO lines are the norm)."""
    caplog.set_level(logging.INFO, logger="simplews")
    yield
    bad = [r.getMessage() for r in caplog.records
           if r.name == "simplews" and (r.levelno >= logging.ERROR or r.exc_info)]
    assert not bad, bad
    assert "Traceback" not in caplog.text


@pytest.fixture(params=MODES)
def target(request: Any, serve: Callable[..., Any]) -> Iterator[Callable[..., Target]]:
    """``target(**options)``: an Echo server in the parametrized mode, small limits and timeouts."""
    mode = request.param

    def start(client_context: Optional[ssl.SSLContext] = None, **options: Any) -> Target:
        settings = dict(open_timeout=1.0, close_timeout=1.0, ping_interval=None, max_message_size=MAX,
                        write_timeout=1.0)
        if mode == "selectors":
            settings["write_limit"] = WRITE_LIMIT
        settings.update(options)
        return Target(serve(Echo(), mode=mode, **settings), mode, client_context)

    yield start


@contextlib.contextmanager
def bounded_memory(bound: int = MEMORY_BOUND) -> Iterator[None]:
    """The peak of traced allocations (every thread) stays under ``bound`` bytes."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if os.environ.get("HOSTILE_PEAKS"):
        print("tracemalloc peak", peak)
    assert peak < bound, "peak %d bytes allocated during the attack (bound %d)" % (peak, bound)


def send_quietly(raw: RawClient, data: bytes) -> None:
    """Send what the server may refuse halfway (it closes as soon as it has seen enough)."""
    try:
        raw.send(data)
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False, mask: bool = True) -> bytes:
    return frames.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)


def close_code(raw: RawClient) -> Optional[int]:
    """The code of the server's close frame (None if none came), answering it; reads to EOF."""
    code = None
    while True:
        got = raw.recv_frame()
        if got is None:
            return code
        if got.opcode == OP_CLOSE and code is None:
            code = frames.decode_close(got.payload)[0] if got.payload else 1005
            send_quietly(raw, frame(OP_CLOSE, got.payload[:2]))


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# ---------------------------------------------------------------------- handshake

BAD_REQUESTS = [
    ("wrong method", lambda r: r.request_bytes(method="POST"), 405),
    ("HTTP/1.0", lambda r: r.request_bytes(version="HTTP/1.0"), 400),
    ("no Upgrade", lambda r: r.request_bytes(headers={"Upgrade": None}), 426),
    ("bad Upgrade", lambda r: r.request_bytes(headers={"Upgrade": "h2c"}), 426),
    ("no Connection", lambda r: r.request_bytes(headers={"Connection": None}), 426),
    ("bad Connection", lambda r: r.request_bytes(headers={"Connection": "keep-alive"}), 426),
    ("no Key", lambda r: r.request_bytes(headers={"Sec-WebSocket-Key": None}), 400),
    ("bad Key", lambda r: r.request_bytes(headers={"Sec-WebSocket-Key": "tooshort"}), 400),
    ("two Keys", lambda r: r.request_bytes()[:-2] + b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n", 400),
    ("no Version", lambda r: r.request_bytes(headers={"Sec-WebSocket-Version": None}), 426),
    ("bad Version", lambda r: r.request_bytes(headers={"Sec-WebSocket-Version": "8"}), 426),
    ("no Host", lambda r: r.request_bytes(headers={"Host": None}), 400),
    ("100 KB header line", lambda r: r.request_bytes(headers={"X-Big": "a" * 100000}), 431),
    ("10,000 header lines",
     lambda r: r.request_bytes()[:-2] + b"".join(b"X-%d: y\r\n" % i for i in range(10000)) + b"\r\n", 431),
    ("binary garbage", lambda r: bytes(range(256)) * 40 + b"\r\n\r\n", 400),
    ("NUL in request line", lambda r: b"GET /\x00 HTTP/1.1\r\n\r\n", 400),
]


@pytest.mark.parametrize("attack", BAD_REQUESTS, ids=[a[0] for a in BAD_REQUESTS])
def test_bad_request_is_rejected(target: Callable[..., Target], attack: Tuple[str, Any, int]) -> None:
    t = target()
    _, build, status = attack
    with t.raw() as raw:
        data = build(raw)
        with bounded_memory():
            send_quietly(raw, data)
            got, headers, _ = raw.read_head()
        assert got == status
    t.survived()


def test_slowloris_dropped_at_open_timeout(target: Callable[..., Target]) -> None:
    t = target()
    attackers = []  # type: List[socket.socket]
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", t.port), timeout=GUARD)
            attackers.append(sock)
            sock.sendall(b"GET / HTTP/1.1\r\n")
        t.echo_works()  # served while the slow ones hold their connections
        dribble = b"X-Slow: " + b"a" * 200
        open_socks = list(attackers)
        step = 0
        guard = threading.Event()
        while open_socks and step < int(GUARD / 0.1):
            for sock in list(open_socks):
                try:
                    sock.send(dribble[step % len(dribble):step % len(dribble) + 1])
                except OSError:
                    open_socks.remove(sock)
            step += 1
            guard.wait(0.1)
            if step == 3:
                t.echo_works()
        assert not open_socks, "%d slow handshakes were never dropped" % len(open_socks)
        for sock in attackers:  # dropped without an answer: EOF or reset
            try:
                assert sock.recv(1024) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in attackers:
            sock.close()
    t.survived()


def test_tls_attacks(target: Callable[..., Target]) -> None:
    """On a wss:// port: plain HTTP, garbage, a ClientHello cut by a reset, a dribbled ClientHello."""
    trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the TLS certificates")
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    t = target(client_context, ssl_context=server_context)
    assert t.url.startswith("wss://")
    hello = client_hello()
    for data in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 8):
        with t.raw() as raw:
            send_quietly(raw, data)
            try:
                while raw.sock.recv(65536):  # a TLS alert at most, then the end
                    pass
            except ConnectionResetError:
                pass
    raw = t.raw()
    raw.send(hello[:len(hello) // 2])
    reset(raw.sock)
    with t.raw() as raw:  # one byte at a time, slower than open_timeout allows
        dropped = False
        for index in range(len(hello)):
            try:
                raw.send(hello[index:index + 1])
            except OSError:
                dropped = True
                break
            threading.Event().wait(0.05)
            if index == 2:
                t.echo_works()
        if not dropped:
            try:
                dropped = raw.sock.recv(65536) == b""
            except ConnectionResetError:
                dropped = True
        assert dropped
    t.survived()


# ---------------------------------------------------------------------- framing

FRAMING = [
    ("unmasked frame", lambda: frame(OP_TEXT, b"hi", mask=False), 1002),
    ("RSV1 without extension", lambda: frame(OP_TEXT, b"hi", rsv1=True), 1002),
    ("RSV2", lambda: bytes([0x80 | 0x20 | OP_TEXT]) + frame(OP_TEXT, b"hi")[1:], 1002),
    ("RSV3", lambda: bytes([0x80 | 0x10 | OP_TEXT]) + frame(OP_TEXT, b"hi")[1:], 1002),
    ("reserved data opcode", lambda: frame(0x3, b"hi"), 1002),
    ("reserved control opcode", lambda: frame(0xB, b"hi"), 1002),
    ("oversized ping", lambda: frames.build_header(OP_PING, 126, mask_key=b"abcd") + b"p" * 126, 1002),
    ("fragmented ping", lambda: frame(OP_PING, b"p", fin=False) + frame(OP_CONT, b"q"), 1002),
    ("continuation without start", lambda: frame(OP_CONT, b"hi"), 1002),
    ("new message inside a fragmented one",
     lambda: frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
    ("64-bit length with MSB set",
     lambda: struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, (1 << 63) + 5) + b"abcd", 1002),
    ("declared 2^62-byte frame", lambda: frames.build_header(OP_BINARY, 1 << 62, mask_key=b"abcd"), 1009),
    ("frame just over max_message_size",
     lambda: frames.build_header(OP_BINARY, MAX + 1, mask_key=b"abcd") + b"x" * 1000, 1009),
    ("10,000 tiny fragments over the limit",
     lambda: frame(OP_BINARY, b"12345678", fin=False) + b"".join(
         frame(OP_CONT, b"12345678", fin=False) for _ in range(10000)), 1009),
    ("invalid UTF-8 split across fragments",
     lambda: frame(OP_TEXT, b"ok \xe2\x82", fin=False) + frame(OP_CONT, b"\x28 x"), 1007),
    ("invalid UTF-8 in a text frame", lambda: frame(OP_TEXT, b"\xff\xfe"), 1007),
    ("close code 1005", lambda: frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
    ("close code 1006", lambda: frame(OP_CLOSE, struct.pack("!H", 1006)), 1002),
    ("close code 999", lambda: frame(OP_CLOSE, struct.pack("!H", 999)), 1002),
    ("close code 5000", lambda: frame(OP_CLOSE, struct.pack("!H", 5000)), 1002),
    ("one-byte close payload", lambda: frame(OP_CLOSE, b"\x03"), 1002),
    ("invalid UTF-8 close reason", lambda: frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
]


@pytest.mark.parametrize("attack", FRAMING, ids=[a[0] for a in FRAMING])
def test_bad_frames_fail_with_the_right_code(target: Callable[..., Target], attack: Tuple[str, Any, int]
                                             ) -> None:
    t = target()
    _, build, code = attack
    data = build()
    with t.opened() as raw:
        with bounded_memory():
            send_quietly(raw, data)
            assert close_code(raw) == code
    t.survived()


def _deflated_zeros(size: int) -> bytes:
    """A raw deflate block of ``size`` zero bytes, without the 00 00 ff ff sync tail (RFC 7692)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(b"\0" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_compression_bomb(target: Callable[..., Target]) -> None:
    t = target()
    bomb = _deflated_zeros(16 << 20)  # 16 MiB of zeros in about 16 KiB
    assert len(bomb) < 32 * 1024
    with t.raw() as raw:
        response = raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        assert "permessage-deflate" in (header(response, "Sec-WebSocket-Extensions") or "")
        data = frame(OP_BINARY, bomb, rsv1=True)
        with bounded_memory():
            send_quietly(raw, data)
            assert close_code(raw) == 1009
    t.survived()


def test_fragmented_compression_bomb(target: Callable[..., Target]) -> None:
    """About a gigabyte once inflated, in 1,000 fragments of about 1 KiB each."""
    t = target()
    piece = _deflated_zeros(1 << 20)
    with t.raw() as raw:
        raw.handshake(headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        data = frame(OP_BINARY, piece, fin=False, rsv1=True) + b"".join(
            frame(OP_CONT, piece, fin=False) for _ in range(1000))
        with bounded_memory():
            send_quietly(raw, data)
            assert close_code(raw) == 1009
    t.survived()


def test_valid_utf8_split_across_fragments_is_echoed(target: Callable[..., Target]) -> None:
    t = target()
    with t.opened() as raw:
        raw.send(frame(OP_TEXT, b"caf\xc3", fin=False) + frame(OP_CONT, b"\xa9 \xe2\x82", fin=False)
                 + frame(OP_CONT, b"\xac"))
        got = raw.recv_frame()
        assert got is not None and got.opcode == OP_TEXT and got.payload == "café €".encode("utf-8")
        raw.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
        assert close_code(raw) == 1000
    t.survived()


def test_message_of_exactly_max_message_size_is_accepted(target: Callable[..., Target]) -> None:
    t = target()
    with t.opened() as raw:
        payload = os.urandom(MAX)
        raw.send(frame(OP_BINARY, payload[:1000], fin=False) + frame(OP_CONT, payload[1000:]))
        got = raw.recv_frame()
        assert got is not None and got.opcode == OP_BINARY and got.payload == payload
        raw.send(frame(OP_BINARY, payload + b"!"))
        assert close_code(raw) == 1009
    t.survived()


# ---------------------------------------------------------------------- transport

def test_reset_mid_handshake(target: Callable[..., Target]) -> None:
    t = target()
    for cut in (0, 10, 60):
        raw = t.raw()
        raw.send(raw.request_bytes()[:cut])
        reset(raw.sock)
    t.survived()


def test_reset_mid_frame(target: Callable[..., Target]) -> None:
    t = target()
    raw = t.opened()
    raw.send(frame(OP_BINARY, b"x" * 1000)[:500])
    reset(raw.sock)
    t.survived()


def test_vanished_peer_detected_by_keepalive(target: Callable[..., Target]) -> None:
    """A peer that stops answering (a cable pulled) is closed with 1011 by the keepalive."""
    t = target(ping_interval=0.3, ping_timeout=0.3)
    with t.opened() as raw:
        wait_until(lambda: len(t.server.connections) == 1, message="connection registered")
        # never answer: the pings pile up unread until the keepalive gives up
        wait_until(lambda: not t.server.connections, message="keepalive closing a silent peer")
        pings = []
        code = None
        while True:
            got = raw.recv_frame()
            if got is None:
                break
            if got.opcode == OP_PING:
                pings.append(got)
            elif got.opcode == OP_CLOSE:
                code = frames.decode_close(got.payload)[0]
        assert pings and code == 1011
    t.survived()


def test_peer_that_never_reads(target: Callable[..., Target]) -> None:
    """Threaded: send gives up after write_timeout; selectors: 1008 at write_limit. Memory stays bounded."""
    t = target()
    with t.opened(rcvbuf=4096) as raw:
        wait_until(lambda: len(t.server.connections) == 1, message="connection registered")
        with bounded_memory(WRITE_LIMIT + MEMORY_BOUND):
            raw.send(frame(OP_TEXT, b"flood"))
            wait_until(lambda: not t.server.connections, message="the non-reading peer dropped")
    t.survived()


def test_ping_flood_without_reading_pongs(target: Callable[..., Target]) -> None:
    t = target()
    raw = t.opened(rcvbuf=4096)
    try:
        raw.sock.settimeout(1.0)
        ping = frame(OP_PING, b"p" * 125)
        with bounded_memory(WRITE_LIMIT + MEMORY_BOUND):
            for _ in range(20000):
                try:
                    raw.send(ping)
                except (socket.timeout, OSError):
                    break  # the server stopped reading us (backpressure) or dropped us
            t.echo_works()  # everyone else is served meanwhile
    finally:
        reset(raw.sock)
    t.survived()


@pytest.mark.slow
def test_many_sequential_connections(target: Callable[..., Target]) -> None:
    t = target()
    for index in range(2000):
        with t.opened() as raw:
            if index % 2:
                raw.send(frame(OP_CLOSE, struct.pack("!H", 1000)))
                assert close_code(raw) == 1000
    t.survived()


@pytest.mark.slow
def test_many_simultaneous_abrupt_disconnects(target: Callable[..., Target]) -> None:
    t = target()
    raws = []  # type: List[RawClient]
    try:
        for _ in range(300):
            raws.append(t.opened())
        wait_until(lambda: len(t.server.connections) == 300, message="300 connections open")
    finally:
        for raw in raws:
            reset(raw.sock)
    wait_until(lambda: not t.server.connections, timeout=GUARD * 3, message="300 connections gone")
    t.survived()


# ---------------------------------------------------------------------- connection limits

def _refused(t: Target, caplog: Any) -> None:
    with t.raw() as raw:
        raw.send(raw.request_bytes())
        status, headers, body = raw.read_response()
        assert status == 503
        assert header(headers, "Retry-After") == "5"
        assert b"Too many connections" in body
        wait_until(lambda: any("503" in r.getMessage() for r in caplog.records), message="log line")
        assert_one_info_line(caplog, raw.local_port, "answering 503")


def _connect_eventually(url: str) -> simplews.WebSocket:
    """Slots are released right after a connection ends: retry a 503 for a moment."""
    result = []  # type: List[simplews.WebSocket]

    def attempt() -> bool:
        try:
            result.append(simplews.connect(url, timeout=GUARD, ping_interval=None))
        except InvalidHandshake:
            return False
        return True
    wait_until(attempt, message="a free slot")
    return result[0]


def test_max_connections(target: Callable[..., Target], caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    t = target(max_connections=2)
    first = simplews.connect(t.url, timeout=GUARD, ping_interval=None)
    second = simplews.connect(t.url, timeout=GUARD, ping_interval=None)
    try:
        caplog.clear()
        _refused(t, caplog)
        with pytest.raises(InvalidStatus) as info:  # what a simplews client sees
            simplews.connect(t.url, timeout=GUARD, ping_interval=None)
        assert info.value.status == 503
        assert header(info.value.headers, "Retry-After") == "5"
        for ws in (first, second):  # established connections are unaffected
            ws.send("here")
            assert ws.recv(timeout=GUARD) == "here"
        first.close()
        third = _connect_eventually(t.url)  # the slot was released
        third.send("third")
        assert third.recv(timeout=GUARD) == "third"
        third.close()
    finally:
        first.close()
        second.close()
    wait_until(lambda: not t.server.connections, message="connections closed")
    t.survived()
    assert not t.server._slots_per_ip


def test_max_connections_per_ip(target: Callable[..., Target], caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    t = target(max_connections_per_ip=1)
    first = simplews.connect(t.url, timeout=GUARD, ping_interval=None)
    try:
        caplog.clear()
        _refused(t, caplog)
        other = socket.socket()  # another loopback address is another client
        try:
            other.settimeout(GUARD)
            try:
                other.bind(("127.0.0.2", 0))
            except OSError:
                pytest.skip("127.0.0.2 is not a loopback address here")
            other.connect(("127.0.0.1", t.port))
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            assert other.recv(12) == b"HTTP/1.1 101"
        finally:
            other.close()
        first.close()
        _connect_eventually(t.url).close()
    finally:
        first.close()
    wait_until(lambda: not t.server.connections, message="connections closed")
    t.survived()


def test_handshakes_in_progress_are_capped(target: Callable[..., Target]) -> None:
    """At most max(max_connections, 64) handshakes at once: the connections past it are closed at accept."""
    t = target(max_connections=1, open_timeout=GUARD * 3)
    idle = []  # type: List[socket.socket]
    try:
        for _ in range(70):
            idle.append(socket.create_connection(("127.0.0.1", t.port), timeout=GUARD))

        def dropped() -> int:
            count = 0
            for sock in idle:
                sock.setblocking(False)
                try:
                    if sock.recv(1) == b"":
                        count += 1
                except BlockingIOError:
                    pass
                except ConnectionResetError:
                    count += 1
            return count
        wait_until(lambda: dropped() >= 6, message="connections past the cap closed")
        assert dropped() == 6  # the 64 others wait for their request (up to open_timeout)
    finally:
        for sock in idle:
            sock.close()
    t.survived()


def test_rejected_handshakes_take_no_slot(target: Callable[..., Target]) -> None:
    t = target(max_connections=1)
    for _ in range(5):
        with t.raw() as raw:
            raw.send(raw.request_bytes(headers={"Sec-WebSocket-Version": "8"}))
            assert raw.read_head()[0] == 426
    t.survived()  # the one slot is still free


def test_max_connections_validation() -> None:
    bads = [0, -1, 1.5, True, "10"]  # type: List[Any]
    for bad in bads:
        with pytest.raises(ValueError):
            simplews.SimpleWSServer(Echo(), port=0, max_connections=bad)
        with pytest.raises(ValueError):
            simplews.SimpleWSServer(Echo(), port=0, mode="selectors", max_connections_per_ip=bad)


def test_default_max_connections() -> None:
    for mode, expected in (("threaded", 512), ("selectors", 10000)):
        server = simplews.SimpleWSServer(Echo(), port=0, mode=mode)
        try:
            assert server.max_connections == expected
            assert server.max_connections_per_ip is None
        finally:
            server.server_close()


# ---------------------------------------------------------------------- graceful shutdown

BURST = 128  # messages of 64 KiB: 8 MiB, more than the socket buffers hold


class Burst(simplews.WebSocketHandler):
    """On any message, sends BURST messages of 64 KiB and counts the sends that returned."""

    def __init__(self) -> None:
        self.returned = 0
        self.buffered = 0
        self.done = threading.Event()

    def on_message(self, ws: Any, message: Any) -> None:
        try:
            for index in range(BURST):
                ws.send(bytes([index]) * 65536)
                self.returned += 1
        except ConnectionClosed:
            pass
        finally:
            self.buffered = getattr(ws, "buffered_amount", 0)
            self.done.set()


@pytest.mark.parametrize("mode", MODES)
def test_shutdown_flushes_what_send_accepted_before_1001(serve: Callable[..., Any], mode: str) -> None:
    """Every message whose send() returned reaches the peer before the 1001 close frame."""
    handler = Burst()
    options = {"write_limit": 64 << 20} if mode == "selectors" else {}
    running = serve(handler, mode=mode, ping_interval=None, close_timeout=GUARD, **options)
    raw = RawClient(running.port, rcvbuf=4096)
    try:
        raw.handshake()
        raw.send(frame(OP_TEXT, b"go"))
        if mode == "selectors":
            assert handler.done.wait(GUARD)  # all queued, the socket full: shutdown must flush them
            assert handler.buffered > 0
        else:
            wait_until(lambda: handler.returned >= 1, message="first send")  # the rest block in send
        stopper = threading.Thread(target=running.server.shutdown, name="test-shutdown")
        stopper.start()
        try:
            received = []  # type: List[bytes]
            code = None
            while True:
                got = raw.recv_frame()
                if got is None:
                    break
                if got.opcode == OP_BINARY:
                    assert code is None, "data after the close frame"
                    received.append(got.payload)
                elif got.opcode == OP_CLOSE:
                    code = frames.decode_close(got.payload)[0]
                    raw.send(frame(OP_CLOSE, got.payload[:2]))
        finally:
            stopper.join(GUARD * 2)
        assert not stopper.is_alive()
        assert handler.done.wait(GUARD)
        assert code == 1001
        assert len(received) >= handler.returned
        if mode == "selectors":
            assert handler.returned == BURST
        assert received == [bytes([index]) * 65536 for index in range(len(received))]
    finally:
        raw.close()


# ---------------------------------------------------------------------- malicious servers

def _client_recv_fails(after_head: bytes, exc_type: Type[ConnectionClosed], code: int) -> None:
    with FakeServer(after_head=after_head) as fake:
        ws = simplews.connect(fake.url, timeout=GUARD, ping_interval=None, close_timeout=1, max_message_size=MAX)
        try:
            with bounded_memory():
                with pytest.raises(exc_type) as info:
                    ws.recv(timeout=GUARD)
            assert info.value.code == code  # type: ignore[attr-defined]
            assert ws.close_code == code
            wait_until(lambda: ws._sock_closed, message="client socket released")
        finally:
            ws.close()


def test_client_rejects_masked_frames() -> None:
    _client_recv_fails(frame(OP_TEXT, b"hi", mask=True), ConnectionClosedError, 1002)


def test_client_rejects_huge_declared_length() -> None:
    _client_recv_fails(frames.build_header(OP_BINARY, 1 << 62), ConnectionClosedError, 1009)


def test_client_rejects_invalid_utf8() -> None:
    _client_recv_fails(frame(OP_TEXT, b"\xc3\x28", mask=False), ConnectionClosedError, 1007)


def test_client_rejects_reserved_opcode() -> None:
    _client_recv_fails(frame(0x7, b"", mask=False), ConnectionClosedError, 1002)


def test_client_survives_close_without_tcp_close() -> None:
    """The server sends its close frame but never closes TCP: the client gives up after close_timeout."""
    _client_recv_fails(frame(OP_CLOSE, frames.encode_close(1000, "bye"), mask=False), ConnectionClosedOK, 1000)


def test_client_rejects_wrong_accept() -> None:
    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n")
        fake.stopping.wait(GUARD)

    fake = FakeServer(answer=False, script=answer)
    with fake:
        with pytest.raises(InvalidHandshake) as info:
            simplews.connect(fake.url, timeout=GUARD, ping_interval=None)
        assert "Accept" in str(info.value)


def test_client_times_out_on_silent_server() -> None:
    with FakeServer(answer=False) as fake:
        with pytest.raises(TimeoutError):
            simplews.connect(fake.url, timeout=1, ping_interval=None)


def test_client_rejects_endless_response_head() -> None:
    def answer(conn: socket.socket) -> None:
        try:
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
            for _ in range(20000):
                conn.sendall(b"X-Filler: " + b"a" * 100 + b"\r\n")
        except OSError:
            pass

    with FakeServer(answer=False, script=answer) as fake:
        with bounded_memory():
            with pytest.raises(InvalidHandshake):
                simplews.connect(fake.url, timeout=GUARD, ping_interval=None)
