"""Tests for simplews.frames: RFC 6455 §5 framing, byte for byte (sans-I/O)."""

import random
import struct
from typing import Any, List, Optional

import pytest

from simplews import frames
from simplews.exceptions import PayloadTooBig, ProtocolError
from simplews.frames import (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
    Frame, FrameParser, apply_mask, build_frame, build_header, decode_close, encode_close,
    is_valid_close_code,
)

# RFC 6455 §5.7 masking key
RFC_KEY = bytes((0x37, 0xFA, 0x21, 0x3D))


def naive_mask(data: bytes, key: bytes) -> bytes:
    """The §5.3 definition, one byte at a time: the reference for apply_mask."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def parse_all(data: bytes, expect_masked: bool = False, max_size: Optional[int] = None,
              allow_rsv1: bool = False) -> List[Frame]:
    parser = FrameParser(expect_masked, max_size, allow_rsv1)
    parser.feed(data)
    out = []
    while True:
        frame = parser.next_frame()
        if frame is None:
            break
        out.append(frame)
    assert parser.buffered == 0
    return out


def parse_one(data: bytes, expect_masked: bool = False, **kwargs: object) -> Frame:
    result = parse_all(data, expect_masked, **kwargs)  # type: ignore[arg-type]
    assert len(result) == 1
    return result[0]


def header_error(data: bytes, expect_masked: bool = False, max_size: Optional[int] = None,
                 allow_rsv1: bool = False) -> ProtocolError:
    parser = FrameParser(expect_masked, max_size, allow_rsv1)
    parser.feed(data)
    with pytest.raises(ProtocolError) as info:
        parser.next_frame()
    return info.value


# ---------------------------------------------------------------------------- §5.7 examples


class TestRFCExamples:
    def test_single_frame_unmasked_text(self) -> None:
        wire = bytes((0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))
        assert build_frame(OP_TEXT, b"Hello") == wire
        assert parse_one(wire) == Frame(OP_TEXT, b"Hello", fin=True)

    def test_single_frame_masked_text(self, monkeypatch: Any) -> None:
        wire = bytes((0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58))
        assert build_header(OP_TEXT, 5, mask_key=RFC_KEY) + apply_mask(b"Hello", RFC_KEY) == wire
        monkeypatch.setattr(frames.os, "urandom", lambda n: RFC_KEY[:n])
        assert build_frame(OP_TEXT, b"Hello", mask=True) == wire
        frame = parse_one(wire, expect_masked=True)
        assert frame == Frame(OP_TEXT, b"Hello")

    def test_fragmented_unmasked_text(self) -> None:
        first = bytes((0x01, 0x03, 0x48, 0x65, 0x6C))
        second = bytes((0x80, 0x02, 0x6C, 0x6F))
        assert build_frame(OP_TEXT, b"Hel", fin=False) == first
        assert build_frame(OP_CONT, b"lo") == second
        assert parse_all(first + second) == [Frame(OP_TEXT, b"Hel", fin=False), Frame(OP_CONT, b"lo")]

    def test_unmasked_ping(self) -> None:
        wire = bytes((0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F))
        assert build_frame(OP_PING, b"Hello") == wire
        assert parse_one(wire) == Frame(OP_PING, b"Hello")

    def test_masked_pong(self, monkeypatch: Any) -> None:
        wire = bytes((0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58))
        monkeypatch.setattr(frames.os, "urandom", lambda n: RFC_KEY[:n])
        assert build_frame(OP_PONG, b"Hello", mask=True) == wire
        assert parse_one(wire, expect_masked=True) == Frame(OP_PONG, b"Hello")

    def test_256_bytes_binary_16_bit_length(self) -> None:
        payload = bytes(range(256))
        wire = bytes((0x82, 0x7E, 0x01, 0x00)) + payload
        assert build_frame(OP_BINARY, payload) == wire
        assert parse_one(wire) == Frame(OP_BINARY, payload)

    def test_64k_binary_64_bit_length(self) -> None:
        payload = bytes(random.Random(1).getrandbits(8) for _ in range(65536))
        wire = bytes((0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0)) + payload
        assert build_frame(OP_BINARY, payload) == wire
        assert parse_one(wire) == Frame(OP_BINARY, payload)


# ---------------------------------------------------------------------------- headers


class TestBuildHeader:
    @pytest.mark.parametrize("length, encoded", [
        (0, b"\x00"),
        (1, b"\x01"),
        (125, b"\x7d"),
        (126, b"\x7e\x00\x7e"),
        (127, b"\x7e\x00\x7f"),
        (65535, b"\x7e\xff\xff"),
        (65536, b"\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (2 ** 32, b"\x7f\x00\x00\x00\x01\x00\x00\x00\x00"),
        (2 ** 63 - 1, b"\x7f\x7f\xff\xff\xff\xff\xff\xff\xff"),
    ])
    def test_length_encoding(self, length: int, encoded: bytes) -> None:
        assert build_header(OP_BINARY, length) == b"\x82" + encoded
        masked = build_header(OP_BINARY, length, mask_key=b"abcd")
        assert masked == b"\x82" + bytes((encoded[0] | 0x80,)) + encoded[1:] + b"abcd"

    def test_first_byte_bits(self) -> None:
        assert build_header(OP_TEXT, 0, fin=False)[0] == 0x01
        assert build_header(OP_CONT, 0, fin=True)[0] == 0x80
        assert build_header(OP_TEXT, 0, rsv1=True)[0] == 0xC1
        assert build_header(OP_BINARY, 0, fin=False, rsv1=True)[0] == 0x42
        assert build_header(OP_CLOSE, 2)[0] == 0x88
        assert build_header(OP_PONG, 0)[0] == 0x8A

    @pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
    def test_build_then_parse(self, length: int) -> None:
        payload = bytes(i % 251 for i in range(length))
        assert parse_one(build_frame(OP_BINARY, payload)) == Frame(OP_BINARY, payload)
        masked = build_frame(OP_BINARY, payload, mask=True)
        assert len(masked) == len(build_frame(OP_BINARY, payload)) + 4
        assert masked[1] & 0x80
        assert parse_one(masked, expect_masked=True) == Frame(OP_BINARY, payload)

    def test_mask_uses_fresh_keys(self) -> None:
        keys = set(build_frame(OP_TEXT, b"x", mask=True)[2:6] for _ in range(20))
        assert len(keys) > 1


# ---------------------------------------------------------------------------- masking


class TestApplyMask:
    @pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 65535, 65536, 65537,
                                      65536 * 2, 65536 * 2 + 3, 200001])
    def test_matches_naive_reference(self, size: int) -> None:
        rng = random.Random(size)
        data = bytes(rng.getrandbits(8) for _ in range(size))
        key = bytes(rng.getrandbits(8) for _ in range(4))
        masked = apply_mask(data, key)
        assert isinstance(masked, bytes)
        assert len(masked) == size
        assert masked == naive_mask(data, key)
        assert apply_mask(masked, key) == data

    def test_zero_key_is_identity(self) -> None:
        data = bytes(range(256)) * 300
        assert apply_mask(data, b"\x00\x00\x00\x00") == data

    def test_accepts_bytearray_and_memoryview(self) -> None:
        data = bytes(range(200)) * 700  # over one 64 KiB block
        key = b"\x01\x80\xff\x7f"
        expected = naive_mask(data, key)
        assert apply_mask(bytearray(data), key) == expected
        assert apply_mask(memoryview(data), key) == expected

    def test_rfc_example(self) -> None:
        assert apply_mask(b"Hello", RFC_KEY) == bytes((0x7F, 0x9F, 0x4D, 0x51, 0x58))


# ---------------------------------------------------------------------------- incremental parsing


def _sample_stream(masked: bool) -> bytes:
    rng = random.Random(42)
    parts = [
        build_frame(OP_TEXT, "héllo wörld €".encode("utf-8"), mask=masked),
        build_frame(OP_BINARY, b"", mask=masked),
        build_frame(OP_TEXT, b"frag", fin=False, mask=masked),
        build_frame(OP_PING, b"p" * 125, mask=masked),
        build_frame(OP_CONT, b"ment", fin=True, mask=masked),
        build_frame(OP_BINARY, bytes(rng.getrandbits(8) for _ in range(125)), mask=masked),
        build_frame(OP_BINARY, bytes(rng.getrandbits(8) for _ in range(126)), mask=masked),
        build_frame(OP_BINARY, bytes(rng.getrandbits(8) for _ in range(1000)), mask=masked),
        build_frame(OP_PONG, b"", mask=masked),
        build_frame(OP_BINARY, bytes(rng.getrandbits(8) for _ in range(65536 + 7)), mask=masked),
        build_frame(OP_CLOSE, encode_close(1000, "bye"), mask=masked),
    ]
    return b"".join(parts)


class TestIncrementalParser:
    @pytest.mark.parametrize("masked", [False, True])
    def test_byte_by_byte_whole_and_random_splits_agree(self, masked: bool) -> None:
        stream = _sample_stream(masked)
        whole = parse_all(stream, expect_masked=masked)
        assert [f.opcode for f in whole] == [OP_TEXT, OP_BINARY, OP_TEXT, OP_PING, OP_CONT, OP_BINARY,
                                             OP_BINARY, OP_BINARY, OP_PONG, OP_BINARY, OP_CLOSE]
        assert whole[0].payload == "héllo wörld €".encode("utf-8")
        assert decode_close(whole[-1].payload) == (1000, "bye")

        parser = FrameParser(expect_masked=masked)
        byte_by_byte = []
        for i in range(len(stream)):
            parser.feed(stream[i:i + 1])
            frame = parser.next_frame()
            if frame is not None:
                byte_by_byte.append(frame)
                assert parser.next_frame() is None  # one byte completes at most one frame
        assert byte_by_byte == whole
        assert parser.buffered == 0

        rng = random.Random(7)
        for _ in range(20):
            parser = FrameParser(expect_masked=masked)
            result = []
            pos = 0
            while pos < len(stream):
                step = rng.choice((1, 2, 3, 5, 13, 100, 4096, 70000))
                parser.feed(stream[pos:pos + step])
                pos += step
                while True:
                    frame = parser.next_frame()
                    if frame is None:
                        break
                    result.append(frame)
            assert result == whole

    def test_incomplete_headers_wait(self) -> None:
        wire = build_frame(OP_BINARY, b"x" * 70000)
        for cut in range(0, 10):
            parser = FrameParser(expect_masked=False)
            parser.feed(wire[:cut])
            assert parser.next_frame() is None
            assert parser.buffered == cut
        masked = build_frame(OP_BINARY, b"x" * 300, mask=True)
        for cut in range(0, 8):  # 2 + 2 (length) + 4 (key)
            parser = FrameParser(expect_masked=True)
            parser.feed(masked[:cut])
            assert parser.next_frame() is None
            assert parser.frame_in_progress() is None

    def test_buffered_counts_leftover(self) -> None:
        parser = FrameParser(expect_masked=False)
        parser.feed(build_frame(OP_TEXT, b"a") + build_frame(OP_TEXT, b"bc")[:2])
        assert parser.next_frame() == Frame(OP_TEXT, b"a")
        assert parser.buffered == 2
        assert parser.next_frame() is None
        parser.feed(b"bc")
        assert parser.next_frame() == Frame(OP_TEXT, b"bc")
        assert parser.buffered == 0

    def test_frame_repr(self) -> None:
        assert repr(Frame(OP_TEXT, b"abc", fin=False)) == "Frame(TEXT, 3 bytes, fin=False, rsv1=False)"
        assert Frame(OP_TEXT, b"a") != Frame(OP_BINARY, b"a")
        assert Frame(OP_TEXT, b"a") != Frame(OP_TEXT, b"a", rsv1=True)
        assert Frame(OP_TEXT, b"a") != "a"

    def test_rsv1_allowed_when_negotiated(self) -> None:
        wire = build_frame(OP_TEXT, b"zz", rsv1=True)
        assert parse_one(wire, allow_rsv1=True) == Frame(OP_TEXT, b"zz", rsv1=True)


# ---------------------------------------------------------------------------- header errors


class TestHeaderErrors:
    @pytest.mark.parametrize("bits", [0x20, 0x10, 0x30, 0x70])
    def test_rsv2_rsv3(self, bits: int) -> None:
        exc = header_error(bytes((0x81 | bits, 0x00)), allow_rsv1=True)
        assert exc.code == 1002
        assert "reserved bits" in str(exc)

    def test_rsv1_without_extension(self) -> None:
        exc = header_error(bytes((0xC1, 0x00)))
        assert exc.code == 1002

    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, opcode: int) -> None:
        exc = header_error(bytes((0x80 | opcode, 0x00)))
        assert exc.code == 1002
        assert "opcode" in str(exc)
        exc = header_error(bytes((opcode, 0x80)) + b"abcd", expect_masked=True)
        assert exc.code == 1002

    @pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
    def test_fragmented_control_frame(self, opcode: int) -> None:
        exc = header_error(build_frame(opcode, b"", fin=False))
        assert "fragmented control frame" in str(exc)

    @pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
    def test_control_frame_over_125(self, opcode: int) -> None:
        assert parse_one(build_frame(opcode, b"x" * 125)).payload == b"x" * 125
        exc = header_error(build_frame(opcode, b"x" * 126))
        assert "125" in str(exc)
        # rejected on the header alone: no payload needed
        exc = header_error(bytes((0x80 | opcode, 0x7E, 0x00, 0x7E)))
        assert exc.code == 1002

    @pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
    def test_rsv1_on_control_frame(self, opcode: int) -> None:
        header_error(build_frame(opcode, b"", rsv1=True), allow_rsv1=True)

    def test_unmasked_frame_to_server(self) -> None:
        exc = header_error(build_frame(OP_TEXT, b"hi"), expect_masked=True)
        assert "must be masked" in str(exc)

    def test_masked_frame_to_client(self) -> None:
        exc = header_error(build_frame(OP_TEXT, b"hi", mask=True), expect_masked=False)
        assert "must not be masked" in str(exc)

    def test_64_bit_length_with_msb_set(self) -> None:
        exc = header_error(b"\x82\x7f" + struct.pack("!Q", 1 << 63))
        assert "most significant bit" in str(exc)
        header_error(b"\x82\x7f" + b"\xff" * 8)

    def test_declared_length_over_max_size_raises_after_header_only(self) -> None:
        # A 2^62-byte frame announced, nothing after: refused without waiting or allocating.
        parser = FrameParser(expect_masked=False, max_size=1 << 20)
        parser.feed(b"\x82\x7f" + struct.pack("!Q", 1 << 62))
        with pytest.raises(PayloadTooBig) as info:
            parser.next_frame()
        assert info.value.code == 1009
        assert isinstance(info.value, ProtocolError)

    def test_max_size_masked_before_mask_key(self) -> None:
        parser = FrameParser(expect_masked=True, max_size=1000)
        parser.feed(b"\x82\xfe" + struct.pack("!H", 1001))  # mask key not sent yet
        with pytest.raises(PayloadTooBig):
            parser.next_frame()

    def test_max_size_boundary(self) -> None:
        parser = FrameParser(expect_masked=False, max_size=1000)
        parser.feed(b"\x82\x7e" + struct.pack("!H", 1000))
        assert parser.next_frame() is None
        assert parser.frame_in_progress() == (OP_BINARY, False)
        parser.feed(b"y" * 1000)
        assert parser.next_frame() == Frame(OP_BINARY, b"y" * 1000)
        with pytest.raises(PayloadTooBig):
            parse_all(build_frame(OP_BINARY, b"y" * 1001), max_size=1000)
        with pytest.raises(PayloadTooBig):
            parse_all(build_frame(OP_BINARY, b"y" * 11), max_size=10)
        assert parse_one(build_frame(OP_BINARY, b"y" * 10), max_size=10).payload == b"y" * 10

    def test_max_size_override_per_call(self) -> None:
        parser = FrameParser(expect_masked=False, max_size=None)
        parser.feed(build_frame(OP_BINARY, b"z" * 50))
        with pytest.raises(PayloadTooBig):
            parser.next_frame(max_size=49)
        parser = FrameParser(expect_masked=False, max_size=10)
        parser.feed(build_frame(OP_BINARY, b"z" * 50))
        assert parser.next_frame(max_size=50) == Frame(OP_BINARY, b"z" * 50)

    @pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
    def test_max_size_does_not_apply_to_control_frames(self, opcode: int) -> None:
        # the limit is a message budget; a control frame may come between fragments
        parser = FrameParser(expect_masked=False, max_size=0)
        parser.feed(build_frame(opcode, b"c" * 125))
        assert parser.next_frame() == Frame(opcode, b"c" * 125)

    def test_no_limit_means_waiting(self) -> None:
        parser = FrameParser(expect_masked=False, max_size=None)
        parser.feed(b"\x82\x7f" + struct.pack("!Q", 1 << 62))
        assert parser.next_frame() is None
        assert parser.frame_in_progress() == (OP_BINARY, False)


# ---------------------------------------------------------------------------- close payloads


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


class TestClosePayload:
    @pytest.mark.parametrize("code", VALID_CODES)
    def test_valid_codes_round_trip(self, code: int) -> None:
        assert is_valid_close_code(code)
        payload = encode_close(code, "reason ✓")
        assert payload[:2] == struct.pack("!H", code)
        assert decode_close(payload) == (code, "reason ✓")
        assert decode_close(encode_close(code)) == (code, "")

    @pytest.mark.parametrize("code", INVALID_CODES)
    def test_invalid_codes(self, code: int) -> None:
        assert not is_valid_close_code(code)
        if code != 1005:
            with pytest.raises(ValueError):
                encode_close(code)
        with pytest.raises(ProtocolError) as info:
            decode_close(struct.pack("!H", code))
        assert info.value.code == 1002

    def test_1005_means_empty_payload(self) -> None:
        assert encode_close(1005) == b""
        assert decode_close(b"") == (1005, "")
        with pytest.raises(ValueError):
            encode_close(1005, "a reason needs a code")

    def test_one_byte_payload(self) -> None:
        with pytest.raises(ProtocolError) as info:
            decode_close(b"\x03")
        assert info.value.code == 1002

    def test_invalid_utf8_reason(self) -> None:
        for reason in (b"\xff", b"ok\xce", b"\xed\xa0\x80", b"\xc0\xaf"):
            with pytest.raises(ProtocolError) as info:
                decode_close(struct.pack("!H", 1000) + reason)
            assert info.value.code == 1007

    def test_reason_length_limit(self) -> None:
        assert len(encode_close(1000, "a" * 123)) == 125
        with pytest.raises(ValueError):
            encode_close(1000, "a" * 124)
        assert len(encode_close(1000, "é" * 61)) == 124
        with pytest.raises(ValueError):
            encode_close(1000, "é" * 62)  # 62 characters but 124 bytes

    def test_close_frame_on_the_wire(self) -> None:
        wire = build_frame(OP_CLOSE, encode_close(1001, "away"))
        assert wire == b"\x88\x06\x03\xe9away"


# ---------------------------------------------------------------------------- partial payloads


class TestPeekPayload:
    def test_nothing_in_progress(self) -> None:
        parser = FrameParser(expect_masked=False)
        assert parser.frame_in_progress() is None
        assert parser.peek_payload(0) is None
        parser.feed(b"\x81")
        assert parser.next_frame() is None
        assert parser.frame_in_progress() is None
        assert parser.peek_payload(0) is None

    @pytest.mark.parametrize("masked", [False, True])
    def test_peek_unmasks_from_any_offset(self, masked: bool) -> None:
        payload = bytes(range(97, 123)) * 3  # 78 bytes
        wire = build_frame(OP_TEXT, payload, mask=masked)
        header_len = 6 if masked else 2
        parser = FrameParser(expect_masked=masked)
        parser.feed(wire[:header_len + 41])
        assert parser.next_frame() is None
        assert parser.frame_in_progress() == (OP_TEXT, False)
        for start in range(0, 45):
            opcode, rsv1, chunk = parser.peek_payload(start)  # type: ignore[misc]
            assert (opcode, rsv1) == (OP_TEXT, False)
            assert chunk == payload[start:41]
        parser.feed(wire[header_len + 41:])
        assert parser.next_frame() == Frame(OP_TEXT, payload)
        assert parser.frame_in_progress() is None
        assert parser.peek_payload(0) is None

    def test_peek_reports_rsv1_and_opcode(self) -> None:
        parser = FrameParser(expect_masked=False, allow_rsv1=True)
        parser.feed(build_frame(OP_BINARY, b"abcdef", fin=False, rsv1=True)[:5])
        assert parser.next_frame() is None
        assert parser.frame_in_progress() == (OP_BINARY, True)
        assert parser.peek_payload(1) == (OP_BINARY, True, b"bc")

    def test_peek_after_a_previous_frame(self) -> None:
        parser = FrameParser(expect_masked=True)
        first = build_frame(OP_BINARY, b"first", mask=True)
        second = build_frame(OP_TEXT, b"second frame", mask=True)
        parser.feed(first + second[:10])
        assert parser.next_frame() == Frame(OP_BINARY, b"first")
        assert parser.next_frame() is None
        assert parser.peek_payload(0) == (OP_TEXT, False, b"seco")
        assert parser.peek_payload(2) == (OP_TEXT, False, b"co")
