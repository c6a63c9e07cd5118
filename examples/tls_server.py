#!/usr/bin/env python3
"""A wss:// (WebSocket over TLS) echo server.

    python examples/tls_server.py --cert CERT.pem --key KEY.pem [--host HOST] [--port PORT]

It echoes every message, like examples/echo_server.py, but over TLS; a
browser gets the demo page at https://HOST:PORT/. ``--port 0`` picks a free
port; the real one is printed.

What it shows: an :class:`ssl.SSLContext` for a server, loaded with a
certificate chain and its private key, passed as ``ssl_context=``. Nothing
else changes: the handler, the client API and the messages are the same as
over ws://.

**A self-signed certificate, for trying it out** (browsers and clients will
not trust it until told to)::

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout key.pem -out cert.pem \\
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1"
    python examples/tls_server.py --cert cert.pem --key key.pem

A Python client trusts it with ``ssl.create_default_context(cafile="cert.pem")``::

    simplews.connect("wss://localhost:8765/", ssl_context=context)

(a browser: open https://localhost:8765/ once and accept the warning).

**Let's Encrypt**: certbot writes the files under
``/etc/letsencrypt/live/YOUR.DOMAIN/``; use the full chain, not cert.pem
alone, or clients cannot build the chain to the root::

    python examples/tls_server.py --host 0.0.0.0 --port 8443 \\
        --cert /etc/letsencrypt/live/YOUR.DOMAIN/fullchain.pem \\
        --key /etc/letsencrypt/live/YOUR.DOMAIN/privkey.pem

privkey.pem is readable by root only: run as root, give a group read access,
or copy the files where your service user can read them (a certbot
``--deploy-hook`` can do that). The context is loaded once at start-up, so
restart the server after each renewal (the deploy hook again). Often simpler:
let nginx or another reverse proxy handle TLS and run a plain ws:// server
behind it.
"""

import argparse
import logging
import os
import ssl
import sys
from typing import Optional, Sequence

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)


def make_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """A server-side context with secure defaults, holding the certificate chain and its key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile=cert, keyfile=key)
    return context


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="simplews wss:// echo server",
        epilog="No certificate yet? The docstring at the top of examples/tls_server.py shows how to make "
               "a self-signed one with openssl, and how to use Let's Encrypt's fullchain.pem / privkey.pem.")
    parser.add_argument("--cert", required=True, help="certificate chain, PEM (e.g. fullchain.pem)")
    parser.add_argument("--key", required=True, help="its private key, PEM (e.g. privkey.pem)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port to listen on (default %(default)s; 0 picks a free port)")
    args = parser.parse_args(argv)
    try:
        context = make_ssl_context(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        parser.error("cannot load --cert %s / --key %s: %s" % (args.cert, args.key, exc))

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = simplews.SimpleWSServer(echo, host=args.host, port=args.port, ssl_context=context,
                                     process_request=demo.process_request)
    return demo.run(server)  # prints "listening on wss://HOST:PORT" and the https:// page, serves until Ctrl+C


if __name__ == "__main__":
    sys.exit(main())
