"""A :class:`~simplews.broker.Broker` on Redis, for servers on several hosts.

Needs the ``redis`` package (``pip install simplews[redis]``); it is imported
when the first ``RedisBroker`` is created, never by the rest of simplews.

Every channel under one ``prefix`` shares the Redis stream ``prefix +
"messages"``: ``publish`` is an ``XADD`` of (channel, type, payload), capped at
about ``maxlen`` entries, and one subscriber thread per broker reads the stream
with a blocking ``XREAD`` from the last entry it delivered and runs the
callbacks of the entry's channel. One stream gives one global order: what a
publisher publishes, on any channels, arrives everywhere in its publish order.
Use different prefixes to keep unrelated applications apart.

Streams rather than PUBLISH/SUBSCRIBE because Redis pub/sub drops what is
published while a subscriber is reconnecting; with a stream the subscriber
resumes after its last entry, so a publish that returned is delivered once
to every subscriber, in order, even across a broker restart (when Redis
persists it: ``appendonly yes``) or a subscriber's reconnection (provided
fewer than ``maxlen`` entries went by meanwhile).

``publish`` raises :class:`~simplews.broker.BrokerUnavailable` when Redis
cannot be reached (after the client's own short retries); nothing is queued.
The subscriber reconnects with exponential backoff (``reconnect_min`` doubling
up to ``reconnect_max`` seconds), logging the outage once and the recovery.
"""

import logging
import threading
import time
from typing import Any, List, Optional

from .broker import Broker, BrokerUnavailable, Callback, Message, _check, _Subscriptions

__all__ = ["RedisBroker"]

logger = logging.getLogger("simplews")


def _close_client(client: Any) -> None:
    """Close a client and its connection pool (redis-py before 4.5 leaves the pool open)."""
    try:
        client.close()
    finally:
        client.connection_pool.disconnect()


def _import_redis() -> Any:
    try:
        import redis
    except ImportError:
        raise ImportError("RedisBroker needs the redis package: pip install 'simplews[redis]'") from None
    return redis


class RedisBroker(Broker):
    """``RedisBroker("redis://host:6379/0", prefix="simplews:")``; extra keyword
    arguments go to ``redis.Redis.from_url``."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "simplews:", *,
                 maxlen: int = 100000, block: float = 0.5, reconnect_min: float = 0.05,
                 reconnect_max: float = 5.0, **redis_options: Any) -> None:
        self._redis = _import_redis()
        self.url = url
        self.prefix = prefix
        self.maxlen = maxlen
        self.block = block
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        redis_options.setdefault("socket_connect_timeout", 5.0)
        redis_options.setdefault("socket_timeout", max(block * 4, 5.0))
        self._options = redis_options
        self._after_fork()

    def _after_fork(self) -> None:
        self._subscriptions = _Subscriptions()
        self._position = None  # type: Optional[bytes]  # the last entry id delivered
        self._lock = threading.Lock()
        self._publisher = None  # type: Any
        self._thread = None  # type: Optional[threading.Thread]
        self._closed = False

    def _client(self) -> Any:
        return self._redis.Redis.from_url(self.url, **self._options)

    @property
    def stream(self) -> bytes:
        """The Redis key of the stream."""
        return (self.prefix + "messages").encode("utf-8")

    # ------------------------------------------------------------------ Broker

    def publish(self, channel: str, message: Message) -> None:
        _check(channel, message)
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        if isinstance(message, str):
            fields = {b"c": channel.encode("utf-8"), b"t": b"t", b"d": message.encode("utf-8")}
        else:
            fields = {b"c": channel.encode("utf-8"), b"t": b"b", b"d": bytes(message)}
        with self._lock:
            if self._publisher is None:
                self._publisher = self._client()
            publisher = self._publisher
        try:
            publisher.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
        except self._redis.RedisError as exc:
            raise BrokerUnavailable("cannot publish to %s: %s" % (self.url, exc)) from exc

    def subscribe(self, channel: str, callback: Callback) -> None:
        if not isinstance(channel, str):
            raise TypeError("a channel must be str, not %s" % type(channel).__name__)
        if self._closed:
            raise BrokerUnavailable("the broker is closed")
        self._subscriptions.add(channel, callback)
        with self._lock:
            start = self._position is None
        if start:
            position = self._last_id()
            with self._lock:
                if self._position is None:
                    self._position = position
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="simplews-redis-subscriber", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.block + 10.0)
        self._thread = None
        with self._lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            _close_client(publisher)
        self._subscriptions.clear()

    # ------------------------------------------------------------------ subscriber

    def _last_id(self) -> bytes:
        """Where reading starts: after the stream's current last entry."""
        try:
            with self._lock:
                if self._publisher is None:
                    self._publisher = self._client()
                publisher = self._publisher
            last = publisher.xrevrange(self.stream, count=1)
            return last[0][0] if last else b"0-0"
        except self._redis.RedisError:  # Redis is down: start from now
            return ("%d-0" % int(time.time() * 1000)).encode("ascii")

    def _run(self) -> None:
        client = None
        delay = self.reconnect_min
        failing = False
        block_ms = max(int(self.block * 1000), 1)
        try:
            while not self._closed:
                with self._lock:
                    streams = {self.stream: self._position}
                try:
                    if client is None:
                        client = self._client()
                    replies = client.xread(streams, count=1000, block=block_ms)
                except self._redis.RedisError as exc:
                    if client is not None:
                        _close_client(client)
                        client = None
                    if not failing:
                        logger.warning("lost the Redis broker at %s (%s); reconnecting", self.url, exc)
                        failing = True
                    self._sleep(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                if failing:
                    logger.info("reconnected to the Redis broker at %s", self.url)
                    failing = False
                    delay = self.reconnect_min
                self._deliver(replies or [])
        except Exception:
            logger.exception("the Redis subscriber failed")
        finally:
            if client is not None:
                _close_client(client)

    def _deliver(self, replies: List[Any]) -> None:
        for _, entries in replies:
            for entry_id, fields in entries:
                with self._lock:
                    self._position = entry_id
                if self._closed:
                    return
                channel = fields.get(b"c", b"").decode("utf-8", "replace")
                data = fields.get(b"d", b"")
                message = data.decode("utf-8") if fields.get(b"t") == b"t" else data  # type: Message
                self._subscriptions.dispatch(channel, message)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    def __repr__(self) -> str:
        return "<RedisBroker %s prefix=%r>" % (self.url, self.prefix)
