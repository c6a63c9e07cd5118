"""workers=N: forked processes sharing one listening socket, supervised by the parent.

The multi-process tests run the server in a separate Python process (so the
pytest process never forks) and check its children through /proc.
"""

import os
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Set

import pytest

import simplews
from simplews.broker import LocalBroker
from simplews.workers import WORKER_HEADER

from _peers import GUARD, wait_until

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc/self"),
                                reason="workers need os.fork(); the checks need Linux /proc")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = r"""
import logging, os, sys
sys.path.insert(0, sys.argv[3])
import simplews

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(process)d %(message)s")

class App(simplews.WebSocketHandler):
    def on_message(self, ws, message):
        if message == "pid":
            ws.send(str(os.getpid()))
        elif message.startswith("bc:"):
            server.broadcast(message[3:])
        elif message.startswith("join:"):
            server.subscribe(ws, message[5:])
            ws.send("joined")
        elif message.startswith("pub:"):
            channel, _, text = message[4:].partition(":")
            server.publish(channel, text)
        else:
            ws.send(message)

server = simplews.SimpleWSServer(App(), port=0, workers=int(sys.argv[2]), mode=sys.argv[1],
                                 close_timeout=3)
print(server.port, flush=True)
server.serve_forever()
print("stopped", flush=True)
"""


def children_of(pid: int) -> Set[int]:
    """Live (non-zombie) children of ``pid``, from /proc."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(name))
    return found


def alive(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class App(object):
    """The server process."""

    def __init__(self, mode: str, workers: int = 2) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", APP, mode, str(workers), ROOT],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], GUARD * 3)
        assert ready, "the server process did not start"
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip().isdigit(), line
        self.port = int(line)
        self.url = "ws://127.0.0.1:%d/" % self.port
        self.stderr = b""
        self.stopped = False
        self.known_children = set()  # type: Set[int]
        wait_until(lambda: len(self.children()) == workers, GUARD * 3, "the workers")

    def children(self) -> Set[int]:
        found = children_of(self.proc.pid)
        self.known_children |= found
        return found

    def stop(self) -> int:
        if self.stopped:  # the test stopped it already; Python 3.6 can't communicate() twice
            return self.proc.returncode  # type: ignore[no-any-return]
        self.stopped = True
        if self.proc.poll() is None:
            self.children()
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stderr = err
        return self.proc.returncode


@pytest.fixture
def app_factory() -> Iterator[Any]:
    apps = []  # type: List[App]

    def start(mode: str, workers: int = 2) -> App:
        app = App(mode, workers)
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()
        for pid in app.known_children:
            assert not alive(pid), "worker %d outlived the server" % pid


def connect_to_all_workers(url: str, workers: int = 2) -> Dict[int, List[simplews.WebSocket]]:
    """Open connections until every worker has at least one; {pid: [connections]}."""
    by_pid = {}  # type: Dict[int, List[simplews.WebSocket]]
    # The kernel picks the accepting worker, and a worker just (re)started may not
    # be accepting yet: keep trying for a while, one connection kept per worker.
    deadline = time.monotonic() + GUARD * 3
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        ws = simplews.connect(url, timeout=GUARD)
        ws.send("pid")
        pid = int(ws.recv(GUARD))
        assert ws.response_headers[WORKER_HEADER] == str(pid)
        if pid in by_pid:
            ws.close()
            time.sleep(0.02)
            continue
        by_pid[pid] = [ws]
        if len(by_pid) == workers:
            return by_pid
    close_all(by_pid)
    raise AssertionError("%d connections all landed on %s" % (attempts, list(by_pid)))


def close_all(by_pid: Dict[int, List[simplews.WebSocket]]) -> None:
    for connections in by_pid.values():
        for ws in connections:
            ws.close()


MODES = ["threaded", "selectors"]


@pytest.mark.parametrize("mode", MODES)
def test_both_workers_serve_clients(app_factory: Any, mode: str) -> None:
    app = app_factory(mode)
    workers = app.children()
    by_pid = connect_to_all_workers(app.url)
    try:
        assert set(by_pid) == workers
        assert app.proc.pid not in by_pid  # the parent only supervises
        for connections in by_pid.values():
            for ws in connections:
                ws.send("echo me")
                assert ws.recv(GUARD) == "echo me"
    finally:
        close_all(by_pid)


@pytest.mark.parametrize("mode", MODES)
def test_broadcast_from_one_worker_reaches_the_other(app_factory: Any, mode: str) -> None:
    app = app_factory(mode)
    by_pid = connect_to_all_workers(app.url)
    try:
        everyone = [ws for connections in by_pid.values() for ws in connections]
        sender = by_pid[sorted(by_pid)[0]][0]
        for i in range(20):
            sender.send("bc:message %d" % i)
        for ws in everyone:  # exactly once, in order, on both workers
            assert [ws.recv(GUARD) for _ in range(20)] == ["message %d" % i for i in range(20)]
        # channels: only members get it, wherever they are
        members = [by_pid[pid][0] for pid in by_pid]
        for ws in members:
            ws.send("join:room")
            assert ws.recv(GUARD) == "joined"
        members[-1].send("pub:room:to the room")
        others = [ws for ws in everyone if ws not in members]
        for ws in members:
            assert ws.recv(GUARD) == "to the room"
        for ws in others:  # a message after the publish proves nothing else was queued before it
            ws.send("ping")
            assert ws.recv(GUARD) == "ping"
    finally:
        close_all(by_pid)


@pytest.mark.parametrize("mode", MODES)
def test_killed_worker_is_replaced(app_factory: Any, mode: str) -> None:
    app = app_factory(mode)
    before = app.children()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:  # one look at /proc: the victim may die between two
        children = app.children()
        return len(children) == 2 and victim not in children

    wait_until(replaced, GUARD * 3, "a replacement worker")
    after = app.children()
    assert len(after - before) == 1, (before, after)
    by_pid = connect_to_all_workers(app.url)
    try:
        assert set(by_pid) == after
        by_pid[max(after - before)][0].send("bc:from the new one")  # the new worker is on the hub
        for connections in by_pid.values():
            for ws in connections:
                assert ws.recv(GUARD) == "from the new one"
    finally:
        close_all(by_pid)
    assert app.stop() == 0
    assert b"was killed by SIGKILL; restarting it" in app.stderr


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_closes_clients_with_1001_and_leaves_no_process(app_factory: Any, mode: str) -> None:
    app = app_factory(mode)
    workers = app.children()
    by_pid = connect_to_all_workers(app.url)
    try:
        assert app.stop() == 0
        for connections in by_pid.values():
            for ws in connections:
                with pytest.raises(simplews.ConnectionClosed):
                    ws.recv(GUARD)
                assert ws.close_code == 1001
    finally:
        close_all(by_pid)
    assert not children_of(app.proc.pid)
    for pid in workers:
        assert not alive(pid)


def test_in_process_shutdown_returns_and_reaps_every_worker() -> None:
    """serve_forever() on a thread of this process: shutdown() stops the workers and returns."""
    before = children_of(os.getpid())
    server = simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0, workers=2, close_timeout=2)
    assert isinstance(server.broker, LocalBroker)
    thread = threading.Thread(target=server.serve_forever, name="test-workers-supervisor")
    thread.start()
    try:
        wait_until(lambda: len(children_of(os.getpid()) - before) == 2, GUARD * 3, "the workers")
        workers = children_of(os.getpid()) - before
        ws = simplews.connect(server.url, timeout=GUARD)
        assert int(ws.response_headers[WORKER_HEADER]) in workers
    finally:
        server.shutdown()
        thread.join(GUARD * 3)
    assert not thread.is_alive()
    with pytest.raises(simplews.ConnectionClosed):
        ws.recv(GUARD)
    assert ws.close_code == 1001
    ws.close()
    for pid in workers:
        assert not alive(pid)
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_workers_one_keeps_the_single_process_server() -> None:
    server = simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0)
    try:
        assert server.workers == 1
        assert server.broker is None
    finally:
        server.server_close()


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_invalid_workers(value: Any) -> None:
    with pytest.raises(ValueError):
        simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0, workers=value)


def test_workers_without_fork_is_a_clear_error(monkeypatch: Any) -> None:
    monkeypatch.delattr(os, "fork")
    with pytest.raises(RuntimeError, match="os.fork"):
        simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0, workers=2)
    server = simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0, workers=1)
    server.server_close()
