#!/usr/bin/env python3
"""A device that streams sensor readings to a server and rides out outages.

    python examples/streaming_client.py ws://127.0.0.1:8765/ [--count N] [--interval SECONDS]

Every ``--interval`` seconds (default 1.0) it takes a reading and sends it as
JSON: ``{"device": "sensor-1", "seq": 7, "time": 1700000000.5, "celsius": 21.3}``.
``--count N`` stops after N readings (default 0: run until Ctrl+C or
SIGTERM). It logs what happens on stderr; what the server sends back is logged
too.

Stopping is graceful: Ctrl+C (or SIGTERM, as from systemd) ends the readings
between two of them, then the buffered readings are sent for up to
``--drain-timeout`` seconds; a second Ctrl+C gives up at once. The exit status
is 0 only if every reading was sent.

What it shows: :class:`simplews.SimpleWSClient` keeping one connection open
from a background thread (``run_in_thread``), reconnecting with exponential
backoff when the server goes away, and keepalive pings (``--ping-interval``)
that notice a dead network even when no reading is due.

While disconnected it **buffers** readings, up to ``--buffer`` of them
(default 1000; beyond that the oldest are dropped and counted), and sends them
in order as soon as it is connected again. This is "at most once" delivery: a
reading sent just as the connection breaks can still be lost. If every reading
matters, have the server acknowledge each ``seq`` and keep readings until then.

Try it with any server, e.g. ``python examples/echo_server.py`` in another
terminal: stop and restart that server and watch the client buffer, reconnect
and catch up.
"""

import argparse
import collections
import json
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Any, Deque, Optional, Sequence

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews

log = logging.getLogger("streaming_client")


class Device(simplews.SimpleWSClient):
    """Sends readings as they come; keeps them in a bounded buffer while disconnected."""

    def __init__(self, url: str, buffer_size: int, **options: Any) -> None:
        super().__init__(url, **options)
        self.buffer = collections.deque()  # type: Deque[str]  # readings waiting for a connection
        self.buffer_size = buffer_size
        self.dropped = 0
        self.lock = threading.Lock()  # the main thread sends; on_open (another thread) flushes

    def submit(self, reading: str) -> int:
        """Send ``reading`` now if connected, else keep it for later; how many readings wait."""
        with self.lock:
            self.buffer.append(reading)
            if len(self.buffer) > self.buffer_size:
                self.buffer.popleft()
                self.dropped += 1
            return self._flush()

    def _flush(self) -> int:
        """Send what waits, oldest first, while the connection takes it; how many still wait."""
        while self.buffer:
            try:
                self.send(self.buffer[0])
            except simplews.ConnectionClosed:
                break
            self.buffer.popleft()
        return len(self.buffer)

    def on_open(self) -> None:
        with self.lock:
            waiting = len(self.buffer)
            left = self._flush()
        log.info("connected to %s; sent %d buffered reading(s)", self.url, waiting - left)

    def on_message(self, message: Any) -> None:
        log.info("server says: %r", message)

    def on_close(self, code: int, reason: str) -> None:
        log.info("disconnected (code %d%s); will reconnect", code, ", " + reason if reason else "")

    def waiting(self) -> int:
        with self.lock:
            return len(self.buffer)


class StopRequest(object):
    """Set by a signal handler. A plain flag, not a threading.Event: a handler runs in the
    main thread between two bytecodes, and taking a lock there could deadlock that thread."""

    def __init__(self) -> None:
        self.requested = False

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.1))

    def install(self) -> None:
        """SIGINT and SIGTERM request a stop; a second one raises KeyboardInterrupt to quit now."""
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.info("%s: stopping after sending what is buffered (again to quit now)", signal.Signals(signum).name)


def take_readings(count: int, interval: float, stop: StopRequest) -> Any:
    """Yield ``count`` readings (forever if 0), one every ``interval`` seconds, until a stop is requested."""
    celsius = 21.0
    seq = 0
    while (count == 0 or seq < count) and not stop.requested:
        seq += 1
        celsius += random.gauss(0.0, 0.15) + (21.0 - celsius) * 0.05
        yield {"device": "sensor-1", "seq": seq, "time": round(time.time(), 3), "celsius": round(celsius, 2)}
        if count == 0 or seq < count:
            stop.sleep(interval)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stream sensor readings to a WebSocket server")
    parser.add_argument("url", help="ws:// or wss:// URL of the server")
    parser.add_argument("--count", type=int, default=0, help="readings to send, then stop (default: forever)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between readings (default 1.0)")
    parser.add_argument("--buffer", type=int, default=1000,
                        help="readings kept while disconnected (default %(default)s)")
    parser.add_argument("--ping-interval", type=float, default=20.0,
                        help="seconds between keepalive pings (default %(default)s)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to wait at the end for buffered readings to go out (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = Device(args.url, args.buffer, ping_interval=args.ping_interval, ping_timeout=args.ping_interval,
                    backoff_initial=0.5, backoff_max=10.0)
    stop = StopRequest()
    stop.install()
    thread = device.run_in_thread()  # connects, reconnects, calls on_open/on_message/on_close
    produced = 0
    try:
        for reading in take_readings(args.count, args.interval, stop):
            produced += 1
            waiting = device.submit(json.dumps(reading))
            if waiting:
                log.info("reading #%d: %.2f C, buffered (%d waiting)", reading["seq"], reading["celsius"], waiting)
            else:
                log.info("reading #%d: %.2f C, sent", reading["seq"], reading["celsius"])
        deadline = time.monotonic() + args.drain_timeout
        while device.waiting() and time.monotonic() < deadline:  # the last ones may still wait
            time.sleep(0.1)
    except KeyboardInterrupt:
        log.info("interrupted again: not waiting for the buffered readings")
    finally:
        device.stop()
        thread.join()
    unsent = device.waiting()
    log.info("done: %d readings taken, %d not sent, %d dropped from a full buffer",
             produced, unsent, device.dropped)
    return 0 if unsent == 0 and device.dropped == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
