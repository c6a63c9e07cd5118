"""Redirects of the opening handshake: the pure rules, then real simplews servers answering 3xx."""

import ssl
import threading
from typing import Any, Dict, List, Optional, Tuple

import pytest

import simplews
from simplews.client import REDIRECT_STATUSES, redirect_credentials_allowed, resolve_redirect
from simplews.exceptions import InvalidHandshake, InvalidStatus
from simplews.uri import parse_uri

from conftest import echo

GUARD = 10.0


# ---------------------------------------------------------------------- pure rules

@pytest.mark.parametrize("current, location, expected", [
    ("ws://a.example/x/y", "/new", "ws://a.example/new"),
    ("ws://a.example/x/y", "z", "ws://a.example/x/z"),
    ("ws://a.example/x/y", "../up?q=1", "ws://a.example/up?q=1"),
    ("ws://a.example:8080/x", "?only=query", "ws://a.example:8080/x?only=query"),
    ("wss://a.example/x", "/y", "wss://a.example/y"),
    ("ws://a.example/x", "//b.example:9/p", "ws://b.example:9/p"),
    ("ws://a.example/x", "wss://b.example/secure", "wss://b.example/secure"),
    ("ws://a.example/x", "http://b.example/plain", "ws://b.example/plain"),
    ("ws://a.example/x", "https://b.example/tls", "wss://b.example/tls"),
    ("ws://a.example/x", "HTTPS://b.example/tls", "wss://b.example/tls"),
    ("ws://a.example/x", "/frag#part", "ws://a.example/frag"),
    ("ws://a.example/x", "ws://b.example", "ws://b.example/"),
    ("ws://[::1]:9000/x", "/y", "ws://[::1]:9000/y"),
])
def test_resolve_redirect(current: str, location: str, expected: str) -> None:
    assert resolve_redirect(current, location) == expected


@pytest.mark.parametrize("location", ["ftp://b.example/", "mailto:x@example.com", "javascript:alert(1)"])
def test_resolve_redirect_refuses_other_schemes(location: str) -> None:
    with pytest.raises(InvalidHandshake, match="unsupported scheme"):
        resolve_redirect("ws://a.example/", location)


@pytest.mark.parametrize("old, new, allowed", [
    ("ws://a.example/x", "ws://a.example/y", True),
    ("ws://A.example/x", "ws://a.EXAMPLE:80/y", True),
    ("ws://a.example/x", "wss://a.example/y", True),  # TLS upgrade, default ports
    ("ws://a.example:8080/x", "wss://a.example:8443/y", False),
    ("ws://a.example/x", "ws://a.example:81/y", False),
    ("ws://a.example/x", "ws://b.example/x", False),
    ("ws://a.example/x", "ws://sub.a.example/x", False),
    ("wss://a.example/x", "wss://a.example:443/y", True),
])
def test_redirect_credentials_allowed(old: str, new: str, allowed: bool) -> None:
    assert redirect_credentials_allowed(parse_uri(old), parse_uri(new)) is allowed


def test_redirect_statuses() -> None:
    assert REDIRECT_STATUSES == {301, 302, 303, 307, 308}


# ---------------------------------------------------------------------- live servers

class Recorder(object):
    """A process_request that answers configured redirects and records every request."""

    def __init__(self, routes: Optional[Dict[str, Tuple[int, str]]] = None) -> None:
        self.routes = dict(routes or {})
        self.requests = []  # type: List[Tuple[str, Any]]
        self.lock = threading.Lock()

    def __call__(self, path: str, headers: Any) -> Any:
        with self.lock:
            self.requests.append((path, headers))
        if path in self.routes:
            status, location = self.routes[path]
            return status, [("Location", location)], b"moved\n"
        return None

    def paths(self) -> List[str]:
        with self.lock:
            return [path for path, _ in self.requests]

    def header(self, path: str, name: str) -> List[Optional[str]]:
        with self.lock:
            return [headers.get(name) for seen, headers in self.requests if seen == path]


def check_echo(ws: simplews.WebSocket) -> None:
    ws.send("ping?")
    assert ws.recv(timeout=GUARD) == "ping?"


@pytest.mark.parametrize("status", sorted(REDIRECT_STATUSES))
def test_follows_each_redirect_status_relative_location(serve: Any, status: int) -> None:
    recorder = Recorder({"/old": (status, "/new")})
    server = serve(echo, process_request=recorder)
    with simplews.connect(server.url + "old", timeout=GUARD) as ws:
        assert ws.path == "/new"
        check_echo(ws)
    assert recorder.paths() == ["/old", "/new"]


def test_follows_absolute_location_to_another_server(serve: Any) -> None:
    target_recorder = Recorder()
    target = serve(echo, process_request=target_recorder)
    origin = serve(echo, process_request=Recorder({"/start": (307, target.url + "there?x=1")}))
    with simplews.connect(origin.url + "start", timeout=GUARD) as ws:
        assert ws.path == "/there?x=1"
        assert ws.remote_address[1] == target.port
        check_echo(ws)
    assert target_recorder.paths() == ["/there?x=1"]


def test_http_location_is_taken_as_ws(serve: Any) -> None:
    recorder = Recorder({"/a": (301, "http://127.0.0.1:%d/b")})
    server = serve(echo, process_request=recorder)
    recorder.routes["/a"] = (301, "http://127.0.0.1:%d/b" % server.port)
    with simplews.connect(server.url + "a", timeout=GUARD) as ws:
        assert ws.path == "/b"
        check_echo(ws)


def test_chain_of_redirects_within_the_limit(serve: Any) -> None:
    recorder = Recorder({"/1": (302, "/2"), "/2": (303, "/3"), "/3": (308, "/end")})
    server = serve(echo, process_request=recorder)
    with simplews.connect(server.url + "1", timeout=GUARD, max_redirects=3) as ws:
        assert ws.path == "/end"
    assert recorder.paths() == ["/1", "/2", "/3", "/end"]


def test_too_many_redirects_names_the_chain(serve: Any) -> None:
    recorder = Recorder({"/r%d" % n: (302, "/r%d" % (n + 1)) for n in range(20)})
    server = serve(echo, process_request=recorder)
    with pytest.raises(InvalidHandshake) as info:
        simplews.connect(server.url + "r0", timeout=GUARD, max_redirects=3)
    message = str(info.value)
    assert not isinstance(info.value, InvalidStatus)
    assert "too many redirects (more than 3)" in message
    assert "/r0 -> " in message and "/r3 -> " in message and message.endswith("/r4")
    assert isinstance(info.value.__cause__, InvalidStatus)
    assert recorder.paths() == ["/r0", "/r1", "/r2", "/r3"]


def test_default_limit_is_ten(serve: Any) -> None:
    recorder = Recorder({"/loop": (307, "/loop")})
    server = serve(echo, process_request=recorder)
    with pytest.raises(InvalidHandshake, match="too many redirects \\(more than 10\\)"):
        simplews.connect(server.url + "loop", timeout=GUARD)
    assert len(recorder.paths()) == 11


def test_max_redirects_zero_follows_none(serve: Any) -> None:
    recorder = Recorder({"/old": (301, "/new")})
    server = serve(echo, process_request=recorder)
    with pytest.raises(InvalidHandshake, match="too many redirects"):
        simplews.connect(server.url + "old", timeout=GUARD, max_redirects=0)
    assert recorder.paths() == ["/old"]


def test_redirect_without_location_is_invalid_status(serve: Any) -> None:
    server = serve(echo, process_request=lambda path, headers: (302, [], b"no location"))
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url, timeout=GUARD)
    assert info.value.status == 302
    assert info.value.body == b"no location"


def test_other_statuses_are_not_followed(serve: Any) -> None:
    server = serve(echo, process_request=lambda path, headers: (404, [("Location", "/x")], b""))
    with pytest.raises(InvalidStatus) as info:
        simplews.connect(server.url, timeout=GUARD)
    assert info.value.status == 404


def test_redirect_to_non_websocket_scheme_fails(serve: Any) -> None:
    server = serve(echo, process_request=lambda path, headers: (302, [("Location", "ftp://x/")], b""))
    with pytest.raises(InvalidHandshake, match="unsupported scheme"):
        simplews.connect(server.url, timeout=GUARD)


def test_credentials_kept_on_same_host(serve: Any) -> None:
    recorder = Recorder({"/old": (302, "/new")})
    server = serve(echo, process_request=recorder)
    url = "ws://alice:secret@127.0.0.1:%d/old" % server.port
    with simplews.connect(url, timeout=GUARD, headers={"Cookie": "session=1"}) as ws:
        check_echo(ws)
    first = recorder.header("/old", "Authorization")
    assert first[0] is not None and first[0].startswith("Basic ")
    assert recorder.header("/new", "Authorization") == first
    assert recorder.header("/new", "Cookie") == ["session=1"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_credentials_not_sent_to_another_host_or_port(serve: Any, host: str) -> None:
    target_recorder = Recorder()
    target = serve(echo, process_request=target_recorder)
    origin_recorder = Recorder({"/old": (302, "ws://%s:%d/new" % (host, target.port))})
    origin = serve(echo, process_request=origin_recorder)
    url = "ws://alice:secret@127.0.0.1:%d/old" % origin.port
    headers = [("Authorization", "Bearer token"), ("Cookie", "session=1"), ("X-Trace", "kept")]
    with simplews.connect(url, timeout=GUARD, headers=headers) as ws:
        check_echo(ws)
    assert origin_recorder.header("/old", "Authorization") == ["Bearer token"]  # the user's header wins
    assert target_recorder.header("/new", "Authorization") == [None]
    assert target_recorder.header("/new", "Cookie") == [None]
    assert target_recorder.header("/new", "X-Trace") == ["kept"]


def test_host_override_not_sent_to_another_host(serve: Any) -> None:
    target_recorder = Recorder()
    target = serve(echo, process_request=target_recorder)
    origin_recorder = Recorder({"/old": (302, "ws://127.0.0.1:%d/new" % target.port)})
    origin = serve(echo, process_request=origin_recorder)
    with simplews.connect(origin.url + "old", timeout=GUARD, headers={"Host": "virtual.example"}) as ws:
        check_echo(ws)
    assert origin_recorder.header("/old", "Host") == ["virtual.example"]
    assert target_recorder.header("/new", "Host") == ["127.0.0.1:%d" % target.port]


def test_credentials_dropped_for_good_after_leaving_the_host(serve: Any) -> None:
    """a -> b -> back to a: what a's credentials were never handed to b, nor come back."""
    origin_recorder = Recorder()
    origin = serve(echo, process_request=origin_recorder)
    other = serve(echo, process_request=Recorder({"/bounce": (302, "ws://127.0.0.1:%d/back" % origin.port)}))
    origin_recorder.routes["/old"] = (302, "ws://127.0.0.1:%d/bounce" % other.port)
    url = "ws://alice:secret@127.0.0.1:%d/old" % origin.port
    with simplews.connect(url, timeout=GUARD) as ws:
        assert ws.path == "/back"
    assert origin_recorder.header("/old", "Authorization")[0] is not None
    assert origin_recorder.header("/back", "Authorization") == [None]


# ---------------------------------------------------------------------- TLS

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


def test_wss_to_ws_is_refused(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    plain_recorder = Recorder()
    plain = serve(echo, process_request=plain_recorder)
    secure = serve(echo, ssl_context=server_context,
                   process_request=Recorder({"/old": (301, "ws://127.0.0.1:%d/new" % plain.port)}))
    with pytest.raises(InvalidHandshake, match="wss:// to ws://"):
        simplews.connect(secure.url + "old", timeout=GUARD, ssl_context=client_context)
    assert plain_recorder.paths() == []


def test_ws_to_wss_is_followed(serve: Any, tls: Any, monkeypatch: Any) -> None:
    server_context, client_context = tls
    secure = serve(echo, ssl_context=server_context)
    plain = serve(echo, process_request=Recorder({"/up": (308, "wss://127.0.0.1:%d/secure" % secure.port)}))
    # ssl_context is refused for ws:// URIs, so the TLS hop uses the default context: make it trust our CA.
    monkeypatch.setattr(ssl, "create_default_context", lambda *args, **kwargs: client_context)
    with simplews.connect(plain.url + "up", timeout=GUARD) as ws:
        assert ws.path == "/secure"
        check_echo(ws)
