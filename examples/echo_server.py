#!/usr/bin/env python3
"""An echo server: every message comes back to its sender unchanged.

    python examples/echo_server.py [--host HOST] [--port PORT]

then open http://127.0.0.1:8765/ in a browser (the page comes from
simplews.demo), or run ``python examples/client.py ws://127.0.0.1:8765/ hello``.
``--port 0`` picks a free port; the real one is printed.
"""

import logging
import os
import sys

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo


def echo(ws):
    for message in ws:
        ws.send(message)


def main(argv=None):
    args = demo.parse_args(argv, description="simplews echo server (with a browser page at /)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # process_request answers plain HTTP requests: the demo page at "/",
    # every other path upgrades to a WebSocket and runs echo().
    server = simplews.SimpleWSServer(echo, host=args.host, port=args.port,
                                     process_request=demo.process_request)
    return demo.run(server)  # prints "listening on ws://HOST:PORT", serves until Ctrl+C


if __name__ == "__main__":
    sys.exit(main())
