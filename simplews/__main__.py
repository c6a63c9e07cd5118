"""The command line: a WebSocket client for the terminal and for pipes, and a demo server.

::

    python -m simplews ws://127.0.0.1:8765/            # interactive when stdin is a terminal
    printf 'a\\nb\\n' | python -m simplews ws://host/   # pipe mode: send each line, print replies
    python -m simplews serve --port 8765               # the demo server
    python -m simplews --version

Interactive mode sends every line typed as a message and prints received
messages after a ``< `` marker; Ctrl+D or Ctrl+C closes the connection
(code 1000). Pipe mode (stdin not a terminal) sends each line, then once
stdin ends waits until as many messages came back as lines were sent, at most
``--wait`` seconds, prints the replies (without a marker) and closes cleanly.

Messages go to stdout; connection status and errors to stderr. Exit status:
0 after a clean run, 1 if the connection failed or dropped, 2 for bad usage.
"""

import argparse
import binascii
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, TextIO

from . import __version__
from .client import USE_ENVIRONMENT, SimpleWSClient
from .connection import WebSocket
from .exceptions import ConnectionClosed, WebSocketError

logger = logging.getLogger("simplews")
trace = logging.getLogger("simplews.cli")

EPILOG = """\
binary messages are shown as a Python bytes literal unless --hex or --binary says otherwise.
'python -m simplews serve [--host HOST] [--port PORT]' runs the demo server.
"""


def client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simplews",
        description="A WebSocket client: interactive on a terminal, line by line in a pipe.",
        epilog=EPILOG)
    parser.add_argument("url", help="ws:// or wss:// URL to connect to")
    parser.add_argument("--version", action="version", version="simplews %s" % __version__)
    parser.add_argument("-H", "--header", action="append", default=[], metavar="NAME:VALUE",
                        help="extra request header (repeatable)")
    parser.add_argument("-s", "--subprotocol", action="append", default=[], metavar="NAME",
                        help="subprotocol to offer (repeatable, in order of preference)")
    parser.add_argument("--origin", help="Origin header to send")
    parser.add_argument("--proxy", metavar="URL",
                        help="HTTP proxy (http://user:pass@host:port) for a CONNECT tunnel; '' connects "
                             "directly; default: http_proxy / https_proxy / no_proxy from the environment")
    parser.add_argument("--ping", type=float, metavar="SECONDS",
                        help="keepalive ping interval (0 disables keepalive; default 20)")
    parser.add_argument("--no-compression", action="store_true", help="do not offer permessage-deflate")
    display = parser.add_mutually_exclusive_group()
    display.add_argument("--hex", action="store_true",
                         help="show binary messages as hex, and send each line as binary: hex digits")
    display.add_argument("--binary", action="store_true",
                         help="show binary messages as text (UTF-8), and send each line as a binary message")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="opening handshake timeout (default %(default)s)")
    parser.add_argument("--wait", type=float, default=1.0, metavar="SECONDS",
                        help="pipe mode: after stdin ends, wait at most this long for replies (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log the connection and a trace of every frame to stderr")
    return parser


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simplews serve",
                                     description="Run the simplews demo server (an echo server).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8765, help="port (default %(default)s; 0 picks one)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        return serve(args[1:])
    options = client_parser().parse_args(args)
    return run_client(options)


# ---------------------------------------------------------------------- serve

def serve(argv: List[str]) -> int:
    """The demo server of simplews.demo when it is there, else a plain echo server."""
    try:
        from . import demo
    except ImportError:
        demo = None  # type: ignore[assignment]
    if demo is not None and hasattr(demo, "main"):
        return int(demo.main(argv) or 0)
    args = serve_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from .server import SimpleWSServer

    def echo(ws: WebSocket) -> None:
        for message in ws:
            ws.send(message)

    server = SimpleWSServer(echo, host=args.host, port=args.port)
    _write(sys.stdout, "listening on %s\n" % server.url)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        server.serve_forever()
    finally:
        server.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---------------------------------------------------------------------- client

class Display(object):
    """Turns messages into output lines and input lines into messages, per --hex / --binary."""

    def __init__(self, hex_mode: bool = False, binary: bool = False, marker: str = "") -> None:
        self.hex_mode = hex_mode
        self.binary = binary
        self.marker = marker

    def render(self, message: Any) -> str:
        if isinstance(message, str):
            text = message
        elif self.hex_mode:
            text = binascii.hexlify(bytes(message)).decode("ascii")
        elif self.binary:
            text = bytes(message).decode("utf-8", "replace")
        else:
            text = repr(bytes(message))
        return self.marker + text + "\n"

    def encode(self, line: str) -> Any:
        if self.hex_mode:
            try:
                return binascii.unhexlify("".join(line.split()))
            except (binascii.Error, ValueError) as exc:
                raise ValueError("not hex: %r (%s)" % (line, exc))
        if self.binary:
            return line.encode("utf-8")
        return line


def _write(stream: TextIO, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more to show
        pass


def _headers(values: List[str]) -> List[Any]:
    headers = []
    for value in values:
        name, colon, content = value.partition(":")
        if not colon or not name.strip():
            raise ValueError("--header %r: expected NAME:VALUE" % value)
        headers.append((name.strip(), content.strip()))
    return headers


def run_client(args: argparse.Namespace) -> int:
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(threadName)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    options = {}  # type: Dict[str, Any]
    if args.proxy is not None:
        options["proxy"] = args.proxy or None
    else:
        options["proxy"] = USE_ENVIRONMENT
    if args.ping is not None:
        options["ping_interval"] = args.ping if args.ping > 0 else None
    if args.no_compression:
        options["compression"] = None
    try:
        headers = _headers(args.header)
        client = SimpleWSClient(args.url, timeout=args.timeout, headers=headers, origin=args.origin,
                                subprotocols=args.subprotocol or None, **options)
    except (ValueError, WebSocketError) as exc:
        _write(sys.stderr, "error: %s\n" % exc)
        return 2
    try:
        ws = client.connect()
    except (WebSocketError, OSError) as exc:
        _write(sys.stderr, "error: cannot connect to %s: %s\n" % (args.url, exc))
        return 1
    if args.verbose:
        _install_trace(ws)
    interactive = sys.stdin.isatty()
    status = "connected to %s" % args.url
    if ws.subprotocol:
        status += " (subprotocol %s)" % ws.subprotocol
    if interactive or args.verbose:
        _write(sys.stderr, status + "\n")
    display = Display(args.hex, args.binary, marker="< " if interactive else "")
    session = Session(ws, display, interactive)
    code = 0
    try:
        if interactive:
            code = session.run_interactive()
        else:
            code = session.run_pipe(args.wait)
    except KeyboardInterrupt:
        pass
    finally:
        session.finish()
    return code


class Session(object):
    """One connection: a reader thread prints messages while the main thread sends stdin lines."""

    def __init__(self, ws: WebSocket, display: Display, interactive: bool) -> None:
        self.ws = ws
        self.display = display
        self.interactive = interactive
        self.received = 0
        self.cond = threading.Condition()
        self.closed_by_peer = False
        self.main_thread = threading.current_thread()
        self.wake_lock = threading.Lock()
        self.wake_allowed = interactive
        # Unix: the reader wakes the terminal read through a pipe; elsewhere with interrupt_main().
        self.wake_pipe = os.pipe() if interactive and os.name == "posix" else None
        self.reader = threading.Thread(target=self._read, name="simplews-cli-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        ws = self.ws
        while True:
            try:
                message = ws.recv()
            except ConnectionClosed:
                break
            _write(sys.stdout, self.display.render(message))
            with self.cond:
                self.received += 1
                self.cond.notify_all()
        with self.cond:
            self.closed_by_peer = True
            self.cond.notify_all()
        if self.interactive:
            _write(sys.stderr, "connection closed: code %s%s\n" % (
                ws.close_code, (", reason %r" % ws.close_reason) if ws.close_reason else ""))
            self._wake_main()

    def _wake_main(self) -> None:
        """The peer closed: end the main thread's blocking read of the terminal (at most once)."""
        with self.wake_lock:
            if not self.wake_allowed or threading.current_thread() is self.main_thread:
                return
            self.wake_allowed = False
            if self.wake_pipe is not None:
                os.write(self.wake_pipe[1], b"x")
                return
            import _thread
            _thread.interrupt_main()

    def _disable_wake(self) -> None:
        with self.wake_lock:
            self.wake_allowed = False

    def _send_line(self, line: str) -> bool:
        try:
            message = self.display.encode(line)
        except ValueError as exc:
            _write(sys.stderr, "error: %s\n" % exc)
            return True
        try:
            self.ws.send(message)
        except ConnectionClosed:
            return False
        return True

    def run_interactive(self) -> int:
        try:
            while True:
                line = self._readline()
                if not line:
                    break
                if not self._send_line(line.rstrip("\r\n")):
                    break
            self._disable_wake()
        except KeyboardInterrupt:
            self._disable_wake()
        return 0 if self.ws.close_code in (None, 1000, 1001) else 1

    def _readline(self) -> str:
        """The next line typed; "" at end of input or once the connection closed."""
        if self.wake_pipe is None:
            return sys.stdin.readline()
        import select
        while True:
            readable, _, _ = select.select([sys.stdin, self.wake_pipe[0]], [], [])
            if self.wake_pipe[0] in readable:
                return ""
            if readable:
                return sys.stdin.readline()

    def run_pipe(self, wait: float) -> int:
        sent = 0
        try:
            for line in sys.stdin:
                if not self._send_line(line.rstrip("\r\n")):
                    break
                sent += 1
            deadline = time.monotonic() + max(wait, 0.0)
            with self.cond:
                while self.received < sent and not self.closed_by_peer:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
        except KeyboardInterrupt:
            pass
        if self.closed_by_peer and self.ws.close_code not in (1000, 1001):
            _write(sys.stderr, "connection closed: code %s%s\n" % (
                self.ws.close_code, (", reason %r" % self.ws.close_reason) if self.ws.close_reason else ""))
            return 1
        return 0

    def finish(self) -> None:
        self._disable_wake()
        try:
            self.ws.close()
        except KeyboardInterrupt:  # Ctrl+C while closing: drop the connection
            self.ws.abort()
        try:
            self.reader.join(self.ws.options.close_timeout + 1.0)
        except KeyboardInterrupt:
            self.ws.abort()
        if self.wake_pipe is not None:
            with self.wake_lock:
                for fd in self.wake_pipe:
                    os.close(fd)
                self.wake_pipe = None


# ---------------------------------------------------------------------- --verbose frame trace

def _install_trace(ws: WebSocket) -> None:
    """Log every frame received and sent, by watching the connection's parser and writes.

    Tracing uses the connection's internals; if they change, it logs messages only.
    """
    from . import frames
    proto = getattr(ws, "_proto", None)
    parser = getattr(proto, "_parser", None)
    write = getattr(ws, "_write", None)
    if proto is None or parser is None or write is None or not hasattr(parser, "next_frame"):
        trace.debug("frame trace unavailable; tracing messages only")
        return
    next_frame = parser.next_frame

    def traced_next_frame(*args: Any, **kwargs: Any) -> Any:
        frame = next_frame(*args, **kwargs)
        if frame is not None:
            trace.debug("< %s", _describe(frame))
        return frame

    outgoing = frames.FrameParser(expect_masked=True, allow_rsv1=True)

    def traced_write(data: bytes) -> None:
        try:
            outgoing.feed(bytes(data))
            while True:
                frame = outgoing.next_frame()
                if frame is None:
                    break
                trace.debug("> %s", _describe(frame))
        except Exception as exc:  # the trace must never break the connection
            trace.debug("> %d bytes (not traced: %s)", len(data), exc)
        write(data)

    proto.fast_path = False  # every frame through the parser, so every frame is traced
    parser.next_frame = traced_next_frame
    ws._write = traced_write  # type: ignore[method-assign]


def _describe(frame: Any) -> str:
    from . import frames
    name = frames.OPCODE_NAMES.get(frame.opcode, hex(frame.opcode))
    payload = bytes(frame.payload)
    text = "%s fin=%d rsv1=%d %d bytes" % (name, int(frame.fin), int(frame.rsv1), len(payload))
    if frame.opcode == frames.OP_CLOSE and len(payload) >= 2:
        text += " code=%d reason=%r" % (int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace"))
    elif payload and not frame.rsv1:
        preview = payload[:60]
        text += " %r%s" % (preview, "..." if len(payload) > 60 else "")
    return text


if __name__ == "__main__":
    sys.exit(main())
