"""The blocking client: :func:`connect` and :class:`SimpleWSClient`.

Opens TCP (through an HTTP CONNECT proxy when asked to), TLS for wss://,
drives the handshake of :class:`~simplews.protocol.ClientProtocol`, follows
redirects, and returns a :class:`~simplews.WebSocket`.
:meth:`SimpleWSClient.run_forever` adds callbacks and reconnection.

Protocol rules live in the sans-I/O core; the redirect rules are the pure
functions :func:`resolve_redirect` and :func:`redirect_credentials_allowed`,
the proxy rules live in :mod:`simplews.proxy`.
"""

import logging
import random
import socket
import threading
import time
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urljoin, urlsplit, urlunsplit

from . import http11
from .connection import READ_SIZE, Options, WebSocket
from .exceptions import (
    ConnectionClosed, ConnectionClosedError, InvalidHandshake, InvalidStatus, InvalidURI, WebSocketError,
)
from .frames import CLOSE_ABNORMAL, CLOSE_NORMAL
from .handshake import _user_agent
from .housekeeping import shared_housekeeper
from .protocol import ClientProtocol, Data, State
from .proxy import InvalidProxyStatus, ProxyURI, open_tunnel, parse_proxy, proxy_for
from .uri import WebSocketURI, parse_uri

__all__ = ["connect", "SimpleWSClient", "USE_ENVIRONMENT", "REDIRECT_STATUSES",
           "resolve_redirect", "redirect_credentials_allowed"]

logger = logging.getLogger("simplews")

HeadersLike = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]

REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))

# Headers meant for one host (credentials, a Host override): dropped when a redirect leaves it.
_HOST_BOUND_HEADERS = frozenset(("authorization", "cookie", "host"))

_SIGNAL_CHECK_INTERVAL = 1.0  # seconds run_forever may block in one recv


class _UseEnvironment(object):
    """The default of ``proxy=``: read http_proxy / https_proxy / no_proxy."""

    def __repr__(self) -> str:
        return "USE_ENVIRONMENT"


USE_ENVIRONMENT = _UseEnvironment()


class _Stopped(Exception):
    """stop() was called while connecting (internal: run_forever just returns)."""


# ---------------------------------------------------------------------- redirect rules (sans-I/O)

def resolve_redirect(current: str, location: str) -> str:
    """The absolute ws:// or wss:// URI a ``Location`` header points to.

    A relative reference is resolved against ``current`` (RFC 3986 §5);
    http:// and https:// become ws:// and wss://; a fragment is dropped
    (WebSocket URIs have none). Raises InvalidHandshake for other schemes.
    """
    parts = urlsplit(current)
    web_scheme = "https" if parts.scheme == "wss" else "http"
    base = urlunsplit((web_scheme,) + tuple(parts[1:]))
    target = urlsplit(urljoin(base, location.strip()))
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(target.scheme.lower())
    if scheme is None:
        raise InvalidHandshake("redirect to %r: unsupported scheme %r; expected ws, wss, http or https"
                               % (location, target.scheme))
    return urlunsplit((scheme, target.netloc, target.path or "/", target.query, ""))


def redirect_credentials_allowed(old: WebSocketURI, new: WebSocketURI) -> bool:
    """Whether credentials for ``old`` may be sent to ``new``: same host and port.

    Moving from ws:// on port 80 to wss:// on port 443 of the same host counts
    as the same place (an upgrade to TLS).
    """
    if old.host.lower() != new.host.lower():
        return False
    if old.port == new.port:
        return True
    return not old.secure and new.secure and old.port == 80 and new.port == 443


def _display(uri: str) -> str:
    """A URI for messages and logs, without its user:password."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2]) + tuple(parts[2:]))


def _location(exc: InvalidStatus) -> Optional[str]:
    values = http11.Headers(exc.headers).get_all("Location")
    if len(values) != 1 or not values[0].strip():
        return None
    return values[0]


# ---------------------------------------------------------------------- the client

class SimpleWSClient(object):
    """A client for one URL: :meth:`connect` opens one connection, :meth:`run_forever` keeps one open.

    Connection options: ``timeout`` (TCP + proxy + TLS + handshake, per
    attempt; defaults to ``open_timeout``), ``subprotocols``, ``headers``,
    ``origin``, ``ssl_context``, ``server_hostname``, ``proxy``,
    ``max_redirects`` and the options of :class:`~simplews.connection.Options`
    (``ping_interval`` / ``ping_timeout`` are the keepalive).

    ``proxy``: by default the environment decides (``http_proxy`` for ws://,
    ``https_proxy`` for wss://, upper case too, and ``no_proxy``); a URL such
    as ``"http://user:pass@proxy:3128"`` forces that proxy; ``None`` connects
    directly, ignoring the environment.

    Redirects (301, 302, 303, 307, 308 with a ``Location``) are followed up to
    ``max_redirects`` times; wss:// to ws:// is refused, and credentials (the
    URL's user:password and ``Authorization`` / ``Cookie`` headers) are not
    sent to another host or port (nor is a ``Host`` header given in ``headers``).

    **Callbacks** for :meth:`run_forever`, all called on its thread, either
    passed to the constructor (they receive the client first)::

        def on_message(client, message): ...
        SimpleWSClient(url, on_message=on_message).run_forever()

    or defined by a subclass (without the client argument: it is ``self``)::

        class MyClient(SimpleWSClient):
            def on_message(self, message): ...

    ======================================  =================================================
    constructor argument                    subclass method
    ======================================  =================================================
    ``on_open(client)``                     ``on_open(self)``: a connection is open
    ``on_message(client, message)``         ``on_message(self, message)``: str or bytes
    ``on_close(client, code, reason)``      ``on_close(self, code, reason)``: a connection
                                            that was open ended (code 1006: dropped)
    ``on_error(client, exc)``               ``on_error(self, exc)``: connecting failed, or a
                                            callback raised ``exc``
    ======================================  =================================================

    Reconnection waits with exponential backoff and full jitter: a random
    delay between 0 and ``min(backoff_max, backoff_initial * backoff_factor **
    failures)``; ``failures`` starts again from 0 after a connection that
    stayed open ``backoff_reset`` seconds.
    """

    def __init__(self, url: str, on_open: Optional[Callable[..., Any]] = None,
                 on_message: Optional[Callable[..., Any]] = None,
                 on_close: Optional[Callable[..., Any]] = None,
                 on_error: Optional[Callable[..., Any]] = None, *,
                 timeout: Optional[float] = None, subprotocols: Optional[Sequence[str]] = None,
                 headers: HeadersLike = None, origin: Optional[str] = None, ssl_context: Any = None,
                 server_hostname: Optional[str] = None, proxy: Any = USE_ENVIRONMENT,
                 max_redirects: int = 10, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 backoff_factor: float = 2.0, backoff_reset: float = 10.0, **options: Any) -> None:
        self.url = self.uri = url
        self.parsed = parse_uri(url)  # type: WebSocketURI
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
        if proxy is not USE_ENVIRONMENT and proxy is not None:
            parse_proxy(proxy)  # fail now on a malformed proxy URL
        self.proxy = proxy
        if not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError("max_redirects must be an int >= 0, not %r" % (max_redirects,))
        self.max_redirects = max_redirects
        for name, value in (("backoff_initial", backoff_initial), ("backoff_max", backoff_max),
                            ("backoff_reset", backoff_reset)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError("%s must be a number of seconds >= 0, not %r" % (name, value))
        if not isinstance(backoff_factor, (int, float)) or backoff_factor < 1:
            raise ValueError("backoff_factor must be a number >= 1, not %r" % (backoff_factor,))
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.backoff_factor = backoff_factor
        self.backoff_reset = backoff_reset
        for name, callback in (("on_open", on_open), ("on_message", on_message), ("on_close", on_close),
                               ("on_error", on_error)):
            if callback is not None and not callable(callback):
                raise TypeError("%s must be callable or None, not %r" % (name, callback))
        self._on_open = on_open
        self._on_message = on_message
        self._on_close = on_close
        self._on_error = on_error
        # RLock: stop() may run in a signal handler on the thread holding it.
        self._lock = threading.RLock()
        self._stop_event = threading.Event()
        self._running = False
        self._run_thread = None  # type: Optional[threading.Thread]
        self._pending_sock = None  # type: Optional[socket.socket]
        self._ws = None  # type: Optional[WebSocket]
        self._closers = []  # type: List[threading.Thread]

    # ------------------------------------------------------------------ callbacks (override or pass)

    def on_open(self) -> None:
        """A connection is open (calls the ``on_open(client)`` given to the constructor)."""
        if self._on_open is not None:
            self._on_open(self)

    def on_message(self, message: Data) -> None:
        """A message arrived: str for text, bytes for binary (calls ``on_message(client, message)``)."""
        if self._on_message is not None:
            self._on_message(self, message)

    def on_close(self, code: int, reason: str) -> None:
        """An open connection ended (calls ``on_close(client, code, reason)``)."""
        if self._on_close is not None:
            self._on_close(self, code, reason)

    def on_error(self, exc: BaseException) -> None:
        """Connecting failed or a callback raised (calls ``on_error(client, exc)``)."""
        if self._on_error is not None:
            self._on_error(self, exc)

    # ------------------------------------------------------------------ one connection

    def connect(self) -> WebSocket:
        """Open a connection, following redirects; raises InvalidHandshake (InvalidStatus for an
        HTTP refusal, proxy.InvalidProxyStatus for a proxy's), OSError or TimeoutError."""
        return self._open(cancellable=False)

    def _open(self, cancellable: bool) -> WebSocket:
        uri = self.url
        parsed = self.parsed
        headers = list(self.headers)
        credentials = parsed.credentials
        server_hostname = self.server_hostname
        chain = [uri]
        while True:
            try:
                return self._open_once(uri, parsed, headers, credentials, server_hostname, cancellable)
            except InvalidProxyStatus:
                raise
            except InvalidStatus as exc:
                location = _location(exc)
                if exc.status not in REDIRECT_STATUSES or location is None:
                    raise
                new_uri = resolve_redirect(uri, location)
                chain.append(new_uri)
                if len(chain) - 1 > self.max_redirects:
                    raise InvalidHandshake("too many redirects (more than %d): %s"
                                           % (self.max_redirects, " -> ".join(_display(u) for u in chain))) from exc
                try:
                    new_parsed = parse_uri(new_uri)
                except InvalidURI as uri_exc:
                    raise InvalidHandshake("%s redirected to an invalid URI: %s"
                                           % (_display(uri), uri_exc)) from exc
                if parsed.secure and not new_parsed.secure:
                    raise InvalidHandshake("refusing to follow the redirect from %s to %s: it would "
                                           "drop TLS (wss:// to ws://)" % (_display(uri), _display(new_uri))) from exc
                if redirect_credentials_allowed(parsed, new_parsed):
                    credentials = new_parsed.credentials or credentials
                else:
                    credentials = new_parsed.credentials
                    headers = [(name, value) for name, value in headers
                               if name.lower() not in _HOST_BOUND_HEADERS]
                    server_hostname = None
                logger.info("HTTP %d: redirected from %s to %s", exc.status, _display(uri), _display(new_uri))
                uri, parsed = new_uri, new_parsed

    def _open_once(self, uri: str, parsed: WebSocketURI, headers: List[Tuple[str, str]],
                   credentials: Optional[Tuple[str, str]], server_hostname: Optional[str],
                   cancellable: bool) -> WebSocket:
        options = self.options
        deadline = time.monotonic() + options.open_timeout
        proxy = self._proxy_for(parsed)
        try:
            if proxy is not None:
                sock = self._tcp_connect(proxy.host, proxy.port, deadline, cancellable)
            else:
                sock = self._tcp_connect(parsed.host, parsed.port, deadline, cancellable)
        except BaseException:
            if cancellable:
                self._watch(None)
            raise
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if proxy is not None:
                open_tunnel(sock, parsed.host, parsed.port, proxy, deadline, _user_agent())
            if parsed.secure:
                sock = self._wrap_tls(sock, deadline, server_hostname or parsed.host, cancellable)
            proto = ClientProtocol(parsed.host, parsed.port, parsed.resource, parsed.secure,
                                   max_message_size=options.max_message_size,
                                   compression=options.compression, origin=self.origin,
                                   subprotocols=self.subprotocols, extra_headers=headers,
                                   credentials=credentials)
            _settimeout(sock, deadline)
            sock.sendall(proto.connect())
            self._read_response(sock, proto, deadline)
            if proto.handshake_exc is not None:
                raise proto.handshake_exc
        except socket.timeout:
            sock.close()
            self._stopped_check(cancellable)
            raise TimeoutError("opening handshake with %s timed out after %ss"
                               % (_display(uri), options.open_timeout)) from None
        except BaseException:
            sock.close()
            self._stopped_check(cancellable)
            raise
        finally:
            if cancellable:
                self._watch(None)
        response = proto.response
        assert response is not None
        return WebSocket(sock, proto, options, path=parsed.resource,
                         request_headers=proto.request_headers, response_headers=response.headers,
                         subprotocol=proto.subprotocol, housekeeper=shared_housekeeper())

    def _proxy_for(self, parsed: WebSocketURI) -> Optional[ProxyURI]:
        if self.proxy is USE_ENVIRONMENT:
            url = proxy_for(parsed.host, parsed.port, parsed.secure)
        else:
            url = self.proxy
        return parse_proxy(url) if url else None

    def _tcp_connect(self, host: str, port: int, deadline: float, cancellable: bool) -> socket.socket:
        """socket.create_connection, but stop() can abort it (shutdown wakes a pending connect)."""
        error = None  # type: Optional[BaseException]
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                if cancellable:
                    self._watch(sock)
                _settimeout(sock, deadline)
                sock.connect(address)
                return sock
            except OSError as exc:
                sock.close()
                self._stopped_check(cancellable)
                error = exc
                if isinstance(exc, socket.timeout):
                    break
            except BaseException:
                sock.close()
                raise
        if error is None:
            raise OSError("cannot resolve %s:%d" % (host, port))
        if isinstance(error, socket.timeout):
            raise TimeoutError("connecting to %s:%d timed out after %ss"
                               % (host, port, self.options.open_timeout))
        raise error

    def _wrap_tls(self, sock: socket.socket, deadline: float, server_hostname: str,
                  cancellable: bool) -> socket.socket:
        import ssl
        context = self.ssl_context or ssl.create_default_context()
        tls = context.wrap_socket(sock, server_hostname=server_hostname, do_handshake_on_connect=False)
        try:
            if cancellable:
                self._watch(tls)
            _settimeout(tls, deadline)
            tls.do_handshake()
        except ssl.CertificateError as exc:
            tls.close()
            if isinstance(exc, OSError):
                raise
            # Python 3.6 reports a hostname mismatch as a plain ValueError: raise the
            # SSLError later versions raise, so callers (and run_forever) see an OSError.
            raise ssl.SSLError("certificate verify failed: %s" % exc) from exc
        except BaseException:
            tls.close()
            raise
        return tls

    def _read_response(self, sock: socket.socket, proto: ClientProtocol, deadline: float) -> None:
        while proto.state is State.CONNECTING:
            _settimeout(sock, deadline)
            data = sock.recv(READ_SIZE)
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()

    def _watch(self, sock: Optional[socket.socket]) -> None:
        """Record the socket being connected so stop() can abort it; raise _Stopped if stopped."""
        with self._lock:
            self._pending_sock = sock
            if sock is not None and self._stop_event.is_set():
                raise _Stopped()

    def _stopped_check(self, cancellable: bool) -> None:
        if cancellable and self._stop_event.is_set():
            raise _Stopped()

    # ------------------------------------------------------------------ running

    @property
    def ws(self) -> Optional[WebSocket]:
        """The open connection of :meth:`run_forever`, or None while connecting or waiting."""
        return self._ws

    @property
    def connected(self) -> bool:
        ws = self._ws
        return ws is not None and not ws.closed

    def send(self, message: Any) -> None:
        """Send on the current connection, from any thread.

        Raises ConnectionClosed when there is none (connecting, waiting to
        reconnect, stopped) or it closes meanwhile.
        """
        ws = self._ws
        if ws is None:
            raise ConnectionClosedError(CLOSE_ABNORMAL, "", "not connected: %s is connecting, waiting to "
                                        "reconnect or stopped" % _display(self.url))
        ws.send(message)

    def run_forever(self, reconnect: bool = True) -> None:
        """Connect, call the callbacks, and reconnect (if ``reconnect``) until :meth:`stop`.

        Returns after :meth:`stop` (from any thread, a callback or a signal
        handler), on Ctrl+C, or, without ``reconnect``, when the first
        connection ends or fails. A :meth:`stop` made before it starts makes
        it return at once.
        """
        with self._lock:
            if self._running:
                raise RuntimeError("run_forever is already running for %r" % self)
            self._running = True
            self._run_thread = threading.current_thread()
        failures = 0
        try:
            while not self._stop_event.is_set():
                try:
                    ws = self._open(cancellable=True)
                except _Stopped:
                    break
                except (WebSocketError, OSError) as exc:
                    if self._stop_event.is_set():
                        break
                    logger.info("connecting to %s failed: %s", _display(self.url), exc)
                    self._report_error(exc)
                    if not reconnect:
                        break
                else:
                    opened_at = time.monotonic()
                    self._serve(ws)
                    if time.monotonic() - opened_at >= self.backoff_reset:
                        failures = 0
                    if not reconnect:
                        break
                delay = self.backoff_delay(failures)
                failures += 1
                logger.info("reconnecting to %s in %.2fs", _display(self.url), delay)
                if self._stop_event.wait(delay):
                    break
        except KeyboardInterrupt:
            logger.info("interrupted; stopping the client of %s", _display(self.url))
        finally:
            self._finish_run()

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts: full jitter."""
        ceiling = self.backoff_initial * float(self.backoff_factor) ** min(failures, 64)
        return random.uniform(0, min(self.backoff_max, ceiling))

    def _serve(self, ws: WebSocket) -> None:
        with self._lock:
            self._ws = ws
            stopping = self._stop_event.is_set()
        try:
            if stopping:
                ws.close(CLOSE_NORMAL)
            else:
                self._call(self.on_open)
                while True:
                    try:
                        # Bounded waits: a signal that lands just before a blocking
                        # recv() would otherwise wait for the next byte to be handled.
                        message = ws.recv(timeout=_SIGNAL_CHECK_INTERVAL)
                    except TimeoutError:
                        continue
                    except ConnectionClosed:
                        break
                    self._call(self.on_message, message)
        finally:
            with self._lock:
                self._ws = None
            if not ws.closed:
                ws.close(CLOSE_NORMAL)
        code = ws.close_code
        self._call(self.on_close, code if code is not None else CLOSE_ABNORMAL, ws.close_reason or "")

    def _call(self, callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception as exc:
            logger.exception("%s callback of %r failed", getattr(callback, "__name__", "a"), self)
            self._report_error(exc)

    def _report_error(self, exc: BaseException) -> None:
        try:
            self.on_error(exc)
        except Exception:
            logger.exception("on_error callback of %r failed", self)

    def _finish_run(self) -> None:
        with self._lock:
            ws = self._ws
            self._ws = None
        if ws is not None:
            ws.close(CLOSE_NORMAL)
        for closer in list(self._closers):
            closer.join(self.options.close_timeout + 1.0)
        with self._lock:
            self._closers = [closer for closer in self._closers if closer.is_alive()]
            self._pending_sock = None
            self._running = False
            self._run_thread = None
            self._stop_event.clear()

    def stop(self) -> None:
        """End :meth:`run_forever`: abort a connection attempt, cut a backoff wait short, or close
        the open connection with 1000. Safe from any thread, a callback or a signal handler."""
        if threading.current_thread() is self._run_thread:
            # A callback, or a signal handler interrupting run_forever's thread: that thread may
            # hold locks stopping needs (the connection's; even the stop event's own, a plain
            # Lock while it is in wait()), so a helper thread stops, and run_forever joins it.
            helper = threading.Thread(target=self._stop_now, name="simplews-client-stop", daemon=True)
            with self._lock:
                self._closers.append(helper)
            helper.start()
            return
        self._stop_now()

    def _stop_now(self) -> None:
        with self._lock:
            self._stop_event.set()
            sock = self._pending_sock
            ws = self._ws
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        if ws is not None:
            ws.close(CLOSE_NORMAL)

    def run_in_thread(self, reconnect: bool = True) -> threading.Thread:
        """Start :meth:`run_forever` in a daemon thread and return it (``stop()`` then ``join()``)."""
        thread = threading.Thread(target=self.run_forever, args=(reconnect,),
                                  name="simplews-client %s" % _display(self.url), daemon=True)
        thread.start()
        return thread

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, _display(self.url))


def connect(uri: str, *, timeout: Optional[float] = None, subprotocols: Optional[Sequence[str]] = None,
            headers: HeadersLike = None, origin: Optional[str] = None, ssl_context: Any = None,
            **options: Any) -> WebSocket:
    """Open a WebSocket connection to ``uri`` (ws:// or wss://) and return it::

        with simplews.connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))

    ``timeout`` is the opening handshake's deadline (TCP, proxy, TLS and
    HTTP); it is another name for ``open_timeout`` (default 10 seconds), and
    wins when both are given.
    Also accepts ``proxy``, ``max_redirects``, ``server_hostname`` and the
    connection options; see :class:`SimpleWSClient`.
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
