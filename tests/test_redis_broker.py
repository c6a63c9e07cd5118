"""RedisBroker against a real redis-server started on a free loopback port."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from typing import Any, Iterator, List, Optional

import pytest

import simplews
from simplews.broker import BrokerUnavailable

from _peers import GUARD, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"

try:
    import redis  # noqa: F401
    HAVE_REDIS_PY = True
except ImportError:
    HAVE_REDIS_PY = False

pytestmark = [
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server is not installed "
                       "(Debian: apt-get install redis-server)"),
    pytest.mark.skipif(not HAVE_REDIS_PY, reason="the redis package is not installed (pip install redis)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


class RedisProcess(object):
    """redis-server in a temp dir, append-only so that acknowledged writes survive a restart."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="simplews-redis-")
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d/0" % self.port
        self.proc = None  # type: Optional[subprocess.Popen]
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no",
             "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ready, GUARD * 2, "redis-server to accept connections")

    def _ready(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "redis-server exited"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(GUARD * 2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess()
    try:
        yield server
    finally:
        server.cleanup()


def make_pair(serve: Any, url: str, prefix: str) -> Any:
    from simplews.redis_broker import RedisBroker
    brokers = [RedisBroker(url, prefix=prefix), RedisBroker(url, prefix=prefix)]

    class Room(simplews.WebSocketHandler):
        def __init__(self, index: int) -> None:
            self.index = index

        def on_message(self, ws: Any, message: Any) -> None:
            if message.startswith("join:"):
                servers[self.index].server.subscribe(ws, message[5:])
                ws.send("joined")

    servers = [serve(Room(0), broker=brokers[0]), serve(Room(1), broker=brokers[1], mode="selectors")]
    return servers, brokers


def test_two_servers_exchange_broadcasts(serve: Any, redis_server: RedisProcess) -> None:
    servers, brokers = make_pair(serve, redis_server.url, "test-%d:" % os.getpid())
    clients = []  # type: List[simplews.WebSocket]
    try:
        clients = [simplews.connect(s.url, timeout=GUARD) for s in servers for _ in range(2)]
        wait_until(lambda: all(len(s.server.connections) == 2 for s in servers))
        for i in range(30):
            servers[i % 2].server.broadcast("b%d" % i)
        servers[0].server.broadcast(b"\x00binary")
        for ws in clients:  # from each publisher in its order; exactly once each
            got = [ws.recv(GUARD) for _ in range(31)]
            assert got.pop() == b"\x00binary"
            assert sorted(got, key=lambda m: int(m[1:])) == ["b%d" % i for i in range(30)]
            assert [m for m in got if int(m[1:]) % 2 == 0] == ["b%d" % i for i in range(0, 30, 2)]
            assert [m for m in got if int(m[1:]) % 2 == 1] == ["b%d" % i for i in range(1, 30, 2)]
        # channels: members only, across servers
        clients[0].send("join:news")
        clients[3].send("join:news")
        assert clients[0].recv(GUARD) == "joined"
        assert clients[3].recv(GUARD) == "joined"
        servers[1].server.publish("news", "extra")
        servers[0].server.broadcast("after")
        for ws in clients:  # one publisher's messages keep their order across channels
            if ws in (clients[0], clients[3]):
                assert ws.recv(GUARD) == "extra"
            assert ws.recv(GUARD) == "after"
    finally:
        for ws in clients:
            ws.close()
        for s in servers:
            s.stop()
        for broker in brokers:
            broker.close()


def test_broker_restart_loses_nothing_acknowledged(serve: Any, redis_server: RedisProcess) -> None:
    from simplews.redis_broker import RedisBroker
    publisher = RedisBroker(redis_server.url, prefix="restart:", reconnect_max=0.5)
    subscriber = RedisBroker(redis_server.url, prefix="restart:", reconnect_max=0.5)
    sender = serve(simplews.WebSocketHandler(), broker=publisher)
    receiver = serve(simplews.WebSocketHandler(), broker=subscriber, mode="selectors")
    client = simplews.connect(receiver.url, timeout=GUARD)
    acked = []  # type: List[int]
    failed = []  # type: List[int]
    try:
        wait_until(lambda: len(receiver.server.connections) == 1)

        def send(i: int) -> None:
            try:
                sender.server.broadcast(str(i))
            except BrokerUnavailable:
                failed.append(i)
            else:
                acked.append(i)

        for i in range(50):
            send(i)
        redis_server.stop()
        for i in range(50, 55):  # broker down: each publish raises, none is lost silently
            send(i)
        assert failed == list(range(50, 55))
        redis_server.start()
        i = 55
        while len(acked) < 100:  # the publisher's connection recovers on its own
            send(i)
            i += 1
            assert i < 1000, "publishing never recovered after the restart"
        received = []  # type: List[int]
        while not set(acked) <= set(received):
            received.append(int(client.recv(GUARD * 3)))
        assert received == sorted(set(received)), "duplicated or out of order"
        assert set(received) <= set(acked) | set(failed)
    finally:
        client.close()
        sender.stop()
        receiver.stop()
        publisher.close()
        subscriber.close()


def test_publish_raises_when_redis_is_unreachable() -> None:
    from simplews.redis_broker import RedisBroker
    broker = RedisBroker("redis://127.0.0.1:%d/0" % free_port(), socket_connect_timeout=1.0)
    try:
        with pytest.raises(BrokerUnavailable):
            broker.publish("x", "lost?")
        with pytest.raises(TypeError):
            broker.publish("x", 42)  # type: ignore[arg-type]
    finally:
        broker.close()


def test_subscriber_survives_a_restart_and_reconnects(redis_server: RedisProcess) -> None:
    from simplews.redis_broker import RedisBroker
    broker = RedisBroker(redis_server.url, prefix="plain:", reconnect_max=0.5)
    got = []  # type: List[Any]
    event = threading.Event()

    def callback(message: Any) -> None:
        got.append(message)
        event.set()

    try:
        broker.subscribe("c", callback)
        broker.publish("c", "one")
        assert event.wait(GUARD)
        redis_server.stop()
        time.sleep(0.2)  # let the subscriber notice (not a timing assertion)
        redis_server.start()
        wait_until(lambda: _try_publish(broker, "c", b"two"), GUARD * 2, "publishing after the restart")
        wait_until(lambda: len(got) >= 2, GUARD * 2, "delivery after the restart")
        assert got == ["one", b"two"]
    finally:
        broker.close()


def _try_publish(broker: Any, channel: str, message: Any) -> bool:
    try:
        broker.publish(channel, message)
        return True
    except BrokerUnavailable:
        return False
