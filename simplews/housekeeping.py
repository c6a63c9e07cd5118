"""The one shared background thread: keepalive pings and draining idle connections.

A server owns one :class:`Housekeeper`; client connections share one per
process. It never blocks on a connection: when another thread is reading or
writing one, that connection is skipped until the next round.
"""

import logging
import threading
import time
from typing import Any, Dict, Optional

from .frames import CLOSE_INTERNAL_ERROR

__all__ = ["Housekeeper", "shared_housekeeper"]

logger = logging.getLogger("simplews")

DRAIN_INTERVAL = 1.0  # seconds between drains of connections nobody is reading


class _Keepalive(object):
    __slots__ = ("next_ping", "ping")

    def __init__(self, next_ping: float) -> None:
        self.next_ping = next_ping
        self.ping = None  # type: Any


class Housekeeper(object):
    """Sends keepalive pings, fails connections whose pong is late (1011), and
    answers pings on connections whose handler is busy elsewhere."""

    def __init__(self, name: str = "simplews-housekeeping") -> None:
        self.name = name
        self._connections = {}  # type: Dict[Any, _Keepalive]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = None  # type: Optional[threading.Thread]

    def add(self, ws: Any) -> None:
        interval = ws.options.ping_interval
        now = time.monotonic()
        state = _Keepalive(now + interval if interval is not None else float("inf"))
        with self._lock:
            self._connections[ws] = state
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._wake.set()

    def discard(self, ws: Any) -> None:
        with self._lock:
            self._connections.pop(ws, None)
            empty = not self._connections
        if empty:
            self._wake.set()  # let an idle thread end now rather than at its next round

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Stop the thread for good (it holds no connection of its own)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        next_drain = time.monotonic() + DRAIN_INTERVAL
        while not self._stopping:
            now = time.monotonic()
            with self._lock:
                if not self._connections:  # idle: the thread ends, add() starts a new one
                    self._thread = None
                    return
                items = list(self._connections.items())
            drain = now >= next_drain
            if drain:
                next_drain = now + DRAIN_INTERVAL
            wake_at = next_drain
            for ws, state in items:
                try:
                    due = self._tend(ws, state, now, drain)
                except Exception:  # a housekeeping bug must not kill keepalive for everyone
                    logger.exception("housekeeping failed for %r", ws)
                    continue
                if due < wake_at:
                    wake_at = due
            self._wake.wait(max(wake_at - time.monotonic(), 0.001))
            self._wake.clear()
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def _tend(self, ws: Any, state: _Keepalive, now: float, drain: bool) -> float:
        """Keepalive for one connection; returns when it next needs attention."""
        if drain:
            ws.drain()
        if ws._sock_closed:
            self.discard(ws)
            return float("inf")
        options = ws.options
        ping = state.ping
        if ping is not None and not ping.done:
            deadline = ping.sent_at + options.ping_timeout  # type: float
            if now < deadline:
                return deadline
            ws.drain()  # the pong may be waiting unread
            if ping.done:
                return state.next_ping
            logger.info("%s: no pong within %ss (keepalive); closing with 1011", ws._peer(), options.ping_timeout)
            ws._fail(CLOSE_INTERNAL_ERROR, "keepalive ping timeout")
            self.discard(ws)
            return float("inf")
        if now >= state.next_ping:
            state.ping = ws._try_ping()
            state.next_ping = now + options.ping_interval
            if state.ping is not None:
                wake = min(state.next_ping, now + options.ping_timeout)  # type: float
                return wake
        next_ping = state.next_ping  # type: float
        return next_ping


_shared = None  # type: Optional[Housekeeper]
_shared_lock = threading.Lock()


def shared_housekeeper() -> Housekeeper:
    """The process-wide housekeeper for client connections (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Housekeeper("simplews-client-housekeeping")
        return _shared
