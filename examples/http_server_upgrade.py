#!/usr/bin/env python3
"""WebSocket inside an existing ``http.server`` application, on the same port.

    python examples/http_server_upgrade.py [--host HOST] [--port PORT]

``GET /`` is an ordinary page served by the ``BaseHTTPRequestHandler``;
``/ws`` is upgraded to a WebSocket by :func:`simplews.integration.accept` and
echoes every message. Open http://127.0.0.1:8765/ in a browser, or run
``python examples/client.py ws://127.0.0.1:8765/ws hello``. ``--port 0``
picks a free port; the real one is printed.
"""

import http.server
import logging
import os
import signal
import socketserver
import sys

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo
from simplews.integration import accept

PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>http.server + simplews</title></head>
<body>
<h1>http.server + simplews</h1>
<p>This page comes from a plain <code>BaseHTTPRequestHandler</code>; <code>/ws</code> on the same port is a
WebSocket echo.</p>
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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for the page; the upgrade takes its connection over

    def do_GET(self):
        if self.path == "/ws" or self.path.startswith("/ws?"):
            try:
                accept(self, echo)  # answers 101 and runs echo() until the connection closes
            except simplews.WebSocketError as exc:
                # InvalidHandshake: not a valid WebSocket request; the 4xx
                # answer is already sent. Or the client went away meanwhile.
                self.log_message("no WebSocket: %s", exc)
            return
        if self.path != "/":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


if hasattr(http.server, "ThreadingHTTPServer"):  # Python 3.7+
    Server = http.server.ThreadingHTTPServer
else:  # Python 3.6
    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = demo.parse_args(argv, description="http.server with a WebSocket echo at /ws")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server((args.host, args.port), Handler)
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
