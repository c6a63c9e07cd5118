#!/usr/bin/env python3
"""A live sensor dashboard: one thread pushes readings to every browser.

    python examples/sensor_dashboard.py [--host HOST] [--port PORT] [--interval SECONDS]

then open http://127.0.0.1:8765/ in a browser (or several). A simulated
temperature sensor (a smooth random walk around 21 °C) is read every
``--interval`` seconds (default 1.0) and the reading goes, as JSON, to every
connected WebSocket. The page at ``/`` draws the last two minutes as a line
chart on a ``<canvas>`` with plain JavaScript (nothing from a CDN), shows
whether it is connected, and reconnects by itself when the server goes away.

What it shows:

* ``mode="selectors"``: a single thread serves every connection; the
  handler's methods and the timers all run on it, so nothing here needs a lock
  (and nothing may block);
* ``server.call_later`` as a periodic timer, and ``server.broadcast``;
* ``process_request`` serving a page and WebSockets on the same port.

Messages, one JSON object each::

    {"type": "history", "readings": [READING, ...]}  # once, right after connecting
    {"type": "reading", "seq": 42, "time": 1700000000.123, "celsius": 21.37}  # READING

``--port 0`` picks a free port; the real one is printed.
"""

import argparse
import collections
import json
import logging
import os
import random
import sys
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

try:
    import simplews
except ImportError:  # run from a checkout, not installed: use the package beside this folder
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
    import simplews
from simplews import demo

HISTORY = 120  # readings a new page gets at once, so its chart is not empty


class Sensor(object):
    """A pretend thermometer: each reading drifts a little from the previous one."""

    def __init__(self, start: float = 21.0) -> None:
        self.celsius = start

    def read(self) -> float:
        self.celsius += random.gauss(0.0, 0.15)      # random drift...
        self.celsius += (21.0 - self.celsius) * 0.05  # ...gently pulled back towards 21 °C
        return round(self.celsius, 2)


class Dashboard(simplews.WebSocketHandler):
    """Sends the recent history to each new connection, then every reading to everyone."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.server = None  # type: Any  # set once the server exists
        self.sensor = Sensor()
        self.seq = 0
        self.history = collections.deque(maxlen=HISTORY)  # type: Deque[Dict[str, Any]]

    def start(self) -> None:
        """Schedule the first reading; each one schedules the next."""
        self.server.call_later(self.interval, self.tick)

    def tick(self) -> None:
        self.seq += 1
        reading = {"type": "reading", "seq": self.seq, "time": round(time.time(), 3),
                   "celsius": self.sensor.read()}
        self.history.append(reading)
        self.server.broadcast(json.dumps(reading))
        self.server.call_later(self.interval, self.tick)

    def on_open(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "history", "readings": list(self.history)}))

    def on_message(self, ws: Any, message: Any) -> None:
        pass  # the browser only listens


def process_request(path: str, headers: Any) -> Optional[Tuple[int, List[Tuple[str, str]], bytes]]:
    """The page for a browser's ``GET /``; anything else goes on to the WebSocket handshake."""
    wants_websocket = "websocket" in (headers.get("Upgrade") or "").lower()
    if path.split("?")[0] in ("/", "/index.html") and not wants_websocket:
        return 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")], PAGE
    return None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="simplews live sensor dashboard (selectors mode)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765,
                        help="port to listen on (default %(default)s; 0 picks a free port)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between readings (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dashboard = Dashboard(args.interval)
    dashboard.server = simplews.SimpleWSServer(dashboard, host=args.host, port=args.port, mode="selectors",
                                               process_request=process_request)
    dashboard.start()
    print("open http://%s:%d/ in a browser" % (args.host, dashboard.server.port), flush=True)
    return demo.run(dashboard.server)  # prints "listening on ws://HOST:PORT", serves until Ctrl+C


PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>simplews sensor dashboard</title>
<link rel="icon" href="data:,">
<style>
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: #202124; background: #f1f3f4; }
  main { max-width: 820px; margin: 32px auto; padding: 0 16px; }
  header { display: flex; align-items: baseline; justify-content: space-between; }
  h1 { font-size: 22px; margin: 0; }
  #status { font-size: 14px; padding: 3px 10px; border-radius: 12px; background: #e8eaed; }
  #status.open { background: #e6f4ea; color: #1e8e3e; }
  #status.closed { background: #fce8e6; color: #c5221f; }
  #current { font-size: 40px; margin: 12px 0 4px; }
  canvas { width: 100%; height: 320px; background: #fff; border: 1px solid #dadce0; border-radius: 8px; }
  footer { color: #5f6368; font-size: 13px; }
</style>
</head>
<body>
<main>
  <header>
    <h1>Temperature</h1>
    <div id="status">connecting&hellip;</div>
  </header>
  <div id="current">&ndash;</div>
  <canvas id="chart" width="800" height="320" data-points="0"></canvas>
  <footer><span id="count">0 readings received</span></footer>
</main>
<script>
"use strict";
var MAX_POINTS = 120;
var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
var canvas = document.getElementById("chart");
var statusBox = document.getElementById("status");
var points = [];   // readings on the chart, oldest first
var received = 0;  // readings received since the page loaded
var retryDelay = 500;

function setStatus(kind, text) {
  statusBox.className = kind;
  statusBox.textContent = text;
}

function draw() {
  var ctx = canvas.getContext("2d");
  var w = canvas.width, h = canvas.height, pad = 40;
  ctx.clearRect(0, 0, w, h);
  canvas.dataset.points = points.length;
  if (points.length === 0) {
    return;
  }
  var values = points.map(function (p) { return p.celsius; });
  var low = Math.min.apply(null, values) - 0.5, high = Math.max.apply(null, values) + 0.5;
  var x = function (i) { return pad + (w - 2 * pad) * i / (MAX_POINTS - 1); };
  var y = function (v) { return h - pad - (h - 2 * pad) * (v - low) / (high - low); };
  ctx.strokeStyle = "#dadce0";  // axes
  ctx.strokeRect(pad, pad, w - 2 * pad, h - 2 * pad);
  ctx.fillStyle = "#5f6368";
  ctx.font = "12px sans-serif";
  ctx.fillText(high.toFixed(1) + " \\u00b0C", 4, pad - 6);
  ctx.fillText(low.toFixed(1) + " \\u00b0C", 4, h - pad + 16);
  ctx.strokeStyle = "#2f6fde";  // the readings
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(function (p, i) {
    if (i === 0) { ctx.moveTo(x(i), y(p.celsius)); } else { ctx.lineTo(x(i), y(p.celsius)); }
  });
  ctx.stroke();
  var last = points[points.length - 1];
  ctx.fillStyle = "#2f6fde";
  ctx.fillRect(x(points.length - 1) - 3, y(last.celsius) - 3, 6, 6);
  document.getElementById("current").textContent = last.celsius.toFixed(2) + " \\u00b0C";
}

function connect() {
  setStatus("connecting", "connecting\\u2026");
  var ws = new WebSocket(url);
  ws.onopen = function () {
    retryDelay = 500;
    setStatus("open", "connected");
  };
  ws.onmessage = function (event) {
    var message = JSON.parse(event.data);
    if (message.type === "history") {
      points = message.readings;  // the server's recent readings replace ours
    } else if (message.type === "reading") {
      points.push(message);
      received += 1;
      document.getElementById("count").textContent = received + " readings received";
    }
    points = points.slice(-MAX_POINTS);
    draw();
  };
  ws.onclose = function () {
    // The server went away (or never answered): try again, waiting longer each time.
    setStatus("closed", "disconnected, retrying in " + (retryDelay / 1000) + " s");
    setTimeout(connect, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 10000);
  };
}

connect();
</script>
</body>
</html>
"""


if __name__ == "__main__":
    sys.exit(main())
