"""Throughput / CPU benchmark of simplews against a raw-TCP floor (not a test).

One command measures, in the same run, over loopback:

* ``raw``       -- the floor: plain sockets, 4-byte length prefix, one sendall
                   per message, a thread per connection, TCP_NODELAY;
* ``threaded``  -- simplews.SimpleWSServer (thread per connection) + simplews client;
* ``selectors`` -- SimpleWSServer(mode="selectors") + simplews client;
* ``websockets`` (websockets.sync server + client) and ``wsclient``
  (websocket-client against the simplews threaded server), when importable.

Every server and every client runs in its own process; each process reports
its own CPU time (time.process_time(): all threads) over a pipe, so the figures are CPU µs per
round trip on each side. Compression is off everywhere. Each (scenario,
implementation) cell is run ``--reps`` times, interleaved, and the median is
reported, with the ratio to the raw floor of the same run.

Scenarios: 16 B text echo; 4 KiB, 1 MiB and 16 MiB binary echo (one
connection); 100 and 500 connections x 64 B echo (aggregate; a tiny
selectors-based client keeps one message in flight per connection, masking
with a constant key so the client costs little and the server is measured);
handshakes per second (bursts of 32 concurrent opening + closing handshakes;
the raw floor is connect + one 200-byte exchange + close); idle RSS per
connection and threads per connection in the server.

Further scenarios (raw / threaded / selectors only; the websockets and
websocket-client peers skip them):

* ``broadcast 64 B x1000`` -- a client process holds 1,000 connections; the
  server process is told to ``server.broadcast()`` 64 B and the time from just
  before that call until the last connection received it is measured
  (CLOCK_MONOTONIC, shared by the processes). The raw floor writes the 64 B
  (length-prefixed) to every socket with one ``sendall`` each. Reported as
  broadcasts/s, CPU µs per broadcast;
* ``deflate 16 B text`` / ``deflate 4 KiB text`` -- echo with
  ``compression="default"`` and with ``DeflateConfig.low_memory()`` on both
  sides (the 4 KiB texts are 16 different JSON-like records, cycled; 16 B is
  below the default ``min_size`` so it is sent uncompressed: the cost of
  compression being negotiated), against the uncompressed raw floor;
* ``deflate idle xN`` -- server RSS per compressed connection, each idle after
  echoing one 4 KiB text (so both zlib streams exist);
* ``TLS 4 KiB binary`` -- echo over wss:// against a raw floor over plain TLS
  sockets; the self-signed certificate is made by the ``openssl`` tool in a
  temporary directory (these rows are skipped, with the reason printed, when
  that fails).

``--only`` selects scenarios by substring of their name (e.g.
``--only broadcast,deflate,TLS``).

Usage::

    python benchmarks/bench.py            # full run (a few minutes)
    python benchmarks/bench.py --quick    # about a minute
    python benchmarks/bench.py --smoke    # tiny run for CI: must just finish

Linux only (reads /proc). Loopback only; every process is stopped at the end.
"""

import argparse
import base64
import contextlib
import json
import os
import re
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

LEN = struct.Struct("!I")


def cpu_seconds() -> float:
    """User + system CPU time of this whole process (all threads), ns resolution."""
    return time.process_time()


def proc_status(pid: Any = "self") -> Dict[str, int]:
    out = {}
    with open("/proc/%s/status" % pid) as status:
        for line in status:
            if line.startswith(("VmRSS:", "Threads:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def importable(name: str) -> bool:
    try:
        __import__(name)
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- servers

RAW_CONNS = set()  # type: Set[socket.socket]
RAW_LOCK = threading.Lock()


def raw_server(tls: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    context = server_tls_context(tls) if tls else None

    def serve(conn: Any) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if context is not None:
                conn.settimeout(10)
                conn = context.wrap_socket(conn, server_side=True)
                conn.settimeout(None)
            with RAW_LOCK:
                RAW_CONNS.add(conn)
            while True:
                head = recv_exact(conn, 4)
                if head is None:
                    return
                body = recv_exact(conn, LEN.unpack(head)[0])
                if body is None:
                    return
                conn.sendall(head + body)
        except (OSError, ValueError):
            pass
        finally:
            with RAW_LOCK:
                RAW_CONNS.discard(conn)
            conn.close()

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], listener.close


def server_tls_context(tls: Dict[str, str]) -> Any:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if hasattr(ssl, "PROTOCOL_TLS_SERVER")
                             else ssl.PROTOCOL_SSLv23)
    context.load_cert_chain(tls["cert"], tls["key"])
    return context


def client_tls_context(cafile: str) -> Any:
    import ssl
    return ssl.create_default_context(cafile=cafile)


def deflate_option(name: Optional[str]) -> Any:
    """``None`` (off), ``"default"`` or ``"low"`` (DeflateConfig.low_memory())."""
    if name == "low":
        from simplews.deflate import DeflateConfig
        return DeflateConfig.low_memory()
    return name


SERVER = None  # type: Any


def simplews_server(mode: str, compression: Optional[str] = None,
                    tls: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
    global SERVER
    import simplews

    class Echo(simplews.WebSocketHandler):
        def on_message(self, ws: Any, message: Any) -> None:
            ws.send(message)

    server = simplews.SimpleWSServer(Echo(), port=0, mode=mode, compression=deflate_option(compression),
                                     max_message_size=None, max_connections=None, ping_interval=None,
                                     ssl_context=server_tls_context(tls) if tls else None)
    SERVER = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(10)
    return server.port, stop


def websockets_server() -> Tuple[int, Any]:
    from websockets.sync.server import serve

    def echo(ws: Any) -> None:
        for message in ws:
            ws.send(message)

    server = serve(echo, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join(10)
    return server.socket.getsockname()[1], stop


def connection_count() -> int:
    if SERVER is None:
        with RAW_LOCK:
            return len(RAW_CONNS)
    return len(SERVER.connections)


def do_broadcast(expected: int, size: int) -> Dict[str, Any]:
    """Wait (bounded) until exactly ``expected`` connections are open, then broadcast ``size`` bytes."""
    deadline = time.monotonic() + 10
    while connection_count() != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    payload = b"b" * size
    t0 = time.monotonic()         # CLOCK_MONOTONIC: comparable across processes (Linux)
    if SERVER is None:
        message = LEN.pack(size) + payload
        with RAW_LOCK:
            targets = list(RAW_CONNS)
        sent = 0
        for conn in targets:
            try:
                conn.sendall(message)
                sent += 1
            except OSError:
                pass
    else:
        sent = SERVER.broadcast(payload)
    return {"t0": t0, "sent": sent}


def run_server(spec_text: str) -> None:
    spec = json.loads(spec_text) if spec_text.startswith("{") else {"kind": spec_text}  # type: Dict[str, Any]
    kind = spec["kind"]
    if kind == "raw":
        port, stop = raw_server(spec.get("tls"))
    elif kind in ("threaded", "selectors"):
        port, stop = simplews_server(kind, spec.get("compression"), spec.get("tls"))
    elif kind == "websockets":
        port, stop = websockets_server()
    else:
        raise SystemExit("unknown server %r" % kind)
    profiler = None
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        profiler = cProfile.Profile()
    print(port, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cpu":
            print(json.dumps({"cpu": cpu_seconds()}), flush=True)
        elif command == "status":
            print(json.dumps(proc_status()), flush=True)
        elif command.startswith("broadcast "):
            expected, size = command.split()[1:]
            print(json.dumps(do_broadcast(int(expected), int(size))), flush=True)
        elif command == "profile-on" and profiler:
            threading.setprofile(None)
            profiler.enable()
            print("{}", flush=True)
        elif command == "quit":
            break
    if profiler:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    stop()


# ---------------------------------------------------------------- clients

def recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    if n == 0:
        return b""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


class RawClient(object):
    def __init__(self, port: int, spec: Optional[Dict[str, Any]] = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cafile = (spec or {}).get("cafile")
        if cafile:
            self.sock = client_tls_context(cafile).wrap_socket(self.sock, server_hostname="127.0.0.1")

    def echo(self, payload: Any) -> Any:
        data = payload.encode() if isinstance(payload, str) else payload
        self.sock.sendall(LEN.pack(len(data)) + data)
        n = LEN.unpack(recv_exact(self.sock, 4))[0]
        body = recv_exact(self.sock, n)
        return body.decode() if isinstance(payload, str) else body

    def close(self) -> None:
        self.sock.close()


class SimplewsClient(object):
    def __init__(self, port: int, spec: Optional[Dict[str, Any]] = None) -> None:
        import simplews
        spec = spec or {}
        cafile = spec.get("cafile")
        self.ws = simplews.connect("%s://127.0.0.1:%d/" % ("wss" if cafile else "ws", port),
                                   compression=deflate_option(spec.get("compression")), max_message_size=None,
                                   ping_interval=None, ssl_context=client_tls_context(cafile) if cafile else None)
        if spec.get("compression") and self.ws._proto.deflate is None:
            raise AssertionError("compression was not negotiated")

    def echo(self, payload: Any) -> Any:
        self.ws.send(payload)
        return self.ws.recv()

    def close(self) -> None:
        self.ws.close()


class WebsocketsClient(object):
    def __init__(self, port: int, spec: Optional[Dict[str, Any]] = None) -> None:
        from websockets.sync.client import connect
        # entered like ``with connect(...)`` (websockets >= 16 warns on anything else)
        self.ws = connect("ws://127.0.0.1:%d/" % port, compression=None, max_size=None).__enter__()

    def echo(self, payload: Any) -> Any:
        self.ws.send(payload)
        return self.ws.recv()

    def close(self) -> None:
        self.ws.close()


class WsclientClient(object):
    def __init__(self, port: int, spec: Optional[Dict[str, Any]] = None) -> None:
        import websocket
        self.ws = websocket.create_connection("ws://127.0.0.1:%d/" % port)

    def echo(self, payload: Any) -> Any:
        if isinstance(payload, str):
            self.ws.send(payload)
        else:
            self.ws.send_binary(payload)
        return self.ws.recv()

    def close(self) -> None:
        self.ws.close()


CLIENTS = {"raw": RawClient, "threaded": SimplewsClient, "selectors": SimplewsClient,
           "websockets": WebsocketsClient, "wsclient": WsclientClient}


def ws_handshake_request(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return ("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)).encode()


def ws_open_raw(port: int) -> socket.socket:
    """A WebSocket connection opened by hand (the response's headers are read, nothing more)."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(ws_handshake_request(port))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("connection closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise OSError("handshake refused: %r" % data[:80])
    if data.index(b"\r\n\r\n") + 4 != len(data):
        raise OSError("unexpected bytes after the handshake response")
    return sock


ZERO_KEY = b"\0\0\0\0"
CLOSE_FRAME = bytes((0x88, 0x82)) + ZERO_KEY + struct.pack("!H", 1000)


def ws_close_raw(sock: socket.socket) -> None:
    try:
        sock.sendall(CLOSE_FRAME)
        sock.settimeout(5)
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()


def many_conns(kind: str, port: int, count: int, size: int, duration: float, go: Any) -> Dict[str, Any]:
    """``count`` connections, one ``size``-byte message in flight on each, for ``duration`` seconds."""
    payload = b"x" * size
    if kind == "raw":
        message = LEN.pack(size) + payload
        reply = 4 + size
        socks = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(sock)
    else:
        assert size < 126
        message = bytes((0x82, 0x80 | size)) + ZERO_KEY + payload
        reply = 2 + size
        socks = [ws_open_raw(port) for _ in range(count)]
    go()
    sel = selectors.DefaultSelector()
    pending = {}
    start = cpu_seconds()
    t0 = time.monotonic()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        pending[sock] = 0
        sock.send(message)
    done = 0
    deadline = t0 + duration
    stopping = False
    in_flight = count
    while in_flight:
        for key, _ in sel.select(5):
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                raise OSError("server closed a connection")
            got = pending[sock] + len(data)
            while got >= reply:
                got -= reply
                done += 1
                if stopping:
                    in_flight -= 1
                else:
                    sock.send(message)
            pending[sock] = got
        if not stopping and time.monotonic() >= deadline:
            stopping = True
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - start
    sel.close()
    for sock in socks:
        sock.setblocking(True)
        if kind == "raw":
            sock.close()
        else:
            ws_close_raw(sock)
    return {"count": done, "elapsed": elapsed, "cpu": cpu, "bytes": done * size * 2}


def handshakes(kind: str, port: int, duration: float, go: Any, burst: int = 32) -> Dict[str, Any]:
    go()
    start = cpu_seconds()
    t0 = time.monotonic()
    done = 0
    while True:
        socks = []
        if kind == "raw":
            message = LEN.pack(200) + b"h" * 200
            for _ in range(burst):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(message)
                socks.append(sock)
            for sock in socks:
                recv_exact(sock, 204)
                sock.close()
        else:
            for _ in range(burst):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(ws_handshake_request(port))
                socks.append(sock)
            for sock in socks:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise OSError("closed during the handshake")
                    data += chunk
                if not data.startswith(b"HTTP/1.1 101"):
                    raise OSError("handshake refused: %r" % data[:80])
                sock.sendall(CLOSE_FRAME)
            for sock in socks:
                ws_close_raw(sock)
        done += burst
        if time.monotonic() - t0 >= duration:
            break
    return {"count": done, "elapsed": time.monotonic() - t0, "cpu": cpu_seconds() - start, "bytes": 0}


def compressible_texts(size: int, count: int = 16) -> List[str]:
    """``count`` different JSON-like texts of exactly ``size`` characters (deterministic)."""
    import random
    rng = random.Random(size)
    words = ["alpha", "beta", "gamma", "delta", "status", "online", "offline", "message", "user", "room"]
    texts = []
    for _ in range(count):
        parts = []  # type: List[str]
        total = 0
        while total < size:
            part = json.dumps({"id": rng.randrange(1 << 20), "user": "%s%d" % (rng.choice(words), rng.randrange(1000)),
                               "state": rng.choice(words), "score": round(rng.random() * 100, 2),
                               "tags": rng.sample(words, 3)}, sort_keys=True)
            parts.append(part)
            total += len(part) + 1
        texts.append((",".join(parts))[:size])
    return texts


def echo_one(kind: str, port: int, size: int, text: bool, duration: float, go: Any,
             min_count: int, spec: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    spec = spec or {}
    client = CLIENTS[kind](port, spec)
    if spec.get("compressible"):
        payloads = compressible_texts(size)  # type: List[Any]
    else:
        payloads = [("x" * size) if text else os.urandom(size)]
    for payload in payloads:
        if client.echo(payload) != payload:       # warm-up, and check the echo
            raise AssertionError("bad echo")
    go()
    start = cpu_seconds()
    t0 = time.monotonic()
    done = 0
    while True:
        client.echo(payloads[done % len(payloads)])
        done += 1
        if done >= min_count and time.monotonic() - t0 >= duration:
            break
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - start
    client.close()
    return {"count": done, "elapsed": elapsed, "cpu": cpu, "bytes": done * size * 2}


def idle_compressed(port: int, count: int, compression: str, go: Any) -> Dict[str, Any]:
    """``count`` compressed connections, each idle after echoing one 4 KiB compressible text."""
    payload = compressible_texts(4096, 1)[0]
    clients = []
    try:
        for _ in range(count):
            client = SimplewsClient(port, {"compression": compression})
            clients.append(client)
            if client.echo(payload) != payload:
                raise AssertionError("bad echo")
        time.sleep(0.5)
        go()
    finally:
        for client in clients:
            client.close()
    return {"count": count, "elapsed": 0.0, "cpu": 0.0, "bytes": 0}


def broadcast_client(kind: str, port: int, count: int, size: int) -> None:
    """Hold ``count`` connections; after each ``GO`` line, report when every one got a ``size``-byte broadcast."""
    if kind == "raw":
        expect = 4 + size
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    else:
        assert size < 126
        expect = 2 + size
        socks = [ws_open_raw(port) for _ in range(count)]
    sel = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
    print("READY", flush=True)
    try:
        while sys.stdin.readline().strip() == "GO":
            start = cpu_seconds()
            got = dict.fromkeys(socks, 0)
            waiting = count
            t_end = 0.0
            deadline = time.monotonic() + 30
            while waiting:
                if time.monotonic() > deadline:
                    raise OSError("broadcast not received by %d connection(s)" % waiting)
                for key, _ in sel.select(1):
                    sock = key.fileobj
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("server closed a connection")
                    before = got[sock]
                    got[sock] = before + len(data)
                    if before < expect <= got[sock]:
                        waiting -= 1
                        t_end = time.monotonic()
            print("GOT " + json.dumps({"t_end": t_end, "cpu": cpu_seconds() - start}), flush=True)
    finally:
        sel.close()
        for sock in socks:
            sock.setblocking(True)
            if kind == "raw":
                sock.close()
            else:
                ws_close_raw(sock)


def idle(kind: str, port: int, count: int, go: Any) -> Dict[str, Any]:
    """``count`` idle connections. A WebSocket one is idle once its handshake is answered; a raw
    one after one 16 B exchange, so its server thread surely runs (connect() alone returns from
    the listen backlog, maybe before that thread exists: too low a floor on a loaded machine)."""
    if kind == "raw":
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
        for sock in socks:
            sock.sendall(LEN.pack(16) + b"i" * 16)
            if recv_exact(sock, 20) is None:
                raise OSError("the raw server closed an idle connection")
    else:
        socks = [ws_open_raw(port) for _ in range(count)]
    time.sleep(0.5)               # let the server finish setting up every connection
    go()
    for sock in socks:
        if kind == "raw":
            sock.close()
        else:
            ws_close_raw(sock)
    return {"count": count, "elapsed": 0.0, "cpu": 0.0, "bytes": 0}


def run_client(args: argparse.Namespace) -> None:
    def go() -> None:
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            raise SystemExit(1)

    spec = json.loads(args.client)
    kind, port, scenario = spec["kind"], spec["port"], spec["scenario"]
    if scenario == "broadcast":
        broadcast_client(kind if kind == "raw" else "ws", port, spec["conns"], spec["size"])
        return
    if scenario == "echo":
        result = echo_one(kind, port, spec["size"], spec["text"], spec["duration"], go, spec["min_count"], spec)
    elif scenario == "idle" and spec.get("compression"):
        result = idle_compressed(port, spec["conns"], spec["compression"], go)
    elif scenario == "conns":
        result = many_conns(kind if kind == "raw" else "ws", port, spec["conns"], spec["size"],
                            spec["duration"], go)
    elif scenario == "handshake":
        result = handshakes(kind if kind == "raw" else "ws", port, spec["duration"], go)
    elif scenario == "idle":
        result = idle(kind if kind == "raw" else "ws", port, spec["conns"], go)
    else:
        raise SystemExit("unknown scenario")
    print("RESULT " + json.dumps(result), flush=True)
    sys.stdin.readline()          # wait until the orchestrator has read the server's CPU


# ---------------------------------------------------------------- orchestration

class Server(object):
    def __init__(self, kind: str) -> None:
        self.kind = kind          # a kind ("raw", "threaded", ...) or a JSON spec {"kind": ..., options}
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--server", kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
        line = self.proc.stdout.readline()
        if not line.strip():
            self.stop()
            raise RuntimeError("server %s did not start" % kind)
        self.port = int(line)

    def ask(self, command: str) -> Dict[str, Any]:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        _close_pipes(self.proc)


def _close_pipes(proc: "subprocess.Popen[str]") -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass


@contextlib.contextmanager
def client_process(spec: Dict[str, Any], timeout: float) -> Iterator["subprocess.Popen[str]"]:
    """A client process started with ``spec``, once it printed READY; killed after ``timeout``
    seconds at most, and reaped with its pipes closed on the way out."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", json.dumps(spec)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        if proc.stdout.readline().strip() != "READY":
            raise RuntimeError("client failed: %s" % (spec,))
        yield proc
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _close_pipes(proc)


def measure(server: Server, client_kind: str, spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    spec = dict(spec, kind=client_kind, port=server.port)
    before = server.ask("status") if spec["scenario"] == "idle" else None
    with client_process(spec, timeout) as proc:
        opened = server.ask("status") if spec["scenario"] == "idle" else None
        cpu0 = server.ask("cpu")["cpu"]
        proc.stdin.write("GO\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line.startswith("RESULT "):
            raise RuntimeError("client failed: %s %s" % (client_kind, spec))
        result = json.loads(line[7:])
        result["server_cpu"] = server.ask("cpu")["cpu"] - cpu0
        if opened is not None:
            result["status"], result["base"] = opened, before
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout)
    return result


def measure_broadcast(server: Server, client_kind: str, spec: Dict[str, Any], timeout: float) -> Dict[str, Any]:
    """Rounds of server.broadcast() to ``spec["conns"]`` connections held by one client process.

    Each round: server CPU read, client armed (GO), ``broadcast`` command to the server (which notes
    its monotonic clock just before broadcasting), client reports when the last connection got it,
    server CPU read again. elapsed = sum of (last receipt - broadcast start).
    """
    spec = dict(spec, kind=client_kind, port=server.port)
    done, elapsed, cpu, server_cpu = 0, 0.0, 0.0, 0.0
    with client_process(spec, timeout) as proc:
        t_start = time.monotonic()
        while done < spec["min_count"] or time.monotonic() - t_start < spec["duration"]:
            cpu0 = server.ask("cpu")["cpu"]
            proc.stdin.write("GO\n")
            proc.stdin.flush()
            sent = server.ask("broadcast %d %d" % (spec["conns"], spec["size"]))
            line = proc.stdout.readline()
            if not line.startswith("GOT "):
                raise RuntimeError("client failed: %s %s" % (client_kind, spec))
            server_cpu += server.ask("cpu")["cpu"] - cpu0
            got = json.loads(line[4:])
            if sent["sent"] < spec["conns"]:
                raise RuntimeError("broadcast reached %d of %d connections" % (sent["sent"], spec["conns"]))
            elapsed += got["t_end"] - sent["t0"]
            cpu += got["cpu"]
            done += 1
        proc.stdin.write("END\n")
        proc.stdin.flush()
        proc.wait(timeout)
    return {"count": done, "elapsed": elapsed, "cpu": cpu, "server_cpu": server_cpu,
            "bytes": done * spec["conns"] * spec["size"]}


def make_certificate(directory: str) -> Optional[Dict[str, str]]:
    """A self-signed certificate for 127.0.0.1 made with the openssl tool, or None (reason printed)."""
    cert, key = os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem")
    try:
        proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                               "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", key,
                               "-out", cert], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print("TLS scenarios skipped: cannot run openssl (%s)" % exc)
        return None
    if proc.returncode != 0:
        print("TLS scenarios skipped: openssl failed: %s" % proc.stderr.strip()[-300:])
        return None
    return {"cert": cert, "key": key}


def fmt(value: Optional[float], digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0:
        return "{:,.0f}".format(value)
    return "{:,.{}f}".format(value, digits)


def import_stats() -> Tuple[str, str]:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import simplews"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    cumulative = None
    slowest = []
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if not m:
            continue
        if m.group(4) == "simplews":
            cumulative = int(m.group(2))
        slowest.append((int(m.group(1)), m.group(4)))
    slowest.sort(reverse=True)
    code = ("import os,sys\nsys.path.insert(0, %r)\n" % ROOT
            + "def rss():\n  return [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
            + "a = rss()\nimport simplews\nprint(a, rss())")
    base, after = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                 universal_newlines=True, timeout=60).stdout.split()
    top = ", ".join("%s %.1f ms" % (name, us / 1000.0) for us, name in slowest[:4])
    return ("`import simplews`: %.1f ms cumulative (self time, slowest: %s)"
            % ((cumulative or 0) / 1000.0, top),
            "RSS: %s KiB before `import simplews`, %s KiB after (+%d KiB)" % (base, after, int(after) - int(base)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute")
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI): must just finish")
    parser.add_argument("--reps", type=int, help="interleaved repetitions (median is reported)")
    parser.add_argument("--only", help="comma-separated scenario names to run")
    parser.add_argument("--impls", help="comma-separated implementations to run")
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        run_server(args.server)
        return
    if args.client:
        run_client(args)
        return

    if args.smoke:
        duration, reps, conns, idle_conns, bcast_conns = 0.1, 1, (10, 20), 20, 20
    elif args.quick:
        duration, reps, conns, idle_conns, bcast_conns = 0.4, 3, (100, 500), 200, 1000
    else:
        duration, reps, conns, idle_conns, bcast_conns = 1.5, 3, (100, 500), 500, 1000
    if args.reps:
        reps = args.reps

    scenarios = [
        ("idle x%d" % idle_conns, {"scenario": "idle", "conns": idle_conns}),
        ("16 B text", {"scenario": "echo", "size": 16, "text": True, "min_count": 10}),
        ("4 KiB binary", {"scenario": "echo", "size": 4096, "text": False, "min_count": 10}),
        ("1 MiB binary", {"scenario": "echo", "size": 1 << 20, "text": False, "min_count": 3}),
        ("16 MiB binary", {"scenario": "echo", "size": 16 << 20, "text": False, "min_count": 2}),
        ("%d conns x 64 B" % conns[0], {"scenario": "conns", "size": 64, "conns": conns[0]}),
        ("%d conns x 64 B" % conns[1], {"scenario": "conns", "size": 64, "conns": conns[1]}),
        ("handshakes (x32)", {"scenario": "handshake"}),
        ("broadcast 64 B x%d" % bcast_conns, {"scenario": "broadcast", "size": 64, "conns": bcast_conns,
                                              "min_count": 3, "impls": "basic"}),
        ("deflate 16 B text", {"scenario": "echo", "size": 16, "text": True, "min_count": 10,
                               "impls": "deflate"}),
        ("deflate 4 KiB text", {"scenario": "echo", "size": 4096, "text": True, "compressible": True,
                                "min_count": 10, "impls": "deflate"}),
        ("deflate idle x%d" % idle_conns, {"scenario": "idle", "conns": idle_conns, "impls": "deflate"}),
        ("TLS 4 KiB binary", {"scenario": "echo", "size": 4096, "text": False, "min_count": 10, "impls": "tls"}),
    ]  # type: List[Tuple[str, Dict[str, Any]]]
    if args.only:
        wanted = args.only.split(",")
        scenarios = [s for s in scenarios if any(w in s[0] for w in wanted)]
    for _, spec in scenarios:
        spec["duration"] = duration

    # (label, server kind, client kind)
    impls = [("raw", "raw", "raw"), ("threaded", "threaded", "threaded"),
             ("selectors", "selectors", "selectors")]
    if importable("websockets.sync.server"):
        impls.append(("websockets", "websockets", "websockets"))
    if importable("websocket"):
        impls.append(("wsclient", "threaded", "wsclient"))
    # The new scenarios run on their own server variants (the websockets / websocket-client peers skip
    # them); a cell's client spec gets the variant's options (compression, CA file).
    basic = [i for i in impls if i[0] in ("raw", "threaded", "selectors")]
    deflate_impls = [("raw", "raw", "raw")]
    for mode in ("threaded", "selectors"):
        for comp, comp_label in (("default", "default"), ("low", "low_memory")):
            deflate_impls.append(("%s deflate=%s" % (mode, comp_label),
                                  json.dumps({"kind": mode, "compression": comp}, sort_keys=True), mode))
    if args.impls:
        # keep a variant when its base implementation was asked for
        wanted_impls = args.impls.split(",")
        impls = [i for i in impls if i[0] in wanted_impls or i[0] == "raw"]
        basic = [i for i in basic if i[0] in wanted_impls or i[0] == "raw"]
        deflate_impls = [i for i in deflate_impls if i[0].split()[0] in wanted_impls or i[0] == "raw"]
    tmpdir = None
    tls_impls = []  # type: List[Tuple[str, str, str]]
    client_options = {}  # type: Dict[str, Dict[str, Any]]
    for _, server_kind, _ in deflate_impls:
        if server_kind.startswith("{"):
            client_options[server_kind] = {"compression": json.loads(server_kind)["compression"]}
    if any(spec.get("impls") == "tls" for _, spec in scenarios):
        import tempfile
        tmpdir = tempfile.mkdtemp(prefix="simplews-bench-")
        certificate = make_certificate(tmpdir)
        if certificate is None:
            scenarios = [s for s in scenarios if s[1].get("impls") != "tls"]
        else:
            for label, base in (("raw", "raw"), ("threaded", "threaded"), ("selectors", "selectors")):
                if any(i[0] == label for i in basic):
                    server_kind = json.dumps({"kind": base, "tls": certificate}, sort_keys=True)
                    tls_impls.append(("%s TLS" % label if label != "raw" else "raw TLS", server_kind, base))
                    client_options[server_kind] = {"cafile": certificate["cert"]}
    impl_sets = {"basic": basic, "deflate": deflate_impls, "tls": tls_impls}

    def impls_of(spec: Dict[str, Any]) -> List[Tuple[str, str, str]]:
        return impl_sets.get(spec.get("impls", ""), impls)

    servers = {}  # type: Dict[str, Server]
    results = {}  # type: Dict[Tuple[str, str], List[Dict[str, Any]]]
    t_start = time.monotonic()
    try:
        for _, spec in scenarios:
            for _, server_kind, _ in impls_of(spec):
                if server_kind not in servers:
                    servers[server_kind] = Server(server_kind)
        for rep in range(reps):
            for name, spec in scenarios:
                order = impls_of(spec) if rep % 2 == 0 else list(reversed(impls_of(spec)))
                for label, server_kind, client_kind in order:
                    if spec["scenario"] == "idle" and rep:
                        continue
                    if spec["scenario"] == "idle" and spec.get("impls") == "deflate" and label == "raw":
                        continue
                    cell = dict(spec, **client_options.get(server_kind, {}))
                    cell.pop("impls", None)
                    try:
                        if spec["scenario"] == "broadcast":
                            result = measure_broadcast(servers[server_kind], client_kind, cell, timeout=120)
                        else:
                            result = measure(servers[server_kind], client_kind, cell, timeout=120)
                    except Exception as exc:  # keep going: report the cell as failed
                        sys.stderr.write("%s / %s failed: %s\n" % (name, label, exc))
                        continue
                    results.setdefault((name, label), []).append(result)
    finally:
        for server in servers.values():
            server.stop()
        if tmpdir is not None:
            import shutil
            shutil.rmtree(tmpdir, ignore_errors=True)
    wall = time.monotonic() - t_start

    lines = []
    lines.append("| scenario | impl | round trips/s | MB/s | server CPU µs/rt | client CPU µs/rt | × raw |")
    lines.append("|---|---|--:|--:|--:|--:|--:|")
    idle_lines = []
    for name, spec in scenarios:
        raw_rate = None
        for label, _, _ in impls_of(spec):
            runs = results.get((name, label))
            if spec["scenario"] == "idle" and spec.get("impls") == "deflate" and label == "raw":
                continue
            if not runs:
                if spec["scenario"] == "idle":
                    idle_lines.append("| %s | %s | failed | |" % (name, label))
                    continue
                lines.append("| %s | %s | failed | | | | |" % (name, label))
                continue
            if spec["scenario"] == "idle":
                run = runs[0]
                n = run["count"]
                rss = (run["status"]["VmRSS"] - run["base"]["VmRSS"]) / float(n)
                threads = (run["status"]["Threads"] - run["base"]["Threads"]) / float(n)
                idle_lines.append("| %s | %s | %.1f KiB | %.2f |" % (name, label, rss, threads))
                continue
            rate = statistics.median(r["count"] / r["elapsed"] for r in runs)
            mbps = statistics.median(r["bytes"] / r["elapsed"] / 1e6 for r in runs)
            scpu = statistics.median(r["server_cpu"] / r["count"] * 1e6 for r in runs)
            ccpu = statistics.median(r["cpu"] / r["count"] * 1e6 for r in runs)
            if label in ("raw", "raw TLS"):
                raw_rate = rate
            ratio = ("%.2f" % (rate / raw_rate)) if raw_rate else "-"
            unit = {"handshake": "handshakes/s", "broadcast": "broadcasts/s"}.get(spec["scenario"], "")
            lines.append("| %s | %s | %s%s | %s | %s | %s | %s |" % (
                name, label, fmt(rate), (" " + unit) if unit else "",
                fmt(mbps, 1) if r_has_bytes(runs) else "-", fmt(scpu, 1), fmt(ccpu, 1), ratio))
    if idle_lines:
        lines.append("")
        lines.append("Idle connections (server process, %d connections; `deflate idle`: compressed, "
                     "each idle after echoing one 4 KiB text): " % idle_conns)
        lines.append("")
        lines.append("| scenario | impl | RSS per connection | threads per connection |")
        lines.append("|---|---|--:|--:|")
        lines.extend(idle_lines)
    lines.append("")
    imports, rss = import_stats()
    lines.append("* " + imports)
    lines.append("* " + rss)
    lines.append("")
    print("## bench.py (%s, %d repetition(s), medians; %.0f s wall)\n" % (
        "smoke" if args.smoke else "quick" if args.quick else "full", reps, wall))
    print(machine())
    print()
    print("\n".join(lines))


def r_has_bytes(runs: List[Dict[str, Any]]) -> bool:
    return any(r["bytes"] for r in runs)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "Machine: %d CPU(s) (nproc), %s; Python %s (%s)" % (
        os.cpu_count() or 0, model, sys.version.split()[0], sys.implementation.name)


if __name__ == "__main__":
    main()
