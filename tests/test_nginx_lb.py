"""examples/nginx-loadbalancer.conf with a real nginx in front of two simplews processes."""

import os
import select
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Iterator, List

import pytest

import simplews

from _peers import GUARD, NGINX, NGINX_MISSING, free_port, nginx_http_paths, nginx_main_context, running_nginx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "nginx-loadbalancer.conf")

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason=NGINX_MISSING)

BACKEND = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import simplews

def handler(ws):
    for message in ws:
        ws.send(str(os.getpid()) if message == "pid" else message)

server = simplews.SimpleWSServer(handler, port=0, ping_interval=5)
print(server.port, flush=True)
server.serve_forever()
"""


def start_backend() -> Any:
    proc = subprocess.Popen([sys.executable, "-c", BACKEND, ROOT], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    ready, _, _ = select.select([proc.stdout], [], [], GUARD * 3)
    line = proc.stdout.readline() if ready else b""  # type: ignore[union-attr]
    if not line.strip().isdigit():
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        raise AssertionError("the backend did not start")
    return proc, int(line)


def nginx_config(prefix: str, listen: int, backends: List[int]) -> str:
    """The example, pointed at our ports, with every path inside ``prefix``."""
    with open(EXAMPLE) as f:
        config = f.read()
    for placeholder, port in zip(("127.0.0.1:8765", "127.0.0.1:8766"), backends):
        assert placeholder in config
        config = config.replace(placeholder, "127.0.0.1:%d" % port)
    assert "listen 8080;" in config
    config = config.replace("listen 8080;", "listen 127.0.0.1:%d;" % listen)
    config = config.replace("worker_processes auto;", "worker_processes 1;")
    config = config.replace("http {\n", "http {\n" + nginx_http_paths(prefix), 1)
    return nginx_main_context(prefix) + config


@pytest.fixture
def stack() -> Iterator[Any]:
    prefix = tempfile.mkdtemp(prefix="simplews-nginx-")
    backends = []  # type: List[Any]
    try:
        backends = [start_backend() for _ in range(2)]
        listen = free_port()
        config = nginx_config(prefix, listen, [port for _, port in backends])
        with running_nginx(prefix, config, listen):
            yield "ws://127.0.0.1:%d/" % listen, sorted(proc.pid for proc, _ in backends)
    finally:
        for proc, _ in backends:
            proc.terminate()
            try:
                proc.wait(GUARD * 3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        shutil.rmtree(prefix, ignore_errors=True)


def test_echo_through_nginx_reaches_both_backends(stack: Any) -> None:
    url, backend_pids = stack
    clients = []  # type: List[simplews.WebSocket]
    seen = set()
    try:
        for _ in range(8):  # least_conn with connections held open alternates between the two
            ws = simplews.connect(url, timeout=GUARD)
            clients.append(ws)
            ws.send("pid")
            seen.add(int(ws.recv(GUARD)))
        assert sorted(seen) == backend_pids
        for i, ws in enumerate(clients):
            ws.send("text %d" % i)
            ws.send(b"\x00\x01" * 40000)  # 80 kB binary, through the proxy's buffers
            assert ws.recv(GUARD) == "text %d" % i
            assert ws.recv(GUARD) == b"\x00\x01" * 40000
        pong = clients[0].ping()
        assert pong.wait(GUARD)
    finally:
        for ws in clients:
            ws.close()
    for ws in clients:
        assert ws.close_code == 1000
