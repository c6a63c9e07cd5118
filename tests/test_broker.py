"""The broker interface, LocalBroker, and the server's broadcast/publish/subscribe through a broker."""

import socket
import threading
from typing import Any, List

import pytest

import simplews
from simplews.broker import (BROADCAST_CHANNEL, Broker, BrokerUnavailable, FrameReader, LocalBroker,
                             decode_frame, encode_frame)

from _peers import GUARD, wait_until


def test_frames_round_trip_in_pieces() -> None:
    stream = encode_frame("a", "text é") + encode_frame("chan", b"\x00\xff") + encode_frame("", "")
    reader = FrameReader()
    frames = []
    for i in range(len(stream)):  # one byte at a time
        frames += reader.feed(stream[i:i + 1])
    assert [decode_frame(f) for f in frames] == [("a", "text é"), ("chan", b"\x00\xff"), ("", "")]


def test_local_broker_in_process() -> None:
    broker = LocalBroker()
    got = []  # type: List[Any]
    broker.subscribe("a", got.append)
    broker.subscribe("a", lambda m: got.append(("again", m)))
    broker.subscribe("b", lambda m: got.append(("b", m)))
    broker.publish("a", "one")
    broker.publish("a", bytearray(b"two"))
    broker.publish("c", "nobody")
    assert got == ["one", ("again", "one"), b"two", ("again", b"two")]
    with pytest.raises(TypeError):
        broker.publish("a", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        broker.subscribe(1, got.append)  # type: ignore[arg-type]
    broker.close()
    with pytest.raises(BrokerUnavailable):
        broker.publish("a", "closed")


def test_a_failing_callback_does_not_stop_delivery(caplog: Any) -> None:
    broker = LocalBroker()
    got = []  # type: List[Any]

    def bad(message: Any) -> None:
        raise RuntimeError("boom")

    broker.subscribe("a", bad)
    broker.subscribe("a", got.append)
    broker.publish("a", "x")
    assert got == ["x"]
    assert "broker callback for channel 'a' failed" in caplog.text
    broker.close()


def test_linked_broker_goes_through_the_link_and_fails_loudly_when_it_breaks() -> None:
    """The worker side of the hub: publish writes a frame; frames read are dispatched."""
    broker = LocalBroker()
    hub, worker_end = socket.socketpair()
    lost = threading.Event()
    got = []  # type: List[Any]
    try:
        broker._attach(worker_end)
        broker.on_link_lost = lost.set
        broker.subscribe("a", got.append)
        broker.publish("a", "out")
        reader = FrameReader()
        frames = []  # type: List[bytes]
        while not frames:
            frames = reader.feed(hub.recv(100))
        assert decode_frame(frames[0]) == ("a", "out")
        assert got == []  # delivered only when the hub sends it back
        hub.sendall(frames[0] + encode_frame("a", b"back"))
        wait_until(lambda: got == ["out", b"back"])
        hub.close()
        assert lost.wait(GUARD)
        with pytest.raises(BrokerUnavailable):
            broker.publish("a", "lost?")
    finally:
        hub.close()
        broker.close()


def test_custom_broker_type_is_checked() -> None:
    with pytest.raises(TypeError):
        simplews.SimpleWSServer(simplews.WebSocketHandler(), port=0, broker=object())


class RecordingBroker(Broker):
    """A minimal third-party broker: shows what the server calls."""

    def __init__(self) -> None:
        self.published = []  # type: List[Any]
        self.callbacks = {}  # type: dict

    def publish(self, channel: str, message: Any) -> None:
        self.published.append((channel, message))
        for callback in self.callbacks.get(channel, []):
            callback(message)

    def subscribe(self, channel: str, callback: Any) -> None:
        self.callbacks.setdefault(channel, []).append(callback)

    def close(self) -> None:
        self.callbacks.clear()


class Rooms(simplews.WebSocketHandler):
    server = None  # type: Any

    def on_message(self, ws: Any, message: Any) -> None:
        if message.startswith("join:"):
            self.server.subscribe(ws, message[5:])
            ws.send("joined")
        elif message.startswith("leave:"):
            self.server.unsubscribe(ws, message[6:])
            ws.send("left")


@pytest.mark.parametrize("mode", ["threaded", "selectors"])
def test_server_routes_through_the_broker(serve: Any, mode: str) -> None:
    broker = RecordingBroker()
    handler = Rooms()
    running = serve(handler, broker=broker, mode=mode)
    server = handler.server = running.server
    a = simplews.connect(running.url, timeout=GUARD)
    b = simplews.connect(running.url, timeout=GUARD)
    try:
        wait_until(lambda: len(server.connections) == 2)
        assert server.broadcast("all") == 0
        assert broker.published == [(BROADCAST_CHANNEL, "all")]
        assert a.recv(GUARD) == "all" and b.recv(GUARD) == "all"
        a.send("join:room")
        assert a.recv(GUARD) == "joined"
        server.publish("room", b"members")
        assert a.recv(GUARD) == b"members"
        a.send("leave:room")
        assert a.recv(GUARD) == "left"
        server.publish("room", "nobody")
        server.broadcast("fence")
        assert a.recv(GUARD) == "fence" and b.recv(GUARD) == "fence"
        b.send("join:room")
        assert b.recv(GUARD) == "joined"
        b.close()
        wait_until(lambda: not server._members, message="the closed connection leaving its channels")
        with pytest.raises(ValueError):
            server.publish(BROADCAST_CHANNEL, "x")
        with pytest.raises(ValueError):
            server.subscribe(a, BROADCAST_CHANNEL)
    finally:
        a.close()
        b.close()
        running.stop()
        broker.close()


def test_publish_without_a_broker_reaches_local_members(serve: Any) -> None:
    handler = Rooms()
    running = serve(handler)
    handler.server = running.server
    ws = simplews.connect(running.url, timeout=GUARD)
    try:
        ws.send("join:x")
        assert ws.recv(GUARD) == "joined"
        running.server.publish("x", "hello")
        assert ws.recv(GUARD) == "hello"
        assert running.server.broadcast("b") == 1  # unchanged without a broker
        assert ws.recv(GUARD) == "b"
    finally:
        ws.close()


def test_two_servers_share_a_local_broker(serve: Any) -> None:
    broker = LocalBroker()
    one = serve(simplews.WebSocketHandler(), broker=broker)
    two = serve(simplews.WebSocketHandler(), broker=broker, mode="selectors")
    clients = [simplews.connect(one.url, timeout=GUARD), simplews.connect(two.url, timeout=GUARD)]
    try:
        wait_until(lambda: len(one.server.connections) == 1 and len(two.server.connections) == 1)
        for i in range(10):
            (one if i % 2 else two).server.broadcast("m%d" % i)
        for ws in clients:
            assert [ws.recv(GUARD) for _ in range(10)] == ["m%d" % i for i in range(10)]
    finally:
        for ws in clients:
            ws.close()
        one.stop()
        two.stop()
        broker.close()
