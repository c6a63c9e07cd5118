"""The selectors mode: one thread serves every connection.

``SimpleWSServer(handler, mode="selectors")`` (or :class:`SelectorServer`
directly) runs one event loop on the thread that calls ``serve_forever``: the
stdlib :mod:`selectors` module tells it which sockets are ready, non-blocking
reads feed the same sans-I/O :class:`~simplews.protocol.ServerProtocol` as the
threaded mode, and the bytes it returns wait in a per-connection write buffer
that the loop writes when the socket can take them. No protocol rule lives
here; this module moves bytes and keeps time.

How it differs from the threaded mode:

* The handler must be a :class:`~simplews.WebSocketHandler` instance: its
  ``on_open``, ``on_message`` and ``on_close`` run on the loop thread, so they
  must not block (a slow callback delays every connection). ``recv()`` and
  iteration raise TypeError. The same handler class runs unchanged in both
  modes.
* :meth:`SelectorWebSocket.send` never blocks: it queues the frame and returns;
  ``buffered_amount`` is what waits to be written. ``close()`` starts the
  closing handshake and returns (``on_close`` runs when TCP is closed, after
  the peer's answer or ``close_timeout``). ``ping()`` returns a
  :class:`SelectorPing`, whose ``wait()`` raises RuntimeError on the loop
  thread (use ``done`` or ``ws.on_pong`` there). All of these, and
  :meth:`SelectorServer.broadcast`, :meth:`SelectorServer.call_soon` and
  :meth:`SelectorServer.call_later`, are safe from any thread: the loop is
  woken through a socket pair.
* Flow control replaces ``write_timeout`` (ignored in this mode): when a
  ``send`` finds more than ``write_limit`` bytes (default 4 MiB) still waiting
  from earlier sends, the peer is not reading: the unsent frames are dropped,
  the connection is closed with 1008 (policy violation) and that ``send``
  raises :class:`~simplews.ConnectionClosedError`. One message larger than
  the limit is fine: a buffer holds at most ``write_limit`` plus one message.
  While more than half of ``write_limit`` waits, the loop stops reading that
  socket, so a client that sends without reading the answers is slowed down
  by TCP itself; reading resumes below a quarter. An application that hands
  messages to other threads can do the same with
  :meth:`SelectorWebSocket.pause_reading` /
  :meth:`~SelectorWebSocket.resume_reading`. ``broadcast`` skips the
  connections over their limit (they miss the message and stay open). A peer
  that stops reading altogether is also caught by the keepalive ping timeout
  (1011).
* ``max_queue`` does not apply: messages are handed to ``on_message`` as they
  are parsed.
* Timeouts (``open_timeout`` for the HTTP and TLS handshakes, keepalive pings,
  ``close_timeout``) are timers in one heap, checked by the loop.
"""

import collections
import errno
import heapq
import itertools
import logging
import os
import selectors
import socket
import threading
import time
from typing import Any, Callable, Deque, Iterable, List, Optional, Set, Tuple, Type, Union

from .connection import READ_SIZE, ConnectionState
from .exceptions import ConnectionClosed, ConnectionClosedError
from .frames import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR, CLOSE_NORMAL, CLOSE_POLICY_VIOLATION
from .protocol import Close, Data, Pong, ServerProtocol, State
from .server import (
    SimpleWSServer, WebSocketHandler, _close_quietly, _drain_wakeup, _format_address, _handshake_limit,
    _is_tls_alert,
)

__all__ = ["SelectorServer", "SelectorWebSocket", "SelectorPing", "TimerHandle", "DEFAULT_WRITE_LIMIT"]

logger = logging.getLogger("simplews")

DEFAULT_WRITE_LIMIT = 4 * 1024 * 1024
# Open connections per selectors server unless ``max_connections`` says otherwise: an
# idle connection costs a few KiB of Python objects plus kernel socket buffers, so
# the file-descriptor limit (``ulimit -n``) usually binds first.
DEFAULT_SELECTOR_MAX_CONNECTIONS = 10000

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE

# connection phases
_TLS, _HTTP, _OPEN, _LINGER, _DONE = range(5)

_COALESCE = 256 * 1024      # queued frames are joined into writes of up to this size
_LINGER_TIME = 1.0          # seconds to read (and drop) what a rejected client still sends
_LINGER_BYTES = READ_SIZE * 4
_TLS_READS = 16             # records read per readiness event before giving others a turn

try:
    import ssl as _ssl
    _WANT_READ = (_ssl.SSLWantReadError,)   # type: Tuple[Type[BaseException], ...]
    _WANT_WRITE = (_ssl.SSLWantWriteError,)  # type: Tuple[Type[BaseException], ...]
except ImportError:  # pragma: no cover - Python built without ssl
    _ssl = None  # type: ignore[assignment]
    _WANT_READ = ()
    _WANT_WRITE = ()

_BLOCKED = (BlockingIOError, InterruptedError) + _WANT_READ + _WANT_WRITE  # type: Tuple[Type[BaseException], ...]


class TimerHandle(object):
    """A callback scheduled with :meth:`SelectorServer.call_soon` or ``call_later``."""

    __slots__ = ("when", "_callback", "_args", "_server", "cancelled")

    def __init__(self, server: "SelectorServer", when: float, callback: Callable[..., Any],
                 args: Tuple[Any, ...]) -> None:
        self.when = when
        self._callback = callback  # type: Optional[Callable[..., Any]]
        self._args = args
        self._server = server
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (no effect once it ran); safe from any thread."""
        if not self.cancelled:
            self.cancelled = True
            self._callback = None
            self._args = ()
            self._server._cancelled_timers += 1

    def _run(self) -> None:
        callback = self._callback
        if callback is None:
            return
        args = self._args
        self._callback = None
        self._args = ()
        self.cancelled = True  # a handle runs once; cancel() afterwards is a no-op
        try:
            callback(*args)
        except Exception:
            logger.exception("callback %r failed", callback)

    def __repr__(self) -> str:
        return "<TimerHandle when=%.3f%s>" % (self.when, " cancelled" if self.cancelled else "")


class SelectorPing(object):
    """A ping in flight; ``latency`` is set when its pong arrives.

    :meth:`wait` blocks, so it is for other threads only: the loop thread must
    not wait for the loop (use ``done`` or ``ws.on_pong`` there).
    """

    __slots__ = ("data", "sent_at", "latency", "_ws", "_done", "_event")

    def __init__(self, ws: "SelectorWebSocket", data: bytes) -> None:
        self.data = data
        self.sent_at = time.monotonic()
        self.latency = None  # type: Optional[float]
        self._ws = ws
        self._done = False
        self._event = None  # type: Optional[threading.Event]

    @property
    def done(self) -> bool:
        return self._done

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the pong: True when it came, False on timeout or close.

        Raises RuntimeError on the loop thread (it would wait for itself).
        """
        ws = self._ws
        if ws._server._on_loop_thread():
            raise RuntimeError("Ping.wait() cannot be called on the selectors loop thread (it would block "
                               "every connection); check ping.done or set ws.on_pong instead")
        with ws._lock:
            if self._done:
                return True
            if ws._phase == _DONE:
                return False
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        event.wait(timeout)
        return self._done

    def _resolve(self, now: float) -> None:  # caller holds the connection lock
        self.latency = now - self.sent_at
        self._done = True
        if self._event is not None:
            self._event.set()

    def _abandon(self) -> None:  # connection closed: release waiters
        if self._event is not None:
            self._event.set()

    def __repr__(self) -> str:
        state = "latency=%.6fs" % self.latency if self.latency is not None else "pending"
        return "<SelectorPing %r %s>" % (self.data, state)


class SelectorWebSocket(ConnectionState):
    """One connection of a :class:`SelectorServer`, as handed to the handler.

    The surface of :class:`simplews.WebSocket` where it makes sense in an
    event loop: ``send`` queues (never blocks), ``close`` starts the closing
    handshake and returns, ``ping`` returns a :class:`SelectorPing`. Any
    attribute can be set on it to keep per-connection state.
    """

    __slots__ = (
        "_server", "_sock", "_proto", "_lock", "_phase", "_events", "_tls_want",
        "_out", "_started", "_buffered", "_want_flush", "_closing_tcp", "_shut_wr", "_lingered",
        "_paused", "_bp_paused", "_timer", "_abort_timer", "_ka_timer", "_ka_ping", "_ka_next",
        "_pings", "_handler_done", "_muted", "options",
        "path", "request_headers", "response_headers", "subprotocol", "remote_address", "local_address",
        "peer_address",
        "on_pong", "__dict__", "__weakref__",
    )
    _proto: ServerProtocol

    def __init__(self, server: "SelectorServer", sock: socket.socket, address: Any) -> None:
        self._server = server
        self._sock = sock
        self._proto = ServerProtocol(
            max_message_size=server.options.max_message_size, compression=server.options.compression,
            origins=server.origins, subprotocols=server.subprotocols,
            select_subprotocol=server.select_subprotocol, extra_headers=server.extra_headers)
        self._lock = threading.Lock()
        self._phase = _HTTP
        self._events = 0
        self._tls_want = 0
        self._out = None  # type: Optional[Deque[Any]]
        self._started = False     # the first chunk of _out was (partly) handed to the socket
        self._buffered = 0
        self._want_flush = False
        self._closing_tcp = False
        self._shut_wr = False
        self._lingered = 0
        self._paused = False      # pause_reading()
        self._bp_paused = False   # write buffer over the high-water mark
        self._timer = None        # type: Optional[TimerHandle]  # open timeout / linger
        self._abort_timer = None  # type: Optional[TimerHandle]  # closing deadline
        self._ka_timer = None     # type: Optional[TimerHandle]
        self._ka_ping = None      # type: Optional[SelectorPing]
        self._ka_next = 0.0
        self._pings = None        # type: Optional[collections.OrderedDict[bytes, SelectorPing]]
        self._handler_done = False  # on_close ran
        self._muted = False         # the handler raised: no more on_message
        self.options = server.options
        self.path = None          # type: Optional[str]
        self.request_headers = None  # type: Any
        self.response_headers = None  # type: Any
        self.subprotocol = None   # type: Optional[str]
        self.remote_address = address  # the client's; a trusted proxy's forward once the request is read
        self.peer_address = address    # the TCP peer, always (see SimpleWSServer trusted_proxies)
        self.local_address = None  # type: Any
        self.on_pong = None       # type: Optional[Callable[[bytes], None]]

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        """True once the connection is closed (nothing more will be sent or received)."""
        return self._proto.state is State.CLOSED

    def send(self, message: Union[Data, Iterable[Data]]) -> None:
        """Queue a message: ``str`` as text, ``bytes`` as binary, an iterable of either as
        one fragmented message. Never blocks; the loop writes it.

        Raises ConnectionClosed if the connection is closed, or if more than
        ``write_limit`` bytes were still waiting from earlier sends (the peer is
        not reading: the connection is then closed with 1008).
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            chunks = None  # type: Optional[List[Any]]
        else:
            if isinstance(message, dict) or not hasattr(message, "__iter__"):
                raise TypeError("message must be str, bytes or an iterable of them, not %s"
                                % type(message).__name__)
            chunks = list(message)
            if not chunks:
                return
            kind = str if isinstance(chunks[0], str) else bytes
            for chunk in chunks:  # checked before the first frame is built
                if not isinstance(chunk, (str, bytes, bytearray, memoryview)) or isinstance(chunk, str) != (
                        kind is str):
                    raise TypeError("all fragments of a message must be of one type (str or bytes)")
        server = self._server
        limit = server.write_limit
        if self._buffered > limit and server._on_loop_thread():
            self._flush(close_ok=False)  # the socket may take some of it right away
        with self._lock:
            if self._buffered > limit and self._proto.state is State.OPEN:
                buffered = self._buffered
                self._fail_over_limit()
            else:
                if chunks is None:
                    self._queue(self._proto.send_data(message))  # type: ignore[arg-type]
                else:
                    last = len(chunks) - 1
                    for index, chunk in enumerate(chunks):
                        self._queue(self._proto.send_fragment(chunk, fin=index == last))
                return
        logger.warning("%s: %d bytes still waiting to be written, over write_limit=%d: the peer is not "
                       "reading; closing with 1008", self._peer(), buffered, limit)
        server._soon(self._arm_abort_timer)
        raise ConnectionClosedError(CLOSE_POLICY_VIOLATION, "write buffer limit exceeded",
                                    "more than write_limit=%d bytes waiting: the peer is not reading; "
                                    "connection closed with 1008" % limit)

    def recv(self, timeout: Optional[float] = None) -> Data:
        """Not available in selectors mode: messages go to ``WebSocketHandler.on_message``."""
        raise TypeError("recv() is not available in selectors mode: the loop delivers each message to "
                        "WebSocketHandler.on_message on its thread")

    def __iter__(self) -> Any:
        raise TypeError("iterating a connection is not available in selectors mode: the loop delivers "
                        "each message to WebSocketHandler.on_message on its thread")

    def ping(self, data: Optional[bytes] = None) -> SelectorPing:
        """Queue a ping; the returned :class:`SelectorPing` records when the pong came.

        Without ``data`` a unique 4-byte payload is used.
        """
        if isinstance(data, str):
            data = data.encode("utf-8")
        with self._lock:
            pings = self._pings
            if data is None:
                data = os.urandom(4)
                while pings is not None and data in pings:
                    data = os.urandom(4)
            elif pings is not None and data in pings:
                raise ValueError("a ping with payload %r is already waiting for its pong" % (data,))
            frame = self._proto.send_ping(data)
            waiter = SelectorPing(self, data)
            if pings is None:
                pings = self._pings = collections.OrderedDict()
            pings[data] = waiter
            self._queue(frame)
        return waiter

    def pong(self, data: bytes = b"") -> None:
        """Queue an unsolicited pong (a unidirectional heartbeat, §5.5.3)."""
        with self._lock:
            self._queue(self._proto.send_pong(data))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Start the closing handshake and return at once (safe from any thread).

        The connection is closed when the peer answers, or after
        ``close_timeout``; ``on_close`` runs then.
        """
        with self._lock:
            if self._phase != _OPEN:
                return
            frame = self._proto.send_close(code, reason)
            if not frame:
                return
            self._queue(frame)
            if self._proto.close_transport_now():
                self._closing_tcp = True
        self._server._soon(self._arm_abort_timer)

    def abort(self) -> None:
        """Close TCP without a closing handshake (close code 1006), from any thread.

        The loop closes it on its next pass (``on_close`` runs then)."""
        self._server.call_soon(self._close_transport)

    def pause_reading(self) -> None:
        """Stop reading this socket (TCP backpressure) until :meth:`resume_reading`."""
        self._paused = True
        self._server._soon(self._update_events)

    def resume_reading(self) -> None:
        self._paused = False
        self._server._soon(self._update_events)

    def __repr__(self) -> str:
        return "<SelectorWebSocket %s %s %s>" % (self._peer(), self.path, self._proto.state.name)

    def _peer(self) -> str:
        return _format_address(self.remote_address)

    # ------------------------------------------------------------------ writing

    def _queue(self, data: bytes) -> None:
        """Append bytes to the write buffer and have the loop flush it (caller holds ``_lock``)."""
        if not data or self._phase == _DONE:
            return
        out = self._out
        if out is None:
            out = self._out = collections.deque()
        out.append(data)
        self._buffered += len(data)
        if not self._want_flush:
            self._want_flush = True
            self._server._mark_dirty(self)

    def _fail_over_limit(self) -> None:
        """Drop the frames the peer never started receiving and fail with 1008 (caller holds ``_lock``)."""
        out = self._out
        if out:
            keep = out[0] if self._started else None
            out.clear()
            self._buffered = 0
            if keep is not None:
                out.append(keep)
                self._buffered = len(keep)
        self._proto.fail(CLOSE_POLICY_VIOLATION, "write buffer limit exceeded")
        self._queue(self._proto.data_to_send())
        self._closing_tcp = True
        self._want_flush_now()

    def _want_flush_now(self) -> None:  # caller holds _lock
        if not self._want_flush:
            self._want_flush = True
            self._server._mark_dirty(self)

    def _flush(self, close_ok: bool = True) -> None:
        """Write what the socket takes; close TCP when asked to and all is written (loop thread).

        ``close_ok=False`` (inside a handler's ``send``) leaves closing to the
        loop, so ``server.connections`` never changes under the handler's feet.
        """
        if self._phase == _DONE or self._phase == _TLS:
            return
        lost = None  # type: Optional[OSError]
        with self._lock:
            self._want_flush = False
            out = self._out
            sock = self._sock
            tls = self._server.ssl_context is not None
            while out:
                data = out[0]
                if len(out) > 1 and len(data) < _COALESCE:
                    parts = [out.popleft()]
                    size = len(data)
                    while out and size + len(out[0]) <= _COALESCE:
                        chunk = out.popleft()
                        parts.append(chunk)
                        size += len(chunk)
                    data = b"".join(parts)
                    out.appendleft(data)
                try:
                    sent = sock.send(data)
                except _BLOCKED:
                    if tls:  # the TLS layer may hold part of it: it must be retried as is
                        self._started = True
                    break
                except OSError as exc:
                    lost = exc
                    break
                self._buffered -= sent
                if sent >= len(data):
                    out.popleft()
                    self._started = False
                else:
                    out[0] = memoryview(data)[sent:]
                    self._started = True
                    break
            if out is not None and not out:
                self._out = None
            pending = bool(self._out)
            closing = self._closing_tcp
        if lost is not None:
            logger.info("%s: write failed: %s; closing connection", self._peer(), lost)
            if close_ok:
                self._lost(lost)
            else:
                self._server.call_soon(self._lost, lost)
            return
        if not close_ok:
            with self._lock:
                self._want_flush_now()  # the loop finishes the job
            return
        if self._phase == _LINGER:
            if not pending and not self._shut_wr:
                self._shut_wr = True
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    self._close_transport()
                    return
        elif closing:
            if not pending:
                self._close_transport()
                return
            self._arm_abort_timer()
        self._update_events()

    # ------------------------------------------------------------------ reading

    def _handle_event(self, mask: int) -> None:
        """The selector says the socket is ready (loop thread)."""
        if self._phase == _TLS:
            self._tls_handshake()
            return
        if mask & _WRITE:
            self._flush()
        if mask & _READ and self._phase != _DONE:
            self._read()

    def _read(self) -> None:
        server = self._server
        view = server._read_view
        sock = self._sock
        tls = self._server.ssl_context is not None
        for _ in range(_TLS_READS if tls else 1):
            try:
                size = sock.recv_into(view)
            except _BLOCKED:
                return
            except OSError as exc:
                if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, None):
                    logger.info("%s: read failed: %s", self._peer(), exc)
                else:
                    logger.debug("%s: read failed: %s", self._peer(), exc)
                size = 0
            if not size:
                self._eof()
                return
            data = bytes(view[:size])
            phase = self._phase
            if phase == _OPEN:
                self._feed(data)
            elif phase == _HTTP:
                self._feed_request(data)
            elif phase == _LINGER:
                self._lingered += size
                if self._lingered >= _LINGER_BYTES:
                    self._close_transport()
            more = tls and phase != _LINGER and sock.pending()  # type: ignore[attr-defined]
            if self._phase == _DONE or not more or not self._reading():
                return

    def _feed_request(self, data: bytes) -> None:
        proto = self._proto
        with self._lock:
            proto.receive_data(data)
        if proto.request is not None or proto.handshake_exc is not None:
            self._server._handshake_done(self)

    def _feed(self, data: bytes) -> None:
        """Bytes of the WebSocket stream: parse, answer, deliver (loop thread)."""
        proto = self._proto
        with self._lock:
            events = proto.receive_data(data)
            self._queue(proto.data_to_send())
            if proto.close_transport_now() and not self._closing_tcp:
                self._closing_tcp = True
                self._want_flush_now()
                if proto.failure is not None:
                    logger.info("%s: closing connection: %s", self._peer(), proto.failure)
        server = self._server
        for event in events:
            if isinstance(event, (str, bytes)):
                server._dispatch(self, event)
            elif isinstance(event, Pong):
                self._pong_received(event.data)
            elif isinstance(event, Close):
                logger.debug("%s: close received: %d %r", self._peer(), event.code, event.reason)
        if proto.failure_pending and self._phase == _OPEN:
            self._feed(b"")  # the messages before a bad frame are handled: now fail the connection

    def _pong_received(self, data: bytes) -> None:
        with self._lock:
            pings = self._pings
            if pings and data in pings:
                # A pong acknowledges its ping and every ping sent before it (§5.5.3).
                now = time.monotonic()
                while pings:
                    key, waiter = pings.popitem(last=False)
                    waiter._resolve(now)
                    if key == data:
                        break
                if not pings:
                    self._pings = None  # idle connections keep no dict
        callback = self.on_pong
        if callback is not None:
            try:
                callback(data)
            except Exception:
                logger.exception("on_pong failed on %s", self._peer())

    def _eof(self) -> None:
        if self._phase == _OPEN:
            with self._lock:
                proto = self._proto
                if proto.state is not State.CLOSED and proto.close_rcvd is None:
                    logger.debug("%s: connection dropped without a close frame", self._peer())
                proto.receive_eof()
        elif self._phase == _HTTP:
            logger.info("%s: connection closed before the handshake completed", self._peer())
        self._close_transport()

    def _reading(self) -> bool:
        return self._phase != _DONE and not self._paused and not self._bp_paused and not (
            self._phase == _LINGER and not self._shut_wr)

    # ------------------------------------------------------------------ selector registration and closing

    def _update_events(self) -> None:
        """Register for what the connection waits for now (loop thread)."""
        if self._phase == _DONE:
            return
        limit = self._server.write_limit
        buffered = self._buffered
        if self._bp_paused:
            if buffered <= limit // 4:
                self._bp_paused = False
        elif buffered > limit // 2 and self._phase == _OPEN:
            self._bp_paused = True
        if self._phase == _TLS:
            want = self._tls_want
        else:
            want = _READ if self._reading() else 0
            if self._out:
                want |= _WRITE
        current = self._events
        if want == current:
            return
        selector = self._server._selector
        try:
            if not current:
                selector.register(self._sock, want, self)
            elif not want:
                selector.unregister(self._sock)
            else:
                selector.modify(self._sock, want, self)
        except (KeyError, ValueError, OSError) as exc:
            logger.debug("%s: selector update failed: %s", self._peer(), exc)
            self._close_transport()
            return
        self._events = want

    def _tls_handshake(self) -> None:
        try:
            self._sock.do_handshake()  # type: ignore[attr-defined]
        except _WANT_READ:
            self._tls_want = _READ
            self._update_events()
            return
        except _WANT_WRITE:
            self._tls_want = _WRITE
            self._update_events()
            return
        except (OSError, ValueError) as exc:
            logger.info("%s: TLS handshake failed: %s", self._peer(), exc)
            if _is_tls_alert(exc):
                self._linger_after_alert()
            else:
                self._close_transport()
            return
        self._phase = _HTTP
        self._tls_want = 0
        self._update_events()
        self._read()  # decrypted bytes may already wait inside the TLS object

    def _linger_after_alert(self) -> None:
        """The TLS handshake failed and OpenSSL sent the client an alert naming why
        (e.g. "certificate required"): stop writing, then read and drop what the
        client still sends for a moment, so closing does not reset the connection
        and lose the alert (loop thread)."""
        if self._events:
            try:
                self._server._selector.unregister(self._sock)
            except (KeyError, ValueError, OSError):
                pass
            self._events = 0
        raw = socket.socket(fileno=self._sock.detach())
        self._sock = raw
        try:
            raw.setblocking(False)
            raw.shutdown(socket.SHUT_WR)
        except OSError:
            self._close_transport()
            return
        self._phase = _LINGER
        self._shut_wr = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._server.call_later(_LINGER_TIME, self._linger_done)
        self._update_events()

    def _arm_abort_timer(self) -> None:
        """Closing started: TCP must be closed within ``close_timeout`` (loop thread)."""
        if self._abort_timer is None and self._phase != _DONE:
            self._abort_timer = self._server.call_later(self.options.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        if self._phase != _DONE:
            logger.debug("%s: closing not finished within %ss; closing TCP", self._peer(),
                         self.options.close_timeout)
            self._close_transport()

    def _lost(self, exc: Optional[Exception]) -> None:
        with self._lock:
            self._proto.connection_lost(exc)
        self._close_transport()

    def _close_transport(self) -> None:
        """Close TCP now and report it to the handler (loop thread)."""
        phase = self._phase
        if phase == _DONE:
            return
        with self._lock:
            self._phase = _DONE
            self._proto.connection_lost()
            self._out = None
            self._buffered = 0
            pings = self._pings
            self._pings = None
        if pings:
            for waiter in pings.values():
                waiter._abandon()
        for timer in (self._timer, self._abort_timer, self._ka_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._abort_timer = self._ka_timer = None
        self._ka_ping = None
        server = self._server
        if self._events:
            try:
                server._selector.unregister(self._sock)
            except (KeyError, ValueError, OSError):
                pass
            self._events = 0
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        _close_quietly(sock)
        server._forget(self, opened=phase == _OPEN)

    # ------------------------------------------------------------------ timers

    def _open_timed_out(self) -> None:
        self._timer = None
        if self._phase in (_TLS, _HTTP):
            logger.info("%s: opening handshake timed out after %ss", self._peer(), self.options.open_timeout)
            self._close_transport()

    def _linger_done(self) -> None:
        self._timer = None
        self._close_transport()

    def _keepalive(self) -> None:
        """Send keepalive pings; fail with 1011 when a pong is late (loop thread)."""
        self._ka_timer = None
        if self._phase != _OPEN or self._proto.state is not State.OPEN:
            return
        options = self.options
        interval = options.ping_interval
        if interval is None:
            return
        server = self._server
        now = time.monotonic()
        ping = self._ka_ping
        if ping is not None and not ping.done and options.ping_timeout is not None:
            deadline = ping.sent_at + options.ping_timeout
            if now < deadline:
                self._ka_timer = server.call_later(deadline - now, self._keepalive)
                return
            logger.info("%s: no pong within %ss (keepalive); closing with 1011", self._peer(),
                        options.ping_timeout)
            with self._lock:
                self._proto.fail(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
                self._queue(self._proto.data_to_send())
                self._closing_tcp = True
                self._want_flush_now()
            return
        if now >= self._ka_next:
            try:
                self._ka_ping = self.ping()
            except (ConnectionClosed, RuntimeError):
                return
            self._ka_next = now + interval
        wake = self._ka_next
        if self._ka_ping is not None and not self._ka_ping.done and options.ping_timeout is not None:
            wake = min(wake, self._ka_ping.sent_at + options.ping_timeout)
        self._ka_timer = server.call_later(max(wake - now, 0.0), self._keepalive)


class SelectorServer(SimpleWSServer):
    """A WebSocket server serving every connection from one thread::

        class Echo(simplews.WebSocketHandler):
            def on_message(self, ws, message):
                ws.send(message)

        SimpleWSServer(Echo(), port=8765, mode="selectors").serve_forever()

    Same constructor and API as :class:`~simplews.SimpleWSServer`, plus
    ``write_limit`` (bytes, default 4 MiB: see the module documentation),
    ``max_connections`` (default 10,000 here, see
    :data:`DEFAULT_SELECTOR_MAX_CONNECTIONS`; ``max_connections_per_ip`` as in
    the threaded mode),
    :meth:`call_soon` and :meth:`call_later`. The handler must be a
    :class:`~simplews.WebSocketHandler` instance; its methods run on the loop
    thread (the one that calls :meth:`serve_forever`).
    """

    def __init__(self, handler: WebSocketHandler, host: Optional[str] = "127.0.0.1", port: int = 8765, *,
                 ssl_context: Any = None, subprotocols: Optional[Any] = None,
                 select_subprotocol: Optional[Callable[[List[str]], Optional[str]]] = None,
                 origins: Optional[Any] = None, process_request: Optional[Any] = None,
                 extra_headers: Iterable[Tuple[str, str]] = (), backlog: int = 128,
                 write_limit: int = DEFAULT_WRITE_LIMIT, mode: str = "selectors",
                 max_connections: Optional[int] = DEFAULT_SELECTOR_MAX_CONNECTIONS,
                 max_connections_per_ip: Optional[int] = None, **options: Any) -> None:
        if mode != "selectors":
            raise ValueError("SelectorServer runs mode='selectors' only, not %r" % (mode,))
        if not isinstance(handler, WebSocketHandler):
            if isinstance(handler, type) and issubclass(handler, WebSocketHandler):
                raise TypeError("mode='selectors' needs a WebSocketHandler instance: pass %s(), not the class"
                                % handler.__name__)
            raise TypeError("mode='selectors' runs event handlers on one loop thread: pass a WebSocketHandler "
                            "instance (with on_open/on_message/on_close), not %r; plain functions that "
                            "loop on ws.recv() need the threaded mode" % (handler,))
        if isinstance(write_limit, bool) or not isinstance(write_limit, int) or write_limit < 1:
            raise ValueError("write_limit must be a positive number of bytes, not %r" % (write_limit,))
        self._configure(handler, ssl_context, subprotocols, select_subprotocol, origins, process_request,
                        extra_headers, options)
        self._configure_limits(max_connections, max_connections_per_ip)
        self.write_limit = write_limit
        self._all = set()  # type: Set[SelectorWebSocket]  # every connection, in any phase (loop thread)
        self._ready = collections.deque()  # type: Deque[TimerHandle]
        self._dirty = collections.deque()  # type: Deque[SelectorWebSocket]
        self._timers = []  # type: List[Tuple[float, int, TimerHandle]]
        self._sequence = itertools.count()
        self._cancelled_timers = 0
        self._selector = None  # type: Any
        self._read_view = memoryview(bytearray(0))
        self._loop_ident = None  # type: Optional[int]
        self._wake_pending = False
        self._shutdown_request = False
        self._stopping = False
        self._closed = False
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._bind(host, port, backlog)

    # ------------------------------------------------------------------ scheduling (any thread)

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` on the loop thread, soon; safe from any thread."""
        handle = TimerHandle(self, 0.0, callback, args)
        self._ready.append(handle)
        if not self._on_loop_thread():
            self._wake()
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` on the loop thread after ``delay`` seconds; the handle's
        ``cancel()`` stops it. Safe from any thread."""
        handle = TimerHandle(self, time.monotonic() + max(delay, 0.0), callback, args)
        if self._on_loop_thread():
            heapq.heappush(self._timers, (handle.when, next(self._sequence), handle))
        else:
            self.call_soon(self._push_timer, handle)
        return handle

    def _push_timer(self, handle: TimerHandle) -> None:
        if not handle.cancelled:
            heapq.heappush(self._timers, (handle.when, next(self._sequence), handle))

    def _soon(self, callback: Callable[[], Any]) -> None:
        """Run now on the loop thread, else hand it to the loop."""
        if self._on_loop_thread():
            callback()
        else:
            self.call_soon(callback)

    def _on_loop_thread(self) -> bool:
        return self._loop_ident == threading.get_ident()

    def _wake(self) -> None:
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (the loop will wake anyway) or closed
            pass

    def _mark_dirty(self, ws: SelectorWebSocket) -> None:
        self._dirty.append(ws)
        if not self._on_loop_thread():
            self._wake()

    # ------------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Run the loop on this thread until :meth:`shutdown` (or Ctrl+C, which shuts down and returns)."""
        if self.workers > 1 and self._worker_index is None:
            return self._supervise()
        with self._lock:
            if self._closed or self._shutdown_request:
                raise RuntimeError("the server is closed")
            if self._loop_ident is not None:
                raise RuntimeError("serve_forever() is already running")
            self._loop_ident = threading.get_ident()
            self._stopped.clear()
            self._serving.set()
        self._log_listening()
        self._read_view = memoryview(bytearray(READ_SIZE))
        try:
            self._selector = selectors.DefaultSelector()
            self._socket.setblocking(False)
            self._selector.register(self._socket, _READ, None)
            self._selector.register(self._wake_r, _READ, None)
            try:
                self._run()
            except KeyboardInterrupt:
                logger.info("interrupted; shutting down")
                self._shutdown_request = True
                self._run()
        finally:
            try:
                for ws in list(self._all):
                    ws._close_transport()
            finally:
                with self._lock:
                    self._closed = True
                    self._loop_ident = None
                if self._selector is not None:
                    self._selector.close()
                _close_quietly(self._socket)
                _close_quietly(self._wake_r)
                _close_quietly(self._wake_w)
                self._read_view = memoryview(bytearray(0))
                self._serving.clear()
                self._stopped.set()
                logger.info("server on port %d stopped", self.port)

    def _run(self) -> None:
        selector = self._selector
        listener = self._socket
        wake_r = self._wake_r
        stop_deadline = None  # type: Optional[float]
        while True:
            if self._shutdown_request and not self._stopping:
                self._begin_stop()
                stop_deadline = time.monotonic() + self.options.close_timeout + 1.0
            if self._stopping:
                if not self._all:
                    return
                if time.monotonic() >= stop_deadline:  # type: ignore[operator]
                    return  # serve_forever's cleanup aborts what is left
            self._run_ready()
            self._flush_dirty()
            timeout = self._timeout()
            if self._stopping:
                timeout = 0.1 if timeout is None else min(timeout, 0.1)
            for key, mask in selector.select(timeout):
                ws = key.data
                if ws is not None:
                    try:
                        ws._handle_event(mask)
                    except Exception:
                        logger.exception("internal error on %s; closing it", ws._peer())
                        ws._close_transport()
                elif key.fileobj is wake_r:
                    # Drain first, then clear: a wake sent in between must not be
                    # drained while the flag still says "pending" (a lost wake-up).
                    _drain_wakeup(wake_r)
                    self._wake_pending = False
                elif not self._stopping:
                    try:
                        self._accept(listener)
                    except OSError as exc:
                        logger.warning("accept failed: %s", exc)
            self._run_timers()

    def _run_ready(self) -> None:
        ready = self._ready
        for _ in range(len(ready)):
            ready.popleft()._run()

    def _flush_dirty(self) -> None:
        dirty = self._dirty
        while dirty:
            ws = dirty.popleft()
            try:
                ws._flush()
            except Exception:
                logger.exception("internal error on %s; closing it", ws._peer())
                ws._close_transport()

    def _timeout(self) -> Optional[float]:
        if self._ready or self._dirty:
            return 0
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
            self._cancelled_timers = max(self._cancelled_timers - 1, 0)
        if not timers:
            return None
        return max(timers[0][0] - time.monotonic(), 0)

    def _run_timers(self) -> None:
        timers = self._timers
        if self._cancelled_timers > 1024 and self._cancelled_timers * 2 > len(timers):
            timers[:] = [entry for entry in timers if not entry[2].cancelled]
            heapq.heapify(timers)
            self._cancelled_timers = 0
        now = time.monotonic()
        while timers and timers[0][0] <= now:
            handle = heapq.heappop(timers)[2]
            if handle.cancelled:
                self._cancelled_timers = max(self._cancelled_timers - 1, 0)
                continue
            handle._run()

    # ------------------------------------------------------------------ connections

    def _start_connection(self, sock: socket.socket, address: Any) -> None:
        """A connection was accepted (called by the inherited ``_accept``)."""
        if self._stopping:
            _close_quietly(sock)
            return
        limit = self.max_connections
        if limit is not None and len(self._all) - len(self.connections) >= _handshake_limit(limit):
            logger.debug("%s: %d handshakes in progress already; closing the connection",
                         _format_address(address), len(self._all) - len(self.connections))
            _close_quietly(sock)
            return
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        ws = SelectorWebSocket(self, sock, address)
        self._all.add(ws)
        ws._timer = self.call_later(self.options.open_timeout, ws._open_timed_out)
        if self.ssl_context is not None:
            try:
                ws._sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except (OSError, ValueError) as exc:
                logger.info("%s: TLS setup failed: %s", ws._peer(), exc)
                ws._close_transport()
                return
            ws._phase = _TLS
            ws._tls_handshake()
        else:
            ws._update_events()

    def _handshake_done(self, ws: SelectorWebSocket) -> None:
        """The request head arrived (or was rejected): answer it (loop thread)."""
        proto = ws._proto
        if proto.request is not None:  # before the slot is taken: max_connections_per_ip counts clients
            ws.remote_address = self._client_address(ws.peer_address, proto.request.headers)
        peer = ws._peer()
        if ws.remote_address is not ws.peer_address:
            peer = "%s via %s" % (peer, _format_address(ws.peer_address))
        if ws._timer is not None:
            ws._timer.cancel()
            ws._timer = None
        try:
            if proto.handshake_exc is None:
                response = self._answer(proto, peer, ws.remote_address)
            else:
                response = proto.data_to_send()
        except Exception:
            logger.exception("handshake with %s failed unexpectedly", peer)
            ws._close_transport()
            return
        if proto.handshake_exc is not None:
            exc = proto.handshake_exc
            logger.info("%s: rejected handshake: HTTP %d: %s", peer, exc.status, exc)
        if proto.state is not State.OPEN:
            ws._phase = _LINGER
            ws._timer = self.call_later(self.options.open_timeout + _LINGER_TIME, ws._linger_done)
            with ws._lock:
                ws._queue(response)
            return
        request = proto.request
        assert request is not None
        ws.path = request.target
        ws.request_headers = request.headers
        ws.response_headers = proto.response_headers
        ws.subprotocol = proto.subprotocol
        try:
            ws.local_address = ws._sock.getsockname()
        except OSError:
            pass
        ws._phase = _OPEN
        with ws._lock:
            ws._queue(response)
        with self._lock:
            self.connections.add(ws)
        logger.debug("%s: connection open on %s", peer, request.target)
        interval = self.options.ping_interval
        if interval is not None:
            ws._ka_next = time.monotonic() + interval
            ws._ka_timer = self.call_later(interval, ws._keepalive)
        self._call_handler(ws, "on_open")
        if ws._phase == _OPEN and proto._parser.buffered:
            ws._feed(b"")  # frames that arrived with the request

    def _forget(self, ws: SelectorWebSocket, opened: bool) -> None:
        self._all.discard(ws)
        if not opened:
            return
        with self._lock:
            self.connections.discard(ws)
        self._release_slot(ws.remote_address)
        self._drop_subscriptions(ws)
        if not ws._handler_done:
            ws._handler_done = True
            code = ws._proto.close_code
            try:
                self.handler.on_close(ws, code or 1006, ws._proto.close_reason or "")
            except Exception:
                logger.exception("on_close failed on %s", ws._peer())

    def _dispatch(self, ws: SelectorWebSocket, message: Data) -> None:
        if not ws._muted and ws._phase != _DONE:  # never after on_close
            self._call_handler(ws, "on_message", message)

    def _call_handler(self, ws: SelectorWebSocket, name: str, *args: Any) -> None:
        try:
            getattr(self.handler, name)(ws, *args)
        except ConnectionClosed as exc:
            logger.debug("%s: handler stopped: %s", ws._peer(), exc)
            self._handler_stopped(ws, None)
        except Exception:
            logger.exception("handler failed on %s %s; closing with 1011", ws._peer(), ws.path)
            self._handler_stopped(ws, CLOSE_INTERNAL_ERROR)

    def _handler_stopped(self, ws: SelectorWebSocket, code: Optional[int]) -> None:
        """As in the threaded mode, a handler that raised gets no more messages; the
        connection closes (1011 after an error), then ``on_close`` runs."""
        ws._muted = True
        try:
            ws.close(code if code is not None else CLOSE_NORMAL,
                     "internal server error" if code is not None else "")
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ broadcast and shutdown

    def _broadcast_local(self, message: Data) -> int:
        """Queue ``message`` to every open connection in one pass; returns how many it reached.

        Never blocks. Connections with more than ``write_limit`` bytes waiting
        are skipped (they miss it and stay open), so are closing ones. The frame
        is built once for all connections without compression. Safe from any thread.
        """
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError("a message must be str or bytes, not %s" % type(message).__name__)
        with self._lock:
            targets = list(self.connections)
        limit = self.write_limit
        shared = None  # type: Optional[bytes]
        sent = 0
        for ws in targets:
            with ws._lock:
                proto = ws._proto
                if (proto.state is not State.OPEN or ws._closing_tcp or proto._send_opcode
                        or ws._buffered > limit):
                    continue
                if proto.deflate is None:
                    if shared is None:
                        shared = proto.send_data(message)
                    frame = shared
                else:
                    frame = proto.send_data(message)
                ws._queue(frame)
            sent += 1
        return sent

    def shutdown(self) -> None:
        """Stop accepting, close every connection with 1001, wait for the loop to end.

        Callable from any thread; from the loop thread (a handler, or a signal
        handler interrupting ``serve_forever``) it returns at once and the loop
        ends after closing.
        """
        if self._on_loop_thread():
            # Take no lock here: a signal handler may have interrupted this thread holding it.
            self._shutdown_request = True
            self._wake()
            return
        with self._lock:
            self._shutdown_request = True
            running = self._loop_ident is not None
            if not running and not self._closed:
                self._closed = True
                idle = True
            else:
                idle = False
        if idle:  # never served: release the sockets here
            _close_quietly(self._socket)
            _close_quietly(self._wake_r)
            _close_quietly(self._wake_w)
            return
        if running:
            self._wake()
            if not self._on_loop_thread():
                while not self._stopped.wait(1.0):
                    self._wake_pending = False  # belt and braces: wake the loop again
                    self._wake()

    def server_close(self) -> None:
        """Release the listening socket without serving (after creation or after shutdown)."""
        self.shutdown()

    def _begin_stop(self) -> None:
        self._stopping = True
        try:
            self._selector.unregister(self._socket)
        except (KeyError, ValueError):
            pass
        _close_quietly(self._socket)
        for ws in list(self._all):
            if ws._phase == _OPEN:
                try:
                    ws.close(CLOSE_GOING_AWAY, "server shutting down")
                except Exception:
                    ws._close_transport()
            else:
                ws._close_transport()

    def __repr__(self) -> str:
        return "<SelectorServer %s, %d connections>" % (
            self.url if not self._closed else "closed", len(self.connections))
