"""Byte-level regression tests for the Autobahn|Testsuite findings (see compliance/).

Pure sans-I/O: frames are built by hand and fed to a Protocol; no sockets.
"""

import os
import struct
from typing import List, Optional

from simplews import frames, handshake
from simplews.exceptions import ProtocolError
from simplews.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, FrameParser
from simplews.protocol import CLIENT, SERVER, Close, ClientProtocol, Ping, Protocol, State


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """A masked frame as a client sends it, with any RSV bits (rsv=4 is RSV1, 2 RSV2, 1 RSV3)."""
    key = os.urandom(4)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    if length < 126:
        header = bytes((b0, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", b0, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", b0, 0x80 | 127, length)
    return header + key + frames.apply_mask(payload, key)


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0) -> bytes:
    """An unmasked frame as a server sends it."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    assert len(payload) < 126
    return bytes((b0, len(payload))) + payload


def parse_sent(data: bytes, masked: bool) -> List[frames.Frame]:
    """The frames in bytes a protocol wrote."""
    parser = FrameParser(expect_masked=masked, allow_rsv1=True)
    parser.feed(data)
    result = []  # type: List[frames.Frame]
    while True:
        frame = parser.next_frame()
        if frame is None:
            assert parser.buffered == 0
            return result
        result.append(frame)


def close_code_sent(proto: Protocol) -> Optional[int]:
    sent = parse_sent(proto.data_to_send(), masked=proto.side == CLIENT)
    closes = [f for f in sent if f.opcode == OP_CLOSE]
    assert len(closes) <= 1
    if not closes:
        return None
    return frames.decode_close(closes[0].payload)[0]


# ---------------------------------------------------------------------- frames sent with the handshake answer

def open_client(extra: bytes = b"") -> ClientProtocol:
    proto = ClientProtocol("example.com", 80, "/", compression=None)
    proto.connect()
    response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Accept: %s\r\n\r\n" % handshake.accept_key(proto.key)).encode("ascii")
    assert proto.receive_data(response + extra) == []
    assert proto.state is State.OPEN
    return proto


def test_client_keeps_frames_that_arrive_with_the_101_response() -> None:
    # Autobahn's /getCaseCount sends its message in the same segment as the 101.
    proto = open_client(server_frame(OP_TEXT, b"517") + server_frame(OP_CLOSE, struct.pack("!H", 1000)))
    events = proto.receive_data(b"")
    assert events[0] == "517"
    assert isinstance(events[1], Close) and events[1].code == 1000
    assert close_code_sent(proto) == 1000


def test_client_with_nothing_after_the_101_response() -> None:
    proto = open_client()
    assert proto.receive_data(b"") == []
    assert proto.receive_data(server_frame(OP_BINARY, b"\x00\x01")) == [b"\x00\x01"]


# ---------------------------------------------------------------------- messages before a bad frame (3.2, 4.1.3, 5.15)

def test_message_before_a_frame_with_rsv2_is_delivered_then_the_connection_fails() -> None:
    # Autobahn 3.2: text, then a frame with RSV2, then a ping, in one read.
    proto = Protocol(SERVER)
    data = (client_frame(OP_TEXT, b"Hello, world!") + client_frame(OP_TEXT, b"Hello, world!", rsv=2)
            + client_frame(OP_PING))
    assert proto.receive_data(data) == ["Hello, world!"]
    assert proto.failure_pending
    assert proto.state is State.OPEN
    assert proto.data_to_send() == b""  # neither a close nor the pong of the ping after the bad frame
    echo = parse_sent(proto.send_data("Hello, world!"), masked=False)
    assert [(f.opcode, f.payload) for f in echo] == [(OP_TEXT, b"Hello, world!")]
    assert proto.receive_data(b"") == []
    assert not proto.failure_pending
    assert proto.state is State.CLOSED
    assert close_code_sent(proto) == 1002
    assert isinstance(proto.failure, ProtocolError)
    assert proto.close_transport_now()


def test_message_before_a_reserved_opcode_is_delivered_then_the_connection_fails() -> None:
    # Autobahn 4.1.3
    proto = Protocol(SERVER)
    data = client_frame(OP_TEXT, b"Hello, world!") + client_frame(0x5) + client_frame(OP_PING)
    assert proto.receive_data(data) == ["Hello, world!"]
    assert proto.failure_pending
    assert proto.receive_data(b"") == []
    assert close_code_sent(proto) == 1002


def test_fragmented_message_before_an_orphan_continuation_is_delivered() -> None:
    # Autobahn 5.15: fragment1 + fragment2 (one message), then a continuation
    # frame with nothing to continue, then a text message, all in one chop.
    proto = Protocol(SERVER)
    data = (client_frame(OP_TEXT, b"fragment1", fin=False) + client_frame(OP_CONT, b"fragment2")
            + client_frame(OP_CONT, b"fragment3", fin=False) + client_frame(OP_TEXT, b"fragment4"))
    assert proto.receive_data(data) == ["fragment1fragment2"]
    assert proto.failure_pending
    assert proto.receive_data(b"") == []
    assert close_code_sent(proto) == 1002


def test_client_side_defers_the_failure_too() -> None:
    proto = open_client()
    data = server_frame(OP_BINARY, b"\xff") + server_frame(OP_TEXT, b"x", rsv=1)  # RSV1 without deflate
    assert proto.receive_data(data) == [b"\xff"]
    assert proto.failure_pending
    proto.send_data(b"\xff")
    assert proto.receive_data(b"more bytes are ignored") == []
    assert close_code_sent(proto) == 1002
    assert proto.close_transport_now()  # a failed client closes TCP itself


def test_bad_frame_first_fails_at_once() -> None:
    proto = Protocol(SERVER)
    assert proto.receive_data(client_frame(OP_TEXT, b"x", rsv=2) + client_frame(OP_TEXT, b"y")) == []
    assert not proto.failure_pending
    assert proto.state is State.CLOSED
    assert close_code_sent(proto) == 1002


def test_only_control_frames_before_a_bad_frame_fail_at_once() -> None:
    # Nothing for the application to answer: no reason to wait.
    proto = Protocol(SERVER)
    events = proto.receive_data(client_frame(OP_PING, b"p") + client_frame(0xB))
    assert len(events) == 1 and isinstance(events[0], Ping)
    assert proto.state is State.CLOSED
    sent = parse_sent(proto.data_to_send(), masked=False)
    assert [f.opcode for f in sent] == [frames.OP_PONG, OP_CLOSE]


def test_invalid_utf8_after_a_message_is_deferred_with_1007() -> None:
    proto = Protocol(SERVER)
    bad = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"  # a UTF-16 surrogate (6.3.1)
    data = client_frame(OP_TEXT, b"ok") + client_frame(OP_TEXT, bad)
    assert proto.receive_data(data) == ["ok"]
    assert proto.receive_data(b"") == []
    assert close_code_sent(proto) == 1007


def test_closing_while_a_failure_is_pending_sends_one_close() -> None:
    proto = Protocol(SERVER)
    assert proto.receive_data(client_frame(OP_TEXT, b"a") + client_frame(0x3)) == ["a"]
    first = parse_sent(proto.send_close(1000), masked=False)
    assert [f.opcode for f in first] == [OP_CLOSE]
    assert proto.state is State.CLOSING
    assert proto.receive_data(b"") == []
    assert proto.state is State.CLOSED
    assert proto.data_to_send() == b""


def test_eof_while_a_failure_is_pending_records_it() -> None:
    proto = Protocol(SERVER)
    assert proto.receive_data(client_frame(OP_TEXT, b"a") + client_frame(0x3)) == ["a"]
    proto.receive_eof()
    assert not proto.failure_pending
    assert proto.state is State.CLOSED
    assert isinstance(proto.failure, ProtocolError)
    assert proto.closed_exception().code == 1006
