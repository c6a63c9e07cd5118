"""HTTP CONNECT proxies: the sans-I/O rules, an in-test proxy, and a real tinyproxy."""

import base64
import os
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import simplews
from simplews import http11
from simplews.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from simplews.proxy import (
    ConnectResponse,
    InvalidProxyStatus,
    ProxyAuthenticationRequired,
    ProxyURI,
    build_connect_request,
    parse_proxy,
    proxy_for,
    should_bypass,
)

from conftest import echo

GUARD = 10.0
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY",
                   "REQUEST_METHOD")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: Any) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------- sans-I/O rules

@pytest.mark.parametrize("url, expected", [
    ("http://proxy.example:3128", ProxyURI("proxy.example", 3128, None)),
    ("http://proxy.example", ProxyURI("proxy.example", 80, None)),
    ("proxy.example:3128", ProxyURI("proxy.example", 3128, None)),
    ("http://user:p%40ss@proxy.example:3128/", ProxyURI("proxy.example", 3128, ("user", "p@ss"))),
    ("HTTP://[::1]:8080", ProxyURI("::1", 8080, None)),
    (" http://127.0.0.1:1 ", ProxyURI("127.0.0.1", 1, None)),
])
def test_parse_proxy(url: str, expected: ProxyURI) -> None:
    assert parse_proxy(url) == expected


@pytest.mark.parametrize("url, message", [
    ("", "non-empty"),
    ("https://proxy.example:443", "only http://"),
    ("socks5://proxy.example:1080", "only http://"),
    ("http://:3128", "no host"),
    ("http://proxy.example:99999", "not a valid proxy URL"),
    ("http://proxy.example:3128/path", "must not have a path"),
])
def test_parse_proxy_errors(url: str, message: str) -> None:
    with pytest.raises(InvalidURI, match=message):
        parse_proxy(url)


@pytest.mark.parametrize("environ, secure, expected", [
    ({}, False, None),
    ({"http_proxy": "http://p:1"}, False, "http://p:1"),
    ({"HTTP_PROXY": "http://P:1"}, False, "http://P:1"),
    ({"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:1"}, False, "http://lower:1"),
    ({"http_proxy": "http://p:1"}, True, None),  # wss:// uses https_proxy only
    ({"https_proxy": "http://s:1"}, True, "http://s:1"),
    ({"HTTPS_PROXY": "http://S:1"}, True, "http://S:1"),
    ({"https_proxy": "http://s:1"}, False, None),
    ({"http_proxy": ""}, False, None),
    ({"HTTP_PROXY": "http://P:1", "REQUEST_METHOD": "GET"}, False, None),  # httpoxy
    ({"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, False, "http://p:1"),
    ({"http_proxy": "http://p:1", "no_proxy": "example.com"}, False, None),
    ({"http_proxy": "http://p:1", "NO_PROXY": "*"}, False, None),
    ({"http_proxy": "http://p:1", "no_proxy": "other.com"}, False, "http://p:1"),
])
def test_proxy_for(environ: Dict[str, str], secure: bool, expected: Optional[str]) -> None:
    assert proxy_for("www.example.com", 443 if secure else 80, secure, environ) == expected


@pytest.mark.parametrize("host, port, no_proxy, expected", [
    ("www.example.com", 80, "example.com", True),
    ("www.example.com", 80, ".example.com", True),
    ("example.com", 80, ".example.com", True),
    ("badexample.com", 80, "example.com", False),
    ("www.example.com", 80, "www.example.com:80", True),
    ("www.example.com", 8080, "www.example.com:80", False),
    ("WWW.Example.COM", 80, "example.com", True),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("11.1.2.3", 80, "10.0.0.0/8", False),
    ("127.0.0.1", 80, "localhost, 127.0.0.1", True),
    ("::1", 80, "::1", True),
    ("::1", 80, "[::1]:80", True),
    ("::1", 81, "[::1]:80", False),
    ("anything", 1, "*", True),
    ("anything", 1, "", False),
    ("localhost", 1, "a.com b.com,localhost", True),
])
def test_should_bypass(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert should_bypass(host, port, no_proxy) is expected


def test_build_connect_request() -> None:
    data = build_connect_request("example.com", 443, ("user", "pass"), "simplews/test")
    token = base64.b64encode(b"user:pass").decode("ascii")
    assert data == (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                    b"Proxy-Authorization: Basic " + token.encode("ascii") + b"\r\n"
                    b"User-Agent: simplews/test\r\n\r\n")
    assert build_connect_request("::1", 80).startswith(b"CONNECT [::1]:80 HTTP/1.1\r\nHost: [::1]:80\r\n")
    with pytest.raises(ValueError, match="contains ':'"):
        build_connect_request("example.com", 80, ("a:b", "c"))


def test_connect_response_in_pieces() -> None:
    reader = ConnectResponse("example.com:443", "proxy:3128")
    answer = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: test\r\n\r\n"
    for byte in answer[:-1]:
        assert reader.feed(bytes([byte])) is None
    assert reader.feed(answer[-1:]) == b""
    assert reader.response is not None and reader.response.status == 200


def test_connect_response_407() -> None:
    reader = ConnectResponse("example.com:443", "proxy:3128")
    with pytest.raises(ProxyAuthenticationRequired) as info:
        reader.feed(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n")
    assert isinstance(info.value, InvalidStatus) and info.value.status == 407
    assert "proxy authentication required" in str(info.value)
    assert "http://user:password@host:port" in str(info.value)
    assert ("Proxy-Authenticate", "Basic") in info.value.headers


def test_connect_response_refusal() -> None:
    reader = ConnectResponse("example.com:443", "proxy:3128")
    expected = "proxy proxy:3128 refused CONNECT example.com:443: HTTP 403 Forbidden"
    with pytest.raises(InvalidProxyStatus, match=expected):
        reader.feed(b"HTTP/1.1 403 Forbidden\r\n\r\n")


def test_connect_response_garbage() -> None:
    with pytest.raises(InvalidHandshake):
        ConnectResponse().feed(b"SSH-2.0-OpenSSH\r\n\r\n")
    with pytest.raises(InvalidHandshake, match="invalid answer to CONNECT"):
        ConnectResponse().feed(b"HTTP/1.1 2000 OK\r\n\r\n")


# ---------------------------------------------------------------------- an in-test proxy

class ConnectProxy(object):
    """A loopback HTTP CONNECT proxy on threads; ``mode`` decides its answer.

    "ok": 200 and relay; "refuse": 403; "redirect": 302; "silent-close": close
    without answering. ``credentials`` makes it demand Basic auth (407).
    """

    def __init__(self, mode: str = "ok", credentials: Optional[Tuple[str, str]] = None) -> None:
        self.mode = mode
        self.credentials = credentials
        self.requests = []  # type: List[http11.Request]
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets = []  # type: List[socket.socket]
        self._threads = []  # type: List[threading.Thread]
        self._accepter = threading.Thread(target=self._accept_loop, name="test-proxy-accept")
        self._accepter.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="test-proxy-conn")
            with self._lock:
                self._sockets.append(conn)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        finally:
            conn.close()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(GUARD)
        reader = http11.HeadReader(is_request=True)
        try:
            result = None
            while result is None:
                data = conn.recv(4096)
                if not data:
                    return
                result = reader.feed(data)
            request = http11.parse_request(result[0])
        except (OSError, simplews.InvalidHandshake):
            return
        with self._lock:
            self.requests.append(request)
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(("%s:%s" % self.credentials).encode()).decode()
            if request.headers.get("Proxy-Authorization") != expected:
                conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                return
        if self.mode == "silent-close":
            return
        if self.mode == "refuse":
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if self.mode == "redirect":
            conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: ws://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = request.target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=GUARD)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with self._lock:
            self._sockets.append(upstream)
        try:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._relay(conn, upstream)
        finally:
            upstream.close()

    def _relay(self, one: socket.socket, two: socket.socket) -> None:
        peers = {one: two, two: one}
        with selectors.DefaultSelector() as selector:
            selector.register(one, selectors.EVENT_READ)
            selector.register(two, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in selector.select(0.05):
                    try:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)  # type: ignore[index]
                    except OSError:
                        return

    def close(self) -> None:
        self._stopping.set()
        self._accepter.join(GUARD)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(GUARD)
        with self._lock:
            for sock in self._sockets:
                sock.close()
        self._listener.close()

    def targets(self) -> List[str]:
        with self._lock:
            return [request.target for request in self.requests]


@pytest.fixture
def make_proxy() -> Iterator[Any]:
    proxies = []  # type: List[ConnectProxy]

    def make(mode: str = "ok", credentials: Optional[Tuple[str, str]] = None) -> ConnectProxy:
        proxy = ConnectProxy(mode, credentials)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


def check_echo(ws: simplews.WebSocket) -> None:
    ws.send("through the tunnel")
    assert ws.recv(timeout=GUARD) == "through the tunnel"


def test_explicit_proxy(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    with simplews.connect(server.url + "path", timeout=GUARD, proxy=proxy.url) as ws:
        check_echo(ws)
        assert ws.remote_address[1] == proxy.port
    [request] = proxy.requests
    assert request.method == "CONNECT"
    assert request.target == "127.0.0.1:%d" % server.port
    assert request.headers.get("Host") == request.target
    assert request.headers.get("Proxy-Authorization") is None
    assert request.headers.get("User-Agent", "").startswith("simplews/")


def test_proxy_basic_auth(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy(credentials=("bob", "s3cr:t"))
    url = "http://bob:s3cr%%3At@127.0.0.1:%d" % proxy.port
    with simplews.connect(server.url, timeout=GUARD, proxy=url) as ws:
        check_echo(ws)
    assert proxy.requests[0].headers.get("Proxy-Authorization") == \
        "Basic " + base64.b64encode(b"bob:s3cr:t").decode()


def test_proxy_407_without_credentials(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy(credentials=("bob", "pw"))
    with pytest.raises(ProxyAuthenticationRequired) as info:
        simplews.connect(server.url, timeout=GUARD, proxy=proxy.url)
    assert isinstance(info.value, InvalidStatus)
    assert info.value.status == 407
    message = str(info.value)
    assert "proxy authentication required" in message
    assert "127.0.0.1:%d" % proxy.port in message and "127.0.0.1:%d" % server.port in message


def test_proxy_407_with_wrong_credentials(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy(credentials=("bob", "pw"))
    with pytest.raises(ProxyAuthenticationRequired, match="rejected the credentials"):
        simplews.connect(server.url, timeout=GUARD, proxy="http://bob:wrong@127.0.0.1:%d" % proxy.port)


def test_proxy_refusal(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy("refuse")
    expected = "refused CONNECT 127.0.0.1:%d: HTTP 403 Forbidden" % server.port
    with pytest.raises(InvalidProxyStatus, match=expected) as info:
        simplews.connect(server.url, timeout=GUARD, proxy=proxy.url)
    assert info.value.status == 403
    assert not isinstance(info.value, ProxyAuthenticationRequired)


def test_proxy_redirect_is_not_followed(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy("redirect")
    with pytest.raises(InvalidProxyStatus, match="HTTP 302"):
        simplews.connect(server.url, timeout=GUARD, proxy=proxy.url)
    assert len(proxy.requests) == 1


def test_proxy_closes_without_answering(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy("silent-close")
    with pytest.raises(InvalidHandshake, match="closed the connection before answering CONNECT"):
        simplews.connect(server.url, timeout=GUARD, proxy=proxy.url)


def test_proxy_unreachable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        simplews.connect("ws://127.0.0.1:1/", timeout=GUARD, proxy="http://127.0.0.1:%d" % port)


def test_proxy_from_environment(serve: Any, make_proxy: Any, monkeypatch: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("http_proxy", proxy.url)
    with simplews.connect(server.url, timeout=GUARD) as ws:
        check_echo(ws)
    assert proxy.targets() == ["127.0.0.1:%d" % server.port]


def test_upper_case_environment(serve: Any, make_proxy: Any, monkeypatch: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with simplews.connect(server.url, timeout=GUARD) as ws:
        check_echo(ws)
    assert len(proxy.requests) == 1


def test_https_proxy_is_not_used_for_ws(serve: Any, make_proxy: Any, monkeypatch: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("https_proxy", proxy.url)
    with simplews.connect(server.url, timeout=GUARD) as ws:
        check_echo(ws)
    assert proxy.requests == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "*", "localhost,127.0.0.1:%(port)d"])
def test_no_proxy(serve: Any, make_proxy: Any, monkeypatch: Any, no_proxy: str) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", no_proxy % {"port": server.port})
    with simplews.connect(server.url, timeout=GUARD) as ws:
        check_echo(ws)
    assert proxy.requests == []


def test_proxy_none_ignores_the_environment(serve: Any, make_proxy: Any, monkeypatch: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    with simplews.connect(server.url, timeout=GUARD, proxy=None) as ws:
        check_echo(ws)
    assert proxy.requests == []


def test_explicit_proxy_ignores_no_proxy(serve: Any, make_proxy: Any, monkeypatch: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    monkeypatch.setenv("no_proxy", "*")
    with simplews.connect(server.url, timeout=GUARD, proxy=proxy.url) as ws:
        check_echo(ws)
    assert len(proxy.requests) == 1


def test_redirect_through_proxy(serve: Any, make_proxy: Any) -> None:
    """Each hop of a redirect opens its own tunnel."""
    server = serve(echo, process_request=lambda path, headers: (302, [("Location", "/new")], b"")
                   if path == "/old" else None)
    proxy = make_proxy()
    with simplews.connect(server.url + "old", timeout=GUARD, proxy=proxy.url) as ws:
        assert ws.path == "/new"
        check_echo(ws)
    assert proxy.targets() == ["127.0.0.1:%d" % server.port] * 2


@pytest.fixture
def tls() -> Any:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    return server_context, client_context


def test_wss_through_proxy_from_https_proxy(serve: Any, make_proxy: Any, monkeypatch: Any, tls: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    proxy = make_proxy()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")  # would fail: wss:// must not use it
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with simplews.connect(server.url, timeout=GUARD, ssl_context=client_context) as ws:
        check_echo(ws)
        assert ws.remote_address[1] == proxy.port
    assert proxy.targets() == ["127.0.0.1:%d" % server.port]


def test_run_forever_through_proxy(serve: Any, make_proxy: Any) -> None:
    server = serve(echo)
    proxy = make_proxy()
    got = []  # type: List[Any]
    client = simplews.SimpleWSClient(server.url, proxy=proxy.url,
                                     on_open=lambda c: c.send("hi"),
                                     on_message=lambda c, m: (got.append(m), c.stop()))
    client.run_forever()
    assert got == ["hi"]
    assert len(proxy.requests) == 1


# ---------------------------------------------------------------------- a real proxy: tinyproxy

def _free_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port  # type: ignore[no-any-return]


@pytest.fixture
def tinyproxy() -> Iterator[Any]:
    """Start tinyproxy on a loopback port; yields start(connect_port, basic_auth=None) -> proxy URL."""
    binary = shutil.which("tinyproxy") or ("/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)
    if binary is None:
        pytest.skip("tinyproxy is not installed (Debian package 'tinyproxy'); the in-test proxy covers CONNECT")
    directory = tempfile.mkdtemp(prefix="simplews-tinyproxy-")
    processes = []  # type: List[subprocess.Popen]  # type: ignore[type-arg]

    def start(connect_port: int, basic_auth: Optional[Tuple[str, str]] = None) -> str:
        last_error = ""
        for _ in range(5):  # the port picked may be taken meanwhile: try another
            port = _free_port()
            config = os.path.join(directory, "tinyproxy.conf")
            lines = ["Port %d" % port, "Listen 127.0.0.1", "Timeout 60", "MaxClients 20",
                     "Allow 127.0.0.1", "ConnectPort %d" % connect_port, "LogLevel Info",
                     "DisableViaHeader Yes"]
            if basic_auth is not None:
                lines.append("BasicAuth %s %s" % basic_auth)
            with open(config, "w") as handle:
                handle.write("\n".join(lines) + "\n")
            log = open(os.path.join(directory, "tinyproxy.log"), "w")
            process = subprocess.Popen([binary, "-d", "-c", config], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
            log.close()
            processes.append(process)
            deadline = time.monotonic() + GUARD
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return "http://127.0.0.1:%d" % port
                except OSError:
                    time.sleep(0.05)
            with open(os.path.join(directory, "tinyproxy.log")) as handle:
                last_error = handle.read()[-2000:]
            process.kill()
            process.wait(GUARD)
        pytest.fail("tinyproxy did not start:\n" + last_error)
        return ""

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(GUARD)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(GUARD)
    shutil.rmtree(directory, ignore_errors=True)


def test_tinyproxy_tunnel(serve: Any, tinyproxy: Any) -> None:
    server = serve(echo)
    proxy = tinyproxy(server.port)
    with simplews.connect(server.url, timeout=GUARD, proxy=proxy) as ws:
        check_echo(ws)
        ws.send(b"\x00" * 100000)
        assert ws.recv(timeout=GUARD) == b"\x00" * 100000


def test_tinyproxy_wss(serve: Any, tinyproxy: Any, tls: Any, monkeypatch: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    monkeypatch.setenv("https_proxy", tinyproxy(server.port))
    with simplews.connect(server.url, timeout=GUARD, ssl_context=client_context) as ws:
        check_echo(ws)


def test_tinyproxy_refuses_other_ports(serve: Any, tinyproxy: Any) -> None:
    server = serve(echo)
    proxy = tinyproxy(_free_port())  # the server's port is not a ConnectPort
    with pytest.raises(InvalidProxyStatus) as info:
        simplews.connect(server.url, timeout=GUARD, proxy=proxy)
    assert info.value.status == 403


def test_tinyproxy_basic_auth(serve: Any, tinyproxy: Any) -> None:
    server = serve(echo)
    proxy = tinyproxy(server.port, basic_auth=("alice", "wonder"))
    with pytest.raises(ProxyAuthenticationRequired):
        simplews.connect(server.url, timeout=GUARD, proxy=proxy)
    authed = proxy.replace("http://", "http://alice:wonder@")
    with simplews.connect(server.url, timeout=GUARD, proxy=authed) as ws:
        check_echo(ws)
