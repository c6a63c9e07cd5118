"""examples/nginx.conf as it is: a real nginx terminating TLS in front of simplews (both modes).

nginx runs the example site configuration with only its ports, paths and
certificate replaced (a trustme CA; the client trusts it), and with
``proxy_bind 127.0.0.2`` so that the backend sees nginx at another loopback
address than the client's 127.0.0.1: ``trusted_proxies`` then visibly turns
nginx's address into the client's.
"""

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import socket
import ssl
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import simplews

from _peers import (
    GUARD, NGINX, NGINX_MISSING, free_port, nginx_http_paths, nginx_main_context, running_nginx, wait_until,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "nginx.conf")
NGINX_ADDRESS = "127.0.0.2"  # nginx's source address towards simplews (proxy_bind)
MIB = 1 << 20

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason=NGINX_MISSING)
trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the TLS certificates")


def loopback_alias_works() -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((NGINX_ADDRESS, 0))
        return True
    except OSError:
        return False


def replace_once(config: str, old: str, new: str) -> str:
    """Replace a line the example must keep (the test fails loudly when it drifts)."""
    assert config.count(old) == 1, "examples/nginx.conf no longer has %r exactly once" % old
    return config.replace(old, new)


def example_config(prefix: str, backend: int, https: int, http_port: int, cert: str, key: str) -> str:
    """The example inside a minimal main configuration, on our ports and files."""
    with open(EXAMPLE) as f:
        site = f.read()
    site = replace_once(site, "server 127.0.0.1:8765;", "server 127.0.0.1:%d;" % backend)
    site = replace_once(site, "listen 443 ssl;", "listen 127.0.0.1:%d ssl;" % https)
    site = replace_once(site, "listen [::]:443 ssl;", "")
    site = replace_once(site, "listen 80;", "listen 127.0.0.1:%d;" % http_port)
    site = replace_once(site, "listen [::]:80;", "")
    site = replace_once(site, "/etc/letsencrypt/live/example.com/fullchain.pem", cert)
    site = replace_once(site, "/etc/letsencrypt/live/example.com/privkey.pem", key)
    site = replace_once(site, "root /var/www/letsencrypt;", "root %s;" % os.path.join(prefix, "acme"))
    site = replace_once(site, "root /var/www/example.com;", "root %s;" % os.path.join(prefix, "site"))
    # the test's ports are not 443: keep the redirect pointing at ours
    site = replace_once(site, "return 301 https://$host$request_uri;",
                        "return 301 https://$host:%d$request_uri;" % https)
    bind = "    proxy_bind %s;\n" % NGINX_ADDRESS if loopback_alias_works() else ""
    return (nginx_main_context(prefix) + "worker_processes 1;\nevents {\n    worker_connections 256;\n}\n"
            + "http {\n" + nginx_http_paths(prefix) + bind + site + "}\n")


class Backend(simplews.WebSocketHandler):
    """Echo, plus a few commands; records what each connection saw (works in both modes)."""

    def __init__(self) -> None:
        self.opened = queue.Queue()  # type: queue.Queue[Dict[str, Any]]
        self.closed = queue.Queue()  # type: queue.Queue[Tuple[int, str]]
        self.pings = queue.Queue()  # type: queue.Queue[Any]

    def on_open(self, ws: Any) -> None:
        self.opened.put({"remote": ws.remote_address, "peer": ws.peer_address, "path": ws.path,
                         "headers": ws.request_headers})

    def on_message(self, ws: Any, message: Any) -> None:
        if message == "whoami":
            ws.send(json.dumps({"remote": list(ws.remote_address[:2]), "peer": list(ws.peer_address[:2])}))
        elif message == "ping me":
            self.pings.put(ws.ping(b"from simplews"))
            ws.send("pinged")
        elif isinstance(message, str) and message.startswith("close "):
            code, _, reason = message[len("close "):].partition(" ")
            ws.close(int(code), reason)
        else:
            ws.send(message)

    def on_close(self, ws: Any, code: int, reason: str) -> None:
        self.closed.put((code, reason))


class Stack(object):
    """simplews behind nginx: ``wss`` is the WebSocket location's URL through nginx."""

    def __init__(self, backend: Backend, server: Any, https: int, http_port: int, prefix: str,
                 context: ssl.SSLContext) -> None:
        self.backend = backend
        self.server = server
        self.https = https
        self.http_port = http_port
        self.prefix = prefix
        self.context = context
        self.wss = "wss://127.0.0.1:%d/ws/" % https

    def connect(self, path: str = "echo", **options: Any) -> simplews.WebSocket:
        options.setdefault("ping_interval", None)
        return simplews.connect(self.wss + path, timeout=GUARD, ssl_context=self.context, **options)


@pytest.fixture
def proxied(serve: Callable[..., Any]) -> Iterator[Callable[..., Stack]]:
    """``proxied(mode, **server_options)``: a simplews server and nginx in front of it."""
    prefix = tempfile.mkdtemp(prefix="simplews-nginx-proxy-")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = os.path.join(prefix, "fullchain.pem"), os.path.join(prefix, "privkey.pem")
    with open(cert_path, "wb") as f:
        f.write(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(key_path)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    stacks = contextlib.ExitStack()

    def start(mode: str, **options: Any) -> Stack:
        backend = Backend()
        running = serve(backend, mode=mode, **options)
        https, http_port = free_port(), free_port()
        config = example_config(prefix, running.port, https, http_port, cert_path, key_path)
        stacks.enter_context(running_nginx(prefix, config, https))
        return Stack(backend, running.server, https, http_port, prefix, context)

    try:
        yield start
    finally:
        stacks.close()
        shutil.rmtree(prefix, ignore_errors=True)


MODES = ["threaded", "selectors"]


@pytest.mark.parametrize("mode", MODES)
def test_echo_text_binary_fragments_and_pings(proxied: Callable[..., Stack], mode: str) -> None:
    stack = proxied(mode)
    with stack.connect("chat?room=1") as ws:
        assert ws.response_headers.get("Sec-WebSocket-Extensions", "").startswith("permessage-deflate")
        ws.send("héllo through nginx")
        assert ws.recv(GUARD) == "héllo through nginx"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv(GUARD) == b"\x00\xff" * 1000
        ws.send(["frag", "mented ", "text"])
        assert ws.recv(GUARD) == "fragmented text"
        ws.send([b"\x01" * 70000, b"", b"\x02" * 5])
        assert ws.recv(GUARD) == b"\x01" * 70000 + b"\x02" * 5
        assert ws.ping(b"from client").wait(GUARD)
        ws.send("ping me")
        assert ws.recv(GUARD) == "pinged"  # the server's ping came first and was answered
        assert stack.backend.pings.get(timeout=GUARD).wait(GUARD)
    opened = stack.backend.opened.get(timeout=GUARD)
    assert opened["path"] == "/ws/chat?room=1"  # the location passes the path unchanged
    headers = opened["headers"]
    assert headers.get("X-Forwarded-Proto") == "https"
    assert headers.get("X-Real-IP") == "127.0.0.1"
    assert headers.get("X-Forwarded-For") == "127.0.0.1"
    assert headers.get("Host") == "127.0.0.1"


@pytest.mark.parametrize("mode", MODES)
def test_large_messages(proxied: Callable[..., Stack], mode: str) -> None:
    stack = proxied(mode, max_message_size=32 * MIB)
    one, sixteen = os.urandom(MIB), os.urandom(16 * MIB)
    with stack.connect(max_message_size=32 * MIB, compression=None) as ws:
        ws.send(one)
        assert ws.recv(GUARD * 3) == one
        ws.send(sixteen)
        assert ws.recv(GUARD * 6) == sixteen
        ws.send("after")
        assert ws.recv(GUARD) == "after"


@pytest.mark.parametrize("mode", MODES)
def test_too_large_for_the_server_is_1009_through_nginx(proxied: Callable[..., Stack], mode: str) -> None:
    stack = proxied(mode, max_message_size=1024)
    ws = stack.connect(compression=None)
    try:
        ws.send(b"x" * 1025)  # small: sent whole before simplews refuses it (no write race)
        with pytest.raises(simplews.ConnectionClosed):
            ws.recv(GUARD)
    finally:
        ws.close()
    assert ws.close_code == 1009
    assert stack.backend.closed.get(timeout=GUARD)[0] == 1009


@pytest.mark.parametrize("mode", MODES)
def test_client_initiated_close(proxied: Callable[..., Stack], mode: str) -> None:
    stack = proxied(mode)
    ws = stack.connect()
    ws.send("hi")
    assert ws.recv(GUARD) == "hi"
    ws.close(4000, "client says bye")
    assert stack.backend.closed.get(timeout=GUARD) == (4000, "client says bye")
    assert ws.close_code == 4000  # simplews echoed the code (each side reports the peer's frame)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("code, reason, error", [
    (1000, "server says bye", simplews.ConnectionClosedOK),
    (1008, "policy violated", simplews.ConnectionClosedError),
])
def test_server_initiated_close(proxied: Callable[..., Stack], mode: str, code: int, reason: str,
                                error: Any) -> None:
    stack = proxied(mode)
    ws = stack.connect()
    try:
        ws.send("close %d %s" % (code, reason))
        with pytest.raises(error) as info:
            ws.recv(GUARD)
        assert info.value.code == code
        assert info.value.reason == reason
    finally:
        ws.close()
    assert (ws.close_code, ws.close_reason) == (code, reason)
    assert stack.backend.closed.get(timeout=GUARD)[0] == code  # the client echoed the code


def whoami(stack: Stack, **options: Any) -> Dict[str, List[Any]]:
    with stack.connect(**options) as ws:
        ws.send("whoami")
        answer = json.loads(str(ws.recv(GUARD)))  # type: Dict[str, List[Any]]
        assert ws.local_address[0] == "127.0.0.1"
    return answer


@pytest.mark.parametrize("mode", MODES)
def test_without_trusted_proxies_the_client_is_nginx(proxied: Callable[..., Stack], mode: str) -> None:
    if not loopback_alias_works():
        pytest.skip("%s is not a loopback address here: nginx and the client would share one" % NGINX_ADDRESS)
    stack = proxied(mode)
    seen = whoami(stack, headers=[("X-Forwarded-For", "198.51.100.1"), ("X-Real-IP", "198.51.100.2")])
    assert seen["remote"] == seen["peer"]
    assert seen["remote"][0] == NGINX_ADDRESS


@pytest.mark.parametrize("mode", MODES)
def test_trusted_proxies_show_the_real_client(proxied: Callable[..., Stack], mode: str) -> None:
    if not loopback_alias_works():
        pytest.skip("%s is not a loopback address here: nginx and the client would share one" % NGINX_ADDRESS)
    stack = proxied(mode, trusted_proxies=[NGINX_ADDRESS], max_connections_per_ip=1)
    seen = whoami(stack)
    assert seen["remote"] == ["127.0.0.1", 0]
    assert seen["peer"][0] == NGINX_ADDRESS
    # a client's own X-Forwarded-For / X-Real-IP change nothing: nginx appends to the first
    # and replaces the second, and the walk stops at the address nginx saw
    spoofed = whoami(stack, headers=[("X-Forwarded-For", "198.51.100.1, %s" % NGINX_ADDRESS),
                                     ("X-Real-IP", "198.51.100.2")])
    assert spoofed["remote"] == ["127.0.0.1", 0]
    # max_connections_per_ip counts the client, not nginx: a second connection from 127.0.0.1 is refused
    wait_until(lambda: not stack.server._slots_per_ip, message="the earlier connections' slots released")
    first = stack.connect()
    try:
        first.send("x")
        assert first.recv(GUARD) == "x"
        with pytest.raises(simplews.InvalidStatus) as info:
            stack.connect()
        assert info.value.status == 503
    finally:
        first.close()


def test_port_80_redirects_to_https_and_serves_acme_challenges(proxied: Callable[..., Stack]) -> None:
    stack = proxied("threaded")
    os.makedirs(os.path.join(stack.prefix, "acme", ".well-known", "acme-challenge"))
    with open(os.path.join(stack.prefix, "acme", ".well-known", "acme-challenge", "token"), "w") as f:
        f.write("proof")
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=GUARD)
    try:
        conn.request("GET", "/.well-known/acme-challenge/token")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"proof")
        conn.request("GET", "/ws/echo?x=1")
        response = conn.getresponse()
        response.read()
        assert response.status == 301
        assert response.getheader("Location") == "https://127.0.0.1:%d/ws/echo?x=1" % stack.https
    finally:
        conn.close()


def test_example_location_block_has_the_websocket_essentials() -> None:
    """What docs/REVERSE_PROXY.rst promises about the example, checked against it."""
    with open(EXAMPLE) as f:
        text = f.read()
    match = re.search(r"\n    location /ws/ \{\n(.*?)\n    \}\n", text, re.S)
    assert match is not None
    block = match.group(1)
    for directive in ("proxy_pass http://simplews_backend;", "proxy_http_version 1.1;",
                      "proxy_set_header Upgrade $http_upgrade;",
                      "proxy_set_header Connection $connection_upgrade;",
                      "proxy_set_header X-Real-IP $remote_addr;",
                      "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                      "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert directive in block, directive
    timeout = re.search(r"proxy_read_timeout (\d+)s;", block)
    assert timeout is not None
    default_ping = simplews.Options().ping_interval
    assert int(timeout.group(1)) >= 2 * default_ping  # idle connections survive a late ping
    assert 'trusted_proxies=["127.0.0.1"]' in text
