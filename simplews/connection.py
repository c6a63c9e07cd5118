"""The blocking WebSocket object: one socket, one :class:`~simplews.protocol.Protocol`.

Threading model (one thread per connection, no reader thread):

* Whoever needs something from the network reads it: :meth:`WebSocket.recv`, a
  :meth:`Ping.wait`, :meth:`WebSocket.close` waiting for the peer's answer, or
  the shared housekeeping thread draining a connection nobody is reading. The
  ``_read_lock`` lets exactly one of them read at a time; the others wait on a
  condition and take over when it is released.
* ``_lock`` serialises every call into the protocol and every socket write, so
  frames never interleave and protocol state changes one thread at a time.
  Fragmented sends also hold ``_message_lock`` so no other data message can
  slip between their frames, while pings and pongs still can.
* Writes are plain blocking ``sendall`` calls bounded by ``write_timeout``
  (``SO_SNDTIMEO``; TLS sockets: see ``_set_write_timeout``); reads are plain
  blocking ``recv`` calls, or a poll first when the caller gave a timeout.
  The hot path has no extra system call.
"""

import collections
import errno
import logging
import os
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from . import frames
from .exceptions import ConnectionClosed, ConnectionClosedError
from .protocol import Close, Data, Fragment, Pong, Protocol, State

__all__ = ["WebSocket", "ConnectionState", "Options", "Ping"]

logger = logging.getLogger("simplews")

READ_SIZE = 65536  # §perf: recv() of more than 64 KiB costs an mmap per call in glibc
# A blocked recv() holds its buffer while it waits: on an idle connection a
# 64 KiB one costs ~4 KiB of RSS, so reads stay small until the traffic is not.
# 448 keeps the bytes object (33-byte header) under pymalloc's 512-byte limit:
# larger ones come from glibc's per-thread arenas, ~1.5 KiB more RSS per thread.
SMALL_READ = 448
# The server's handshake reads: one typical browser request (0.5-2 KiB) per
# recv(). Not READ_SIZE: freeing a 64 KiB buffer in a connection thread leaves
# touched pages in that thread's malloc arena (~1.7 KiB of RSS per connection).
HANDSHAKE_READ_SIZE = 4096
TLS_POLL = 1.0  # seconds: the longest any one TLS socket call may block (see _set_write_timeout)
TLS_CHUNK = 65536  # bytes per TLS send: the write timeout restarts after each one goes out
_CONDITION_CREATION = threading.Lock()  # WebSocket._condition: one condition per connection, made once


class Options(object):
    """Connection options shared by the server and the client, with their defaults.

    ===================  =========  ==========================================================
    option               default    meaning
    ===================  =========  ==========================================================
    open_timeout         10         seconds for the opening handshake (TLS included)
    close_timeout        5          seconds to wait for the peer's close frame / TCP close
    ping_interval        20         seconds between keepalive pings; None disables keepalive
    ping_timeout         20         seconds to wait for the pong before closing with 1011
    max_message_size     1 MiB      largest message accepted (decompressed); None: no limit
    max_queue            16         messages held when read in the background before
                                    the socket stops being read (TCP backpressure)
    write_timeout        10         seconds a send may stay blocked on a peer that does not
                                    read before the connection is closed; None: no limit
    compression          "default"  permessage-deflate: "default", None (off) or a DeflateConfig
    ===================  =========  ==========================================================
    """

    __slots__ = ("open_timeout", "close_timeout", "ping_interval", "ping_timeout",
                 "max_message_size", "max_queue", "write_timeout", "compression")
    open_timeout: float
    close_timeout: float
    ping_interval: Optional[float]
    ping_timeout: Optional[float]
    max_message_size: Optional[int]
    max_queue: int
    write_timeout: Optional[float]
    compression: Any  # "default", None or a DeflateConfig

    DEFAULTS = {
        "open_timeout": 10.0,
        "close_timeout": 5.0,
        "ping_interval": 20.0,
        "ping_timeout": 20.0,
        "max_message_size": 1 << 20,
        "max_queue": 16,
        "write_timeout": 10.0,
        "compression": "default",
    }  # type: Dict[str, Any]

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.DEFAULTS)
        if unknown:
            raise TypeError("unknown option(s) %s; valid options: %s"
                            % (", ".join(sorted(unknown)), ", ".join(sorted(self.DEFAULTS))))
        for name, default in self.DEFAULTS.items():
            setattr(self, name, options.get(name, default))
        for name in ("open_timeout", "close_timeout", "ping_interval", "ping_timeout", "write_timeout"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError("%s must be a positive number of seconds or None, not %r" % (name, value))
        if self.open_timeout is None or self.close_timeout is None:
            raise ValueError("open_timeout and close_timeout must be set: a peer may never answer")
        if self.max_message_size is not None and (not isinstance(self.max_message_size, int)
                                                  or self.max_message_size <= 0):
            raise ValueError("max_message_size must be a positive int or None")
        if not isinstance(self.max_queue, int) or self.max_queue < 1:
            raise ValueError("max_queue must be an int >= 1")

    @classmethod
    def split(cls, kwargs: Dict[str, Any]) -> "Options":
        """Take the connection options out of ``kwargs`` (leaving the rest)."""
        return cls(**{name: kwargs.pop(name) for name in list(kwargs) if name in cls.DEFAULTS})


class Ping(object):
    """A ping in flight: :meth:`wait` tells when its pong arrived."""

    __slots__ = ("data", "sent_at", "latency", "_ws", "_done")

    def __init__(self, ws: "WebSocket", data: bytes) -> None:
        self.data = data
        self.sent_at = time.monotonic()
        self.latency = None  # type: Optional[float]
        self._ws = ws
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait for the pong; True when it came (``latency`` is then set), False on timeout or close."""
        return self._ws._wait_for(lambda: self._done, timeout, raise_closed=False)

    def _resolve(self) -> None:
        self.latency = time.monotonic() - self.sent_at
        self._done = True

    def __repr__(self) -> str:
        state = "latency=%.6fs" % self.latency if self.latency is not None else "pending"
        return "<Ping %r %s>" % (self.data, state)


class ConnectionState(object):
    """What both connection objects (threaded and selectors) tell about their protocol's state.

    Subclasses set ``_proto`` (the Protocol), ``_sock`` and ``_buffered`` (bytes not yet written).
    """

    __slots__ = ()
    _proto: Protocol
    _sock: socket.socket
    _buffered: int

    @property
    def peer_certificate(self) -> Optional[Dict[str, Any]]:
        """The peer's TLS certificate, as :meth:`ssl.SSLSocket.getpeercert` gives it
        (a server sees one only when its ``ssl_context`` asks for client
        certificates); None without TLS or without a certificate."""
        getpeercert = getattr(self._sock, "getpeercert", None)
        if getpeercert is None:
            return None
        try:
            return getpeercert() or None
        except (OSError, ValueError):  # closed meanwhile
            return None

    @property
    def state(self) -> State:
        return self._proto.state

    @property
    def close_code(self) -> Optional[int]:
        """The close code once closed (1006 when TCP ended without a close frame), else None."""
        if self._proto.state is not State.CLOSED:
            return None
        return self._proto.close_code

    @property
    def close_reason(self) -> Optional[str]:
        if self._proto.state is not State.CLOSED:
            return None
        return self._proto.close_reason

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to ``send`` (or queued by the protocol) not yet written to the socket."""
        return self._buffered


class WebSocket(ConnectionState):
    """One open WebSocket connection, server or client side.

    ``send`` and ``ping`` are safe from any number of threads; one thread at a
    time should receive (``recv`` or iteration); ``close`` from another thread
    wakes a blocked ``recv`` with :class:`~simplews.exceptions.ConnectionClosedOK`.
    """

    # Slots keep an idle connection small; ``__dict__`` still lets applications
    # hang their own attributes on a connection (``ws.user = ...``).
    __slots__ = (
        "_sock", "_proto", "options", "path", "request_headers", "response_headers", "subprotocol",
        "local_address", "remote_address", "peer_address", "_lock", "_message_lock", "_read_lock",
        "_cond", "_waiters", "_messages", "_skip_fragments", "_pings", "_sock_closed", "_plain",
        "_housekeeper", "last_ping", "on_pong", "_buffered", "_eof_deadline", "_read_size",
        "__dict__", "__weakref__",
    )

    def __init__(self, sock: socket.socket, protocol: Protocol, options: Options,
                 path: str = "/", request_headers: Any = None, response_headers: Any = None,
                 subprotocol: Optional[str] = None, remote_address: Any = None,
                 housekeeper: Any = None, peer_address: Any = None, write_timeout_set: bool = False,
                 local_address: Any = None) -> None:
        self._sock = sock
        self._proto = protocol
        self.options = options
        self.path = path
        self.request_headers = request_headers
        self.response_headers = response_headers
        self.subprotocol = subprotocol
        if local_address is None:
            try:
                local_address = sock.getsockname()
            except OSError:
                local_address = None
        self.local_address = local_address  # type: Any
        if remote_address is None:
            try:
                remote_address = sock.getpeername()
            except OSError:
                remote_address = None
        # remote_address: the client's (host, port), from a trusted proxy's X-Forwarded-For /
        # X-Real-IP as (host, 0) (server trusted_proxies=); peer_address: the TCP peer, always
        self.remote_address = remote_address
        self.peer_address = peer_address if peer_address is not None else remote_address  # type: Any
        self._lock = threading.Lock()
        self._message_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._cond = None  # type: Optional[threading.Condition]  # made when a second thread waits
        self._waiters = 0
        self._messages = collections.deque()  # type: Deque[Union[Data, Fragment]]
        self._skip_fragments = False  # the rest of a message whose stream was abandoned is discarded
        self._pings = collections.OrderedDict()  # type: collections.OrderedDict[bytes, Ping]
        self._sock_closed = False
        self._plain = not hasattr(sock, "pending")  # TLS sockets have pending()
        self._housekeeper = housekeeper
        self.last_ping = None  # type: Optional[Ping]
        self.on_pong = None  # type: Optional[Callable[[bytes], None]]
        self._buffered = 0
        self._eof_deadline = None  # type: Optional[float]
        self._read_size = SMALL_READ  # grows to READ_SIZE while messages are large (see SMALL_READ)
        if not write_timeout_set:  # else the caller applied options.write_timeout to sock already
            _set_write_timeout(sock, options.write_timeout)
        if housekeeper is not None and options.ping_interval is not None:
            housekeeper.add(self)
        if protocol._parser.buffered:  # frames that arrived with the handshake
            with self._lock:
                self._process(b"", eof=False)

    # ------------------------------------------------------------------ public API

    @property
    def closed(self) -> bool:
        """True once the connection is closed (no more messages will be sent or received)."""
        return self._proto.state is State.CLOSED and not self._messages

    def send(self, message: Union[Data, Iterable[Data]]) -> None:
        """Send a message: ``str`` as text, ``bytes`` as binary, an iterable of either as one fragmented message.

        When it returns, the whole message was handed to the kernel. Raises
        ConnectionClosed if the connection is closed (or the write timed out).
        """
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            with self._lock:
                if not self._message_lock.locked():  # no fragmented message is being sent
                    self._write(self._proto.send_data(message))
                    return
            with self._message_lock, self._lock:
                self._write(self._proto.send_data(message))
            return
        if isinstance(message, dict) or not hasattr(message, "__iter__"):
            raise TypeError("message must be str, bytes or an iterable of them, not %s"
                            % type(message).__name__)
        self._send_fragments(iter(message))

    def _send_fragments(self, chunks: Iterator[Data]) -> None:
        with self._message_lock:
            try:
                previous = next(chunks)
            except StopIteration:
                return
            try:
                for chunk in chunks:
                    with self._lock:
                        self._write(self._proto.send_fragment(previous, fin=False))
                    previous = chunk
                with self._lock:
                    self._write(self._proto.send_fragment(previous, fin=True))
            except ConnectionClosed:
                raise
            except BaseException:
                # A started message can be neither finished nor withdrawn (§5.4):
                # the connection cannot carry another one, so fail it.
                if self._proto._send_opcode:
                    self._fail(frames.CLOSE_INTERNAL_ERROR, "fragmented message could not be completed")
                raise

    def recv(self, timeout: Optional[float] = None) -> Data:
        """The next message (str or bytes).

        Raises :class:`TimeoutError` after ``timeout`` seconds without breaking
        the connection, and ConnectionClosed once the connection is closed.
        """
        messages = self._messages
        if not messages and timeout is None and not self._skip_fragments:
            self._read_until_message()
        if messages and not self._skip_fragments:
            item = messages.popleft()
        else:
            item = self._next_item(timeout, stream=False)
        if item.__class__ is Fragment:
            return self._assemble(item, timeout)
        return item  # type: ignore[return-value]

    def recv_streaming(self, timeout: Optional[float] = None) -> Iterator[Data]:
        """The next message, piece by piece as its frames arrive, never held whole.

        Yields ``str`` pieces for a text message (each valid UTF-8 on its own:
        a character split across frames comes with the later piece) and
        ``bytes`` for a binary one; a message that arrived whole comes as one
        piece. While streaming, ``max_message_size`` bounds each frame rather
        than the message. ``timeout`` bounds the wait for each piece
        (:class:`TimeoutError`); a stream left unfinished (timeout, ``break``)
        has the rest of its message discarded, and the next ``recv`` returns
        the message after it. Raises ConnectionClosed like :meth:`recv`.
        """
        item = self._next_item(timeout, stream=True)
        if item.__class__ is not Fragment:
            yield item  # type: ignore[misc]
            return
        fragment = item
        try:
            yield fragment.data
            while not fragment.fin:
                fragment = self._next_item(timeout, stream=True)  # type: ignore[assignment]
                yield fragment.data
        finally:
            if not fragment.fin:
                self._skip_fragments = True

    def _read_until_message(self) -> None:
        """§perf: the common ``recv()`` — no timeout, nobody else reading, connection
        open — reads the socket directly; anything else is left to :meth:`_wait_for`."""
        if not self._read_lock.acquire(False):
            return
        try:
            proto = self._proto
            while (not self._messages and proto.state is State.OPEN and proto._deferred_failure is None
                   and not self._sock_closed):
                self._read_once(None)
        finally:
            self._read_lock.release()
            if self._waiters:
                self._wake_waiters()

    def _next_item(self, timeout: Optional[float], stream: bool) -> Union[Data, Fragment]:
        """Pop the next message or fragment, waiting for it; skips the tail of an abandoned stream."""
        messages = self._messages
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if not messages:
                if stream:
                    with self._lock:
                        self._proto.stream_next_message()
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._wait_for(messages.__len__, remaining, raise_closed=True, for_recv=True)
            item = messages.popleft()
            if self._skip_fragments:
                if item.__class__ is Fragment:
                    if item.fin:
                        self._skip_fragments = False
                    continue
                self._skip_fragments = False
            return item

    def _assemble(self, first: Fragment, timeout: Optional[float]) -> Data:
        """A whole message from fragments (``recv`` after a ``recv_streaming`` that got nothing).

        On timeout or close the pieces taken so far go back to the queue, so no data is lost.
        """
        parts = [first.data]
        fragment = first
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not fragment.fin:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                fragment = self._next_item(remaining, stream=False)  # type: ignore[assignment]
                parts.append(fragment.data)
        except BaseException:
            self._messages.appendleft(Fragment(_join(parts), False))
            raise
        return _join(parts)

    def __iter__(self) -> Iterator[Data]:
        """Messages until the connection closes (any close ends the loop; see ``close_code``)."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def ping(self, data: Optional[bytes] = None) -> Ping:
        """Send a ping; returns a :class:`Ping` whose ``wait(timeout)`` tells when the pong came.

        Without ``data`` a unique 4-byte payload is used.
        """
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif isinstance(data, str):
            data = data.encode("utf-8")
        with self._lock:
            if data in self._pings:
                raise ValueError("a ping with payload %r is already waiting for its pong" % (data,))
            frame = self._proto.send_ping(data)
            waiter = Ping(self, data)
            self._pings[data] = waiter
            self._write(frame)
        return waiter

    def _try_ping(self) -> Optional[Ping]:
        """A keepalive ping, unless a sender holds the socket (then it is alive enough)."""
        if not self._lock.acquire(False):
            return None
        try:
            if self._proto.state is not State.OPEN:
                return None
            data = os.urandom(4)
            waiter = Ping(self, data)
            self._pings[data] = waiter
            try:
                self._write(self._proto.send_ping(data))
            except ConnectionClosed:
                return None
            return waiter
        finally:
            self._lock.release()

    def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat, §5.5.3)."""
        with self._lock:
            self._write(self._proto.send_pong(data))

    def close(self, code: int = frames.CLOSE_NORMAL, reason: str = "") -> None:
        """Perform the closing handshake, waiting at most ``close_timeout`` for the peer.

        Safe to call several times and from any thread.
        """
        with self._lock:
            if self._sock_closed:
                return
            try:
                self._write(self._proto.send_close(code, reason))
            except ConnectionClosed:
                return
        if not self._wait_for(lambda: self._sock_closed, self.options.close_timeout,
                              raise_closed=False, closing=True):
            logger.debug("%s: no close from the peer within %ss; closing TCP",
                         self._peer(), self.options.close_timeout)
            with self._lock:
                self._proto.connection_lost()
                self._close_socket()

    def abort(self) -> None:
        """Close TCP at once, without a closing handshake (close code 1006)."""
        with self._lock:
            self._proto.connection_lost()
            self._close_socket()

    def __enter__(self) -> "WebSocket":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<WebSocket %s %s %s %s>" % (self._proto.side, self._peer(), self.path,
                                            self._proto.state.name)

    # ------------------------------------------------------------------ reading

    def _wait_for(self, predicate: Callable[[], object], timeout: Optional[float], raise_closed: bool,
                  for_recv: bool = False, closing: bool = False) -> bool:
        """Read from the socket (or wait for the thread reading it) until ``predicate()``.

        Returns False on timeout (or on close when ``raise_closed`` is false);
        raises TimeoutError on timeout when ``raise_closed`` (recv's contract).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if not self._sock_closed and self._proto.state is State.CLOSED:
                self._await_eof()
            if self._sock_closed:
                if raise_closed:
                    raise self._proto.closed_exception()
                return bool(predicate())
            now = time.monotonic()
            remaining = None if deadline is None else deadline - now
            if remaining is not None and remaining <= 0:
                if raise_closed:
                    raise TimeoutError("no message within %ss" % timeout)
                return False
            if self._eof_deadline is not None:
                eof_wait = self._eof_deadline - now
                remaining = eof_wait if remaining is None else min(remaining, eof_wait)
            can_read = for_recv or closing or len(self._messages) < self.options.max_queue
            if can_read and self._read_lock.acquire(False):
                try:
                    if predicate():
                        pass
                    elif self._proto.failure_pending:  # the messages before a bad frame were read
                        with self._lock:
                            self._process(b"", eof=False)
                    else:
                        self._read_once(remaining)
                finally:
                    self._read_lock.release()
                    if self._waiters:
                        self._wake_waiters()
            else:
                cond = self._condition()
                with cond:
                    self._waiters += 1
                    try:
                        if predicate() or self._sock_closed:
                            continue
                        if can_read and self._read_lock.acquire(False):
                            self._read_lock.release()
                            continue
                        cond.wait(remaining)
                    finally:
                        self._waiters -= 1

    def _condition(self) -> threading.Condition:
        """The condition other threads wait on while one reads, made on first need."""
        cond = self._cond
        if cond is None:
            with _CONDITION_CREATION:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(threading.Lock())
        return cond

    def _wake_waiters(self) -> None:
        cond = self._cond
        if cond is not None:
            with cond:
                cond.notify_all()

    def _await_eof(self) -> None:
        """Closing handshake done, TCP still open: the client gives the server
        ``close_timeout`` to close TCP first (§7.1.1), then closes it itself."""
        now = time.monotonic()
        if self._eof_deadline is None:
            self._eof_deadline = now + self.options.close_timeout
        elif now >= self._eof_deadline:
            with self._lock:
                self._close_socket()

    def _read_once(self, timeout: Optional[float]) -> None:
        """One read from the socket, processed (caller holds ``_read_lock``)."""
        sock = self._sock
        try:
            if timeout is not None and (self._plain or not sock.pending()):  # type: ignore[attr-defined]
                if not _wait_readable(sock, timeout):
                    return
            data = sock.recv(self._read_size)
        except (socket.timeout, BlockingIOError):
            return
        except OSError as exc:
            if _is_timeout(exc):
                return
            logger.debug("%s: read failed: %s", self._peer(), exc)
            data = b""
        self._read_size = SMALL_READ if len(data) < SMALL_READ else READ_SIZE
        with self._lock:
            self._process(data)

    def drain(self) -> bool:
        """Process what the peer already sent, without blocking, if nobody is reading.

        Used by the housekeeping thread so pings are answered and pongs seen
        while the handler is busy elsewhere. Returns False if the connection is
        being read by another thread, is closed, or its queue is full.
        """
        if self._sock_closed or len(self._messages) >= self.options.max_queue:
            return False
        if not self._read_lock.acquire(False):
            return False
        try:
            while len(self._messages) < self.options.max_queue and not self._sock_closed:
                if not self._lock.acquire(False):
                    break  # a sender holds the socket; try again next round
                try:
                    data = self._recv_nowait()
                    if data is not None:
                        self._process(data)
                finally:
                    self._lock.release()
                if not data:
                    break
        finally:
            self._read_lock.release()
            if self._waiters:
                self._wake_waiters()
        return True

    def _recv_nowait(self) -> Optional[bytes]:
        sock = self._sock
        try:
            if self._plain:
                return sock.recv(READ_SIZE, socket.MSG_DONTWAIT)
            if not sock.pending() and not _wait_readable(sock, 0):  # type: ignore[attr-defined]
                return None
            # Readable may mean part of a TLS record only: read without blocking
            # (SSLWantReadError). The caller holds both locks: nobody else uses the socket.
            timeout = sock.gettimeout()
            sock.settimeout(0.0)
            try:
                return sock.recv(READ_SIZE)
            finally:
                sock.settimeout(timeout)
        except (BlockingIOError, socket.timeout):
            return None
        except OSError as exc:
            if _is_timeout(exc):
                return None
            return b""

    def _process(self, data: bytes, eof: Optional[bool] = None) -> None:
        """Feed received bytes to the protocol and act on the result (caller holds ``_lock``).

        Empty ``data`` means EOF unless ``eof=False`` (parse what is buffered).
        """
        proto = self._proto
        if data or eof is False:
            events = proto.receive_data(data)
        else:
            was_closed = proto.state is State.CLOSED
            proto.receive_eof()
            events = []
            if not was_closed and proto.close_rcvd is None:
                logger.debug("%s: connection dropped without a close frame", self._peer())
        for event in events:
            cls = event.__class__
            if cls is str or cls is bytes or cls is Fragment:
                if proto.close_sent is not None and len(self._messages) >= self.options.max_queue:
                    continue  # closing: the application no longer reads; drop the excess
                self._messages.append(event)  # type: ignore[arg-type]
            elif isinstance(event, Pong):
                self._pong_received(event.data)
            elif isinstance(event, Close):
                logger.debug("%s: close received: %d %r", self._peer(), event.code, event.reason)
        if proto._outgoing:
            try:
                self._write(proto.data_to_send())
            except ConnectionClosed:
                pass
        if proto.state is State.CLOSED:
            if proto.failure is not None and not self._sock_closed:
                logger.info("%s: closing connection: %s", self._peer(), proto.failure)
            if proto.close_transport_now():
                self._close_socket()

    def _pong_received(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            if self.on_pong is not None:
                self.on_pong(data)
            return
        # A pong acknowledges its ping and every ping sent before it (§5.5.3).
        while pings:
            key, waiter = pings.popitem(last=False)
            waiter._resolve()
            if key == data:
                break
        if self.on_pong is not None:
            self.on_pong(data)

    # ------------------------------------------------------------------ writing and closing

    def _write(self, data: bytes) -> None:
        """Write bytes (caller holds ``_lock``); a write timeout or error closes the connection."""
        if not data:
            return
        if self._sock_closed:
            raise self._proto.closed_exception()
        self._buffered += len(data)
        try:
            if self._plain:
                self._sock.sendall(data)
            else:
                self._sendall_tls(data)
        except OSError as exc:
            if _is_timeout(exc):
                message = "write timed out after %ss: the peer is not reading" % self.options.write_timeout
            else:
                message = "write failed: %s" % (exc,)
            logger.info("%s: %s; closing connection", self._peer(), message)
            self._proto.connection_lost(exc)
            self._close_socket()
            raise ConnectionClosedError(frames.CLOSE_ABNORMAL, "", message) from exc
        finally:
            self._buffered -= len(data)

    def _sendall_tls(self, data: bytes) -> None:
        """``sendall`` for TLS sockets, bounded by ``write_timeout`` (caller holds ``_lock``).

        Each send is bounded by the socket's short timeout; after one, the same
        chunk is sent again (OpenSSL requires it) until ``write_timeout`` passes
        without a chunk going out.
        """
        timeout = self.options.write_timeout
        view = memoryview(data)
        deadline = None if timeout is None else time.monotonic() + timeout  # type: Optional[float]
        while view:
            try:
                sent = self._sock.send(view[:TLS_CHUNK])
            except socket.timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise
                continue
            view = view[sent:]
            if timeout is not None:
                deadline = time.monotonic() + timeout

    def _close_socket(self) -> None:
        """Close TCP (caller holds ``_lock``); wakes every waiting thread."""
        if self._sock_closed:
            return
        self._sock_closed = True
        self._proto.connection_lost()
        sock = self._sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        if self._housekeeper is not None:
            self._housekeeper.discard(self)
        self._wake_waiters()

    def _fail(self, code: int, reason: str) -> None:
        """Close with an error code from another thread (keepalive timeout), waking the reader."""
        with self._lock:
            if self._sock_closed:
                return
            self._proto.fail(code, reason)
            try:
                self._write(self._proto.data_to_send())
            except ConnectionClosed:
                pass
            self._close_socket()

    def _peer(self) -> str:
        address = self.remote_address
        if isinstance(address, tuple) and len(address) >= 2:
            host = address[0]
            return ("[%s]:%s" if ":" in str(host) else "%s:%s") % (host, address[1])
        return str(address)


def _join(parts: List[Data]) -> Data:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], str):
        return "".join(parts)  # type: ignore[arg-type]
    return b"".join(parts)  # type: ignore[arg-type]


def _is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (socket.timeout, BlockingIOError)):
        return True
    if getattr(exc, "errno", None) in (errno.EAGAIN, errno.EWOULDBLOCK):
        return True
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, (ssl.SSLWantReadError, ssl.SSLWantWriteError))


def _set_write_timeout(sock: socket.socket, timeout: Optional[float]) -> None:
    """Bound each blocking send of a plain socket with SO_SNDTIMEO.

    Not for TLS sockets: when SO_SNDTIMEO or SO_RCVTIMEO fires, the ssl module
    retries a blocking SSL_write or SSL_read forever (and a peer that sends
    half a record would hold a reader forever). TLS sockets get a short socket
    timeout instead: a reader just reads again, :meth:`WebSocket._sendall_tls`
    enforces ``write_timeout``.
    """
    if hasattr(sock, "pending"):
        sock.settimeout(TLS_POLL if timeout is None else min(TLS_POLL, timeout))
        return
    if sock.gettimeout() is not None:
        sock.settimeout(None)
    if timeout is not None:
        _setsockopt_timeout(sock, socket.SO_SNDTIMEO, timeout)


def _setsockopt_timeout(sock: socket.socket, option: int, timeout: float) -> None:
    if sys.platform == "win32":
        value = struct.pack("L", int(timeout * 1000))
    else:
        seconds = int(timeout)
        value = struct.pack("ll", seconds, int((timeout - seconds) * 1e6))
    try:
        sock.setsockopt(socket.SOL_SOCKET, option, value)
    except OSError as exc:  # pragma: no cover - platform without the option
        logger.warning("cannot set socket timeout option %d: %s", option, exc)


if hasattr(__import__("select"), "poll"):
    import select as _select

    def _wait_readable(sock: socket.socket, timeout: float) -> bool:
        poller = _select.poll()
        poller.register(sock, _select.POLLIN | _select.POLLPRI | _select.POLLHUP | _select.POLLERR)
        return bool(poller.poll(max(timeout, 0.0) * 1000.0))
else:  # pragma: no cover - Windows
    import select as _select

    def _wait_readable(sock: socket.socket, timeout: float) -> bool:
        readable, _, errored = _select.select([sock], [], [sock], max(timeout, 0.0))
        return bool(readable or errored)
