#!/usr/bin/env python3
"""Echo server for the Autobahn|Testsuite ``fuzzingclient`` (simplews is the testee server).

Every text message is echoed as text and every binary message as binary.
permessage-deflate is on by default (``--no-compression`` turns it off); the
message limit is raised to 64 MiB so the 9.x cases (up to 16 MiB) pass, and
keepalive pings are disabled so they do not show up in the reports.

Usage: python3 compliance/server.py [--host 127.0.0.1] [--port 9001] [--no-compression]
       [--mode threaded|selectors]
Prints ``listening on ws://HOST:PORT`` once it accepts connections.
"""

import argparse
import logging
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import simplews  # noqa: E402

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


class EchoHandler(simplews.WebSocketHandler):
    """The same echo as callbacks, for ``--mode selectors``."""

    def on_message(self, ws: simplews.WebSocket, message: simplews.protocol.Data) -> None:
        ws.send(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--no-compression", action="store_true", help="do not accept permessage-deflate")
    parser.add_argument("--compress-level", type=int, default=6,
                        help="zlib level for outgoing messages (default 6, the library's)")
    parser.add_argument("--mode", choices=("threaded", "selectors"), default="threaded",
                        help="server mode (default threaded: one thread per connection)")
    parser.add_argument("--debug", action="store_true", help="log simplews at DEBUG level")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    server = simplews.SimpleWSServer(
        echo if args.mode == "threaded" else EchoHandler(), host=args.host, port=args.port, mode=args.mode,
        compression=None if args.no_compression else simplews.DeflateConfig(compress_level=args.compress_level),
        max_message_size=MAX_MESSAGE_SIZE, ping_interval=None)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print("listening on ws://%s:%d" % (args.host, server.port), flush=True)
    server.serve_forever()  # returns (after shutting down) on Ctrl+C / SIGTERM
    return 0


if __name__ == "__main__":
    sys.exit(main())
