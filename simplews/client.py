"""The blocking client: :func:`connect` and :class:`SimpleWSClient`.

Opens TCP (and TLS for wss://), drives the handshake of
:class:`~simplews.protocol.ClientProtocol`, and returns a
:class:`~simplews.WebSocket`. All protocol rules live in the sans-I/O core.
"""

import logging
import socket
import time
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple, Union

from .connection import READ_SIZE, Options, WebSocket
from .exceptions import InvalidHandshake
from .housekeeping import shared_housekeeper
from .protocol import ClientProtocol, State
from .uri import WebSocketURI, parse_uri

__all__ = ["connect", "SimpleWSClient"]

logger = logging.getLogger("simplews")

HeadersLike = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]


class SimpleWSClient(object):
    """A client for one URI; :meth:`connect` opens a connection.

    Options: ``timeout`` (TCP + TLS + handshake; defaults to ``open_timeout``),
    ``subprotocols``, ``headers``, ``origin``, ``ssl_context``,
    ``server_hostname``, and the connection options of
    :class:`~simplews.connection.Options`.
    """

    def __init__(self, uri: str, *, timeout: Optional[float] = None, subprotocols: Optional[Sequence[str]] = None,
                 headers: HeadersLike = None, origin: Optional[str] = None, ssl_context: Any = None,
                 server_hostname: Optional[str] = None, **options: Any) -> None:
        self.uri = uri
        self.parsed = parse_uri(uri)  # type: WebSocketURI
        if timeout is not None:
            options["open_timeout"] = timeout
        self.options = Options(**options)
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.headers = _header_list(headers)
        self.origin = origin
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        if ssl_context is not None and not self.parsed.secure:
            raise ValueError("ssl_context given for a ws:// URI; use wss://")

    def connect(self) -> WebSocket:
        """Open the connection; raises InvalidHandshake (or InvalidStatus), OSError or TimeoutError."""
        parsed = self.parsed
        deadline = time.monotonic() + self.options.open_timeout
        sock = socket.create_connection((parsed.host, parsed.port), timeout=self.options.open_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if parsed.secure:
                sock = self._wrap_tls(sock, deadline)
            proto = ClientProtocol(parsed.host, parsed.port, parsed.resource, parsed.secure,
                                   max_message_size=self.options.max_message_size,
                                   compression=self.options.compression, origin=self.origin,
                                   subprotocols=self.subprotocols, extra_headers=self.headers,
                                   credentials=parsed.credentials)
            _settimeout(sock, deadline)
            sock.sendall(proto.connect())
            self._read_response(sock, proto, deadline)
        except socket.timeout:
            sock.close()
            raise TimeoutError("opening handshake with %s timed out after %ss"
                               % (self.uri, self.options.open_timeout)) from None
        except BaseException:
            sock.close()
            raise
        if proto.handshake_exc is not None:
            sock.close()
            raise proto.handshake_exc
        response = proto.response
        assert response is not None
        return WebSocket(sock, proto, self.options, path=parsed.resource,
                         request_headers=proto.request_headers, response_headers=response.headers,
                         subprotocol=proto.subprotocol, housekeeper=shared_housekeeper())

    def _wrap_tls(self, sock: socket.socket, deadline: float) -> socket.socket:
        import ssl
        context = self.ssl_context or ssl.create_default_context()
        _settimeout(sock, deadline)
        return context.wrap_socket(sock, server_hostname=self.server_hostname or self.parsed.host)  # type: ignore[no-any-return]

    def _read_response(self, sock: socket.socket, proto: ClientProtocol, deadline: float) -> None:
        while proto.state is State.CONNECTING:
            _settimeout(sock, deadline)
            data = sock.recv(READ_SIZE)
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()

    def __repr__(self) -> str:
        return "<SimpleWSClient %s>" % self.uri


def connect(uri: str, *, timeout: float = 10, subprotocols: Optional[Sequence[str]] = None,
            headers: HeadersLike = None, origin: Optional[str] = None, ssl_context: Any = None,
            **options: Any) -> WebSocket:
    """Open a WebSocket connection to ``uri`` (ws:// or wss://) and return it::

        with simplews.connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))
    """
    return SimpleWSClient(uri, timeout=timeout, subprotocols=subprotocols, headers=headers, origin=origin,
                          ssl_context=ssl_context, **options).connect()


def _settimeout(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out")
    sock.settimeout(remaining)


def _header_list(headers: HeadersLike) -> list:  # type: ignore[type-arg]
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    return [(str(name), str(value)) for name, value in headers]
