"""A demo server: echo and broadcast chat on one port, with a page for the browser.

``python -m simplews.demo`` (or ``python examples/echo_server.py``) and open
http://127.0.0.1:8765/ in a browser. The same port serves:

* ``GET /`` from a browser: an HTML page (inline JavaScript and CSS, nothing
  from a CDN) that opens ``ws://HOST:PORT/ws``, sends what you type and shows
  what comes back;
* a WebSocket request to any path (``/`` included): the upgrade. Every message
  is echoed to its sender unchanged; in chat mode (the default of ``main``) it
  is also relayed to every other connection as ``"guest-N: message"``, and
  joins and leaves are announced.

The pieces are reusable: :func:`process_request` is a ready ``process_request``
hook for any :class:`~simplews.SimpleWSServer`, and :class:`DemoHandler` is a
small :class:`~simplews.WebSocketHandler`.
"""

import argparse
import itertools
import logging
import signal
import sys
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .connection import WebSocket
from .exceptions import ConnectionClosed
from .protocol import Data
from .server import SimpleWSServer, WebSocketHandler

__all__ = ["PAGE", "DemoHandler", "process_request", "make_server", "main"]

logger = logging.getLogger("simplews")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PAGE_PATHS = ("/", "/index.html")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>simplews demo</title>
<link rel="icon" href="data:,">
<style>
  :root { --accent: #2f6fde; --ok: #1e8e3e; --bad: #c5221f; --muted: #5f6368; --line: #dadce0; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         color: #202124; background: #f1f3f4; }
  main { max-width: 760px; margin: 32px auto; padding: 0 16px; }
  header { display: flex; align-items: baseline; justify-content: space-between; gap: 12px; flex-wrap: wrap; }
  h1 { font-size: 22px; margin: 0; }
  h1 span { color: var(--muted); font-weight: normal; font-size: 15px; }
  #status { font-size: 14px; padding: 3px 10px; border-radius: 12px; background: #e8eaed; color: var(--muted); }
  #status.open { background: #e6f4ea; color: var(--ok); }
  #status.closed { background: #fce8e6; color: var(--bad); }
  p.help { color: var(--muted); margin: 8px 0 16px; }
  code { background: #e8eaed; padding: 1px 5px; border-radius: 4px; }
  #log { background: #fff; border: 1px solid var(--line); border-radius: 8px; height: 360px;
         overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 6px; }
  .msg { max-width: 80%; padding: 6px 10px; border-radius: 10px; white-space: pre-wrap; word-break: break-word; }
  .msg.sent { align-self: flex-end; background: var(--accent); color: #fff; }
  .msg.received { align-self: flex-start; background: #e8eaed; }
  .msg.info { align-self: center; background: none; color: var(--muted); font-size: 13px; }
  .msg small { display: block; font-size: 11px; opacity: .75; }
  form { display: flex; gap: 8px; margin-top: 12px; }
  #message { flex: 1; font: inherit; padding: 9px 12px; border: 1px solid var(--line); border-radius: 8px; }
  button { font: inherit; padding: 9px 16px; border: 0; border-radius: 8px; background: var(--accent);
           color: #fff; cursor: pointer; }
  button:disabled { background: #9aa0a6; cursor: default; }
  button.secondary { background: #fff; color: var(--accent); border: 1px solid var(--line); }
  footer { color: var(--muted); font-size: 13px; margin-top: 10px; }
</style>
</head>
<body>
<main>
  <header>
    <h1>simplews demo <span>echo &amp; chat</span></h1>
    <div id="status" role="status">connecting&hellip;</div>
  </header>
  <p class="help">Messages go to the server over a WebSocket at <code id="url"></code>.
  An echo server sends each one back; a chat server also relays it to everyone connected
  (open a second tab to chat).</p>
  <div id="log" aria-live="polite"></div>
  <form id="form" autocomplete="off">
    <input id="message" placeholder="Type a message and press Enter" maxlength="10000" autofocus>
    <button id="send" type="submit" disabled>Send</button>
    <button id="reconnect" type="button" class="secondary" hidden>Reconnect</button>
  </form>
  <footer><span id="counts">sent 0 &middot; received 0</span></footer>
</main>
<script>
(function () {
  "use strict";
  var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  var log = document.getElementById("log");
  var status = document.getElementById("status");
  var input = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var reconnect = document.getElementById("reconnect");
  var counts = document.getElementById("counts");
  var sent = 0, received = 0, ws = null;
  document.getElementById("url").textContent = url;

  function add(kind, text, label) {
    var item = document.createElement("div");
    item.className = "msg " + kind;
    if (label) {
      var small = document.createElement("small");
      small.textContent = label;
      item.appendChild(small);
    }
    item.appendChild(document.createTextNode(text));
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
  }

  function setStatus(kind, text) {
    status.className = kind;
    status.textContent = text;
    sendButton.disabled = kind !== "open";
    reconnect.hidden = kind !== "closed";
  }

  function updateCounts() {
    counts.textContent = "sent " + sent + " \\u00b7 received " + received;
  }

  function connect() {
    setStatus("connecting", "connecting\\u2026");
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () {
      setStatus("open", "connected");
      add("info", "connected to " + url);
      input.focus();
    };
    ws.onmessage = function (event) {
      received += 1;
      updateCounts();
      if (typeof event.data === "string") {
        add("received", event.data, "received");
      } else {
        add("received", "[" + event.data.byteLength + " bytes of binary data]", "received");
      }
    };
    ws.onclose = function (event) {
      var text = "disconnected (code " + event.code + (event.reason ? ", " + event.reason : "") + ")";
      setStatus("closed", text);
      add("info", text);
    };
    ws.onerror = function () {
      add("info", "connection error");
    };
  }

  document.getElementById("form").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text || !ws || ws.readyState !== WebSocket.OPEN) {
      return;
    }
    ws.send(text);
    sent += 1;
    updateCounts();
    add("sent", text, "sent");
    input.value = "";
  });
  reconnect.addEventListener("click", connect);
  connect();
}());
</script>
</body>
</html>
"""

_PAGE_BYTES = PAGE.encode("utf-8")

_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                                "img-src data:; connect-src 'self' ws: wss:"),
]  # type: List[Tuple[str, str]]


def process_request(path: str, headers: Any) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
    """A ``process_request`` hook: the demo page for a browser's ``GET /``, the upgrade for the rest.

    A WebSocket request to ``/`` upgrades too, so ``ws://HOST:PORT/`` works as well as ``/ws``.
    """
    if path.split("?", 1)[0] in PAGE_PATHS and not _is_upgrade(headers):
        return 200, list(_PAGE_HEADERS), _PAGE_BYTES
    return None


def _is_upgrade(headers: Any) -> bool:
    values = headers.get_all("Upgrade") if hasattr(headers, "get_all") else [headers.get("Upgrade") or ""]
    return any("websocket" in value.lower() for value in values)


class DemoHandler(WebSocketHandler):
    """Echo every message to its sender; with ``chat=True`` also relay it to everyone else.

    Relayed text reads ``"guest-N: message"``; binary messages are echoed only.
    """

    def __init__(self, chat: bool = True) -> None:
        self.chat = chat
        self._lock = threading.Lock()
        self._names = {}  # type: Dict[WebSocket, str]
        self._counter = itertools.count(1)

    def on_open(self, ws: WebSocket) -> None:
        with self._lock:
            name = "guest-%d" % next(self._counter)
            self._names[ws] = name
            online = len(self._names)
        logger.info("%s connected from %s (%d online)", name, _format_peer(ws.remote_address), online)
        if self.chat:
            self._relay(ws, "* %s joined (%d online)" % (name, online))

    def on_message(self, ws: WebSocket, message: Data) -> None:
        ws.send(message)
        if self.chat and isinstance(message, str):
            self._relay(ws, "%s: %s" % (self._names.get(ws, "guest"), message))

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        with self._lock:
            name = self._names.pop(ws, "guest")
            online = len(self._names)
        logger.info("%s disconnected: code %d (%d online)", name, code, online)
        if self.chat:
            self._relay(ws, "* %s left (%d online)" % (name, online))

    def _relay(self, sender: WebSocket, text: str) -> None:
        with self._lock:
            others = [ws for ws in self._names if ws is not sender]
        for ws in others:
            try:
                ws.send(text)
            except ConnectionClosed:
                continue


def make_server(host: Optional[str] = DEFAULT_HOST, port: int = DEFAULT_PORT, chat: bool = True,
                **options: Any) -> SimpleWSServer:
    """A :class:`~simplews.SimpleWSServer` serving the demo page and :class:`DemoHandler`."""
    options.setdefault("process_request", process_request)
    return SimpleWSServer(DemoHandler(chat=chat), host=host, port=port, **options)


def parse_args(argv: Optional[Sequence[str]] = None, description: Optional[str] = None) -> argparse.Namespace:
    """``--host`` and ``--port`` (0 picks a free port), as the examples take them."""
    parser = argparse.ArgumentParser(description=description or "simplews demo: echo and chat with a browser page")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="interface to listen on (default %(default)s; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="port to listen on (default %(default)s; 0 picks a free port)")
    return parser.parse_args(argv)


def run(server: SimpleWSServer) -> int:
    """Announce ``server`` on stdout, serve until Ctrl+C (or SIGTERM), stop cleanly; returns 0."""
    host = server.host
    if ":" in host:
        host = "[%s]" % host
    scheme = "wss" if server.ssl_context is not None else "ws"
    print("listening on %s://%s:%d" % (scheme, host, server.port), flush=True)
    if server.process_request is process_request:
        print("open %s://%s:%d/ in a browser" % ("https" if scheme == "wss" else "http", host, server.port),
              flush=True)
    previous = _stop_on_sigterm()
    try:
        server.serve_forever()  # returns after Ctrl+C, having closed every connection
    finally:
        server.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m simplews.demo [--host HOST] [--port PORT]``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(make_server(args.host, args.port, chat=True))


def _stop_on_sigterm() -> Any:
    """Let SIGTERM stop the server like Ctrl+C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _format_peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return ("[%s]:%s" if ":" in host else "%s:%s") % (host, address[1])
    return str(address)


if __name__ == "__main__":
    sys.exit(main())
