#!/usr/bin/env python3
"""A broadcast chat: every message goes to everyone connected, sender included.

    python examples/chat_server.py [--host HOST] [--port PORT]

then open http://127.0.0.1:8765/ in two browser tabs, or connect with
``python examples/client.py ws://127.0.0.1:8765/`` and type lines.
``--port 0`` picks a free port; the real one is printed.
"""

import itertools
import logging
import os
import sys
import threading

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo


class Chat(simplews.WebSocketHandler):
    """One instance serves every connection; each method runs on that connection's thread."""

    def __init__(self):
        self.server = None  # set once the server exists
        self.names = {}
        self.lock = threading.Lock()
        self.numbers = itertools.count(1)

    def on_open(self, ws):
        with self.lock:
            name = self.names[ws] = "guest-%d" % next(self.numbers)
        ws.send("* welcome, you are %s" % name)
        self.server.broadcast("* %s joined" % name)

    def on_message(self, ws, message):
        if isinstance(message, bytes):
            ws.send("* binary messages are not relayed")
            return
        self.server.broadcast("%s: %s" % (self.names[ws], message))

    def on_close(self, ws, code, reason):
        with self.lock:
            name = self.names.pop(ws, "guest")
        self.server.broadcast("* %s left" % name)


def main(argv=None):
    args = demo.parse_args(argv, description="simplews broadcast chat (with a browser page at /)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chat = Chat()
    chat.server = simplews.SimpleWSServer(chat, host=args.host, port=args.port,
                                          process_request=demo.process_request)
    return demo.run(chat.server)  # prints "listening on ws://HOST:PORT", serves until Ctrl+C


if __name__ == "__main__":
    sys.exit(main())
