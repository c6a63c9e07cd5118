"""simplews: WebSockets (RFC 6455, RFC 7692) for plain, synchronous Python.

A stdlib-only server and client built on one sans-I/O core::

    import simplews

    def echo(ws):
        for message in ws:
            ws.send(message)

    simplews.SimpleWSServer(echo, port=8765).serve_forever()
"""

import sys

from .client import SimpleWSClient, connect
from .connection import Options, Ping, WebSocket
from .exceptions import (
    ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, InvalidStatus,
    InvalidProxyStatus, InvalidURI, NegotiationError, PayloadTooBig, ProtocolError,
    ProxyAuthenticationRequired, WebSocketError,
)
from .protocol import State
from .server import SimpleWSServer, WebSocketHandler
from .version import __version__

__all__ = [
    "__version__",
    "SimpleWSServer", "WebSocketHandler", "WebSocket", "Ping", "Options", "State",
    "connect", "SimpleWSClient", "DeflateConfig",
    "WebSocketError", "ConnectionClosed", "ConnectionClosedOK", "ConnectionClosedError",
    "InvalidHandshake", "InvalidStatus", "InvalidURI", "NegotiationError", "ProtocolError",
    "PayloadTooBig", "InvalidProxyStatus", "ProxyAuthenticationRequired",
]

if sys.version_info >= (3, 7):
    def __getattr__(name: str) -> object:
        """DeflateConfig on first use: zlib is imported only by those who compress."""
        if name == "DeflateConfig":
            from .deflate import DeflateConfig
            return DeflateConfig
        raise AttributeError("module 'simplews' has no attribute %r" % name)
else:  # pragma: no cover - PEP 562 arrived in 3.7
    from .deflate import DeflateConfig  # noqa: F401
