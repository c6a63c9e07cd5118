"""Benchmark: many idle connections on one server (not a test).

Starts a server in this process (``--mode selectors``, the default, or
``threaded``), opens ``--connections`` client connections from
``--processes`` client processes, and reports:

* server RSS per idle connection (VmRSS of this process, read from
  /proc/self/status before the clients connect and once they are all open);
* echo messages per second (every client connection sends ``--size`` bytes and
  waits for the echo, ``--rounds`` times, all processes at once);
* the time to broadcast ``--size`` bytes to every connection: how long
  ``server.broadcast()`` takes to return, and how long until the last client
  process has received it.

Usage::

    python3 benchmarks/selectors_bench.py                      # 10,000 connections, selectors
    python3 benchmarks/selectors_bench.py --mode threaded --connections 1000

RLIMIT_NOFILE is raised to its hard limit if needed (the client processes
inherit it). Linux only (it reads /proc).
"""

import argparse
import gc
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any, List, Optional, Tuple  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import simplews  # noqa: E402


class Echo(simplews.WebSocketHandler):
    """The same handler class runs in both modes."""

    def on_message(self, ws: Any, message: Any) -> None:
        ws.send(message)


def rss_kib(pid: str = "self") -> int:
    with open("/proc/%s/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/%s/status" % pid)


def raise_nofile(wanted: int) -> Tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ---------------------------------------------------------------------- client processes


def client_main(url: str, count: int, size: int) -> None:
    """One client process: open ``count`` connections, then obey commands on stdin."""
    out = sys.stdout
    connections = []  # type: List[simplews.WebSocket]
    for _ in range(count):
        for attempt in range(5):
            try:
                connections.append(simplews.connect(url, timeout=60, ping_interval=None, compression=None))
                break
            except OSError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
    out.write("ready\n")
    out.flush()
    payload = b"m" * size
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "echo":
            rounds = int(command[1])
            start = time.monotonic()
            for _ in range(rounds):
                for ws in connections:
                    ws.send(payload)
                for ws in connections:
                    ws.recv(60)
            out.write("echo %d %.6f %.6f\n" % (rounds * len(connections), start, time.monotonic()))
        elif command[0] == "bcast":
            out.write("waiting\n")
            out.flush()
            for ws in connections:
                ws.recv(60)
            out.write("received %.6f\n" % time.monotonic())
        elif command[0] == "quit":
            for ws in connections:
                ws.abort()
            out.write("bye\n")
            out.flush()
            return
        out.flush()


# ---------------------------------------------------------------------- the server side


class Clients(object):
    def __init__(self, url: str, connections: int, processes: int, size: int) -> None:
        self.procs = []  # type: List[subprocess.Popen]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        share, extra = divmod(connections, processes)
        for index in range(processes):
            count = share + (1 if index < extra else 0)
            if not count:
                continue
            self.procs.append(subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--client", url, "--count", str(count),
                 "--size", str(size)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, universal_newlines=True, bufsize=1))

    def send(self, command: str) -> None:
        for proc in self.procs:
            proc.stdin.write(command + "\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]

    def read_all(self, expected: str) -> List[List[str]]:
        answers = []
        for proc in self.procs:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            words = line.split()
            if not words or words[0] != expected:
                raise RuntimeError("client process answered %r instead of %r" % (line, expected))
            answers.append(words)
        return answers

    def close(self) -> None:
        for proc in self.procs:
            try:
                proc.stdin.write("quit\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for %s" % what)
        time.sleep(0.05)


def run(mode: str, connections: int, processes: int, size: int, rounds: int) -> None:
    limits = raise_nofile(connections * 2 + 1024)
    print("mode=%s connections=%d client processes=%d message=%d B; RLIMIT_NOFILE=%s"
          % (mode, connections, processes, size, limits[0]))
    options = dict(port=0, backlog=4096, compression=None, ping_interval=None)  # type: Any
    if mode == "selectors":
        options["mode"] = "selectors"
    server = simplews.SimpleWSServer(Echo(), **options)
    thread = threading.Thread(target=server.serve_forever, name="bench-server")
    thread.start()
    clients = None  # type: Optional[Clients]
    try:
        time.sleep(0.2)
        gc.collect()
        before = rss_kib()
        started = time.monotonic()
        clients = Clients(server.url, connections, processes, size)
        clients.read_all("ready")
        wait_for(lambda: len(server.connections) >= connections, 60, "the server to see every connection")
        opened = time.monotonic() - started
        time.sleep(1.0)
        gc.collect()
        after = rss_kib()
        per = (after - before) * 1024.0 / connections
        print("opened %d connections in %.2f s (%.0f/s)" % (connections, opened, connections / opened))
        print("server RSS: %.1f MiB before, %.1f MiB with %d idle connections: %.1f KiB per idle connection"
              % (before / 1024.0, after / 1024.0, connections, per / 1024.0))

        clients.send("echo %d" % rounds)
        answers = clients.read_all("echo")
        total = sum(int(words[1]) for words in answers)
        elapsed = max(float(words[3]) for words in answers) - min(float(words[2]) for words in answers)
        print("echo: %d messages of %d B in %.2f s: %.0f messages/s" % (total, size, elapsed, total / elapsed))

        clients.send("bcast")
        clients.read_all("waiting")
        time.sleep(0.5)  # let every client process reach its first recv()
        message = b"b" * size
        start = time.monotonic()
        reached = server.broadcast(message)
        returned = time.monotonic() - start
        answers = clients.read_all("received")
        delivered = max(float(words[1]) for words in answers) - start
        print("broadcast of %d B to %d connections: broadcast() returned in %.3f s, "
              "all clients received it within %.3f s" % (size, reached, returned, delivered))
    finally:
        if clients is not None:
            clients.close()
        server.shutdown()
        thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("selectors", "threaded"), default="selectors")
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes")
    parser.add_argument("--rounds", type=int, default=5, help="echo rounds per connection")
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.client, args.count, args.size)
        return
    run(args.mode, args.connections, args.processes, args.size, args.rounds)


if __name__ == "__main__":
    main()
