#!/usr/bin/env python3
"""A command-line client: send messages, print what the server sends back.

    python examples/client.py ws://127.0.0.1:8765/ hello world   # one reply per message
    python examples/client.py ws://127.0.0.1:8765/                # lines from stdin

With messages on the command line it sends each one and prints one reply for
it. Without, it sends every line of standard input and prints everything the
server sends, as it arrives; when the input ends it waits (at most --timeout
seconds) until as many messages came back as it sent, then closes.
"""

import argparse
import os
import sys
import threading

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews


def show(message):
    if isinstance(message, bytes):
        message = "<%d bytes: %s>" % (len(message), message[:32].hex())
    print(message, flush=True)


class Receiver(threading.Thread):
    """Prints every message as it arrives and counts them."""

    def __init__(self, ws):
        super().__init__(name="receiver", daemon=True)
        self.ws = ws
        self.count = 0
        self.changed = threading.Condition()

    def run(self):
        for message in self.ws:  # ends when the connection closes
            show(message)
            with self.changed:
                self.count += 1
                self.changed.notify_all()
        with self.changed:
            self.count = float("inf")  # closed: nothing more to wait for
            self.changed.notify_all()

    def wait_for(self, count, timeout):
        with self.changed:
            self.changed.wait_for(lambda: self.count >= count, timeout)


def main(argv=None):
    parser = argparse.ArgumentParser(description="simplews command-line client")
    parser.add_argument("url", help="ws:// or wss:// URL")
    parser.add_argument("messages", nargs="*", help="messages to send (default: lines of stdin)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the connection and for each reply (default %(default)s)")
    args = parser.parse_args(argv)

    try:
        ws = simplews.connect(args.url, timeout=args.timeout)
    except (simplews.WebSocketError, OSError) as exc:
        print("cannot connect to %s: %s" % (args.url, exc), file=sys.stderr)
        return 1

    with ws:  # closes with 1000 on the way out
        if args.messages:
            for message in args.messages:
                ws.send(message)
                try:
                    show(ws.recv(timeout=args.timeout))
                except TimeoutError:
                    print("no reply within %ss" % args.timeout, file=sys.stderr)
                    return 1
                except simplews.ConnectionClosed as exc:
                    print("connection closed: %s" % exc, file=sys.stderr)
                    return 1
            return 0

        receiver = Receiver(ws)
        receiver.start()
        sent = 0
        try:
            for line in sys.stdin:
                ws.send(line.rstrip("\r\n"))
                sent += 1
            # Closing at once would cut off replies still on their way.
            receiver.wait_for(sent, args.timeout)
        except simplews.ConnectionClosed as exc:
            print("connection closed: %s" % exc, file=sys.stderr)
        except KeyboardInterrupt:
            pass
        ws.close()
        receiver.join(args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
