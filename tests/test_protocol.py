"""Tests for simplews.protocol: the RFC 6455 connection state machine, bytes in, events out."""

import struct
from typing import Any, List, Optional, Tuple

import pytest

from simplews import handshake, http11
from simplews.exceptions import (
    ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, InvalidStatus,
    PayloadTooBig, ProtocolError,
)
from simplews.frames import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Frame, FrameParser, build_frame,
    decode_close, encode_close,
)
from simplews.protocol import (
    CLIENT, SERVER, ClientProtocol, Close, Fragment, Ping, Pong, Protocol, ServerProtocol, State,
)

SIDES = [SERVER, CLIENT]


# ---------------------------------------------------------------------------- helpers


def peer_frame(side: str, opcode: int, payload: bytes = b"", fin: bool = True, rsv1: bool = False) -> bytes:
    """A frame as the peer of ``side`` sends it: masked when it goes to a server."""
    return build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=side == SERVER)


def peer_close(side: str, code: int = 1000, reason: str = "") -> bytes:
    return peer_frame(side, OP_CLOSE, encode_close(code, reason))


def sent_frames(side: str, data: bytes) -> List[Frame]:
    """Parse what ``side`` wrote; this also checks it masked (client) or did not (server)."""
    parser = FrameParser(expect_masked=side == CLIENT)
    parser.feed(data)
    out = []
    while True:
        frame = parser.next_frame()
        if frame is None:
            break
        out.append(frame)
    assert parser.buffered == 0
    return out


def sent_close(side: str, proto: Protocol) -> Tuple[int, str]:
    """The single close frame ``proto`` queued; returns (code, reason)."""
    out = sent_frames(side, proto.data_to_send())
    assert [f.opcode for f in out] == [OP_CLOSE]
    return decode_close(out[0].payload)


def assert_failed(side: str, proto: Protocol, code: int) -> None:
    assert proto.state is State.CLOSED
    assert isinstance(proto.failure, ProtocolError)
    assert proto.failure.code == code
    assert sent_close(side, proto)[0] == code
    assert proto.close_transport_now()
    exc = proto.closed_exception()
    assert isinstance(exc, ConnectionClosedError)
    assert exc.__cause__ is proto.failure


@pytest.fixture(params=SIDES)
def side(request: Any) -> str:
    return request.param  # type: ignore[no-any-return]


def make(side: str, **kwargs: Any) -> Protocol:
    return Protocol(side, **kwargs)


# ---------------------------------------------------------------------------- data messages


class TestMessages:
    def test_bad_side(self) -> None:
        with pytest.raises(ValueError):
            Protocol("both")

    def test_text_and_binary(self, side: str) -> None:
        proto = make(side)
        assert proto.state is State.OPEN
        events = proto.receive_data(peer_frame(side, OP_TEXT, "héllo €".encode("utf-8"))
                                    + peer_frame(side, OP_BINARY, b"\x00\xff\x01"))
        assert events == ["héllo €", b"\x00\xff\x01"]
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"")) == [""]
        assert proto.receive_data(peer_frame(side, OP_BINARY, b"")) == [b""]
        assert proto.data_to_send() == b""

    def test_send_data(self, side: str) -> None:
        proto = make(side)
        data = proto.send_data("ça va") + proto.send_data(b"\x01\x02") + proto.send_data(bytearray(b"ba"))
        assert sent_frames(side, data) == [Frame(OP_TEXT, "ça va".encode("utf-8")),
                                           Frame(OP_BINARY, b"\x01\x02"), Frame(OP_BINARY, b"ba")]
        with pytest.raises(TypeError):
            proto.send_data(42)  # type: ignore[arg-type]

    def test_message_split_anywhere(self, side: str) -> None:
        proto = make(side)
        wire = (peer_frame(side, OP_TEXT, "κόσμε".encode("utf-8"), fin=False)
                + peer_frame(side, OP_PING, b"hi")
                + peer_frame(side, OP_CONT, b" and more"))
        events = []  # type: List[Any]
        for i in range(len(wire)):
            events.extend(proto.receive_data(wire[i:i + 1]))
        assert proto.failure is None
        assert len(events) == 2
        assert isinstance(events[0], Ping) and events[0].data == b"hi"
        assert events[1] == "κόσμε and more"


class TestFragmentation:
    def test_fragments_with_interleaved_ping(self, side: str) -> None:
        proto = make(side)
        events = proto.receive_data(peer_frame(side, OP_TEXT, b"Hel", fin=False))
        assert events == []
        events = proto.receive_data(peer_frame(side, OP_PING, b"are you there"))
        assert len(events) == 1 and isinstance(events[0], Ping)
        assert events[0].data == b"are you there"
        # the pong is already queued, masked when we are the client
        assert sent_frames(side, proto.data_to_send()) == [Frame(OP_PONG, b"are you there")]
        assert proto.receive_data(peer_frame(side, OP_CONT, b"l", fin=False)) == []
        assert proto.receive_data(peer_frame(side, OP_CONT, b"o")) == ["Hello"]

    def test_binary_fragments(self, side: str) -> None:
        proto = make(side)
        wire = b"".join(peer_frame(side, OP_BINARY if i == 0 else OP_CONT, bytes([i]) * 3, fin=i == 4)
                        for i in range(5))
        assert proto.receive_data(wire) == [b"\x00\x00\x00\x01\x01\x01\x02\x02\x02\x03\x03\x03\x04\x04\x04"]

    def test_empty_fragments(self, side: str) -> None:
        proto = make(side)
        wire = (peer_frame(side, OP_TEXT, b"", fin=False) + peer_frame(side, OP_CONT, b"", fin=False)
                + peer_frame(side, OP_CONT, b""))
        assert proto.receive_data(wire) == [""]

    def test_pong_event(self, side: str) -> None:
        proto = make(side)
        events = proto.receive_data(peer_frame(side, OP_PONG, b"x"))
        assert len(events) == 1 and isinstance(events[0], Pong) and events[0].data == b"x"
        assert proto.data_to_send() == b""

    def test_continuation_without_start(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_CONT, b"orphan")) == []
        assert_failed(side, proto, 1002)

    def test_new_message_inside_fragmented_one(self, side: str) -> None:
        proto = make(side)
        wire = peer_frame(side, OP_TEXT, b"a", fin=False) + peer_frame(side, OP_BINARY, b"b")
        assert proto.receive_data(wire) == []
        assert_failed(side, proto, 1002)

    def test_events_before_failure_are_returned(self, side: str) -> None:
        proto = make(side)
        wire = peer_frame(side, OP_TEXT, b"fine") + peer_frame(side, OP_CONT, b"bad") + peer_frame(side, OP_TEXT, b"x")
        assert proto.receive_data(wire) == ["fine"]
        # the error is reported on the next call, once "fine" has been handed over
        assert proto.failure_pending
        assert proto.state is State.OPEN
        assert proto.receive_data(b"") == []
        assert not proto.failure_pending
        assert_failed(side, proto, 1002)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"more")) == []

    def test_failure_before_any_message_is_immediate(self, side: str) -> None:
        proto = make(side)
        wire = peer_frame(side, OP_PING, b"p") + peer_frame(side, OP_CONT, b"bad")
        events = proto.receive_data(wire)
        assert len(events) == 1 and isinstance(events[0], Ping)
        assert not proto.failure_pending
        assert proto.failure is not None and proto.state is State.CLOSED
        out = sent_frames(side, proto.data_to_send())
        assert [f.opcode for f in out] == [OP_PONG, OP_CLOSE]

    def test_deferred_failure_then_eof(self, side: str) -> None:
        proto = make(side)
        proto.receive_data(peer_frame(side, OP_TEXT, b"fine") + peer_frame(side, OP_CONT, b"bad"))
        assert proto.failure_pending
        proto.receive_eof()
        assert proto.state is State.CLOSED and not proto.failure_pending
        assert isinstance(proto.failure, ProtocolError)
        assert isinstance(proto.closed_exception(), ConnectionClosedError)

    def test_rsv1_without_extension(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"x", rsv1=True)) == []
        assert_failed(side, proto, 1002)

    @pytest.mark.parametrize("wire", [
        b"\x83\x00",            # reserved opcode
        b"\xa1\x00",            # RSV2
        b"\x09\x00",            # fragmented ping
        b"\x89\x7e\x00\x7e",    # ping over 125 bytes
    ])
    def test_frame_errors_fail_the_connection(self, side: str, wire: bytes) -> None:
        proto = make(side)
        if side == SERVER:  # keep the header valid except for the tested rule
            wire = bytes((wire[0], wire[1] | 0x80)) + wire[2:] + b"\x00\x00\x00\x00"
        assert proto.receive_data(wire) == []
        assert_failed(side, proto, 1002)

    def test_wrong_masking(self, side: str) -> None:
        proto = make(side)
        wrong = build_frame(OP_TEXT, b"hi", mask=side == CLIENT)
        assert proto.receive_data(wrong) == []
        assert_failed(side, proto, 1002)


# ---------------------------------------------------------------------------- UTF-8


class TestUTF8:
    def test_invalid_in_single_frame(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"caf\xc3")) == []
        assert_failed(side, proto, 1007)

    @pytest.mark.parametrize("bad", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xce"])
    def test_invalid_sequences(self, side: str, bad: bytes) -> None:
        proto = make(side)
        proto.receive_data(peer_frame(side, OP_TEXT, b"ok " + bad))
        assert_failed(side, proto, 1007)

    def test_binary_is_not_checked(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_BINARY, b"\xff\xfe")) == [b"\xff\xfe"]

    def test_valid_when_split_inside_a_character(self, side: str) -> None:
        text = "κόσμε €𝄞"
        data = text.encode("utf-8")
        for cut in range(len(data) + 1):
            proto = make(side)
            wire = peer_frame(side, OP_TEXT, data[:cut], fin=False) + peer_frame(side, OP_CONT, data[cut:])
            assert proto.receive_data(wire) == [text], cut
            assert proto.failure is None

    def test_valid_over_many_one_byte_fragments(self, side: str) -> None:
        data = "𝄞€é".encode("utf-8")
        proto = make(side)
        events = []  # type: List[Any]
        for i, byte in enumerate(data):
            opcode = OP_TEXT if i == 0 else OP_CONT
            events.extend(proto.receive_data(peer_frame(side, opcode, bytes([byte]), fin=i == len(data) - 1)))
        assert events == ["𝄞€é"]

    def test_invalid_split_across_fragments(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"ab\xce", fin=False)) == []
        assert proto.failure is None  # an incomplete character may continue in the next fragment
        assert proto.receive_data(peer_frame(side, OP_CONT, b"A")) == []
        assert_failed(side, proto, 1007)

    def test_fails_on_first_fragment_with_the_bad_byte(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"good ", fin=False)) == []
        assert proto.failure is None
        # the message is not finished, yet the connection fails right away
        assert proto.receive_data(peer_frame(side, OP_CONT, b"bad \xff", fin=False)) == []
        assert_failed(side, proto, 1007)

    def test_fails_inside_a_single_frame_still_arriving(self, side: str) -> None:
        payload = b"x" * 100 + b"\xff" + b"y" * 1000
        wire = peer_frame(side, OP_TEXT, payload)
        proto = make(side)
        assert proto.receive_data(wire[:len(wire) // 2]) == []
        assert_failed(side, proto, 1007)

    def test_valid_prefix_of_a_frame_does_not_fail(self, side: str) -> None:
        payload = "é".encode("utf-8") * 300
        wire = peer_frame(side, OP_TEXT, payload)
        proto = make(side)
        assert proto.receive_data(wire[:301]) == []  # cuts a character in two
        assert proto.failure is None and proto.state is State.OPEN
        assert proto.receive_data(wire[301:]) == ["é" * 300]

    def test_fails_on_exactly_the_bad_byte_when_fed_byte_by_byte(self, side: str) -> None:
        # Offsets that are not multiples of 4 check that peeked bytes are unmasked correctly.
        for prefix in ("", "a", "é", "€", "aé€", "€€a", "𝄞é", "aé€" * 20 + "𝄞"):
            bad_at = len(prefix.encode("utf-8"))
            payload = prefix.encode("utf-8") + b"\x80" + b"z" * 200  # a lone continuation byte
            wire = peer_frame(side, OP_TEXT, payload)
            header_len = len(wire) - len(payload)
            proto = make(side)
            for i in range(header_len + bad_at):
                assert proto.receive_data(wire[i:i + 1]) == []
                assert proto.failure is None, (bad_at, i)
            proto.receive_data(wire[header_len + bad_at:header_len + bad_at + 1])
            assert_failed(side, proto, 1007)

    def test_fails_inside_a_continuation_frame_still_arriving(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"start \xe2\x82", fin=False)) == []
        cont = peer_frame(side, OP_CONT, b"Z" + b"." * 500)  # \xe2\x82 needs a continuation byte
        assert proto.receive_data(cont[:20]) == []
        assert_failed(side, proto, 1007)

    def test_continuation_frame_still_arriving_completes_a_character(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"start \xe2\x82", fin=False)) == []
        cont = peer_frame(side, OP_CONT, b"\xac" + b"." * 500)
        for i in range(0, len(cont), 7):
            events = proto.receive_data(cont[i:i + 7])
            assert proto.failure is None
        assert events == ["start €" + "." * 500]

    def test_fail_fast_then_next_message_checks_from_scratch(self, side: str) -> None:
        # the lookahead state of one frame must not leak into the next one
        proto = make(side)
        first = peer_frame(side, OP_TEXT, b"abc\xe2\x82\xac")
        second = peer_frame(side, OP_TEXT, b"\xac tail")  # starts with a continuation byte: invalid
        assert proto.receive_data(first[:-1]) == []
        assert proto.receive_data(first[-1:]) == ["abc€"]
        proto.receive_data(second[:len(second) - 2])
        assert_failed(side, proto, 1007)


# ---------------------------------------------------------------------------- size limit


def fragments(events: List[Any]) -> List[Tuple[Any, bool]]:
    assert all(isinstance(event, Fragment) for event in events), events
    return [(event.data, event.fin) for event in events]


class TestStreaming:
    """stream_next_message(): one Fragment per frame, for one message, nothing held."""

    def test_binary_message_frame_by_frame(self, side: str) -> None:
        proto = make(side)
        proto.stream_next_message()
        assert fragments(proto.receive_data(peer_frame(side, OP_BINARY, b"ab", fin=False))) == [(b"ab", False)]
        assert fragments(proto.receive_data(peer_frame(side, OP_CONT, b"cd", fin=False))) == [(b"cd", False)]
        assert fragments(proto.receive_data(peer_frame(side, OP_CONT, b"", fin=True))) == [(b"", True)]
        # one message only: the next comes whole again
        assert proto.receive_data(peer_frame(side, OP_BINARY, b"xy")) == [b"xy"]

    def test_single_frame_message_is_one_final_fragment(self, side: str) -> None:
        proto = make(side)
        proto.stream_next_message()
        assert fragments(proto.receive_data(peer_frame(side, OP_TEXT, b"hi"))) == [("hi", True)]

    def test_text_pieces_split_on_character_boundaries(self, side: str) -> None:
        proto = make(side)
        proto.stream_next_message()
        snowman = "\u2603".encode("utf-8")  # 3 bytes, split 1 + 2 across frames
        wire = peer_frame(side, OP_TEXT, b"a" + snowman[:1], fin=False) + peer_frame(side, OP_CONT, snowman[1:])
        assert fragments(proto.receive_data(wire)) == [("a", False), ("\u2603", True)]

    def test_invalid_utf8_fails_the_stream(self, side: str) -> None:
        proto = make(side)
        proto.stream_next_message()
        assert fragments(proto.receive_data(peer_frame(side, OP_TEXT, b"ok", fin=False))) == [("ok", False)]
        assert proto.receive_data(peer_frame(side, OP_CONT, b"\xff")) == []
        assert_failed(side, proto, 1007)

    def test_limit_bounds_each_frame_not_the_message(self, side: str) -> None:
        proto = make(side, max_message_size=1000)
        proto.stream_next_message()
        for _ in range(5):  # 4,500 bytes in all, over the limit, fine when streamed
            assert fragments(proto.receive_data(peer_frame(side, OP_BINARY if _ == 0 else OP_CONT, b"x" * 900,
                                                           fin=False))) == [(b"x" * 900, False)]
        assert proto.receive_data(peer_frame(side, OP_CONT, b"x" * 1001)) == []
        assert_failed(side, proto, 1009)

    def test_switching_mid_message_delivers_what_was_held(self, side: str) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_BINARY, b"12", fin=False)) == []
        assert proto.receive_data(peer_frame(side, OP_CONT, b"34", fin=False)) == []
        proto.stream_next_message()
        assert fragments(proto.receive_data(peer_frame(side, OP_CONT, b"56", fin=False))) == [(b"123456", False)]
        assert fragments(proto.receive_data(peer_frame(side, OP_CONT, b"78"))) == [(b"78", True)]

    def test_control_frames_interleave(self, side: str) -> None:
        proto = make(side)
        proto.stream_next_message()
        wire = (peer_frame(side, OP_BINARY, b"a", fin=False) + peer_frame(side, OP_PING, b"p")
                + peer_frame(side, OP_CONT, b"b"))
        events = proto.receive_data(wire)
        assert isinstance(events[1], Ping)
        assert fragments([events[0], events[2]]) == [(b"a", False), (b"b", True)]

    def test_compressed_message_streams_decompressed(self) -> None:
        client, server = open_pair()
        server.stream_next_message()
        payload = b"compress me " * 5000
        events = server.receive_data(client.send_data(payload))
        assert fragments(events) == [(payload, True)]
        assert server.receive_data(client.send_data(b"next")) == [b"next"]


class TestMaxMessageSize:
    def test_single_frame_just_over_fails_on_the_header(self, side: str) -> None:
        proto = make(side, max_message_size=1000)
        wire = peer_frame(side, OP_BINARY, b"x" * 1001)
        assert proto.receive_data(wire[:4]) == []  # 2 bytes + 16-bit length, no mask key, no payload
        assert isinstance(proto.failure, PayloadTooBig)
        assert_failed(side, proto, 1009)

    def test_single_frame_at_the_limit(self, side: str) -> None:
        proto = make(side, max_message_size=1000)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"x" * 1000)) == ["x" * 1000]

    def test_huge_declared_length(self, side: str) -> None:
        proto = make(side)  # default limit 1 MiB
        header = b"\x82" + bytes((0xFF if side == SERVER else 0x7F,)) + struct.pack("!Q", 1 << 62)
        assert proto.receive_data(header) == []
        assert_failed(side, proto, 1009)

    def test_many_tiny_fragments_crossing_the_limit(self, side: str) -> None:
        proto = make(side, max_message_size=100)
        for i in range(10):
            assert proto.receive_data(peer_frame(side, OP_TEXT if i == 0 else OP_CONT, b"0123456789",
                                                 fin=False)) == []
        assert proto.failure is None
        assert proto.receive_data(peer_frame(side, OP_CONT, b"!", fin=False)[:2]) == []
        assert_failed(side, proto, 1009)

    def test_fragments_exactly_at_the_limit(self, side: str) -> None:
        proto = make(side, max_message_size=100)
        wire = b"".join(peer_frame(side, OP_BINARY if i == 0 else OP_CONT, b"0123456789", fin=i == 9)
                        for i in range(10))
        assert proto.receive_data(wire) == [b"0123456789" * 10]
        # the budget is per message
        assert proto.receive_data(wire) == [b"0123456789" * 10]

    def test_control_frames_do_not_count(self, side: str) -> None:
        proto = make(side, max_message_size=10)
        wire = (peer_frame(side, OP_TEXT, b"0123456789", fin=False) + peer_frame(side, OP_PING, b"p" * 100)
                + peer_frame(side, OP_CONT, b""))
        events = proto.receive_data(wire)
        assert len(events) == 2 and events[1] == "0123456789"

    def test_close_frame_when_the_budget_is_spent(self, side: str) -> None:
        proto = make(side, max_message_size=10)
        wire = peer_frame(side, OP_TEXT, b"0123456789", fin=False) + peer_close(side, 1001, "r" * 100)
        events = proto.receive_data(wire)
        assert len(events) == 1 and isinstance(events[0], Close) and events[0].code == 1001
        assert proto.failure is None
        assert sent_close(side, proto) == (1001, "")

    def test_no_limit(self, side: str) -> None:
        proto = make(side, max_message_size=None)
        big = b"\x01" * (3 << 20)
        assert proto.receive_data(peer_frame(side, OP_BINARY, big)) == [big]


# ---------------------------------------------------------------------------- closing handshake


class TestClosing:
    def test_peer_initiated(self, side: str) -> None:
        proto = make(side)
        events = proto.receive_data(peer_close(side, 1001, "going away"))
        assert len(events) == 1 and isinstance(events[0], Close)
        assert (events[0].code, events[0].reason) == (1001, "going away")
        assert proto.state is State.CLOSED
        assert proto.close_rcvd == (1001, "going away")
        assert sent_close(side, proto) == (1001, "")  # the reply echoes the code
        assert (proto.close_code, proto.close_reason) == (1001, "going away")
        # §7.1.1: the server closes TCP first; the client waits for the server's EOF
        assert proto.close_transport_now() is (side == SERVER)
        proto.receive_eof()
        assert proto.close_transport_now()
        exc = proto.closed_exception()
        assert isinstance(exc, ConnectionClosedOK)
        assert (exc.code, exc.reason) == (1001, "going away")

    def test_locally_initiated(self, side: str) -> None:
        proto = make(side)
        data = proto.send_close(1000, "done")
        assert sent_frames(side, data) == [Frame(OP_CLOSE, encode_close(1000, "done"))]
        assert proto.state is State.CLOSING
        assert proto.close_sent == (1000, "done")
        assert not proto.close_transport_now()
        assert proto.send_close() == b""  # only one close frame
        # messages may still arrive while closing
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"late")) == ["late"]
        events = proto.receive_data(peer_close(side, 1000, "ok"))
        assert len(events) == 1 and isinstance(events[0], Close)
        assert proto.state is State.CLOSED
        assert proto.data_to_send() == b""  # no second close frame
        assert proto.close_transport_now() is (side == SERVER)
        assert (proto.close_code, proto.close_reason) == (1000, "ok")
        assert isinstance(proto.closed_exception(), ConnectionClosedOK)

    def test_close_without_status(self, side: str) -> None:
        proto = make(side)
        events = proto.receive_data(peer_frame(side, OP_CLOSE, b""))
        assert len(events) == 1 and (events[0].code, events[0].reason) == (1005, "")  # type: ignore[union-attr]
        out = sent_frames(side, proto.data_to_send())
        assert out == [Frame(OP_CLOSE, b"")]
        exc = proto.closed_exception()
        assert isinstance(exc, ConnectionClosedOK) and exc.code == 1005

    def test_send_close_1005(self, side: str) -> None:
        proto = make(side)
        assert sent_frames(side, proto.send_close(1005)) == [Frame(OP_CLOSE, b"")]

    def test_send_close_validates_first(self, side: str) -> None:
        proto = make(side)
        for code in (999, 1006, 5000):
            with pytest.raises(ValueError):
                proto.send_close(code)
        with pytest.raises(ValueError):
            proto.send_close(1000, "x" * 124)
        assert proto.state is State.OPEN and proto.close_sent is None

    @pytest.mark.parametrize("payload, code", [
        (struct.pack("!H", 999), 1002),
        (struct.pack("!H", 1005), 1002),
        (struct.pack("!H", 1006), 1002),
        (struct.pack("!H", 1015), 1002),
        (struct.pack("!H", 5000), 1002),
        (b"\x03", 1002),
        (struct.pack("!H", 1000) + b"bad \xff reason", 1007),
    ])
    def test_invalid_close_frames(self, side: str, payload: bytes, code: int) -> None:
        proto = make(side)
        assert proto.receive_data(peer_frame(side, OP_CLOSE, payload)) == []
        assert proto.close_rcvd is None
        assert_failed(side, proto, code)

    def test_invalid_close_while_closing(self, side: str) -> None:
        proto = make(side)
        proto.send_close()
        proto.receive_data(peer_frame(side, OP_CLOSE, b"\x00"))
        assert proto.state is State.CLOSED
        assert proto.data_to_send() == b""  # our close frame was already sent
        assert proto.failure is not None and proto.close_transport_now()

    def test_data_after_close_is_ignored(self, side: str) -> None:
        proto = make(side)
        wire = peer_close(side) + peer_frame(side, OP_TEXT, b"ghost") + peer_frame(side, OP_PING, b"x")
        events = proto.receive_data(wire)
        assert len(events) == 1 and isinstance(events[0], Close)
        assert proto.receive_data(peer_frame(side, OP_TEXT, b"more") + b"\xff\xff garbage") == []
        assert proto.failure is None
        assert sent_close(side, proto) == (1000, "")
        assert proto.data_to_send() == b""

    def test_data_after_close_while_closing_is_ignored(self, side: str) -> None:
        proto = make(side)
        proto.send_close()
        events = proto.receive_data(peer_close(side) + b"\x83garbage")
        assert len(events) == 1 and proto.failure is None and proto.state is State.CLOSED

    def test_ping_while_closing_is_not_answered(self, side: str) -> None:
        proto = make(side)
        proto.send_close()
        events = proto.receive_data(peer_frame(side, OP_PING, b"x"))
        assert len(events) == 1 and isinstance(events[0], Ping)
        assert proto.data_to_send() == b""  # nothing may follow our close frame

    def test_sends_after_close_raise(self, side: str) -> None:
        proto = make(side)
        proto.receive_data(peer_close(side, 1000))
        for call in (lambda: proto.send_data("x"), lambda: proto.send_data(b"x"),
                     lambda: proto.send_fragment("x", False), lambda: proto.send_ping(b""),
                     lambda: proto.send_pong(b"")):
            with pytest.raises(ConnectionClosedOK):
                call()
        assert proto.send_close() == b""

    def test_sends_while_closing_raise(self, side: str) -> None:
        proto = make(side)
        proto.send_close(1001)
        with pytest.raises(ConnectionClosed) as info:
            proto.send_data("x")
        assert info.value.code == 1001

    def test_sends_after_failure_raise_error(self, side: str) -> None:
        proto = make(side)
        proto.receive_data(peer_frame(side, OP_CONT, b""))
        with pytest.raises(ConnectionClosedError) as info:
            proto.send_data("x")
        assert info.value.code == 1002

    @pytest.mark.parametrize("code, ok", [(1000, True), (1001, True), (1002, False), (1011, False),
                                          (3000, False), (4999, False)])
    def test_closed_exception_ok_vs_error(self, side: str, code: int, ok: bool) -> None:
        proto = make(side)
        proto.receive_data(peer_close(side, code, "why"))
        exc = proto.closed_exception()
        assert isinstance(exc, ConnectionClosedOK if ok else ConnectionClosedError)
        assert (exc.code, exc.reason) == (code, "why")

    def test_receive_eof_mid_message(self, side: str) -> None:
        proto = make(side)
        proto.receive_data(peer_frame(side, OP_TEXT, b"half", fin=False) + peer_frame(side, OP_CONT, b"x" * 50)[:10])
        proto.receive_eof()
        assert proto.state is State.CLOSED
        assert proto.close_code == 1006 and proto.close_reason == ""
        assert proto.data_to_send() == b""
        assert proto.close_transport_now()
        exc = proto.closed_exception()
        assert isinstance(exc, ConnectionClosedError) and exc.code == 1006
        assert proto.receive_data(b"more") == []

    def test_receive_eof_drops_queued_bytes(self, side: str) -> None:
        proto = make(side)
        proto.receive_data(peer_frame(side, OP_PING, b"x"))
        proto.receive_eof()
        assert proto.data_to_send() == b""

    def test_connection_lost(self, side: str) -> None:
        proto = make(side)
        error = OSError("reset")
        proto.connection_lost(error)
        assert proto.state is State.CLOSED and proto.failure is error
        exc = proto.closed_exception()
        assert isinstance(exc, ConnectionClosedError) and exc.code == 1006 and exc.__cause__ is error

    def test_fail_truncates_long_reasons(self, side: str) -> None:
        proto = make(side)
        proto.fail(1011, "é" * 100)
        code, reason = sent_close(side, proto)
        assert code == 1011 and reason == "é" * 61
        assert proto.close_transport_now()


# ---------------------------------------------------------------------------- sending


class TestSending:
    def test_send_fragment_rules(self, side: str) -> None:
        proto = make(side)
        data = proto.send_fragment("Hel", fin=False)
        with pytest.raises(TypeError):
            proto.send_fragment(b"lo", fin=True)  # one type per message
        with pytest.raises(RuntimeError):
            proto.send_data("interleaved")  # finish the fragmented message first
        data += proto.send_ping(b"ping between fragments")
        data += proto.send_fragment("l", fin=False)
        data += proto.send_fragment("o", fin=True)
        data += proto.send_fragment(b"\x00", fin=True)  # a new message, one fragment
        data += proto.send_data("after")
        assert sent_frames(side, data) == [
            Frame(OP_TEXT, b"Hel", fin=False), Frame(OP_PING, b"ping between fragments"),
            Frame(OP_CONT, b"l", fin=False), Frame(OP_CONT, b"o"), Frame(OP_BINARY, b"\x00"),
            Frame(OP_TEXT, b"after")]
        with pytest.raises(TypeError):
            proto.send_fragment(1.5, fin=True)  # type: ignore[arg-type]

    def test_fragments_reach_the_peer(self) -> None:
        client = Protocol(CLIENT)
        server = Protocol(SERVER)
        wire = client.send_fragment(b"ab", False) + client.send_fragment(b"cd", False) + client.send_fragment(b"e", True)
        assert server.receive_data(wire) == [b"abcde"]

    def test_ping_over_125_rejected_on_send(self, side: str) -> None:
        proto = make(side)
        assert sent_frames(side, proto.send_ping(b"p" * 125)) == [Frame(OP_PING, b"p" * 125)]
        with pytest.raises(ValueError):
            proto.send_ping(b"p" * 126)
        with pytest.raises(ValueError):
            proto.send_pong(b"p" * 126)
        assert sent_frames(side, proto.send_pong(b"q")) == [Frame(OP_PONG, b"q")]

    def test_cannot_send_before_handshake(self) -> None:
        proto = ServerProtocol()
        with pytest.raises(RuntimeError):
            proto.send_data("too early")
        with pytest.raises(RuntimeError):
            proto.send_close()


# ---------------------------------------------------------------------------- server handshake


def client_request(**kwargs: Any) -> Tuple[ClientProtocol, bytes]:
    client = ClientProtocol("example.com", 80, "/chat?room=1", **kwargs)
    return client, client.connect()


class TestServerHandshake:
    def test_request_then_accept(self) -> None:
        client, request = client_request()
        server = ServerProtocol(compression=None)
        assert server.state is State.CONNECTING
        assert server.receive_data(request[:30]) == []
        assert server.request is None
        assert server.receive_data(request[30:]) == []
        assert server.request is not None
        assert server.request.target == "/chat?room=1"
        assert server.request.headers["Sec-WebSocket-Key"] == client.key
        assert server.state is State.CONNECTING
        assert server.data_to_send() == b""
        response = server.accept()
        assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert ("Sec-WebSocket-Accept: %s\r\n" % handshake.accept_key(client.key)).encode() in response
        assert b"Sec-WebSocket-Extensions" not in response
        assert server.state is State.OPEN
        assert server.response_headers is not None
        assert server.response_headers["Upgrade"] == "websocket"
        assert server.handshake_exc is None
        with pytest.raises(RuntimeError):
            server.accept()

    def test_accept_without_request(self) -> None:
        with pytest.raises(RuntimeError):
            ServerProtocol().accept()

    def test_pipelined_frames_kept_until_accept(self) -> None:
        client, request = client_request(compression=None)
        server = ServerProtocol(compression=None)
        wire = request + build_frame(OP_TEXT, b"early", mask=True) + build_frame(OP_BINARY, b"bird", mask=True)
        assert server.receive_data(wire[:len(request) + 3]) == []
        assert server.receive_data(wire[len(request) + 3:]) == []  # still CONNECTING: kept, not parsed
        assert server.request is not None
        server.accept()
        assert server.receive_data(b"") == ["early", b"bird"]

    def test_bad_request_line(self) -> None:
        server = ServerProtocol()
        assert server.receive_data(b"hello there\r\n\r\n") == []
        assert isinstance(server.handshake_exc, InvalidHandshake)
        assert server.request is None
        assert server.state is State.CLOSED
        rejection = server.data_to_send()
        assert rejection.startswith(b"HTTP/1.1 400 ")
        assert b"Connection: close\r\n" in rejection
        assert rejection.endswith(b"\n") and b"Failed to open a WebSocket connection" in rejection
        assert server.close_transport_now()
        assert server.receive_data(b"more") == []

    def test_request_missing_key_rejected_by_accept(self) -> None:
        request = (b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Version: 13\r\n\r\n")
        server = ServerProtocol()
        server.receive_data(request)
        assert server.request is not None and server.handshake_exc is None
        rejection = server.accept()
        assert rejection.startswith(b"HTTP/1.1 400 ")
        assert isinstance(server.handshake_exc, InvalidHandshake)
        assert server.state is State.CLOSED
        assert server.data_to_send() == b""

    def test_wrong_version_gets_426(self) -> None:
        _, request = client_request(extra_headers=[("Sec-WebSocket-Version", "8")])
        server = ServerProtocol()
        server.receive_data(request)
        rejection = server.accept()
        assert rejection.startswith(b"HTTP/1.1 426 ")
        assert b"Sec-WebSocket-Version: 13\r\n" in rejection
        assert server.handshake_exc is not None and server.handshake_exc.status == 426

    def test_origin_check(self) -> None:
        _, request = client_request(origin="https://evil.example")
        server = ServerProtocol(origins=["https://good.example"])
        server.receive_data(request)
        assert server.accept().startswith(b"HTTP/1.1 403 ")

    def test_subprotocol(self) -> None:
        client, request = client_request(subprotocols=["v2", "v1"])
        server = ServerProtocol(subprotocols=["v1", "v2"])
        server.receive_data(request)
        client.receive_data(server.accept())
        assert server.subprotocol == "v2" and client.subprotocol == "v2"
        assert client.state is State.OPEN

    def test_reject(self) -> None:
        _, request = client_request()
        server = ServerProtocol()
        server.receive_data(request)
        data = server.reject(403, [("X-Why", "because")], b"go away")
        assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n")
        assert b"X-Why: because\r\n" in data and b"Content-Length: 7\r\n" in data
        assert data.endswith(b"\r\n\r\ngo away")
        assert server.state is State.CLOSED
        assert server.close_transport_now()
        assert server.handshake_exc is None

    def test_reject_a_head_request_sends_no_body(self) -> None:
        server = ServerProtocol()
        server.receive_data(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        assert server.request is not None and server.request.method == "HEAD"
        data = server.reject(200, [("Content-Type", "text/html")], b"<p>page</p>")
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 11\r\n" in data
        assert data.endswith(b"\r\n\r\n")  # the headers a GET would get, and no body

    def test_head_upgrade_attempt_gets_405_without_body(self) -> None:
        server = ServerProtocol()
        server.receive_data(b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n")
        data = server.accept()
        assert data.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n") and b"Allow: GET\r\n" in data
        assert data.endswith(b"\r\n\r\n") and b"Content-Length: 0\r\n" not in data

    def test_oversized_head_rejected_while_incomplete(self) -> None:
        server = ServerProtocol()
        server.receive_data(b"GET / HTTP/1.1\r\n")
        for _ in range(200):
            server.receive_data(b"X-Filler: " + b"a" * 500 + b"\r\n")
            if server.handshake_exc is not None:
                break
        assert server.handshake_exc is not None
        assert server.data_to_send().startswith(b"HTTP/1.1 4")


# ---------------------------------------------------------------------------- client handshake


def response_101(key: str, extensions: Optional[str] = None) -> bytes:
    return handshake.build_response(key, None, extensions)[0]


class TestClientHandshake:
    def test_request_parses_back(self) -> None:
        client = ClientProtocol("::1", 8080, "/a/b?c=d", origin="http://o.example",
                                subprotocols=["chat"], extra_headers=[("X-Extra", "1")],
                                credentials=("user", "pässword"))
        data = client.connect()
        reader = http11.HeadReader(is_request=True)
        head, rest = reader.feed(data)  # type: ignore[misc]
        assert rest == b""
        request = http11.parse_request(head)
        assert (request.method, request.target, request.version) == ("GET", "/a/b?c=d", "HTTP/1.1")
        headers = request.headers
        assert headers["Host"] == "[::1]:8080"
        assert headers["Upgrade"].lower() == "websocket"
        assert "upgrade" in headers["Connection"].lower()
        assert headers["Sec-WebSocket-Key"] == client.key
        assert headers["Sec-WebSocket-Version"] == "13"
        assert headers["Origin"] == "http://o.example"
        assert headers["Sec-WebSocket-Protocol"] == "chat"
        assert headers["X-Extra"] == "1"
        assert headers["Authorization"].startswith("Basic ")
        assert headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        assert handshake.check_request(request) == client.key
        assert client.request_headers == headers
        assert client.state is State.CONNECTING

    def test_no_compression_offer(self) -> None:
        client = ClientProtocol("example.com", 443, secure=True, compression=None)
        data = client.connect()
        assert b"Sec-WebSocket-Extensions" not in data
        assert b"\r\nHost: example.com\r\n" in data

    def test_101_with_correct_accept(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        response = response_101(client.key)
        assert client.receive_data(response[:20]) == []
        assert client.state is State.CONNECTING
        assert client.receive_data(response[20:]) == []
        assert client.state is State.OPEN
        assert client.handshake_exc is None
        assert client.response is not None and client.response.status == 101
        assert client.deflate is None  # offered, not accepted
        assert client.send_data("hi")[1] & 0x80  # client frames are masked

    def test_wrong_accept(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        client.receive_data(response_101(handshake.generate_key()))
        assert isinstance(client.handshake_exc, InvalidHandshake)
        assert not isinstance(client.handshake_exc, InvalidStatus)
        assert "Sec-WebSocket-Accept" in str(client.handshake_exc)
        assert client.state is State.CLOSED
        assert client.failure is client.handshake_exc
        assert client.close_transport_now()

    def test_unoffered_extension_refused(self) -> None:
        client = ClientProtocol("example.com", 80, compression=None)
        client.connect()
        client.receive_data(response_101(client.key, "permessage-deflate"))
        assert isinstance(client.handshake_exc, InvalidHandshake)
        assert client.state is State.CLOSED

    def test_non_101_with_content_length(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        response = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nX-Reason: nope\r\n"
                    b"Content-Length: 12\r\n\r\nnot allowed\n")
        client.receive_data(response[:-5])
        assert client.handshake_exc is None and client.state is State.CONNECTING
        client.receive_data(response[-5:])
        exc = client.handshake_exc
        assert isinstance(exc, InvalidStatus)
        assert exc.status == 403 and exc.reason == "Forbidden"
        assert ("X-Reason", "nope") in exc.headers
        assert exc.body == b"not allowed\n"
        assert client.state is State.CLOSED

    def test_non_101_with_empty_body(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        client.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        exc = client.handshake_exc
        assert isinstance(exc, InvalidStatus) and exc.status == 404 and exc.body == b""

    def test_non_101_until_eof(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        client.receive_data(b"HTTP/1.1 500 Internal Server Error\r\nServer: x\r\n\r\nbody ")
        client.receive_data(b"continues")
        assert client.handshake_exc is None
        client.receive_eof()
        exc = client.handshake_exc
        assert isinstance(exc, InvalidStatus)
        assert exc.status == 500 and exc.body == b"body continues"
        assert ("Server", "x") in exc.headers
        assert client.state is State.CLOSED

    def test_eof_during_handshake(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        client.receive_data(b"HTTP/1.1 101 Switching")
        client.receive_eof()
        assert isinstance(client.handshake_exc, InvalidHandshake)
        assert client.state is State.CLOSED

    def test_garbage_response(self) -> None:
        client = ClientProtocol("example.com", 80)
        client.connect()
        client.receive_data(b"SSH-2.0-OpenSSH\r\n\r\n")
        assert isinstance(client.handshake_exc, InvalidHandshake)

    def test_frames_in_the_same_chunk_as_the_101(self) -> None:
        client = ClientProtocol("example.com", 80, compression=None)
        client.connect()
        wire = (response_101(client.key) + build_frame(OP_TEXT, b"welcome") + build_frame(OP_PING, b"p")
                + build_frame(OP_BINARY, b"\x01\x02", fin=False))
        events = client.receive_data(wire)
        assert client.state is State.OPEN
        events += client.receive_data(b"")  # whatever was kept for after the handshake
        assert events[0] == "welcome"
        assert isinstance(events[1], Ping)
        assert len(events) == 2
        assert sent_frames(CLIENT, client.data_to_send()) == [Frame(OP_PONG, b"p")]
        assert client.receive_data(build_frame(OP_CONT, b"\x03")) == [b"\x01\x02\x03"]


# ---------------------------------------------------------------------------- full round trip


def open_pair(compression: Any = "default", **server_kwargs: Any) -> Tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol("localhost", 8765, "/", compression=compression)
    server = ServerProtocol(compression=compression, **server_kwargs)
    assert server.receive_data(client.connect()) == []
    assert client.receive_data(server.accept()) == []
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


class TestRoundTrip:
    @pytest.mark.parametrize("compression", [None, "default"])
    def test_messages_ping_and_close(self, compression: Any) -> None:
        client, server = open_pair(compression)
        if compression is None:
            assert client.deflate is None and server.deflate is None
        else:
            assert client.deflate is not None and server.deflate is not None
            assert server.response_headers is not None
            assert server.response_headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        messages = ["hi", "x" * 1000, b"\x00" * 5000, "κόσμε " * 300, b"", "", bytes(range(256)) * 10]
        for message in messages:
            assert server.receive_data(client.send_data(message)) == [message]
            assert client.receive_data(server.send_data(message)) == [message]
        # ping from the client, pong from the server
        events = server.receive_data(client.send_ping(b"are you alive"))
        assert isinstance(events[0], Ping)
        events = client.receive_data(server.data_to_send())
        assert isinstance(events[0], Pong) and events[0].data == b"are you alive"
        # closing: the client starts, the server answers and closes TCP first
        server_events = server.receive_data(client.send_close(1000, "bye"))
        assert isinstance(server_events[0], Close) and server_events[0].reason == "bye"
        assert server.state is State.CLOSED and server.close_transport_now()
        client_events = client.receive_data(server.data_to_send())
        assert isinstance(client_events[0], Close) and client_events[0].code == 1000
        assert client.state is State.CLOSED and not client.close_transport_now()
        client.receive_eof()
        assert client.close_transport_now()
        assert isinstance(client.closed_exception(), ConnectionClosedOK)
        assert isinstance(server.closed_exception(), ConnectionClosedOK)

    def test_rsv1_on_the_wire(self) -> None:
        client, server = open_pair("default")
        big = "compress me please " * 10
        wire = client.send_data(big)
        assert wire[0] & 0x40  # RSV1: compressed
        assert len(wire) < len(big)
        assert server.receive_data(wire) == [big]
        wire = server.send_data(big.encode())
        assert wire[0] & 0x40
        assert client.receive_data(wire) == [big.encode()]
        small = "x" * 31  # under min_size (32): sent as is
        wire = client.send_data(small)
        assert not wire[0] & 0x40
        assert server.receive_data(wire) == [small]
        exactly = "y" * 32
        wire = server.send_data(exactly)
        assert wire[0] & 0x40
        assert client.receive_data(wire) == [exactly]

    def test_no_rsv1_without_compression(self) -> None:
        client, server = open_pair(None)
        wire = client.send_data("compress me please " * 10)
        assert not wire[0] & 0x40
        assert not server.send_data(b"z" * 1000)[0] & 0x40

    def test_fragmented_sends_are_uncompressed(self) -> None:
        client, server = open_pair("default")
        wire = client.send_fragment("a" * 100, False) + client.send_fragment("b" * 100, True)
        assert not wire[0] & 0x40
        assert server.receive_data(wire) == ["a" * 100 + "b" * 100]

    def test_compressed_fragmented_message(self) -> None:
        client, server = open_pair("default")
        text = "fragmented and compressed " * 40
        assert client.deflate is not None
        compressed = client.deflate.compress(text.encode())
        cut = len(compressed) // 2
        wire = (build_frame(OP_TEXT, compressed[:cut], fin=False, rsv1=True, mask=True)
                + build_frame(OP_CONT, compressed[cut:], mask=True))
        assert server.receive_data(wire) == [text]
        # context takeover continues to work after that
        assert server.receive_data(client.send_data(text)) == [text]

    def test_rsv1_on_continuation_frame_fails(self) -> None:
        client, server = open_pair("default")
        wire = (build_frame(OP_TEXT, b"a", fin=False, mask=True)
                + build_frame(OP_CONT, b"b", rsv1=True, mask=True))
        assert server.receive_data(wire) == []
        assert_failed(SERVER, server, 1002)

    def test_decompression_bomb_hits_the_limit(self) -> None:
        client, server = open_pair("default", max_message_size=10000)
        wire = client.send_data(b"\x00" * 1000000)
        assert len(wire) < 10000  # small on the wire
        assert server.receive_data(wire) == []
        assert_failed(SERVER, server, 1009)

    def test_invalid_utf8_inside_compressed_text(self) -> None:
        client, server = open_pair("default")
        assert client.deflate is not None
        wire = build_frame(OP_TEXT, client.deflate.compress(b"abc \xff" * 20), rsv1=True, mask=True)
        assert server.receive_data(wire) == []
        assert_failed(SERVER, server, 1007)
