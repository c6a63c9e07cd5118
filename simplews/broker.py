"""Message brokers: one ``broadcast`` / ``publish`` reaching every connection everywhere.

A server with ``broker=`` hands :meth:`~simplews.SimpleWSServer.broadcast` and
:meth:`~simplews.SimpleWSServer.publish` to the broker instead of writing to its
own connections; every server subscribed to the broker (every worker process,
on every host) receives the message once and writes it to its local
connections. Delivery order is the publish order of each publisher.

:class:`LocalBroker` needs no extra service. Alone it delivers in-process; with
``workers=N`` each worker talks to the supervising parent over a socket pair
and the parent fans every message out to all workers (itself included), so all
workers see all messages in one global order. :class:`~simplews.redis_broker.RedisBroker`
spans hosts.

A publish either succeeds or raises :class:`BrokerUnavailable`; it is never
dropped silently.
"""

import logging
import socket
import struct
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

__all__ = ["Broker", "BrokerError", "BrokerUnavailable", "LocalBroker", "BROADCAST_CHANNEL"]

logger = logging.getLogger("simplews")

Message = Union[str, bytes]
Callback = Callable[[Message], Any]

#: The channel :meth:`~simplews.SimpleWSServer.broadcast` publishes on (every connection listens).
BROADCAST_CHANNEL = "*"

# Link framing between a worker and the parent's hub: kind (1 text, 2 binary),
# channel length, payload length; then the UTF-8 channel and the payload.
_HEADER = struct.Struct(">BHI")
_TEXT, _BINARY = 1, 2
MAX_MESSAGE = 0xFFFFFFFF


class BrokerError(Exception):
    """A broker operation failed."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached: the message was not published."""


class Broker(object):
    """What a server needs from a broker. Subclasses implement all three methods.

    ``publish`` may be called from any thread; callbacks run on a thread of the
    broker's choosing and must not block for long.
    """

    def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``channel``; raise :class:`BrokerUnavailable`
        if that cannot be done (the message is then not delivered anywhere by this call)."""
        raise NotImplementedError

    def subscribe(self, channel: str, callback: Callback) -> None:
        """Call ``callback(message)`` for every message published on ``channel`` from now on."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop delivering and release connections and threads."""
        raise NotImplementedError

    def _after_fork(self) -> None:
        """In a freshly forked worker: drop state inherited from the parent (threads are gone)."""


def _check(channel: str, message: Message) -> None:
    if not isinstance(channel, str):
        raise TypeError("a channel must be str, not %s" % type(channel).__name__)
    if not isinstance(message, (str, bytes, bytearray, memoryview)):
        raise TypeError("a message must be str or bytes, not %s" % type(message).__name__)


def encode_frame(channel: str, message: Message) -> bytes:
    name = channel.encode("utf-8")
    if isinstance(message, str):
        kind, data = _TEXT, message.encode("utf-8")
    else:
        kind, data = _BINARY, bytes(message)
    if len(name) > 0xFFFF or len(data) > MAX_MESSAGE:
        raise ValueError("channel name or message too long for the broker")
    return _HEADER.pack(kind, len(name), len(data)) + name + data


class FrameReader(object):
    """Incremental parser of link frames: ``feed(bytes)`` returns complete (channel, message) pairs."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> List[bytes]:
        """Complete raw frames (header included), in order."""
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        size = _HEADER.size
        while len(buffer) - offset >= size:
            _, name_len, data_len = _HEADER.unpack_from(buffer, offset)
            end = offset + size + name_len + data_len
            if len(buffer) < end:
                break
            frames.append(bytes(buffer[offset:end]))
            offset = end
        del buffer[:offset]
        return frames


def decode_frame(frame: bytes) -> Tuple[str, Message]:
    kind, name_len, data_len = _HEADER.unpack_from(frame, 0)
    start = _HEADER.size
    channel = frame[start:start + name_len].decode("utf-8")
    data = frame[start + name_len:start + name_len + data_len]
    message = data.decode("utf-8") if kind == _TEXT else data  # type: Message
    return channel, message


class _Subscriptions(object):
    """channel -> callbacks, safe to change while another thread dispatches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks = {}  # type: Dict[str, List[Callback]]

    def add(self, channel: str, callback: Callback) -> bool:
        """Register; True if it is the channel's first callback."""
        with self._lock:
            callbacks = self._callbacks.setdefault(channel, [])
            callbacks.append(callback)
            return len(callbacks) == 1

    def channels(self) -> List[str]:
        with self._lock:
            return list(self._callbacks)

    def dispatch(self, channel: str, message: Message) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(channel, ()))
        for callback in callbacks:
            try:
                callback(message)
            except Exception:
                logger.exception("broker callback for channel %r failed", channel)

    def clear(self) -> None:
        with self._lock:
            self._callbacks.clear()


class LocalBroker(Broker):
    """A broker for one machine that needs no extra service.

    Created alone, it delivers in-process: ``publish`` runs the callbacks on the
    calling thread. Under ``SimpleWSServer(..., workers=N)`` (where it is the
    default) each worker is linked to the supervising parent by a socket pair;
    ``publish`` writes the message to the link (blocking until the kernel took
    it) and a reader thread in the worker runs the callbacks for what the
    parent fans out, the worker's own messages included, so every worker sees
    every message once, in the same order.

    There is nothing to reconnect to: the link breaks only when the parent
    died, and then ``publish`` raises :class:`BrokerUnavailable` (and the worker
    shuts itself down).
    """

    def __init__(self) -> None:
        self._subscriptions = _Subscriptions()
        self._link = None  # type: Optional[socket.socket]
        self._link_lock = threading.Lock()
        self._reader = None  # type: Optional[threading.Thread]
        self._broken = False
        self._closed = False
        self.on_link_lost = None  # type: Optional[Callable[[], Any]]

    def publish(self, channel: str, message: Message) -> None:
        _check(channel, message)
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        link = self._link
        if link is None:
            self._subscriptions.dispatch(channel, message if isinstance(message, str) else bytes(message))
            return
        frame = encode_frame(channel, message)
        with self._link_lock:
            if self._broken:
                raise BrokerUnavailable("the link to the supervising process is broken")
            try:
                link.sendall(frame)
            except OSError as exc:
                self._broken = True
                raise BrokerUnavailable("the link to the supervising process is broken: %s" % exc)

    def subscribe(self, channel: str, callback: Callback) -> None:
        if not isinstance(channel, str):
            raise TypeError("a channel must be str, not %s" % type(channel).__name__)
        self._subscriptions.add(channel, callback)

    def close(self) -> None:
        self._closed = True
        link = self._link
        if link is not None:
            try:
                link.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(10)
        self._reader = None
        if link is not None:
            link.close()
            self._link = None
        self._subscriptions.clear()

    # ------------------------------------------------------------------ worker side of the hub

    def _after_fork(self) -> None:
        self._link_lock = threading.Lock()
        self._subscriptions = _Subscriptions()
        self._reader = None

    def _attach(self, link: socket.socket) -> None:
        """In a worker: route publishes through ``link`` and start reading it."""
        link.setblocking(True)
        self._link = link
        self._broken = False
        self._reader = threading.Thread(target=self._read_link, name="simplews-broker-link", daemon=True)
        self._reader.start()

    def _read_link(self) -> None:
        link = self._link
        assert link is not None
        reader = FrameReader()
        while True:
            try:
                data = link.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            for frame in reader.feed(data):
                channel, message = decode_frame(frame)
                self._subscriptions.dispatch(channel, message)
        self._broken = True
        if not self._closed:
            logger.error("lost the link to the supervising process; broker messages can no longer be published")
            callback = self.on_link_lost
            if callback is not None:
                callback()
