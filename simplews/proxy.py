"""HTTP proxies for the client: the CONNECT tunnel (RFC 7231 §4.3.6).

The rules are sans-I/O: :func:`parse_proxy` reads a proxy URL,
:func:`proxy_for` applies ``http_proxy`` / ``https_proxy`` / ``no_proxy``,
:func:`build_connect_request` builds the CONNECT request and
:class:`ConnectResponse` reads the proxy's answer. :func:`open_tunnel` is the
only function here that touches a socket.

A ws:// URI uses ``http_proxy`` and a wss:// URI ``https_proxy`` (lower case
first, then upper case). Both go through an ``http://`` proxy with CONNECT, so
TLS for wss:// runs end to end between the client and the WebSocket server.
"""

import base64
import ipaddress
import os
import socket
import time
from typing import Any, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

from . import http11
from .exceptions import (
    InvalidHandshake, InvalidProxyStatus, InvalidURI, ProxyAuthenticationRequired,
)

__all__ = [
    "ProxyURI",
    "InvalidProxyStatus",
    "ProxyAuthenticationRequired",
    "parse_proxy",
    "proxy_for",
    "should_bypass",
    "build_connect_request",
    "ConnectResponse",
    "open_tunnel",
]

ProxyURI = NamedTuple("ProxyURI", [
    ("host", str),
    ("port", int),
    ("credentials", Optional[Tuple[str, str]]),
])

DEFAULT_PROXY_PORT = 80  # an http:// URL without a port means port 80


def parse_proxy(url: str) -> ProxyURI:
    """Split a proxy URL such as ``http://user:pass@proxy.example:3128``.

    A URL without a scheme is taken as http://; only http:// proxies are
    supported (the tunnel itself carries TLS for wss://).
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidURI("proxy must be a non-empty URL such as 'http://host:3128', not %r" % (url,))
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI("%r is not a valid proxy URL: %s" % (url, exc)) from None
    if parts.scheme.lower() != "http":
        raise InvalidURI("unsupported proxy %r: only http:// proxies (HTTP CONNECT) are supported" % url)
    if not parts.hostname:
        raise InvalidURI("proxy URL %r has no host" % url)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidURI("proxy URL %r must not have a path, query or fragment" % url)
    credentials = None
    if parts.username is not None or parts.password is not None:
        credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    return ProxyURI(parts.hostname, port if port is not None else DEFAULT_PROXY_PORT, credentials)


def _environ_get(environ: Mapping[str, str], name: str) -> Optional[str]:
    """The lower-case variable wins; an empty value counts as unset."""
    for key in (name.lower(), name.upper()):
        value = environ.get(key)
        if value is not None and value.strip():
            return value.strip()
    return None


def proxy_for(host: str, port: int, secure: bool,
              environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The proxy URL the environment asks for to reach ``host:port``, or None.

    wss:// uses ``https_proxy``, ws:// ``http_proxy``; ``no_proxy`` lists the
    hosts reached directly. Like the standard library, ``HTTP_PROXY`` is
    ignored when ``REQUEST_METHOD`` is set (a CGI script, where any client can
    set it through a ``Proxy:`` request header).
    """
    if environ is None:
        environ = os.environ
    if secure:
        proxy = _environ_get(environ, "https_proxy")
    else:
        proxy = environ.get("http_proxy") or None
        if proxy is None and "REQUEST_METHOD" not in environ:
            proxy = environ.get("HTTP_PROXY") or None
        proxy = proxy.strip() if proxy and proxy.strip() else None
    if proxy is None:
        return None
    if should_bypass(host, port, _environ_get(environ, "no_proxy") or ""):
        return None
    return proxy


def should_bypass(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma or space separated) says to reach ``host:port`` directly.

    Entries: ``*`` (everything), a host name matching itself and its
    subdomains (a leading dot is optional), an IP address, a CIDR block, each
    optionally with ``:port``.
    """
    host = host.lower().strip("[]").rstrip(".")
    try:
        address = ipaddress.ip_address(host)  # type: Any
    except ValueError:
        address = None
    for entry in no_proxy.replace(",", " ").split():
        entry = entry.lower()
        if entry == "*":
            return True
        entry_port = None
        if entry.startswith("["):  # [IPv6]:port
            close = entry.find("]")
            rest = entry[close + 1:]
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
            entry = entry[1:close]
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                entry, entry_port = name, int(number)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def _authority(host: str, port: int) -> str:
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def build_connect_request(host: str, port: int, credentials: Optional[Tuple[str, str]] = None,
                          user_agent: Optional[str] = None) -> bytes:
    """The CONNECT request asking a proxy for a tunnel to ``host:port``."""
    target = _authority(host, port)
    headers = http11.Headers([("Host", target)])
    if credentials is not None:
        username, password = credentials
        if ":" in username:
            raise ValueError("proxy username %r contains ':'; Basic authentication forbids it" % username)
        token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8")).decode("ascii")
        headers.add("Proxy-Authorization", "Basic " + token)
    if user_agent:
        headers.add("User-Agent", user_agent)
    return http11.serialize_request("CONNECT", target, headers)


class ConnectResponse(object):
    """Reads the proxy's answer to CONNECT, sans-I/O.

    :meth:`feed` returns None until the head is complete, then the bytes that
    came after it (which belong to the tunnel), or raises:
    :class:`ProxyAuthenticationRequired` for 407, :class:`InvalidProxyStatus`
    for any other non-2xx answer, :class:`InvalidHandshake` for a malformed one.
    """

    def __init__(self, target: str = "", proxy: str = "", sent_credentials: bool = False) -> None:
        self.target = target
        self.proxy = proxy
        self.sent_credentials = sent_credentials
        self.response = None  # type: Optional[http11.Response]
        self._reader = http11.HeadReader(is_request=False)

    def feed(self, data: bytes) -> Optional[bytes]:
        result = self._reader.feed(data)
        if result is None:
            return None
        head, rest = result
        try:
            response = http11.parse_response(head)
        except InvalidHandshake as exc:
            raise InvalidHandshake("proxy %s sent an invalid answer to CONNECT: %s" % (self.proxy, exc)) from None
        self.response = response
        return self._check(response, rest)

    def eof(self) -> None:
        """The proxy closed the connection before answering."""
        raise InvalidHandshake("proxy %s closed the connection before answering CONNECT %s"
                               % (self.proxy, self.target))

    def _check(self, response: http11.Response, rest: bytes) -> bytes:
        if response.status == 407:
            raise ProxyAuthenticationRequired(response.status, response.reason, response.headers.items(),
                                              b"", self.target, self.proxy, self.sent_credentials)
        if not 200 <= response.status < 300:
            raise InvalidProxyStatus(response.status, response.reason, response.headers.items(),
                                     b"", self.target, self.proxy)
        return rest


def open_tunnel(sock: socket.socket, host: str, port: int, proxy: ProxyURI, deadline: float,
                user_agent: Optional[str] = None) -> None:
    """Ask the proxy connected on ``sock`` for a tunnel to ``host:port``.

    Raises as :class:`ConnectResponse` does, InvalidHandshake if the proxy
    sends bytes past its answer (the WebSocket client speaks first, so there
    can be none), ``socket.timeout`` past ``deadline``.
    """
    sock.settimeout(_remaining(deadline))
    sock.sendall(build_connect_request(host, port, proxy.credentials, user_agent))
    reader = ConnectResponse(_authority(host, port), _authority(proxy.host, proxy.port),
                             proxy.credentials is not None)
    while True:
        sock.settimeout(_remaining(deadline))
        data = sock.recv(http11.MAX_LINE)
        if not data:
            reader.eof()
        rest = reader.feed(data)
        if rest:
            raise InvalidHandshake("proxy %s sent %d unexpected bytes after accepting CONNECT %s"
                                   % (reader.proxy, len(rest), reader.target))
        if rest is not None:
            return


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    return remaining
