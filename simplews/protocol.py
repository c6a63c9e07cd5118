"""The WebSocket connection state machine (RFC 6455), sans-I/O.

A :class:`Protocol` takes the bytes read from the network with
:meth:`~Protocol.receive_data` and returns what they mean: data messages
(``str`` for text, ``bytes`` for binary) and control events (:class:`Ping`,
:class:`Pong`, :class:`Close`). Sending is a method call that returns the bytes
to write. Bytes the protocol must send on its own (pongs, the close reply, the
handshake answer) wait in :meth:`~Protocol.data_to_send`.

It never touches a socket, a thread or a clock: the I/O layers
(:mod:`simplews.connection`, the servers, the client) move bytes and keep time.
Every rule of RFC 6455 and RFC 7692 that concerns a connection is enforced
here, once: fragmentation order, UTF-8 validity (failing on the first invalid
byte, even inside a frame still arriving), close codes and reasons, masking
per side, size limits before buffering, and which side closes TCP first.

:class:`ServerProtocol` and :class:`ClientProtocol` add the opening handshake
(state CONNECTING), so the threaded and the selectors modes drive it the same way.
"""

import codecs
import enum
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from . import frames, handshake, http11
from .exceptions import (
    ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake,
    InvalidStatus, NegotiationError, PayloadTooBig, ProtocolError,
)
from .frames import (
    CLOSE_ABNORMAL, CLOSE_INVALID_PAYLOAD, CLOSE_NO_STATUS, CLOSE_NORMAL,
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, FrameParser, build_frame,
)

__all__ = [
    "State", "SERVER", "CLIENT", "Ping", "Pong", "Close", "Fragment", "Event", "Data",
    "Protocol", "ServerProtocol", "ClientProtocol", "DEFAULT_MAX_MESSAGE_SIZE",
]

SERVER = "server"
CLIENT = "client"

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

Data = Union[str, bytes]

_utf8_decoder_factory = codecs.getincrementaldecoder("utf-8")


class State(enum.IntEnum):
    """RFC 6455 §4-§7 connection states."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class Ping(object):
    """A ping was received (the protocol has already queued the pong)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return "Ping(%r)" % (self.data,)


class Pong(object):
    """A pong was received."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return "Pong(%r)" % (self.data,)


class Close(object):
    """A close frame was received (the protocol has already queued the reply)."""

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return "Close(%d, %r)" % (self.code, self.reason)


class Fragment(object):
    """One frame's worth of a data message streamed as it arrives (see
    :meth:`Protocol.stream_next_message`): ``str`` pieces for text, ``bytes``
    for binary; ``fin`` marks the last piece."""

    __slots__ = ("data", "fin")

    def __init__(self, data: "Data", fin: bool) -> None:
        self.data = data
        self.fin = fin

    def __repr__(self) -> str:
        return "Fragment(%r, fin=%r)" % (self.data, self.fin)


Event = Union[str, bytes, Ping, Pong, Close, Fragment]


# Deflate's worst case grows incompressible data by 5 bytes per 16 KiB block:
# the most compressed bytes a message within the limit can take on the wire.
def _wire_limit(limit: int) -> int:
    return limit + (limit >> 11) + 64


class Protocol(object):
    """One WebSocket connection after (or, in subclasses, during) the handshake.

    Not thread-safe: the I/O layer serialises calls.
    """

    # Slots: one of these lives as long as each connection (memory per idle connection).
    __slots__ = (
        "side", "state", "max_message_size", "deflate", "fast_path", "_mask", "_expect_masked", "_parser",
        "_outgoing", "_msg_opcode", "_msg_compressed", "_msg_parts", "_msg_size", "_decoder", "_peeked",
        "_lookahead", "_streaming", "_send_opcode", "close_sent", "close_rcvd", "failure", "eof_received",
        "_deferred_failure", "__weakref__",
    )

    def __init__(self, side: str, max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE,
                 deflate: Any = None, state: State = State.OPEN) -> None:
        if side not in (SERVER, CLIENT):
            raise ValueError("side must be %r or %r" % (SERVER, CLIENT))
        self.side = side
        self.state = state
        self.max_message_size = max_message_size
        self.deflate = deflate
        self._mask = side == CLIENT
        self._expect_masked = side == SERVER
        # Whole small frames skip the incremental parser (same rules, fewer calls);
        # False sends every frame through FrameParser (e.g. to trace frames).
        self.fast_path = True
        self._parser = FrameParser(expect_masked=side == SERVER, max_size=None,
                                   allow_rsv1=deflate is not None)
        self._outgoing = []  # type: List[bytes]
        # message being received
        self._msg_opcode = 0          # OP_TEXT / OP_BINARY while a message is in progress, else 0
        self._msg_compressed = False
        self._msg_parts = []          # type: List[Any]
        self._msg_size = 0
        self._decoder = None          # type: Any
        self._peeked = 0              # bytes of the arriving frame already UTF-8 checked
        self._lookahead = (b"", 0)    # UTF-8 decoder state after the peeked bytes
        self._streaming = False       # deliver the current/next message as Fragment events
        # message being sent in fragments
        self._send_opcode = 0
        # closing handshake
        self.close_sent = None        # type: Optional[Tuple[int, str]]
        self.close_rcvd = None        # type: Optional[Tuple[int, str]]
        self.failure = None           # type: Optional[Exception]
        self.eof_received = False
        # a protocol error found after complete messages, reported on the next receive_data call
        self._deferred_failure = None  # type: Optional[ProtocolError]

    # ------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> List[Event]:
        """Feed bytes read from the network; returns the events they complete.

        Protocol violations never raise: the connection is failed (a close frame
        with the right code is queued, see :attr:`failure`) and the events before
        it are returned.

        Frames are processed in order (§5.4): when the error comes after
        complete messages in the same batch, those messages are returned and
        the connection fails on the *next* call (see :attr:`failure_pending`),
        so the application can still answer them, as if the frames had arrived
        one read at a time. Autobahn cases 3.2, 4.1.3, 5.15 and friends.
        """
        if self.state is State.CLOSED or self.close_rcvd is not None:
            return []  # nothing may follow the peer's close frame; it is discarded
        if self._deferred_failure is not None:
            exc = self._deferred_failure
            self._deferred_failure = None
            self._fail_on(exc)
            return []
        parser = self._parser
        if (not parser._buf and self.fast_path and not self._msg_opcode and not self._streaming
                and self.state is State.OPEN):
            message = self._whole_message(data)
            if message is not None:
                return [message]
        parser.feed(data)
        events = []  # type: List[Event]
        try:
            while True:
                frame = parser.next_frame(self._frame_limit())
                if frame is None:
                    self._check_partial_text()
                    return events
                self._peeked_frame_done()
                opcode = frame.opcode
                if opcode == OP_TEXT or opcode == OP_BINARY or opcode == OP_CONT:
                    data_event = self._receive_data_frame(frame)
                    if data_event is not None:
                        events.append(data_event)
                elif opcode == OP_PING:
                    events.append(Ping(frame.payload))
                    if self.state is State.OPEN:
                        self._outgoing.append(build_frame(OP_PONG, frame.payload, mask=self._mask))
                elif opcode == OP_PONG:
                    events.append(Pong(frame.payload))
                else:
                    events.append(self._receive_close(frame.payload))
                    return events
        except ProtocolError as exc:
            if self.state is State.OPEN and any(isinstance(event, (str, bytes)) for event in events):
                self._deferred_failure = exc
            else:
                self._fail_on(exc)
            return events

    def stream_next_message(self) -> None:
        """Deliver the next data message (or the rest of the one arriving) as
        :class:`Fragment` events, one per frame, instead of whole.

        Nothing is accumulated: ``max_message_size`` then bounds each frame
        (after decompression), not the message, so memory stays bounded
        however long the message. Applies to one message, then whole messages
        resume.
        """
        self._streaming = True

    def _whole_message(self, data: bytes) -> Optional[Data]:
        """§perf: ``data`` is exactly one small valid message (the common case): decode it
        without the parser. None hands everything else, errors included, to the parser."""
        frame = frames.parse_single_frame(data, self._expect_masked)
        if frame is None:
            return None
        opcode, payload = frame
        limit = self.max_message_size
        if limit is not None and len(payload) > limit:
            return None
        if opcode == OP_BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError:
            return None

    @property
    def failure_pending(self) -> bool:
        """Bytes already received fail the connection once the messages before them are read.

        The I/O layer then calls ``receive_data(b"")`` (instead of reading the
        network) when the application asks for the next message.
        """
        return self._deferred_failure is not None

    def _fail_on(self, exc: ProtocolError) -> None:
        self.fail(exc.code, str(exc) if exc.code != CLOSE_INVALID_PAYLOAD else "invalid UTF-8", exc)

    def receive_eof(self) -> None:
        """The peer closed its side of TCP (or the connection dropped)."""
        self.eof_received = True
        if self._deferred_failure is not None:
            if self.failure is None:
                self.failure = self._deferred_failure
            self._deferred_failure = None
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._outgoing = []

    def connection_lost(self, exc: Optional[Exception] = None) -> None:
        """The transport failed (reset, write timeout): the connection is over."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            if self.failure is None and exc is not None and self.close_rcvd is None:
                self.failure = exc
        self._outgoing = []

    def data_to_send(self) -> bytes:
        """Bytes queued by the protocol itself, to be written in order."""
        if not self._outgoing:
            return b""
        data = b"".join(self._outgoing)
        self._outgoing = []
        return data

    def _frame_limit(self) -> Optional[int]:
        limit = self.max_message_size
        if limit is None:
            return None
        limit -= self._msg_size
        if self.deflate is not None:
            return _wire_limit(limit)
        return limit

    def _receive_data_frame(self, frame: frames.Frame) -> Union[Data, Fragment, None]:
        opcode = frame.opcode
        payload = frame.payload
        if opcode == OP_CONT:
            if not self._msg_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame (only the first frame may carry it)")
        else:
            if self._msg_opcode:
                raise ProtocolError("new %s frame while a fragmented message is in progress"
                                    % frames.OPCODE_NAMES[opcode])
            if frame.fin and not frame.rsv1 and not self._streaming:  # the common case: one whole frame
                return self._single_frame_message(opcode, payload)
            self._msg_opcode = opcode
            self._msg_compressed = frame.rsv1
            self._msg_size = 0
            if opcode == OP_TEXT:
                self._decoder = _utf8_decoder_factory()
        if self._msg_compressed:
            payload = self.deflate.decompress(payload, frame.fin, self._remaining())
        self._msg_size += len(payload)
        if self.max_message_size is not None and self._msg_size > self.max_message_size:
            raise PayloadTooBig("message exceeds the limit of %d bytes" % self.max_message_size)
        if self._msg_opcode == OP_TEXT:
            try:
                self._msg_parts.append(self._decoder.decode(payload, frame.fin))
            except UnicodeDecodeError as exc:
                raise ProtocolError("invalid UTF-8 in text message: %s" % exc.reason,
                                    code=CLOSE_INVALID_PAYLOAD) from None
        else:
            self._msg_parts.append(payload)
        if self._streaming:
            piece = self._take_parts()
            self._msg_size = 0  # streamed: the limit bounds each frame, nothing is held
            if frame.fin:
                self._end_message()
            return Fragment(piece, frame.fin)
        if not frame.fin:
            return None
        message = self._take_parts()
        self._end_message()
        return message

    def _take_parts(self) -> Data:
        parts = self._msg_parts
        self._msg_parts = []
        if len(parts) == 1:
            return parts[0]  # type: ignore[no-any-return]
        return ("" if self._msg_opcode == OP_TEXT else b"").join(parts)

    def _end_message(self) -> None:
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_size = 0
        self._decoder = None
        self._streaming = False

    def _single_frame_message(self, opcode: int, payload: bytes) -> Data:
        if self.max_message_size is not None and len(payload) > self.max_message_size:
            raise PayloadTooBig("message of %d bytes exceeds the limit of %d bytes"
                                % (len(payload), self.max_message_size))
        if opcode == OP_BINARY:
            return payload
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid UTF-8 in text message: %s" % exc.reason,
                                code=CLOSE_INVALID_PAYLOAD) from None

    def _remaining(self) -> Optional[int]:
        if self.max_message_size is None:
            return None
        return self.max_message_size - self._msg_size

    def _check_partial_text(self) -> None:
        """Fail fast on invalid UTF-8 in a text frame that has not fully arrived."""
        current = self._parser.frame_in_progress()
        if current is None:
            return
        opcode, rsv1 = current
        if rsv1:
            return
        if opcode == OP_TEXT and not self._msg_opcode:
            pass
        elif not (opcode == OP_CONT and self._msg_opcode == OP_TEXT and not self._msg_compressed):
            return
        peeked = self._parser.peek_payload(self._peeked)
        if peeked is not None and peeked[2]:
            self._validate_ahead(peeked[2])

    def _validate_ahead(self, chunk: bytes) -> None:
        # A copy of the message decoder checks the new bytes; the real decoder
        # decodes the frame once it is complete.
        checker = _utf8_decoder_factory()
        checker.setstate(self._lookahead_state())
        try:
            checker.decode(chunk, False)
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid UTF-8 in text message: %s" % exc.reason,
                                code=CLOSE_INVALID_PAYLOAD) from None
        self._lookahead = checker.getstate()
        self._peeked += len(chunk)

    def _lookahead_state(self) -> Tuple[bytes, int]:
        if self._peeked:
            return self._lookahead
        if self._decoder is not None:
            return self._decoder.getstate()  # type: ignore[no-any-return]
        return (b"", 0)

    def _peeked_frame_done(self) -> None:
        self._peeked = 0

    def _receive_close(self, payload: bytes) -> Close:
        code, reason = frames.decode_close(payload)
        self.close_rcvd = (code, reason)
        if self.state is State.OPEN:
            # §5.5.1: answer with a close frame echoing the code.
            reply_code = code if code != CLOSE_NO_STATUS else CLOSE_NO_STATUS
            self._queue_close(reply_code, "")
        self.state = State.CLOSED if self.close_sent is not None else State.CLOSING
        return Close(code, reason)

    # ------------------------------------------------------------------ sending

    def send_data(self, data: Union[str, bytes, bytearray, memoryview]) -> bytes:
        """The frame bytes of one whole message: ``str`` is sent as text, ``bytes`` as binary."""
        if isinstance(data, str):
            opcode = OP_TEXT
            payload = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            opcode = OP_BINARY
            payload = bytes(data)
        else:
            raise TypeError("a message must be str or bytes, not %s" % type(data).__name__)
        if self.state is not State.OPEN or self._send_opcode:
            self._check_can_send()
            raise RuntimeError("a fragmented message is being sent; finish it first")
        deflate = self.deflate
        if deflate is not None and deflate.should_compress(len(payload)):
            return build_frame(opcode, deflate.compress(payload), rsv1=True, mask=self._mask)
        return build_frame(opcode, payload, mask=self._mask)

    def send_fragment(self, data: Data, fin: bool) -> bytes:
        """One frame of a fragmented message; the first call sets text or binary.

        Fragmented messages are sent uncompressed (RFC 7692 allows it per message).
        """
        if isinstance(data, str):
            opcode = OP_TEXT
            payload = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            opcode = OP_BINARY
            payload = bytes(data)
        else:
            raise TypeError("a fragment must be str or bytes, not %s" % type(data).__name__)
        self._check_can_send()
        if self._send_opcode:
            if opcode != self._send_opcode:
                raise TypeError("all fragments of a message must be of one type (str or bytes)")
            opcode = OP_CONT
        else:
            self._send_opcode = opcode
        if fin:
            self._send_opcode = 0
        return build_frame(opcode, payload, fin=fin, mask=self._mask)

    def send_ping(self, data: bytes = b"") -> bytes:
        self._check_control(data)
        return build_frame(OP_PING, data, mask=self._mask)

    def send_pong(self, data: bytes = b"") -> bytes:
        self._check_control(data)
        return build_frame(OP_PONG, data, mask=self._mask)

    def send_close(self, code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
        """Start (or finish) the closing handshake; returns b"" if a close was already sent."""
        payload = frames.encode_close(code, reason)  # validates before any state changes
        if self.close_sent is not None or self.state is State.CLOSED:
            return b""
        if self.state is State.CONNECTING:
            raise RuntimeError("cannot close: the handshake is not complete")
        self.close_sent = (code, reason)
        self.state = State.CLOSED if self.close_rcvd is not None else State.CLOSING
        return build_frame(OP_CLOSE, payload, mask=self._mask)

    def fail(self, code: int, reason: str = "", exc: Optional[Exception] = None) -> None:
        """Fail the connection (§7.1.7): queue a close frame with ``code``, then TCP must close."""
        if self.failure is None:
            self.failure = exc if exc is not None else ProtocolError(reason or "connection failed", code)
        if self.state is State.OPEN or (self.state is State.CLOSING and self.close_sent is None):
            self._queue_close(code, _truncate_reason(reason))
        self.state = State.CLOSED

    def _queue_close(self, code: int, reason: str) -> None:
        self.close_sent = (code, reason)
        self._outgoing.append(build_frame(OP_CLOSE, frames.encode_close(code, reason), mask=self._mask))

    def _check_can_send(self) -> None:
        if self.state is not State.OPEN:
            if self.state is State.CONNECTING:
                raise RuntimeError("cannot send: the handshake is not complete")
            raise self.closed_exception()

    def _check_control(self, data: bytes) -> None:
        if len(data) > frames.MAX_CONTROL_PAYLOAD:
            raise ValueError("control frame payload over 125 bytes (%d)" % len(data))
        self._check_can_send()

    # ------------------------------------------------------------------ closing

    @property
    def close_code(self) -> int:
        """The code the connection closed with: the peer's, else ours if we sent one, else 1006."""
        if self.close_rcvd is not None:
            return self.close_rcvd[0]
        if self.close_sent is not None:
            return self.close_sent[0]
        return CLOSE_ABNORMAL

    @property
    def close_reason(self) -> str:
        if self.close_rcvd is not None:
            return self.close_rcvd[1]
        if self.close_sent is not None:
            return self.close_sent[1]
        return ""

    def closed_exception(self) -> ConnectionClosed:
        """The exception that tells a caller how the connection ended."""
        code = self.close_code
        if code in (CLOSE_NORMAL, frames.CLOSE_GOING_AWAY, CLOSE_NO_STATUS) and self.failure is None:
            return ConnectionClosedOK(code, self.close_reason)
        exc = ConnectionClosedError(code, self.close_reason)
        if self.failure is not None:
            exc.__cause__ = self.failure
        return exc

    def close_transport_now(self) -> bool:
        """Whether the I/O layer should close TCP now.

        §7.1.1: the server closes first once close frames are exchanged (or the
        connection failed); the client waits for the server's EOF, closing by
        itself only on failure or after its close timeout.
        """
        if self.state is not State.CLOSED:
            return False
        return self.side == SERVER or self.failure is not None or self.eof_received


def _truncate_reason(reason: str) -> str:
    data = reason.encode("utf-8")[:123]
    return data.decode("utf-8", "ignore")


class ServerProtocol(Protocol):
    """The server side, starting in CONNECTING with the HTTP upgrade request.

    Flow: feed bytes until :attr:`request` is set (or :attr:`handshake_exc`, with
    a rejection queued); the I/O layer may answer it itself with :meth:`reject`
    (e.g. a ``process_request`` hook), else calls :meth:`accept`.
    """

    __slots__ = ("compression", "origins", "subprotocols", "select_subprotocol", "extra_headers",
                 "_head_reader", "request", "response_headers", "subprotocol", "handshake_exc")

    def __init__(self, max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE,
                 compression: Any = "default", origins: Optional[Sequence[Optional[str]]] = None,
                 subprotocols: Optional[Sequence[str]] = None,
                 select_subprotocol: Optional[Callable[[List[str]], Optional[str]]] = None,
                 extra_headers: Sequence[Tuple[str, str]] = ()) -> None:
        super().__init__(SERVER, max_message_size, None, State.CONNECTING)
        self.compression = _resolve_compression(compression)
        self.origins = origins
        self.subprotocols = subprotocols
        self.select_subprotocol = select_subprotocol
        self.extra_headers = list(extra_headers)
        self._head_reader = http11.HeadReader(is_request=True)  # type: Optional[http11.HeadReader]
        self.request = None           # type: Optional[http11.Request]
        self.response_headers = None  # type: Optional[http11.Headers]
        self.subprotocol = None       # type: Optional[str]
        self.handshake_exc = None     # type: Optional[InvalidHandshake]

    def receive_data(self, data: bytes) -> List[Event]:
        if self.state is not State.CONNECTING:
            return super().receive_data(data)
        if self._head_reader is None:  # request complete; more bytes wait for accept()
            self._parser.feed(data)
            return []
        try:
            result = self._head_reader.feed(data)
            if result is None:
                return []
            head, rest = result
            self._head_reader = None
            self.request = http11.parse_request(head)
        except InvalidHandshake as exc:
            self._head_reader = None
            self._reject_exc(exc)
            return []
        self._parser.feed(rest)
        return []

    def accept(self, extra_headers: Sequence[Tuple[str, str]] = ()) -> bytes:
        """Validate the request and return the 101 response (or a rejection, see :attr:`handshake_exc`)."""
        request = self.request
        if request is None or self.state is not State.CONNECTING:
            raise RuntimeError("no handshake request to accept")
        try:
            key = handshake.check_request(request)
            handshake.check_origin(request, self.origins)
            subprotocol = self._choose_subprotocol(request)
            extension_header = None
            if self.compression is not None:
                extension_header = self._negotiate_deflate(request)
        except InvalidHandshake as exc:
            self._reject_exc(exc)
            return self.data_to_send()
        self.subprotocol = subprotocol
        data, self.response_headers = handshake.build_response(
            key, subprotocol, extension_header, list(self.extra_headers) + list(extra_headers))
        self.state = State.OPEN
        return data

    def reject(self, status: int, headers: Sequence[Tuple[str, str]] = (), body: bytes = b"",
               content_type: str = "text/plain; charset=utf-8") -> bytes:
        """Answer the request with a plain HTTP response instead of upgrading
        (headers only if the request was a HEAD)."""
        self.state = State.CLOSED
        self.response_headers = http11.Headers(headers)
        head = self.request is not None and self.request.method == "HEAD"
        return handshake.build_rejection(status, body, headers, content_type, head=head)

    def _reject_exc(self, exc: InvalidHandshake) -> None:
        self.handshake_exc = exc
        body = ("Failed to open a WebSocket connection: %s.\n" % exc).encode("utf-8")
        self._outgoing.append(self.reject(exc.status, exc.headers, body))

    def _choose_subprotocol(self, request: http11.Request) -> Optional[str]:
        if self.select_subprotocol is not None:
            offered = handshake.parse_token_list(request.headers.get_all("Sec-WebSocket-Protocol"))
            chosen = self.select_subprotocol(offered)
            if chosen is not None and chosen not in offered:
                raise InvalidHandshake("select_subprotocol returned %r, which the client did not offer" % chosen,
                                       status=500)
            return chosen
        return handshake.select_subprotocol(request, self.subprotocols)

    def _negotiate_deflate(self, request: http11.Request) -> Optional[str]:
        from . import deflate
        offers = handshake.parse_extensions(request.headers.get_all("Sec-WebSocket-Extensions"))
        result = deflate.server_negotiate(self.compression, offers)
        if result is None:
            return None
        header, codec = result
        self.deflate = codec
        self._parser.allow_rsv1 = True
        return header


class ClientProtocol(Protocol):
    """The client side: :meth:`connect` gives the request, then feed the response.

    Bytes that follow the 101 response in the same read stay buffered (no
    events are returned while CONNECTING); call ``receive_data(b"")`` once
    the connection is set up to get the messages they hold.
    """

    __slots__ = ("host", "port", "resource", "secure", "compression", "origin", "subprotocols",
                 "extra_headers", "credentials", "key", "request_headers", "response", "subprotocol",
                 "handshake_exc", "_head_reader", "_body", "_body_length")

    def __init__(self, host: str, port: int, resource: str = "/", secure: bool = False,
                 max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE, compression: Any = "default",
                 origin: Optional[str] = None, subprotocols: Optional[Sequence[str]] = None,
                 extra_headers: Sequence[Tuple[str, str]] = (),
                 credentials: Optional[Tuple[str, str]] = None) -> None:
        super().__init__(CLIENT, max_message_size, None, State.CONNECTING)
        self.host = host
        self.port = port
        self.resource = resource
        self.secure = secure
        self.compression = _resolve_compression(compression)
        self.origin = origin
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.extra_headers = list(extra_headers)
        self.credentials = credentials
        self.key = handshake.generate_key()
        self.request_headers = None   # type: Optional[http11.Headers]
        self.response = None          # type: Optional[http11.Response]
        self.subprotocol = None       # type: Optional[str]
        self.handshake_exc = None     # type: Optional[InvalidHandshake]
        self._head_reader = http11.HeadReader(is_request=False)
        self._body = None             # type: Optional[bytearray]
        self._body_length = None      # type: Optional[int]

    def connect(self) -> bytes:
        """The HTTP upgrade request to send."""
        offer = None
        if self.compression is not None:
            from . import deflate
            offer = deflate.client_offer(self.compression)
        data, self.request_headers = handshake.build_request(
            self.host, self.port, self.resource, self.key, self.secure, self.origin,
            self.subprotocols, offer, self.extra_headers, self.credentials)
        return data

    def receive_data(self, data: bytes) -> List[Event]:
        if self.state is not State.CONNECTING:
            return super().receive_data(data)
        if self._body is not None:
            self._receive_body(data)
            return []
        try:
            result = self._head_reader.feed(data)
            if result is None:
                return []
            head, rest = result
            response = http11.parse_response(head)
            self.response = response
            if response.status != 101:
                self._body = bytearray()
                self._body_length = http11.content_length(response.headers)
                self._receive_body(rest)
                return []
            self.subprotocol = handshake.check_response(response, self.key, self.subprotocols)
            self._accept_extensions(response)
        except InvalidHandshake as exc:
            self._handshake_failed(exc)
            return []
        self.state = State.OPEN
        # Frames that came with the response stay buffered, as on the server
        # side: the I/O layer parses them (receive_data(b"")) once it is ready.
        self._parser.feed(rest)
        return []

    def receive_eof(self) -> None:
        if self.state is State.CONNECTING:
            if self._body is not None:
                self._finish_body()
            else:
                self._handshake_failed(InvalidHandshake("connection closed during the opening handshake"))
        super().receive_eof()

    def _accept_extensions(self, response: http11.Response) -> None:
        extensions = handshake.parse_extensions(response.headers.get_all("Sec-WebSocket-Extensions"))
        if not extensions:
            return
        if self.compression is None:
            raise NegotiationError("server answered with extensions %s that were not offered"
                                   % handshake.serialize_extensions(extensions))
        from . import deflate
        codec = deflate.client_accept(self.compression, extensions)
        if codec is not None:
            self.deflate = codec
            self._parser.allow_rsv1 = True

    def _receive_body(self, data: bytes) -> None:
        assert self._body is not None
        room = http11.MAX_BODY - len(self._body)
        if self._body_length is not None:
            room = min(room, self._body_length - len(self._body))
        self._body += data[:max(room, 0)]
        if len(self._body) >= http11.MAX_BODY or (
                self._body_length is not None and len(self._body) >= self._body_length):
            self._finish_body()

    def _finish_body(self) -> None:
        response = self.response
        assert response is not None and self._body is not None
        response.body = bytes(self._body)
        self._body = None
        self._handshake_failed(InvalidStatus(response.status, response.reason,
                                             response.headers.items(), response.body))

    def _handshake_failed(self, exc: InvalidHandshake) -> None:
        self.handshake_exc = exc
        self.state = State.CLOSED
        self.failure = exc


def _resolve_compression(compression: Any) -> Any:
    """``"default"`` -> a default DeflateConfig, ``None`` -> off, a DeflateConfig as is."""
    if compression is None:
        return None
    from . import deflate
    if isinstance(compression, str):
        if compression != "default":
            raise ValueError("compression must be 'default', None or a DeflateConfig, not %r" % compression)
        return deflate.DeflateConfig()
    if not isinstance(compression, deflate.DeflateConfig):
        raise TypeError("compression must be 'default', None or a DeflateConfig")
    return compression
