"""Property tests of the sans-I/O receive path: random and mutated byte streams.

Whatever arrives, :meth:`Protocol.receive_data` never raises (protocol errors
become :attr:`Protocol.failure` and a queued close frame), the events do not
depend on how the stream was split into reads, and between reads the parser
never holds more than one frame within the message budget (plus its header).

Deterministic: ``derandomize=True`` and no example database.
"""

import os
import zlib
from typing import Any, List, Optional, Tuple

from hypothesis import HealthCheck, given, settings, strategies as st

from simplews import frames
from simplews.deflate import PerMessageDeflate
from simplews.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from simplews.protocol import CLIENT, SERVER, Close, Ping, Pong, Protocol, ServerProtocol, State, _wire_limit

MAX = 512  # small, so that random streams cross it
HEADER_SLACK = 14  # the largest frame header (2 + 8 + 4)

# FUZZ_EXAMPLES=5000 runs a longer, randomized exploration (not deterministic)
FUZZ = settings(derandomize=not os.environ.get("FUZZ_EXAMPLES"), database=None, deadline=None,
                max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OPCODES = [OP_TEXT, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_CLOSE, 0x3, 0xB]


def make_protocol(side: str, deflate: bool) -> Protocol:
    codec = PerMessageDeflate(side == SERVER, False, False, 15, 15) if deflate else None
    return Protocol(side, max_message_size=MAX, deflate=codec)


def normalize(event: Any) -> Tuple[Any, ...]:
    if isinstance(event, (str, bytes)):
        return ("data", event)
    if isinstance(event, Ping):
        return ("ping", event.data)
    if isinstance(event, Pong):
        return ("pong", event.data)
    assert isinstance(event, Close), event
    return ("close", event.code, event.reason)


def run(side: str, deflate: bool, chunks: List[bytes]) -> Tuple[Any, ...]:
    """Feed ``chunks`` one read at a time, checking the invariants; the outcome."""
    proto = make_protocol(side, deflate)
    events = []  # type: List[Tuple[Any, ...]]
    for chunk in chunks:
        for event in proto.receive_data(chunk):
            events.append(normalize(event))
        while proto.failure_pending:  # what the I/O layer does before reading again
            for event in proto.receive_data(b""):
                events.append(normalize(event))
        check_buffer_bound(proto)
        proto.data_to_send()
    if proto.failure is not None:
        assert proto.state is State.CLOSED
        assert proto.close_sent is not None or proto.close_rcvd is not None
    close_sent = proto.close_sent[0] if proto.close_sent is not None else None
    return tuple(events), close_sent, proto.close_rcvd, proto.state, type(proto.failure)


def check_buffer_bound(proto: Protocol) -> None:
    """While the connection is alive, at most one partial frame within the budget is buffered."""
    if proto.state is State.CLOSED or proto.failure_pending:
        return
    budget = MAX - proto._msg_size
    if proto.deflate is not None:
        budget = _wire_limit(budget)
    budget = max(budget, frames.MAX_CONTROL_PAYLOAD)
    assert proto._parser.buffered <= budget + HEADER_SLACK, (proto._parser.buffered, budget)
    assert proto._msg_size <= MAX


def split(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted(set(min(cut, len(data)) for cut in cuts))
    chunks = []
    start = 0
    for point in points:
        chunks.append(data[start:point])
        start = point
    chunks.append(data[start:])
    return [chunk for chunk in chunks if chunk] or [b""]


def check_stream(side: str, deflate: bool, data: bytes, cuts: List[int]) -> None:
    whole = run(side, deflate, [data])
    assert run(side, deflate, split(data, cuts)) == whole
    if len(data) <= 400:
        assert run(side, deflate, [data[i:i + 1] for i in range(len(data))] or [b""]) == whole


# ---------------------------------------------------------------------- strategies

frame_specs = st.lists(
    st.tuples(
        st.sampled_from(OPCODES),
        st.one_of(st.binary(max_size=40), st.binary(min_size=100, max_size=700),
                  st.sampled_from([b"\xe2\x82", b"\xac", "h\u00e9llo \u20ac".encode("utf-8"), b"\xff",
                                   b"\x03\xe8", b"\x03\xe8ok", b"\x03\xed", b"\x0f\xa0\xc3"])),
        st.booleans(),   # fin
        st.booleans(),   # rsv1 (compressed) when deflate is on
        st.integers(0, 19),  # 0: wrong masking for the side
    ),
    max_size=8,
)

mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]), st.integers(0, 10000), st.integers(0, 255)),
    max_size=4,
)

cuts = st.lists(st.integers(0, 10000), max_size=12)


def build_stream(side: str, deflate: bool, specs: List[Tuple[int, bytes, bool, bool, int]]) -> bytes:
    """Frames as the peer of ``side`` would send them (mostly well-formed)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = []
    for opcode, payload, fin, rsv1, masking in specs:
        compressed = deflate and rsv1 and opcode in (OP_TEXT, OP_BINARY, OP_CONT)
        if compressed:
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if fin:
                payload = payload[:-4]
        if opcode in (OP_PING, OP_PONG, OP_CLOSE):
            payload = payload[:125]
        mask = (side == SERVER) != (masking == 0)
        first = opcode != OP_CONT and compressed
        out.append(frames.build_frame(opcode, payload, fin=fin, rsv1=first, mask=mask))
    return b"".join(out)


message_specs = st.lists(
    st.one_of(
        st.tuples(st.just(OP_TEXT), st.text(max_size=200).map(lambda text: text.encode("utf-8")),
                  st.integers(1, 4),  # fragments
                  st.booleans()),     # compressed (when deflate is on)
        st.tuples(st.just(OP_BINARY), st.binary(max_size=MAX + 50), st.integers(1, 4), st.booleans()),
        st.tuples(st.sampled_from([OP_PING, OP_PONG]), st.binary(max_size=125), st.just(1), st.just(False)),
    ),
    max_size=6,
).map(lambda items: items + [(OP_CLOSE, frames.encode_close(1000, "bye"), 1, False)])


def build_messages(side: str, deflate: bool, specs: List[Tuple[int, bytes, int, bool]]) -> bytes:
    """A well-formed stream of messages (fragmented, compressed, interleaved with pings), then a close."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    mask = side == SERVER
    out = []
    for opcode, payload, parts, compress in specs:
        if opcode in (OP_PING, OP_PONG, OP_CLOSE):
            out.append(frames.build_frame(opcode, payload, mask=mask))
            continue
        compress = compress and deflate
        if compress:
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = payload[:-4]
        size = -(-len(payload) // parts) if payload else 1
        pieces = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
        for index, piece in enumerate(pieces):
            out.append(frames.build_frame(opcode if index == 0 else OP_CONT, piece,
                                          fin=index == len(pieces) - 1, rsv1=compress and index == 0,
                                          mask=mask))
            if index == 0 and len(pieces) > 1:
                out.append(frames.build_frame(OP_PING, b"mid", mask=mask))
    return b"".join(out)


def mutate(data: bytes, changes: List[Tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, position, value in changes:
        if not buf and kind != "insert":
            continue
        index = position % (len(buf) + (1 if kind == "insert" else 0))
        if kind == "flip":
            buf[index] ^= 1 << (value % 8)
        elif kind == "set":
            buf[index] = value
        elif kind == "insert":
            buf.insert(index, value)
        else:
            del buf[index]
    return bytes(buf)


# ---------------------------------------------------------------------- properties

@FUZZ
@given(side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans(), data=st.binary(max_size=2000), cuts=cuts)
def test_random_bytes(side: str, deflate: bool, data: bytes, cuts: List[int]) -> None:
    check_stream(side, deflate, data, cuts)


@FUZZ
@given(side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans(), specs=frame_specs, changes=mutations,
       cuts=cuts)
def test_mutated_frame_streams(side: str, deflate: bool, specs: Any, changes: Any, cuts: List[int]) -> None:
    check_stream(side, deflate, mutate(build_stream(side, deflate, specs), changes), cuts)


@FUZZ
@given(side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans(), specs=frame_specs, cuts=cuts)
def test_valid_frame_streams(side: str, deflate: bool, specs: Any, cuts: List[int]) -> None:
    check_stream(side, deflate, build_stream(side, deflate, specs), cuts)


@FUZZ
@given(side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans(), specs=message_specs, changes=mutations,
       cuts=cuts)
def test_mutated_message_streams(side: str, deflate: bool, specs: Any, changes: Any, cuts: List[int]) -> None:
    check_stream(side, deflate, mutate(build_messages(side, deflate, specs), changes), cuts)


@FUZZ
@given(side=st.sampled_from([SERVER, CLIENT]), deflate=st.booleans(), specs=message_specs, cuts=cuts)
def test_valid_message_streams(side: str, deflate: bool, specs: Any, cuts: List[int]) -> None:
    """Well-formed streams: every message arrives, whatever the split, and the close is answered."""
    data = build_messages(side, deflate, specs)
    check_stream(side, deflate, data, cuts)
    events, close_sent, close_rcvd, state, failure = run(side, deflate, [data])
    expected = [("data", payload.decode("utf-8") if opcode == OP_TEXT else payload)
                for opcode, payload, _, _ in specs if opcode in (OP_TEXT, OP_BINARY) and len(payload) <= MAX]
    got = [event for event in events if event[0] == "data"]
    too_big = any(opcode in (OP_TEXT, OP_BINARY) and len(payload) > MAX for opcode, payload, _, _ in specs)
    if too_big:
        assert close_sent == 1009 and got == expected[:len(got)]
    else:
        assert failure is type(None) and got == expected and close_rcvd == (1000, "bye")


@FUZZ
@given(head=st.binary(max_size=300), data=st.binary(max_size=300), cuts=cuts)
def test_server_handshake_bytes(head: bytes, data: bytes, cuts: List[int]) -> None:
    """The HTTP side of ServerProtocol: garbage or a valid request, split anywhere, never raises."""
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    for stream in (head + data, request + data, request[:len(head)] + head):
        outcomes = []
        for chunks in ([stream], split(stream, cuts)):
            proto = ServerProtocol(max_message_size=MAX)
            for chunk in chunks:
                assert proto.receive_data(chunk) == []
            outcome = (proto.request is not None, type(proto.handshake_exc))  # type: Tuple[Any, ...]
            if proto.request is not None:
                proto.accept()
                assert proto.state in (State.OPEN, State.CLOSED)
            outcomes.append(outcome)
        assert outcomes[0] == outcomes[1]


def test_compressed_bomb_is_bounded() -> None:
    """A deflate bomb in one frame: PayloadTooBig while inflating, never more than the budget."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\0" * (8 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    proto = Protocol(SERVER, max_message_size=1 << 20,
                     deflate=PerMessageDeflate(True, False, False, 15, 15))
    assert proto.receive_data(frames.build_frame(OP_BINARY, bomb, rsv1=True, mask=True)) == []
    assert proto.close_sent is not None and proto.close_sent[0] == 1009
    assert proto.state is State.CLOSED


def _close_code(proto: Protocol) -> Optional[int]:
    return proto.close_sent[0] if proto.close_sent is not None else None


def test_split_invalid_utf8_fails_early() -> None:
    """Invalid UTF-8 in a text frame still arriving fails at once (1007), not at its end."""
    proto = Protocol(SERVER, max_message_size=MAX)
    data = frames.build_frame(OP_TEXT, b"ok\xff" + b"a" * 300, mask=True)
    proto.receive_data(data[:20])
    assert _close_code(proto) == 1007
