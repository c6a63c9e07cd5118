"""RFC 6455 §5 framing: opcodes, close codes, masking and an incremental parser.

The parser validates each frame header (reserved bits, opcode, control-frame
rules, masking, declared length against the message limit) *before* it buffers
any payload, so a hostile length never causes an allocation.
"""

import os
import struct
from typing import List, Optional, Tuple, Union

from .exceptions import PayloadTooBig, ProtocolError

__all__ = [
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG",
    "CLOSE_NORMAL", "CLOSE_GOING_AWAY", "CLOSE_PROTOCOL_ERROR", "CLOSE_UNSUPPORTED_DATA",
    "CLOSE_NO_STATUS", "CLOSE_ABNORMAL", "CLOSE_INVALID_PAYLOAD", "CLOSE_POLICY_VIOLATION",
    "CLOSE_MESSAGE_TOO_BIG", "CLOSE_MANDATORY_EXTENSION", "CLOSE_INTERNAL_ERROR",
    "CLOSE_SERVICE_RESTART", "CLOSE_TRY_AGAIN_LATER", "CLOSE_BAD_GATEWAY", "CLOSE_TLS_HANDSHAKE",
    "Frame", "FrameParser", "apply_mask", "build_frame", "parse_single_frame", "encode_close", "decode_close",
    "is_valid_close_code",
]

# §5.2 opcodes
OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
DATA_OPCODES = frozenset((OP_CONT, OP_TEXT, OP_BINARY))
CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))
OPCODE_NAMES = {OP_CONT: "CONT", OP_TEXT: "TEXT", OP_BINARY: "BINARY",
                OP_CLOSE: "CLOSE", OP_PING: "PING", OP_PONG: "PONG"}

# §7.4.1 close codes, plus the IANA-registered 1012-1014
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_NO_STATUS = 1005          # never sent: "no status code was present"
CLOSE_ABNORMAL = 1006           # never sent: "closed without a close frame"
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MANDATORY_EXTENSION = 1010
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BAD_GATEWAY = 1014
CLOSE_TLS_HANDSHAKE = 1015      # never sent

MAX_CONTROL_PAYLOAD = 125

_SENDABLE_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

_MASK_CHUNK = 1 << 16           # XOR masking is done in 64 KiB integer blocks


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (§7.4.1, §7.4.2; 3000-4999 are for apps)."""
    return code in _SENDABLE_CLOSE_CODES or 3000 <= code <= 4999


def encode_close(code: int, reason: str = "") -> bytes:
    """Payload of a close frame; ``code`` 1005 means an empty payload."""
    if code == CLOSE_NO_STATUS:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError("invalid close code %d: expected 1000-1003, 1007-1014 or 3000-4999" % code)
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > MAX_CONTROL_PAYLOAD:
        raise ValueError("close reason too long: at most 123 bytes of UTF-8, got %d" % (len(data) - 2))
    return data


def decode_close(payload: bytes) -> Tuple[int, str]:
    """(code, reason) from a received close frame; 1005 when it carried no code."""
    if not payload:
        return CLOSE_NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a 1-byte payload: a close code takes 2 bytes")
    code = struct.unpack("!H", payload[:2])[0]
    if not is_valid_close_code(code):
        raise ProtocolError("invalid close code %d in close frame" % code)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("close reason is not valid UTF-8", code=CLOSE_INVALID_PAYLOAD) from None
    return code, reason


def apply_mask(data: Union[bytes, bytearray, memoryview], key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (§5.3); masking and unmasking are the same.

    Works on whole 64 KiB blocks as big integers: no per-byte Python loop.
    """
    n = len(data)
    if n == 0:
        return b""
    if n <= _MASK_CHUNK:
        return _mask_block(data, key, n)
    return b"".join(_mask_parts(data, key, n))


def _mask_parts(data: Union[bytes, bytearray, memoryview], key: bytes, n: int) -> List[bytes]:
    """``data`` (``n`` bytes) masked, as a list of 64 KiB blocks (so a caller can join them once)."""
    full_key = int.from_bytes(key * (_MASK_CHUNK // 4), "little")
    from_bytes = int.from_bytes
    parts = []
    with memoryview(data) as view:
        for start in range(0, n, _MASK_CHUNK):
            block = view[start:start + _MASK_CHUNK]
            size = len(block)
            if size == _MASK_CHUNK:
                parts.append((from_bytes(block, "little") ^ full_key).to_bytes(size, "little"))
            else:
                parts.append(_mask_block(block, key, size))
            block.release()
    return parts


def _mask_block(block: Union[bytes, bytearray, memoryview], key: bytes, size: int) -> bytes:
    repeated = key * (size // 4) + key[:size % 4]
    return (int.from_bytes(block, "little") ^ int.from_bytes(repeated, "little")).to_bytes(size, "little")


def build_header(opcode: int, length: int, fin: bool = True, rsv1: bool = False,
                 mask_key: Optional[bytes] = None) -> bytes:
    """The 2-14 byte frame header (§5.2) for a payload of ``length`` bytes."""
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
    mask_bit = 0x80 if mask_key is not None else 0
    if length < 126:
        header = bytes((b0, mask_bit | length))
    elif length < 65536:
        header = struct.pack("!BBH", b0, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, length)
    if mask_key is not None:
        header += mask_key
    return header


def build_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False,
                mask: bool = False) -> bytes:
    """One whole frame, header and payload together (one write per frame).

    ``mask=True`` (the client side) masks with a fresh random key (§5.3).
    """
    n = len(payload)
    if n < 126 and fin and not rsv1:  # §perf: the common small frame, header inline
        if mask:
            key = os.urandom(4)
            return bytes((0x80 | opcode, 0x80 | n)) + key + _mask_block(payload, key, n)
        return bytes((0x80 | opcode, n)) + payload
    if mask:
        key = os.urandom(4)
        if n > _MASK_CHUNK:  # header and masked blocks joined once: no extra copy of a large payload
            return b"".join([build_header(opcode, n, fin, rsv1, key)] + _mask_parts(payload, key, n))
        return build_header(opcode, n, fin, rsv1, key) + apply_mask(payload, key)
    return build_header(opcode, n, fin, rsv1) + payload


def parse_single_frame(data: bytes, expect_masked: bool) -> Optional[Tuple[int, bytes]]:
    """(opcode, unmasked payload) when ``data`` is exactly one complete, final
    text or binary frame of at most 64 KiB, without RSV bits and masked as
    ``expect_masked`` says; None for anything else.

    §perf: the common case of one small message per read, without the
    incremental parser's bookkeeping. It only *recognises* frames whose header
    is valid; everything else, errors included, goes to :class:`FrameParser`.
    """
    n = len(data)
    if n < 2:
        return None
    b0 = data[0]
    if b0 != 0x81 and b0 != 0x82:  # FIN + TEXT / BINARY, no RSV bits
        return None
    b1 = data[1]
    length = b1 & 0x7F
    if length < 126:
        start = 2
    elif length == 126 and n >= 4:
        length = (data[2] << 8) | data[3]
        start = 4
    else:
        return None
    if b1 & 0x80:
        if not expect_masked or n != start + 4 + length:
            return None
        return b0 & 0x0F, _mask_block(data[start + 4:], data[start:start + 4], length)
    if expect_masked or n != start + length:
        return None
    return b0 & 0x0F, data[start:]


class Frame(object):
    """One parsed frame; ``payload`` is already unmasked."""

    __slots__ = ("opcode", "payload", "fin", "rsv1")

    def __init__(self, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> None:
        self.opcode = opcode
        self.payload = payload
        self.fin = fin
        self.rsv1 = rsv1

    def __repr__(self) -> str:
        return "Frame(%s, %d bytes, fin=%s, rsv1=%s)" % (
            OPCODE_NAMES.get(self.opcode, hex(self.opcode)), len(self.payload), self.fin, self.rsv1)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Frame) and self.opcode == other.opcode and self.payload == other.payload
                and self.fin == other.fin and self.rsv1 == other.rsv1)


class FrameParser(object):
    """Incremental parser: ``feed`` bytes, then ``next_frame`` until it returns None.

    Frame-level rules are checked here, on the header alone: reserved bits
    (RSV1 only when an extension negotiated it), reserved opcodes, control
    frames fragmented or over 125 bytes, masking per side (§5.1), a 64-bit
    length with its most significant bit set, and a data frame's declared
    length beyond ``max_size``. Message-level rules (fragment order, UTF-8) live in
    :mod:`simplews.protocol`.
    """

    def __init__(self, expect_masked: bool, max_size: Optional[int] = None, allow_rsv1: bool = False) -> None:
        self.expect_masked = expect_masked
        self.max_size = max_size
        self.allow_rsv1 = allow_rsv1
        self._buf = bytearray()
        self._pos = 0
        # header of the frame whose payload is still arriving: (fin, rsv1, opcode, mask_key, length, header_len)
        self._header = None  # type: Optional[Tuple[bool, bool, int, Optional[bytes], int, int]]

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos == len(self._buf):
            self._buf = bytearray(data)
            self._pos = 0
        else:
            self._buf += data

    def next_frame(self, max_size: Optional[int] = None) -> Optional[Frame]:
        """The next complete frame, or None until more bytes are fed.

        ``max_size`` overrides the parser's limit for this frame (the protocol
        passes what is left of the message budget). Raises ProtocolError or
        PayloadTooBig on the header, before the payload is buffered.
        """
        header = self._header
        if header is None:
            header = self._parse_header(self.max_size if max_size is None else max_size)
            if header is None:
                return None
            self._header = header
        fin, rsv1, opcode, mask_key, length, header_len = header
        start = self._pos + header_len
        end = start + length
        buf = self._buf
        if len(buf) < end:
            return None
        if length <= _MASK_CHUNK:
            payload = bytes(buf[start:end])
            if mask_key is not None:
                payload = apply_mask(payload, mask_key)
        else:
            # A large payload is copied once (or not at all before unmasking): through a
            # memoryview slice, released before the buffer is resized below.
            with memoryview(buf) as view:
                chunk = view[start:end]
                if mask_key is not None:
                    payload = apply_mask(chunk, mask_key)
                else:
                    payload = bytes(chunk)
                chunk.release()
        self._header = None
        if end == len(buf):
            self._buf = bytearray()
            self._pos = 0
        elif end > 65536:
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return Frame(opcode, payload, fin, rsv1)

    def frame_in_progress(self) -> Optional[Tuple[int, bool]]:
        """(opcode, rsv1) of a frame whose header is parsed but payload incomplete."""
        header = self._header
        if header is None:
            return None
        return header[2], header[1]

    def peek_payload(self, start: int) -> Optional[Tuple[int, bool, bytes]]:
        """Unmasked bytes ``start:`` of the payload of the frame still arriving.

        Returns (opcode, rsv1, bytes) or None when no frame is in progress. Lets
        the protocol validate UTF-8 before a long text frame has fully arrived.
        """
        header = self._header
        if header is None:
            return None
        fin, rsv1, opcode, mask_key, length, header_len = header
        begin = self._pos + header_len
        end = min(len(self._buf), begin + length)
        if end - begin <= start:
            return opcode, rsv1, b""
        chunk = bytes(self._buf[begin + start:end])
        if mask_key is not None:
            shift = start % 4
            chunk = apply_mask(chunk, mask_key[shift:] + mask_key[:shift])
        return opcode, rsv1, chunk

    def _parse_header(self, max_size: Optional[int]) -> Optional[Tuple[bool, bool, int, Optional[bytes], int, int]]:
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < 2:
            return None
        b0 = buf[pos]
        b1 = buf[pos + 1]
        fin = bool(b0 & 0x80)
        rsv1 = bool(b0 & 0x40)
        opcode = b0 & 0x0F
        masked = bool(b1 & 0x80)
        length = b1 & 0x7F
        if b0 & 0x30 or (rsv1 and not self.allow_rsv1):
            raise ProtocolError("reserved bits set in frame header (RSV=%d) without a negotiated extension"
                                % ((b0 >> 4) & 0x7))
        if opcode not in DATA_OPCODES and opcode not in CONTROL_OPCODES:
            raise ProtocolError("reserved opcode 0x%X" % opcode)
        if opcode in CONTROL_OPCODES:
            if not fin:
                raise ProtocolError("fragmented control frame (%s)" % OPCODE_NAMES[opcode])
            if length > MAX_CONTROL_PAYLOAD:
                raise ProtocolError("control frame (%s) payload over 125 bytes" % OPCODE_NAMES[opcode])
            if rsv1:
                raise ProtocolError("RSV1 set on a control frame")
        if masked != self.expect_masked:
            if self.expect_masked:
                raise ProtocolError("unmasked frame from client: client frames must be masked")
            raise ProtocolError("masked frame from server: server frames must not be masked")
        header_len = 2
        if length == 126:
            header_len = 4
            if available < 4:
                return None
            length = (buf[pos + 2] << 8) | buf[pos + 3]
        elif length == 127:
            header_len = 10
            if available < 10:
                return None
            length = int.from_bytes(buf[pos + 2:pos + 10], "big")
            if length >> 63:
                raise ProtocolError("64-bit payload length with its most significant bit set")
        # The limit is a message budget; control frames (capped at 125 above)
        # are not part of a message and may arrive between its fragments.
        if max_size is not None and length > max_size and opcode not in CONTROL_OPCODES:
            raise PayloadTooBig("frame of %d bytes exceeds the limit of %d bytes" % (length, max_size))
        mask_key = None
        if masked:
            if available < header_len + 4:
                return None
            mask_key = bytes(buf[pos + header_len:pos + header_len + 4])
            header_len += 4
        return fin, rsv1, opcode, mask_key, length, header_len
