"""The one exception hierarchy of simplews.

Every error the library raises on purpose derives from :class:`WebSocketError`.
Errors found while parsing carry what the other side must be told: a close code
(:class:`ProtocolError`) or an HTTP status (:class:`InvalidHandshake`), so the
I/O layers never have to decide that themselves.
"""

from typing import Any, Optional, Sequence, Tuple

__all__ = [
    "WebSocketError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidURI",
    "InvalidProxyStatus",
    "ProxyAuthenticationRequired",
    "NegotiationError",
    "ProtocolError",
    "PayloadTooBig",
]

HeaderList = Sequence[Tuple[str, str]]


class WebSocketError(Exception):
    """Base class of every exception raised by simplews."""


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code`` and ``reason`` say how it ended.

    ``code`` is the close code received from the peer, or 1006 when the TCP
    connection ended without a closing handshake.
    """

    def __init__(self, code: int, reason: str = "", message: Optional[str] = None) -> None:
        self.code = code
        self.reason = reason
        if message is None:
            message = "connection closed: code %d" % code
            if reason:
                message += ", reason %r" % reason
        super().__init__(message)


class ConnectionClosedOK(ConnectionClosed):
    """The connection ended normally (close code 1000 or 1001, or a close frame without a code: 1005)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection ended with an error code or without a closing handshake."""


class InvalidHandshake(WebSocketError):
    """The opening handshake failed.

    On the server side ``status`` is the HTTP status to answer with and
    ``headers`` any header the answer must carry (e.g. ``Sec-WebSocket-Version``
    with a 426).
    """

    def __init__(self, message: str, status: int = 400, headers: HeaderList = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = list(headers)


class NegotiationError(InvalidHandshake):
    """An extension or subprotocol could not be agreed on."""


class InvalidStatus(InvalidHandshake):
    """The server answered the opening handshake with a status other than 101.

    ``status``, ``headers`` and ``body`` (its first bytes, bounded) are the
    server's answer.
    """

    def __init__(self, status: int, reason: str = "", headers: HeaderList = (), body: bytes = b"") -> None:
        message = "server rejected WebSocket connection: HTTP %d %s" % (status, reason)
        super().__init__(message.rstrip(), status=status, headers=headers)
        self.reason = reason
        self.body = body


class InvalidProxyStatus(InvalidStatus):
    """The proxy refused the CONNECT request; ``status``, ``reason`` and ``headers`` are its answer.

    It is never treated as a redirect of the WebSocket handshake.
    """

    def __init__(self, status: int, reason: str = "", headers: Any = (), body: bytes = b"",
                 target: str = "", proxy: str = "") -> None:
        super().__init__(status, reason, headers, body)
        self.target = target
        self.proxy = proxy
        message = "proxy %s refused CONNECT %s: HTTP %d %s" % (proxy, target, status, reason)
        self.args = (message.rstrip(),)


class ProxyAuthenticationRequired(InvalidProxyStatus):
    """The proxy answered 407: it wants (other) credentials in the proxy URL."""

    def __init__(self, status: int, reason: str = "", headers: Any = (), body: bytes = b"",
                 target: str = "", proxy: str = "", sent_credentials: bool = False) -> None:
        super().__init__(status, reason, headers, body, target, proxy)
        if sent_credentials:
            hint = "the proxy rejected the credentials given in the proxy URL"
        else:
            hint = "give them in the proxy URL: http://user:password@host:port"
        self.args = ("proxy authentication required: proxy %s answered CONNECT %s with HTTP %d %s; %s"
                     % (proxy, target, status, reason or "Proxy Authentication Required", hint),)


class InvalidURI(WebSocketError):
    """The URI given to the client is not a valid ws:// or wss:// URI."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455 or RFC 7692; ``code`` is the close code to send."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class PayloadTooBig(ProtocolError):
    """A message or frame is larger than ``max_message_size`` (close code 1009)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=1009)
