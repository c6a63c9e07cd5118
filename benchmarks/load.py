"""Load benchmark: echo traffic against each server mode (not a test).

For each mode (``threaded``, ``selectors``) a server runs in its own process
on 127.0.0.1 (port 0); ``--processes`` client processes each open
``--connections`` connections and, for ``--seconds``, every connection sends
``--size`` bytes and waits for the echo, over and over. Reported per mode:

* errors (failed connects, unexpected closes, wrong echoes; must be 0);
* messages per second (echo round trips, all connections together);
* p50 / p99 round-trip latency;
* the server process's peak RSS (VmHWM) and its peak thread count.

Usage::

    python3 benchmarks/load.py                                  # 4 x 25 connections, 5 s per mode
    python3 benchmarks/load.py --processes 2 --connections 10 --seconds 3 --modes selectors

Bounded: at most 16 processes x 500 connections, 60 s per mode; every child
process is killed if it outlives its deadline. Loopback only. Linux (reads
/proc for the server's memory).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import simplews  # noqa: E402

MAX_PROCESSES = 16
MAX_CONNECTIONS = 500
MAX_SECONDS = 60.0
LATENCY_SAMPLES = 100000  # per client process


class Echo(simplews.WebSocketHandler):
    def on_message(self, ws: Any, message: Any) -> None:
        ws.send(message)


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------- server process

def run_server(mode: str, max_connections: int) -> None:
    """Serve until stdin says stop (or closes); then print the stats as JSON."""
    server = simplews.SimpleWSServer(Echo(), host="127.0.0.1", port=0, mode=mode, ping_interval=None,
                                     compression=None, max_connections=max_connections)
    serving = threading.Thread(target=server.serve_forever, name="serve", daemon=True)
    serving.start()
    peak = {"threads": threading.active_count()}
    done = threading.Event()

    def monitor() -> None:
        while not done.wait(0.05):
            peak["threads"] = max(peak["threads"], threading.active_count())

    sampler = threading.Thread(target=monitor, name="monitor", daemon=True)
    sampler.start()
    base_rss = _status("VmRSS")
    print(json.dumps({"port": server.port}), flush=True)
    sys.stdin.readline()
    done.set()
    sampler.join()
    server.shutdown()
    serving.join(30)
    print(json.dumps({"peak_rss_kib": _status("VmHWM"), "base_rss_kib": base_rss,
                      "peak_threads": peak["threads"] - 1}), flush=True)  # minus the monitor


# ---------------------------------------------------------------------- client process

def run_client(url: str, connections: int, seconds: float, size: int) -> None:
    """Open the connections, echo until the deadline, print counts and latencies as JSON."""
    payload = os.urandom(size)
    lock = threading.Lock()
    stats = {"messages": 0, "errors": 0}  # type: Dict[str, int]
    errors = []  # type: List[str]
    latencies = []  # type: List[float]
    sockets = []  # type: List[Any]
    for _ in range(connections):
        try:
            sockets.append(simplews.connect(url, timeout=10, ping_interval=None, compression=None))
        except Exception as exc:
            stats["errors"] += 1
            errors.append("connect: %r" % (exc,))
    start = threading.Barrier(len(sockets) + 1) if sockets else None
    deadline = [0.0]

    def worker(ws: Any) -> None:
        count = 0
        mine = []  # type: List[float]
        try:
            start.wait(30)  # type: ignore[union-attr]
            while time.monotonic() < deadline[0]:
                sent = time.perf_counter()
                ws.send(payload)
                if ws.recv(timeout=10) != payload:
                    raise AssertionError("wrong echo")
                mine.append(time.perf_counter() - sent)
                count += 1
            ws.close()
        except Exception as exc:
            with lock:
                stats["errors"] += 1
                errors.append("echo: %r" % (exc,))
            ws.abort()
        with lock:
            stats["messages"] += count
            room = LATENCY_SAMPLES - len(latencies)
            latencies.extend(mine[:max(room, 0)])

    threads = [threading.Thread(target=worker, args=(ws,), daemon=True) for ws in sockets]
    for thread in threads:
        thread.start()
    if start is not None:
        deadline[0] = time.monotonic() + seconds
        start.wait(30)
    for thread in threads:
        thread.join(seconds + 30)
    print(json.dumps({"messages": stats["messages"], "errors": stats["errors"], "error_samples": errors[:5],
                      "latencies": latencies}), flush=True)


# ---------------------------------------------------------------------- orchestration

def percentile(values: List[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]


def bench_mode(mode: str, processes: int, connections: int, seconds: float, size: int) -> Dict[str, Any]:
    me = os.path.abspath(__file__)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    server = subprocess.Popen([sys.executable, me, "--serve", mode,
                               "--max-connections", str(processes * connections + 16)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, universal_newlines=True)
    clients = []  # type: List[subprocess.Popen]
    try:
        port = json.loads(server.stdout.readline())["port"]  # type: ignore[union-attr]
        url = "ws://127.0.0.1:%d/" % port
        clients = [subprocess.Popen([sys.executable, me, "--client", url, "--connections", str(connections),
                                     "--seconds", str(seconds), "--size", str(size)],
                                    stdout=subprocess.PIPE, env=env, universal_newlines=True)
                   for _ in range(processes)]
        results = []
        for client in clients:
            out, _ = client.communicate(timeout=seconds + 120)
            results.append(json.loads(out.strip().splitlines()[-1]))
        out, _ = server.communicate("stop\n", timeout=60)
        server_stats = json.loads(out.strip().splitlines()[-1])
    finally:
        for child in clients + [server]:
            if child.poll() is None:
                child.kill()
                child.wait()
    latencies = [value for result in results for value in result["latencies"]]
    messages = sum(result["messages"] for result in results)
    return {
        "mode": mode,
        "connections": processes * connections,
        "errors": sum(result["errors"] for result in results),
        "error_samples": [sample for result in results for sample in result["error_samples"]][:5],
        "messages_per_s": messages / seconds,
        "p50_ms": (percentile(latencies, 0.50) or 0.0) * 1000,
        "p99_ms": (percentile(latencies, 0.99) or 0.0) * 1000,
        "server_peak_rss_kib": server_stats["peak_rss_kib"],
        "server_base_rss_kib": server_stats["base_rss_kib"],
        "server_peak_threads": server_stats["peak_threads"],
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="threaded,selectors")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=25, help="per client process")
    parser.add_argument("--seconds", type=float, default=5.0, help="of echo traffic per mode")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--max-connections", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.max_connections)
        return 0
    if not (1 <= args.processes <= MAX_PROCESSES and 1 <= args.connections <= MAX_CONNECTIONS
            and 0 < args.seconds <= MAX_SECONDS and 1 <= args.size <= 1 << 20):
        parser.error("bounds: 1-%d processes, 1-%d connections each, 0-%g s, 1 B-1 MiB messages"
                     % (MAX_PROCESSES, MAX_CONNECTIONS, MAX_SECONDS))
    if args.client:
        run_client(args.client, args.connections, args.seconds, args.size)
        return 0
    failed = False
    columns = ("mode", "conns", "errors", "msg/s", "p50 ms", "p99 ms", "peak RSS KiB", "threads")
    print("%-10s %6s %6s %10s %8s %8s %14s %8s" % columns)
    for mode in args.modes.split(","):
        result = bench_mode(mode.strip(), args.processes, args.connections, args.seconds, args.size)
        print("%-10s %6d %6d %10.0f %8.2f %8.2f %14d %8d" % (
            result["mode"], result["connections"], result["errors"], result["messages_per_s"],
            result["p50_ms"], result["p99_ms"], result["server_peak_rss_kib"], result["server_peak_threads"]))
        if result["errors"]:
            failed = True
            print("  errors, e.g.: %s" % "; ".join(result["error_samples"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
