#!/usr/bin/env python3
"""A WSGI application with an ordinary page and a WebSocket route, on the same port.

``/`` is a page from a plain WSGI application; ``/ws`` is a WebSocket echo
(:class:`simplews.integration.WSGIWebSocketApp`). Two ways to run it:

* the standard library's wsgiref server, threaded::

      python examples/wsgi_app.py [--host HOST] [--port PORT]

  (``--port 0`` picks a free port; the real one is printed)

* gunicorn, from the repository root (``pip install gunicorn``)::

      gunicorn -k gthread --threads 32 -b 127.0.0.1:8000 examples.wsgi_app:app

  Each open WebSocket holds one of the ``--threads`` threads of a worker.
  The ``sync`` worker works too (``gunicorn -k sync ...``) but serves one
  connection per worker process at a time, and gunicorn kills a sync worker
  that stays busy longer than ``--timeout`` (30 s by default): only for
  short-lived connections, or with ``--timeout 0``.

Then open the page in a browser, or run
``python examples/client.py ws://127.0.0.1:8000/ws hello``.
"""

import logging
import os
import signal
import sys

try:
    import simplews  # noqa: F401
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from simplews import demo
from simplews.integration import WSGIWebSocketApp, make_wsgi_server

PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>WSGI + simplews</title></head>
<body>
<h1>WSGI + simplews</h1>
<p>This page comes from a plain WSGI application; <code>/ws</code> on the same port is a WebSocket echo.</p>
<form id="form"><input id="text" value="hello" autofocus> <button>send</button></form>
<pre id="log"></pre>
<script>
var log = document.getElementById("log");
var ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onopen = function () { log.textContent += "open\\n"; };
ws.onmessage = function (event) { log.textContent += "< " + event.data + "\\n"; };
ws.onclose = function (event) { log.textContent += "closed " + event.code + "\\n"; };
document.getElementById("form").onsubmit = function (event) {
  event.preventDefault();
  var text = document.getElementById("text").value;
  ws.send(text);
  log.textContent += "> " + text + "\\n";
};
</script>
</body></html>
"""


def echo(ws):
    for message in ws:
        ws.send(message)


def pages(environ, start_response):
    """The ordinary part of the site."""
    if environ.get("PATH_INFO", "/") == "/":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(PAGE)))])
        return [PAGE]
    body = b"not found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


# No fallback: a plain GET on /ws is answered "426 Upgrade Required".
websocket = WSGIWebSocketApp(echo)


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/ws":
        return websocket(environ, start_response)
    return pages(environ, start_response)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = demo.parse_args(argv, description="a WSGI application with a WebSocket echo at /ws (wsgiref)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_wsgi_server(args.host, args.port, app)
    host, port = server.server_address[:2]
    if ":" in host:
        host = "[%s]" % host
    print("listening on ws://%s:%d/ (WebSocket echo at ws://%s:%d/ws, page at http://%s:%d/)"
          % (host, port, host, port, host, port), flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
