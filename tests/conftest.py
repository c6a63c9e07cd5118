"""Shared fixtures: a live server on a loopback port, and a leak check after every test."""

import os
import threading
import time
from typing import Any, Callable, Iterator, List

import pytest

import simplews


def pytest_configure(config: Any) -> None:
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")


def _open_fds() -> List[str]:
    try:
        return sorted(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: no fd check
        return []


@pytest.fixture(autouse=True)
def no_leaks(request: Any) -> Iterator[None]:
    """Every thread and socket a test starts must be gone when it ends."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    threads_before = set(threading.enumerate())
    fds_before = set(_open_fds())
    yield
    deadline = time.monotonic() + 10.0
    while True:
        extra_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
        extra_fds = set(_open_fds()) - fds_before
        if not extra_threads and not extra_fds:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    details = []
    if extra_threads:
        details.append("threads: %s" % ", ".join(t.name for t in extra_threads))
    if extra_fds:
        targets = []
        for fd in sorted(extra_fds):
            try:
                targets.append("%s->%s" % (fd, os.readlink("/proc/self/fd/%s" % fd)))
            except OSError:
                pass
        if targets:
            details.append("fds: %s" % ", ".join(targets))
    if details:
        pytest.fail("test leaked %s" % "; ".join(details))


class RunningServer(object):
    """A SimpleWSServer serving in a background thread."""

    def __init__(self, server: simplews.SimpleWSServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, name="test-serve-forever")
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(30)
        assert not self.thread.is_alive(), "serve_forever did not return after shutdown()"


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningServer]]:
    """``serve(handler, **options)`` starts a server on 127.0.0.1, port 0; stopped after the test."""
    running = []  # type: List[RunningServer]

    def start(handler: Any, **options: Any) -> RunningServer:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
        server = RunningServer(simplews.SimpleWSServer(handler, **options))
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def echo(ws: simplews.WebSocket) -> None:
    for message in ws:
        ws.send(message)
