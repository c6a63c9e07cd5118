"""WebSocket on the port of an existing ``http.server`` or WSGI application.

Two ways in, both running the same opening handshake as
:class:`~simplews.SimpleWSServer` (:class:`~simplews.protocol.ServerProtocol`)
on a request the host server has already read:

* :func:`accept` upgrades a request inside a
  :class:`http.server.BaseHTTPRequestHandler` method (``do_GET``) and returns a
  :class:`~simplews.WebSocket` on that connection::

      class Handler(http.server.BaseHTTPRequestHandler):
          def do_GET(self):
              if self.path != "/ws":
                  ...  # an ordinary page
                  return
              try:
                  ws = simplews.integration.accept(self)
              except simplews.WebSocketError:
                  return  # refused (the 4xx answer was sent) or the client went away
              for message in ws:
                  ws.send(message)

* :class:`WSGIWebSocketApp` is a WSGI application that takes the connection
  of an upgrade request over and runs a handler on it; other requests go to a
  ``fallback`` WSGI application. It needs a server that lets it have the
  socket: ``wsgiref`` with :class:`WebSocketWSGIRequestHandler` (see
  :func:`make_wsgi_server`), or gunicorn's ``sync`` and ``gthread`` workers.

See docs/INTEGRATION.rst for the details and the limits.
"""

import io
import logging
import socket
import socketserver
import threading
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple, Union
from urllib.parse import quote
from wsgiref import simple_server
from wsgiref.util import is_hop_by_hop

from . import handshake, http11
from .connection import Options, WebSocket
from .exceptions import ConnectionClosedError
from .forwarded import TrustedProxies, forwarded_address
from .frames import CLOSE_ABNORMAL
from .housekeeping import Housekeeper
from .http11 import Headers
from .protocol import ServerProtocol, State
from .server import HandlerFunc, WebSocketHandler, _call_handler, _format_address, _lingering_close

__all__ = [
    "accept",
    "WSGIWebSocketApp",
    "WebSocketWSGIRequestHandler",
    "ThreadingWSGIServer",
    "make_wsgi_server",
    "TAKEOVER_KEY",
]

logger = logging.getLogger("simplews")

#: The WSGI environ key under which a server offers its connection:
#: a callable taking no argument and returning ``(socket, bytes)``, the socket
#: of the request and the bytes the server read past the request head. Once
#: called, the server must write nothing more on that connection (whatever
#: the application then returns is discarded) nor read another request from it.
TAKEOVER_KEY = "simplews.takeover"

Handler = Union[HandlerFunc, WebSocketHandler]
SelectSubprotocol = Callable[[List[str]], Optional[str]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Any, StartResponse], Iterable[bytes]]

_housekeeper = None  # type: Optional[Housekeeper]
_housekeeper_lock = threading.Lock()


def _shared_housekeeper() -> Housekeeper:
    """Keepalive for every connection opened here (its thread ends when none is left)."""
    global _housekeeper
    with _housekeeper_lock:
        if _housekeeper is None:
            _housekeeper = Housekeeper("simplews-integration-housekeeping")
        return _housekeeper


class _Settings(object):
    """What a handshake needs, checked once: the options SimpleWSServer takes for it."""

    __slots__ = ("options", "subprotocols", "select_subprotocol", "origins", "extra_headers", "trusted_proxies")

    def __init__(self, subprotocols: Optional[Sequence[str]], select_subprotocol: Optional[SelectSubprotocol],
                 origins: Optional[Sequence[Optional[str]]], extra_headers: Optional[Iterable[Tuple[str, str]]],
                 options: Any) -> None:
        options = dict(options)
        trusted_proxies = options.pop("trusted_proxies", None)
        self.options = Options(**options)  # type: Any  # (its attributes are set from DEFAULTS)
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.select_subprotocol = select_subprotocol
        self.origins = list(origins) if origins is not None else None
        self.extra_headers = list(extra_headers or ())
        self.trusted_proxies = None  # type: Optional[TrustedProxies]
        if trusted_proxies is not None:
            self.trusted_proxies = TrustedProxies(trusted_proxies)

    def client_address(self, address: Any, headers: Headers) -> Any:
        """``address`` (the TCP peer), or the client a trusted proxy forwarded (as SimpleWSServer)."""
        if self.trusted_proxies is None or address is None:
            return address
        return forwarded_address(address, headers, self.trusted_proxies)

    def protocol(self, server_header: Optional[str]) -> ServerProtocol:
        extra = [("Server", server_header)] if server_header else []
        return ServerProtocol(max_message_size=self.options.max_message_size,
                              compression=self.options.compression, origins=self.origins,
                              subprotocols=self.subprotocols, select_subprotocol=self.select_subprotocol,
                              extra_headers=extra + self.extra_headers)


def _check_handler(handler: Any) -> None:
    if not (isinstance(handler, WebSocketHandler) or callable(handler)):
        raise TypeError("handler must be a callable taking a WebSocket or a WebSocketHandler instance")


def _head(request_line: str, headers: Iterable[Tuple[str, str]]) -> bytes:
    """A request head to feed to ServerProtocol, rebuilt from what the host server parsed."""
    lines = [request_line] + ["%s: %s" % (name, value) for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _status_of(response: bytes) -> int:
    """The status code of a response built by the protocol."""
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):  # pragma: no cover - the protocol always builds a status line
        return 500


def _read_buffered(rfile: Any, sock: socket.socket) -> bytes:
    """Bytes the host server's buffered reader holds past the request head, without blocking.

    They came from the client after its handshake (its first frames), so they
    belong to the WebSocket. Whatever the kernel already has is taken too:
    same bytes, same order.
    """
    if not hasattr(rfile, "read1"):  # an unbuffered reader holds nothing
        return b""
    timeout = sock.gettimeout()
    chunks = []  # type: List[bytes]
    try:
        sock.settimeout(0.0)
        for _ in range(64):  # bounded: the peer might keep sending
            try:
                chunk = rfile.read1(65536)
            except OSError:  # would block (TLS says so with an exception) or failed: the socket tells later
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        try:
            sock.settimeout(timeout)
        except OSError:
            pass
    return b"".join(chunks)


def _send_bounded(sock: socket.socket, data: bytes, timeout: float) -> None:
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        sock.sendall(data)
    finally:
        sock.settimeout(previous)


# ---------------------------------------------------------------------- http.server


def accept(request_handler: Any, handler: Optional[Handler] = None, *,
           subprotocols: Optional[Sequence[str]] = None,
           select_subprotocol: Optional[SelectSubprotocol] = None,
           origins: Optional[Sequence[Optional[str]]] = None,
           extra_headers: Optional[Iterable[Tuple[str, str]]] = None, **options: Any) -> WebSocket:
    """Upgrade the request a :class:`http.server.BaseHTTPRequestHandler` is handling to a WebSocket.

    Call it from ``do_GET`` (http.server has read the request line and
    headers). On success the ``101 Switching Protocols`` answer is sent and the
    connection is a :class:`~simplews.WebSocket`, with ``path``,
    ``request_headers`` and ``remote_address`` set. Bytes the client sent
    right behind its handshake and that http.server had already buffered are
    kept for it. http.server then stops using the connection: it reads no
    other request from it and (plain TCP) does not close it when ``do_GET``
    returns, so the WebSocket may be handed to another thread. Over TLS
    (a server whose socket is wrapped by :mod:`ssl`) the connection cannot
    be detached: keep ``do_GET`` running until the WebSocket is closed.

    With ``handler`` (a callable taking the WebSocket, or a
    :class:`~simplews.WebSocketHandler`), it is run right here as
    :class:`~simplews.SimpleWSServer` runs it (a failure closes with 1011),
    and the closed WebSocket is returned when it is done.

    ``subprotocols`` / ``select_subprotocol``, ``origins``, ``extra_headers``
    (added to the 101), ``trusted_proxies`` (``remote_address`` from
    ``X-Forwarded-For`` / ``X-Real-IP`` when the TCP peer is one of them;
    ``peer_address`` stays the TCP peer) and the connection options
    (``max_message_size``, ``compression``, ``ping_interval``... see
    :class:`~simplews.Options`) mean what they mean for SimpleWSServer.

    Raises :class:`~simplews.exceptions.InvalidHandshake` when the request is
    not an acceptable WebSocket handshake: the 4xx answer (the status and the
    reason in a plain-text body, as SimpleWSServer sends them) has been sent
    and http.server closes the connection. Raises
    :class:`~simplews.exceptions.ConnectionClosedError` if the connection
    failed while the 101 was being sent.
    """
    if handler is not None:
        _check_handler(handler)
    settings = _Settings(subprotocols, select_subprotocol, origins, extra_headers, options)
    ws = _accept_http_server(request_handler, settings)
    if handler is not None:
        _call_handler(handler, ws)
    return ws


def _accept_http_server(rh: Any, settings: _Settings) -> WebSocket:
    for name in ("connection", "rfile", "wfile", "command", "path", "request_version"):
        if not hasattr(rh, name):
            raise TypeError("accept() takes a http.server.BaseHTTPRequestHandler handling a request; "
                            "%r has no %r attribute" % (rh, name))
    conn = rh.connection  # type: socket.socket
    address = getattr(rh, "client_address", None)
    peer = _format_address(address)
    version_string = getattr(rh, "version_string", None)
    proto = settings.protocol(version_string() if callable(version_string) else None)
    request_line = "%s %s %s" % (rh.command, rh.path, rh.request_version)
    headers = getattr(rh, "headers", None)  # absent for an HTTP/0.9 request: refused for its version
    proto.receive_data(_head(request_line, headers.items() if headers is not None else ()))
    if proto.handshake_exc is None:
        proto.receive_data(_read_buffered(rh.rfile, conn))  # kept for the WebSocket, parsed once it is open
        response = proto.accept()
    else:
        response = proto.data_to_send()
    # http.server must read no other request from this connection, whatever happens now.
    rh.close_connection = True
    wfile = rh.wfile
    try:
        wfile.flush()
        _send_bounded(conn, response, settings.options.open_timeout)
    except OSError as exc:
        logger.info("%s: connection failed during the handshake: %s", peer, exc)
        raise ConnectionClosedError(CLOSE_ABNORMAL, "", "connection failed during the handshake: %s"
                                    % (exc,)) from exc
    finally:
        _log_request(rh, _status_of(response))
    if proto.state is not State.OPEN:
        refusal = proto.handshake_exc
        assert refusal is not None
        logger.info("%s: rejected handshake: HTTP %d: %s", peer, refusal.status, refusal)
        raise refusal
    request = proto.request
    assert request is not None
    sock = _detach(conn)
    logger.debug("%s: connection open on %s", peer, request.target)
    return WebSocket(sock, proto, settings.options, path=request.target, request_headers=request.headers,
                     response_headers=proto.response_headers, subprotocol=proto.subprotocol,
                     remote_address=settings.client_address(address, request.headers), peer_address=address,
                     housekeeper=_shared_housekeeper())


def _log_request(rh: Any, status: int) -> None:
    """http.server's access log line, as for any other request it answers."""
    log_request = getattr(rh, "log_request", None)
    if callable(log_request):
        try:
            log_request(status)
        except Exception:  # pragma: no cover - a broken log override must not break the connection
            logger.exception("log_request failed")


def _detach(conn: socket.socket) -> socket.socket:
    """A socket object of our own for the connection, so that http.server's
    shutdown and close of its socket object, once the handler returns, are
    no-ops. TLS sockets cannot be detached (the TLS state would be lost)."""
    if hasattr(conn, "pending") or type(conn) is not socket.socket:
        return conn
    family, proto = conn.family, conn.proto
    fd = conn.detach()
    return socket.socket(family, socket.SOCK_STREAM, proto, fd)


# ---------------------------------------------------------------------- WSGI


class WSGIWebSocketApp(object):
    """A WSGI application serving WebSocket connections, and other requests through ``fallback``.

    ::

        def echo(ws):
            for message in ws:
                ws.send(message)

        app = WSGIWebSocketApp(echo, fallback=my_wsgi_app)

    A request whose ``Upgrade`` header names ``websocket`` is a WebSocket
    handshake: the application takes the connection over from the WSGI
    server, answers 101 (or the 4xx SimpleWSServer would send, on the
    connection itself) and runs ``handler`` on the WebSocket: a callable
    taking a :class:`~simplews.WebSocket`, or a
    :class:`~simplews.WebSocketHandler`, run as SimpleWSServer runs it, on the
    WSGI server's thread for that request, until the connection closes. Any
    other request goes to ``fallback(environ, start_response)``, or without
    one is answered ``426 Upgrade Required`` with a plain-text explanation.

    The server must offer the connection: ``wsgiref`` with
    :class:`WebSocketWSGIRequestHandler` (e.g. :func:`make_wsgi_server`), any
    server putting a callable under :data:`TAKEOVER_KEY` in the environ, or
    gunicorn's ``sync`` and ``gthread`` workers (``environ["gunicorn.socket"]``;
    once the WebSocket is done the application ends the request by raising
    ``StopIteration``, which gunicorn takes as "connection closed, answer
    nothing": middleware between gunicorn and this application must let it
    through). On another server an upgrade request is answered ``500``.

    Options: as for :func:`accept`.
    """

    def __init__(self, handler: Handler, fallback: Optional[WSGIApp] = None, *,
                 subprotocols: Optional[Sequence[str]] = None,
                 select_subprotocol: Optional[SelectSubprotocol] = None,
                 origins: Optional[Sequence[Optional[str]]] = None,
                 extra_headers: Optional[Iterable[Tuple[str, str]]] = None, **options: Any) -> None:
        _check_handler(handler)
        if fallback is not None and not callable(fallback):
            raise TypeError("fallback must be a WSGI application (environ, start_response) or None")
        self.handler = handler
        self.fallback = fallback
        self._settings = _Settings(subprotocols, select_subprotocol, origins, extra_headers, options)
        self._warned = False

    @property
    def options(self) -> Options:
        """The connection options every WebSocket of this application gets."""
        options = self._settings.options  # type: Options
        return options

    def __call__(self, environ: Any, start_response: StartResponse) -> Iterable[bytes]:
        upgrade = _wants_websocket(environ)
        if not upgrade and self.fallback is not None:
            return self.fallback(environ, start_response)
        proto = self._settings.protocol(environ.get("SERVER_SOFTWARE"))
        proto.receive_data(_environ_head(environ))
        takeover = _find_takeover(environ) if upgrade and proto.handshake_exc is None else None
        if takeover is None:
            if upgrade and proto.handshake_exc is None:
                return self._no_socket(environ, start_response)
            return _answer_with_wsgi(proto, start_response)
        sock, buffered, finish = takeover()
        response = self._handshake(proto, sock, buffered, environ)
        return finish(start_response, _status_of(response) if response else 500)

    def _handshake(self, proto: ServerProtocol, sock: socket.socket, buffered: bytes, environ: Any) -> bytes:
        """The handshake on the connection taken over; runs the handler when it succeeds.

        Returns the response sent (b"" if it could not be sent); the socket is closed on return.
        """
        options = self._settings.options  # type: Any
        address = _peer_of(sock) or _environ_address(environ)  # the TCP peer (trusted_proxies checks it)
        peer = _format_address(address) if address is not None else "?"
        proto.receive_data(buffered)
        response = proto.accept()
        try:
            _send_bounded(sock, response, options.open_timeout)
        except OSError as exc:
            logger.info("%s: connection failed during the handshake: %s", peer, exc)
            _close_quietly(sock)
            return b""
        if proto.state is not State.OPEN:
            refusal = proto.handshake_exc
            assert refusal is not None
            logger.info("%s: rejected handshake: HTTP %d: %s", peer, refusal.status, refusal)
            _lingering_close(sock)
            return response
        request = proto.request
        assert request is not None
        logger.debug("%s: connection open on %s", peer, request.target)
        ws = WebSocket(sock, proto, options, path=request.target, request_headers=request.headers,
                       response_headers=proto.response_headers, subprotocol=proto.subprotocol,
                       remote_address=self._settings.client_address(address, request.headers),
                       peer_address=address, housekeeper=_shared_housekeeper())
        _call_handler(self.handler, ws)
        return response

    def _no_socket(self, environ: Any, start_response: StartResponse) -> Iterable[bytes]:
        if not self._warned:
            self._warned = True
            logger.error("WebSocket upgrade impossible: the WSGI server (%s) does not give the application "
                         "its connection; use wsgiref with simplews.integration.WebSocketWSGIRequestHandler "
                         "or gunicorn's sync or gthread worker", environ.get("SERVER_SOFTWARE", "unknown"))
        body = (b"WebSocket upgrade impossible: this WSGI server does not give the application its "
                b"connection (see simplews docs/INTEGRATION.rst).\n")
        start_response("500 Internal Server Error",
                       [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]


def _wants_websocket(environ: Any) -> bool:
    """Whether the request asks for a WebSocket (Upgrade names websocket): the routing decision only;
    the handshake checks the rest."""
    return handshake._has_websocket(http11.Headers([("Upgrade", environ.get("HTTP_UPGRADE", ""))]))


def _answer_with_wsgi(proto: ServerProtocol, start_response: StartResponse) -> Iterable[bytes]:
    """Refuse through the WSGI server (the connection stays the server's): the
    status and explanation SimpleWSServer would send, minus the hop-by-hop
    headers (Connection, Upgrade) WSGI applications may not set."""
    if proto.handshake_exc is None:
        proto.accept()  # not a WebSocket request: this refuses it, saying why
    exc = proto.handshake_exc
    assert exc is not None and proto.state is not State.OPEN
    body = ("Failed to open a WebSocket connection: %s.\n" % exc).encode("utf-8")
    headers = [(name, value) for name, value in exc.headers
               if not is_hop_by_hop(name) and name.lower() != "content-length"]
    headers += [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    reason = http11.REASONS.get(exc.status, "Error")
    start_response("%d %s" % (exc.status, reason), headers)
    return [body]


def _environ_target(environ: Any) -> str:
    """The request target as the client sent it (as close as the environ tells)."""
    for key in ("RAW_URI", "REQUEST_URI"):
        value = environ.get(key)
        if value:
            return str(value)
    path = (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")) or "/"
    target = quote(path.encode("latin-1", "replace"), safe="/;=,:@!$&'()*+~")
    query = environ.get("QUERY_STRING")
    if query:
        target += "?" + query
    return target


def _environ_head(environ: Any) -> bytes:
    request_line = "%s %s %s" % (environ.get("REQUEST_METHOD", "GET"), _environ_target(environ),
                                 environ.get("SERVER_PROTOCOL", "HTTP/1.1"))
    headers = []  # type: List[Tuple[str, str]]
    for key, value in environ.items():
        if key.startswith("HTTP_") and isinstance(value, str):
            headers.append(("-".join(part.capitalize() for part in key[5:].split("_")), value))
    if environ.get("CONTENT_LENGTH"):  # (wsgiref sets CONTENT_TYPE even when the client sent none)
        for key, name in (("CONTENT_TYPE", "Content-Type"), ("CONTENT_LENGTH", "Content-Length")):
            if environ.get(key):
                headers.append((name, str(environ[key])))
    return _head(request_line, headers)


def _peer_of(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:
        return None


def _environ_address(environ: Any) -> Optional[Tuple[str, int]]:
    host = environ.get("REMOTE_ADDR")
    try:
        port = int(environ.get("REMOTE_PORT", ""))
    except ValueError:
        return None
    return (host, port) if host else None


Finish = Callable[[StartResponse, int], Iterable[bytes]]
Takeover = Callable[[], Tuple[socket.socket, bytes, Finish]]


def _find_takeover(environ: Any) -> Optional[Takeover]:
    """How to take this request's connection from the WSGI server, if it allows it."""
    offer = environ.get(TAKEOVER_KEY)
    if callable(offer):
        def generic() -> Tuple[socket.socket, bytes, Finish]:
            sock, buffered = offer()
            return sock, buffered, _finish_discarded
        return generic
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        def gunicorn() -> Tuple[socket.socket, bytes, Finish]:
            return sock, _gunicorn_buffered(environ), _finish_gunicorn
        return gunicorn
    return None


def _finish_discarded(start_response: StartResponse, status: int) -> Iterable[bytes]:
    """The server discards the answer; it still logs the status that was sent."""
    start_response("%d %s" % (status, http11.REASONS.get(status, "Error")), [])
    return []


def _finish_gunicorn(start_response: StartResponse, status: int) -> Iterable[bytes]:
    # gunicorn's sync and gthread workers take a StopIteration out of the
    # application as "the connection is closed, write nothing" (it is how
    # they end a request themselves); any response would go out on the wire.
    raise StopIteration("WebSocket connection ended (HTTP %d)" % status)


def _gunicorn_buffered(environ: Any) -> bytes:
    """What gunicorn's request parser read past the head: ``wsgi.input`` of a
    request without a body reads from the parser's buffer (an ``Unreader``)."""
    body = environ.get("wsgi.input")
    unreader = getattr(getattr(body, "reader", None), "unreader", None)
    buf = getattr(unreader, "buf", None)
    if not isinstance(buf, io.BytesIO):
        logger.debug("gunicorn's request buffer not found; bytes sent with the handshake may be lost")
        return b""
    if not buf.getvalue():
        return b""
    data = unreader.read()  # type: ignore[union-attr]  # the buffer only: it is not empty
    return bytes(data)


# ---------------------------------------------------------------------- wsgiref


class _Discardable(io.BufferedIOBase):
    """The request handler's writer, made to swallow everything once the connection is taken over."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw
        self.discarding = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.discarding:
            return len(data)
        result = self.raw.write(data)
        return len(data) if result is None else int(result)

    def flush(self) -> None:
        if not self.discarding and not self.raw.closed:
            self.raw.flush()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self.flush()
        except OSError:
            pass
        finally:
            super().close()
            self.raw.close()


class WebSocketWSGIRequestHandler(simple_server.WSGIRequestHandler):
    """wsgiref's request handler, offering its connection to :class:`WSGIWebSocketApp`.

    It adds :data:`TAKEOVER_KEY` to the environ; once the application takes
    the connection, whatever wsgiref would still write on it (the response of
    the finished WSGI call) is discarded, and the connection is closed after
    the request as wsgiref always does. Everything else is wsgiref's.
    """

    def setup(self) -> None:
        super().setup()
        self.wfile = _Discardable(self.wfile)
        self._taken_over = False

    def get_environ(self) -> Any:
        environ = super().get_environ()
        environ[TAKEOVER_KEY] = self._take_over
        return environ

    def _take_over(self) -> Tuple[socket.socket, bytes]:
        if self._taken_over:
            raise RuntimeError("the connection was taken over already")
        self._taken_over = True
        wfile = self.wfile
        assert isinstance(wfile, _Discardable)
        wfile.flush()
        wfile.discarding = True
        self.close_connection = True
        return self.connection, _read_buffered(self.rfile, self.connection)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    """wsgiref's server with a thread per connection (each WebSocket holds one)."""

    daemon_threads = True


def make_wsgi_server(host: str, port: int, app: WSGIApp,
                     server_class: Any = ThreadingWSGIServer,
                     handler_class: Any = WebSocketWSGIRequestHandler) -> simple_server.WSGIServer:
    """:func:`wsgiref.simple_server.make_server` with the classes a WebSocket needs
    (threaded, connection takeover); ``port=0`` picks a free port (see ``server_port``)."""
    return simple_server.make_server(host, port, app, server_class=server_class,  # type: ignore[no-any-return]
                                     handler_class=handler_class)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
