"""Scale-out benchmarks: workers=1 vs workers=2, and broadcast fan-out through Redis.

    python benchmarks/workers_bench.py echo [--seconds 5] [--clients 4] [--connections 8] [--mode threaded]
    python benchmarks/workers_bench.py fanout [--connections 1000] [--rounds 50]
    python benchmarks/workers_bench.py all

``echo``: aggregate round trips/s of 16-byte text messages (send, wait for the
echo, repeat) over ``clients`` client processes x ``connections`` connections,
against a server process with workers=1, then workers=2.

``fanout``: two server processes (selectors mode, each with its own
RedisBroker on a redis-server started in a temp dir) hold ``connections``
connections between them; a separate publisher broadcasts ``rounds`` messages
carrying their send time (CLOCK_MONOTONIC, system-wide on Linux) and the
latency until the last of all connections received each one is reported.
"""

import argparse
import multiprocessing
import os
import select
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import simplews  # noqa: E402

SERVER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import simplews
kind, workers, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
options = dict(port=0, workers=workers, mode=mode, ping_interval=None, compression=None)
if kind == "fanout":
    from simplews.redis_broker import RedisBroker
    options["broker"] = RedisBroker(sys.argv[5], prefix="bench:")

class Echo(simplews.WebSocketHandler):
    def on_message(self, ws, message):
        ws.send(message)

server = simplews.SimpleWSServer(Echo(), **options)
print(server.port, flush=True)
server.serve_forever()
"""


def start_server(kind: str, workers: int, mode: str, *extra: str) -> Tuple[Any, int]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, ROOT, kind, str(workers), mode] + list(extra),
                            stdout=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.kill()
        raise SystemExit("server did not start")
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    time.sleep(0.5)  # let the workers come up
    return proc, port


def stop(proc: Any) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---------------------------------------------------------------------- echo

def _echo_client(url: str, connections: int, seconds: float, start: float, queue: Any) -> None:
    sockets = [simplews.connect(url, compression=None, ping_interval=None) for _ in range(connections)]
    counts = [0] * connections
    payload = "x" * 16

    def run(i: int) -> None:
        ws = sockets[i]
        while time.monotonic() < start:
            time.sleep(0.001)
        end = start + seconds
        n = 0
        while time.monotonic() < end:
            ws.send(payload)
            ws.recv()
            n += 1
        counts[i] = n

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ws in sockets:
        ws.close()
    queue.put(sum(counts))


def bench_echo(args: Any) -> None:
    context = multiprocessing.get_context("fork")
    print("echo: 16 B round trips, %d client processes x %d connections, %.0f s, mode=%s"
          % (args.clients, args.connections, args.seconds, args.mode))
    for workers in (1, 2):
        proc, port = start_server("echo", workers, args.mode)
        try:
            queue = context.Queue()
            start = time.monotonic() + 2.0 + 0.05 * args.clients * args.connections
            url = "ws://127.0.0.1:%d/" % port
            clients = [context.Process(target=_echo_client, args=(url, args.connections, args.seconds, start, queue))
                       for _ in range(args.clients)]
            for c in clients:
                c.start()
            total = sum(queue.get(timeout=args.seconds + 120) for _ in clients)
            for c in clients:
                c.join()
        finally:
            stop(proc)
        print("  workers=%d: %8.0f round trips/s" % (workers, total / args.seconds))


# ---------------------------------------------------------------------- fan-out

def _raw_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % port).encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n")[0].decode())
    assert head.endswith(b"\r\n\r\n"), "data after the handshake"
    sock.setblocking(False)
    return sock


def _frames(buffer: bytearray) -> List[bytes]:
    """Complete unmasked server frames' payloads, consumed from ``buffer``."""
    out = []
    while len(buffer) >= 2:
        length = buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if len(buffer) < 4:
                break
            length = struct.unpack_from(">H", buffer, 2)[0]
            offset = 4
        elif length == 127:
            if len(buffer) < 10:
                break
            length = struct.unpack_from(">Q", buffer, 2)[0]
            offset = 10
        if len(buffer) < offset + length:
            break
        out.append(bytes(buffer[offset:offset + length]))
        del buffer[:offset + length]
    return out


def bench_fanout(args: Any) -> None:
    redis_server = shutil.which("redis-server")
    if not redis_server:
        print("fanout: skipped (no redis-server)")
        return
    from simplews.redis_broker import RedisBroker
    tmp = tempfile.mkdtemp(prefix="simplews-bench-")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        redis_port = s.getsockname()[1]
    redis = subprocess.Popen([redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", tmp,
                              "--save", "", "--appendonly", "no", "--daemonize", "no"],
                             stdout=subprocess.DEVNULL)
    url = "redis://127.0.0.1:%d/0" % redis_port
    servers = []  # type: List[Any]
    sockets = []  # type: List[socket.socket]
    try:
        time.sleep(0.5)
        servers = [start_server("fanout", 1, "selectors", url) for _ in range(2)]
        for i in range(args.connections):
            sockets.append(_raw_connect(servers[i % 2][1]))
        selector = selectors.DefaultSelector()
        buffers = {}
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
            buffers[sock] = bytearray()
        publisher = RedisBroker(url, prefix="bench:")
        latencies = []
        for round_ in range(args.rounds + 1):
            sent_at = time.monotonic()
            publisher.publish("*", "%.9f" % sent_at)
            pending = set(sockets)
            last = sent_at
            deadline = sent_at + 30
            while pending and time.monotonic() < deadline:
                for key, _ in selector.select(1.0):
                    sock = key.fileobj
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    buffers[sock] += data
                    if _frames(buffers[sock]):
                        pending.discard(sock)  # type: ignore[arg-type]
                        last = time.monotonic()
            if pending:
                raise SystemExit("%d connections missed a broadcast" % len(pending))
            if round_:  # the first round warms up
                latencies.append(last - sent_at)
            time.sleep(0.05)
        publisher.close()
        selector.close()
        latencies.sort()
        print("fan-out through Redis to %d connections on 2 server processes, %d broadcasts:"
              % (args.connections, args.rounds))
        print("  all delivered after: median %.1f ms, p90 %.1f ms, max %.1f ms"
              % (1000 * latencies[len(latencies) // 2], 1000 * latencies[int(len(latencies) * 0.9)],
                 1000 * latencies[-1]))
    finally:
        for sock in sockets:
            sock.close()
        for proc, _ in servers:
            stop(proc)
        redis.terminate()
        redis.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", choices=["echo", "fanout", "all"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--connections", type=int, default=None,
                        help="per client process for echo (default 8); in all for fanout (default 1000)")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--mode", default="threaded", choices=["threaded", "selectors"])
    args = parser.parse_args()
    connections = args.connections
    if args.which in ("echo", "all"):
        args.connections = connections or 8
        bench_echo(args)
    if args.which in ("fanout", "all"):
        args.connections = connections or 1000
        bench_fanout(args)


if __name__ == "__main__":
    main()
