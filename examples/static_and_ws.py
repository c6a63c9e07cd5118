#!/usr/bin/env python3
"""Static files over HTTP and a WebSocket echo, on one port.

    python examples/static_and_ws.py [--root DIR] [--host HOST] [--port PORT]

then open http://127.0.0.1:8765/ in a browser: it gets ``index.html`` from
the ``static/`` folder beside this script (or from ``--root DIR``), and that
page opens a WebSocket back to the same host and port, whose messages are
echoed.

What it shows: ``process_request(path, headers)`` sees every request before
the WebSocket handshake. It answers plain HTTP requests with a file and lets
WebSocket upgrades through (by returning None). Paths are handled safely:
the file must lie inside the root once ``..`` and symbolic links are
resolved, hidden files (names starting with ".") are never served, a
directory serves its ``index.html``, anything else is 404, and the
Content-Type comes from :mod:`mimetypes`.

Files are read whole into memory for each request: fine for a small app's
pages and scripts; put a real web server (nginx...) in front for big files.
A HEAD request gets the headers a GET would get and no body (the server
drops the body of any answer to a HEAD); ``process_request`` is not told the
HTTP method, so other methods (POST...) are answered like GET. ``--port 0``
picks a free port; the real one is printed.
"""

import argparse
import logging
import mimetypes
import os
import sys
from typing import Any, List, Optional, Sequence, Tuple
from urllib.parse import unquote

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo

DEFAULT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

Response = Tuple[int, List[Tuple[str, str]], bytes]


class StaticFiles(object):
    """A ``process_request`` hook serving the files under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.realpath(root)

    def __call__(self, path: str, headers: Any) -> Optional[Response]:
        if "websocket" in (headers.get("Upgrade") or "").lower():
            return None  # a WebSocket handshake: let it through to the handler
        filename = self.find(path)
        if filename is None:
            return 404, [("Content-Type", "text/plain; charset=utf-8")], b"Not Found\n"
        with open(filename, "rb") as f:
            body = f.read()
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
            content_type += "; charset=utf-8"
        return 200, [("Content-Type", content_type), ("Cache-Control", "no-cache"),
                     ("X-Content-Type-Options", "nosniff")], body

    def find(self, path: str) -> Optional[str]:
        """The file a URL path names, or None if there is none (or it lies outside the root)."""
        path = unquote(path.split("?")[0].split("#")[0])
        parts = [part for part in path.split("/") if part]
        if "\0" in path or any(part.startswith(".") for part in parts):
            return None  # "..", hidden files and folders
        filename = os.path.realpath(os.path.join(self.root, *parts))
        if os.path.commonpath([self.root, filename]) != self.root:
            return None  # a symbolic link (or a "\\" on Windows) leading outside the root
        if os.path.isdir(filename):
            filename = os.path.join(filename, "index.html")
        if not os.path.isfile(filename):
            return None
        return filename


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="simplews: static files and a WebSocket echo on one port")
    parser.add_argument("--root", default=DEFAULT_ROOT, help="folder to serve (default: static/ beside this file)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port to listen on (default %(default)s; 0 picks a free port)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        parser.error("--root %s is not a folder" % args.root)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = simplews.SimpleWSServer(echo, host=args.host, port=args.port, process_request=StaticFiles(args.root))
    print("serving %s at http://%s:%d/" % (os.path.realpath(args.root), args.host, server.port), flush=True)
    return demo.run(server)  # prints "listening on ws://HOST:PORT", serves until Ctrl+C


if __name__ == "__main__":
    sys.exit(main())
