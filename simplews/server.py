"""The threaded server: an accept loop and one thread per connection.

The connection's thread performs the handshake, then runs the handler, which
reads the socket itself (no reader thread). One shared housekeeping thread per
server sends keepalive pings and answers pings on connections whose handler is
busy. Protocol rules live in :mod:`simplews.protocol`; this module moves
sockets and threads.
"""

import errno
import logging
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from . import http11
from .connection import HANDSHAKE_READ_SIZE, READ_SIZE, Options, WebSocket, _set_write_timeout, _wait_readable
from .exceptions import ConnectionClosed
from .frames import CLOSE_GOING_AWAY, CLOSE_INTERNAL_ERROR
from .housekeeping import Housekeeper
from .protocol import Data, ServerProtocol
from .workers import ScalingMixin

__all__ = ["SimpleWSServer", "WebSocketHandler"]

logger = logging.getLogger("simplews")

# Open connections per server unless ``max_connections`` says otherwise. Threaded:
# each connection is an OS thread (its stack's touched pages, ~100 KiB RSS, plus
# socket buffers, plus up to max_queue x max_message_size of unread messages).
DEFAULT_MAX_CONNECTIONS = 512
RETRY_AFTER = "5"  # seconds, in the Retry-After header of a 503 "too many connections"

HandlerFunc = Callable[[WebSocket], Any]
HTTPResponse = Tuple[int, Any, Union[str, bytes]]
ProcessRequest = Callable[[str, http11.Headers], Optional[HTTPResponse]]


class WebSocketHandler(object):
    """Event-style handler: subclass it and override what you need.

    One instance serves every connection, so keep per-connection state on the
    ``ws`` object or in a dict keyed by it. Each method runs on that
    connection's thread (threaded mode).
    """

    def on_open(self, ws: WebSocket) -> None:
        """The handshake completed."""

    def on_message(self, ws: WebSocket, message: Data) -> None:
        """A message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """The connection closed (``code`` 1006 if it dropped without a close frame)."""


class SimpleWSServer(ScalingMixin):
    """A WebSocket server, one thread per connection::

        def echo(ws):
            for message in ws:
                ws.send(message)

        SimpleWSServer(echo, port=8765).serve_forever()

    ``handler`` is a callable taking a :class:`~simplews.WebSocket` or a
    :class:`WebSocketHandler`. The socket is bound when the server is created
    (``port=0`` picks a free port: see :attr:`port`). Options: see
    :class:`~simplews.connection.Options`, plus ``ssl_context``,
    ``subprotocols`` / ``select_subprotocol``, ``origins``,
    ``process_request(path, headers)``, ``extra_headers`` and ``backlog``.

    ``max_connections`` caps the open WebSocket connections (default
    :data:`DEFAULT_MAX_CONNECTIONS`, 512, in this mode: every connection is a
    thread); beyond it a new handshake is answered ``503 Service Unavailable``
    with ``Retry-After``, and at most as many handshakes (64 if that is more)
    may be in progress at once: more connections are closed at accept.
    ``max_connections_per_ip`` (default None: no limit) caps the open
    connections from one remote address the same way. Both count per process
    (with ``workers=N``, per worker). See docs/SECURITY.rst.

    ``trusted_proxies`` (default None: nobody) lists the reverse proxies, as
    IP addresses and networks (``["127.0.0.1", "10.0.0.0/8", "::1"]``), whose
    ``X-Forwarded-For`` / ``X-Real-IP`` headers are believed: a connection
    from one of them gets the client's address as ``ws.remote_address``
    (``(host, 0)``; also in logs and for ``max_connections_per_ip``), its TCP
    peer stays in ``ws.peer_address``. See :mod:`simplews.forwarded` and
    docs/REVERSE_PROXY.rst.

    ``mode="selectors"`` serves every connection from one thread instead
    (needs a :class:`WebSocketHandler`; see :mod:`simplews.selector`).

    ``workers=N`` (POSIX) forks N processes sharing the listening socket
    (see :mod:`simplews.workers`); ``broker=`` routes :meth:`broadcast` and
    :meth:`publish` through a :class:`~simplews.broker.Broker` (default with
    workers > 1: a :class:`~simplews.broker.LocalBroker`). See docs/SCALING.rst.
    """

    def __new__(cls, *args: Any, mode: str = "threaded", **kwargs: Any) -> "SimpleWSServer":
        if mode == "selectors":
            from .selector import SelectorServer
            if not issubclass(cls, SelectorServer):
                if cls is not SimpleWSServer:
                    raise TypeError("mode='selectors': subclass simplews.selector.SelectorServer instead")
                cls = SelectorServer
        elif mode != "threaded":
            raise ValueError("mode must be 'threaded' or 'selectors', not %r" % (mode,))
        return super().__new__(cls)

    def __init__(self, handler: Union[HandlerFunc, WebSocketHandler], host: Optional[str] = "127.0.0.1",
                 port: int = 8765, *, ssl_context: Any = None, subprotocols: Optional[Sequence[str]] = None,
                 select_subprotocol: Optional[Callable[[List[str]], Optional[str]]] = None,
                 origins: Optional[Sequence[Optional[str]]] = None,
                 process_request: Optional[ProcessRequest] = None,
                 extra_headers: Iterable[Tuple[str, str]] = (), backlog: int = 128,
                 mode: str = "threaded", max_connections: Optional[int] = DEFAULT_MAX_CONNECTIONS,
                 max_connections_per_ip: Optional[int] = None, **options: Any) -> None:
        if not (isinstance(handler, WebSocketHandler) or callable(handler)):
            raise TypeError("handler must be a callable taking a WebSocket or a WebSocketHandler instance")
        self._configure(handler, ssl_context, subprotocols, select_subprotocol, origins, process_request,
                        extra_headers, options)
        self._configure_limits(max_connections, max_connections_per_ip)
        # accepted socket -> the socket its handshake uses now (the TLS one after wrapping)
        self._handshaking = {}  # type: Dict[socket.socket, socket.socket]
        self._threads = set()  # type: Set[threading.Thread]
        self._housekeeper = Housekeeper("simplews-housekeeping")
        self._shutdown_request = False
        self._serving = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._closed = False
        # True while _accept_loop runs: it has the listener and the wake-up pair in its selector,
        # and only it may close them (a socket closed under epoll_wait can swallow the wake-up)
        self._accepting = False
        self._loop_thread = None  # type: Optional[threading.Thread]  # the one in serve_forever
        self._close_after_loop = False  # shutdown() was called on that thread (a signal handler)
        self._all_closed = threading.Event()
        self._bind(host, port, backlog)

    def _configure(self, handler: Any, ssl_context: Any, subprotocols: Optional[Sequence[str]],
                   select_subprotocol: Optional[Callable[[List[str]], Optional[str]]],
                   origins: Optional[Sequence[Optional[str]]], process_request: Optional[ProcessRequest],
                   extra_headers: Iterable[Tuple[str, str]], options: Dict[str, Any]) -> None:
        """The settings both modes share."""
        workers = options.pop("workers", 1)
        broker = options.pop("broker", None)
        trusted_proxies = options.pop("trusted_proxies", None)
        self.trusted_proxies = None  # type: Any  # a forwarded.TrustedProxies when given
        if trusted_proxies is not None:
            from .forwarded import TrustedProxies  # imports ipaddress: only for those who use it
            self.trusted_proxies = TrustedProxies(trusted_proxies)
        self.handler = handler
        self.options = Options(**options)
        self.ssl_context = ssl_context
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.select_subprotocol = select_subprotocol
        self.origins = list(origins) if origins is not None else None
        self.process_request = process_request
        self.extra_headers = [("Server", _server_header())] + list(extra_headers)
        self.connections = set()  # type: Set[Any]
        self._lock = threading.Lock()
        self._configure_scaling(workers, broker)

    def _configure_limits(self, max_connections: Optional[int], max_connections_per_ip: Optional[int]) -> None:
        """Connection limits (both modes): checked when a handshake is about to be accepted."""
        for name, value in (("max_connections", max_connections),
                            ("max_connections_per_ip", max_connections_per_ip)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError("%s must be a positive int or None, not %r" % (name, value))
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self._slots = 0  # accepted WebSocket connections not yet ended
        self._slots_per_ip = {}  # type: Dict[str, int]

    def _take_slot(self, address: Any) -> Optional[str]:
        """Reserve a connection slot: None when reserved, else why not (takes ``_lock``)."""
        ip = _address_ip(address)
        with self._lock:
            if self.max_connections is not None and self._slots >= self.max_connections:
                return "max_connections=%d reached" % self.max_connections
            per_ip = self._slots_per_ip.get(ip, 0)
            if self.max_connections_per_ip is not None and per_ip >= self.max_connections_per_ip:
                return "max_connections_per_ip=%d reached for %s" % (self.max_connections_per_ip, ip)
            self._slots += 1
            self._slots_per_ip[ip] = per_ip + 1
        return None

    def _client_address(self, address: Any, headers: http11.Headers) -> Any:
        """The client's address: ``address`` (the TCP peer), or the one a trusted proxy forwarded.

        Called once the request head is read, before :meth:`_take_slot`, so
        ``max_connections_per_ip`` counts clients, not proxies.
        """
        if self.trusted_proxies is None:
            return address
        from .forwarded import forwarded_address
        client = forwarded_address(address, headers, self.trusted_proxies)
        if client is not address:
            logger.debug("%s: client %s (forwarded by a trusted proxy)", _format_address(address),
                         _format_address(client))
        return client

    def _release_slot(self, address: Any) -> None:
        ip = _address_ip(address)
        with self._lock:
            self._slots -= 1
            left = self._slots_per_ip.get(ip, 1) - 1
            if left > 0:
                self._slots_per_ip[ip] = left
            else:
                self._slots_per_ip.pop(ip, None)

    def _bind(self, host: Optional[str], port: int, backlog: int) -> None:
        """The listening socket and the wake-up pair of the accept loop."""
        self._socket = _listen(host, port, backlog)
        self._address = self._socket.getsockname()  # type: Tuple[Any, ...]
        try:
            self._wake_r, self._wake_w = socket.socketpair()
        except OSError:
            self._socket.close()
            raise
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # ------------------------------------------------------------------ addresses

    @property
    def address(self) -> Tuple[Any, ...]:
        """The bound (host, port, ...) — known from construction on, even for port=0."""
        return self._address

    @property
    def host(self) -> str:
        return self.address[0]  # type: ignore[no-any-return]

    @property
    def port(self) -> int:
        return self.address[1]  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d/" % ("wss" if self.ssl_context is not None else "ws", host, self.port)

    # ------------------------------------------------------------------ running

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` (or Ctrl+C, which shuts down and returns)."""
        if self.workers > 1 and self._worker_index is None:
            return self._supervise()
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is closed")
            self._accepting = True
            self._loop_thread = threading.current_thread()
        self._stopped.clear()
        self._serving.set()
        self._log_listening()
        interrupted = False
        try:
            self._accept_loop()
        except KeyboardInterrupt:
            logger.info("interrupted; shutting down")
            self._shutdown_request = True
            interrupted = True
        finally:
            with self._lock:
                self._accepting = False
                self._loop_thread = None
                left_to_us = self._closed  # a shutdown() that did not wait for this loop (see _close_all_now)
            if left_to_us:
                self._close_loop_sockets()
            self._serving.clear()
            self._stopped.set()
        if interrupted or self._close_after_loop:  # otherwise shutdown() is closing everything
            self._close_everything()

    def _accept_loop(self) -> None:
        listener = self._socket
        listener.setblocking(False)
        import selectors
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._shutdown_request:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        _drain_wakeup(self._wake_r)
                    elif not self._shutdown_request:
                        self._accept(listener)

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a burst of connects: take what is there, then select again
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("cannot accept a connection: %s; pausing accepts for 100 ms", exc)
                    time.sleep(0.1)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                if self._shutdown_request:  # shutdown() from a handler closed the listener under us
                    return
                raise
            self._start_connection(sock, address)

    def _start_connection(self, sock: socket.socket, address: Any) -> None:
        if self._shutdown_request:  # accepted as shutdown() began: no thread it would not join
            _close_quietly(sock)
            return
        if self.max_connections is not None and len(self._handshaking) >= _handshake_limit(self.max_connections):
            logger.debug("%s: %d handshakes in progress already; closing the connection",
                         _format_address(address), len(self._handshaking))
            _close_quietly(sock)
            return
        local_address = self._prepare_plain(sock) if self.ssl_context is None else None
        thread = threading.Thread(target=self._run_connection, args=(sock, address, local_address),
                                  name="simplews-%s" % (_format_address(address),), daemon=True)
        with self._lock:
            self._threads.add(thread)
            self._handshaking[sock] = sock
        thread.start()

    def _prepare_plain(self, sock: socket.socket) -> Any:
        """Apply ``write_timeout`` to a plain socket; its local address, None if it failed.

        §perf: done here, on the accepting thread. In the connection's thread these
        calls reach deep enough in C (setsockopt parsing a buffer, getsockname) to touch
        one more 4 KiB page of its stack, resident for the connection's whole life:
        about a fifth of an idle connection's memory.
        """
        try:
            _set_write_timeout(sock, self.options.write_timeout)
            return sock.getsockname()
        except OSError:  # the client is gone already: the handshake will notice
            return None

    def _run_connection(self, sock: socket.socket, address: Any, local_address: Any = None) -> None:
        ws = None
        try:
            ws = self._handshake(sock, address, local_address)
        except Exception:
            logger.exception("handshake with %s failed unexpectedly", _format_address(address))
        finally:
            with self._lock:
                self._handshaking.pop(sock, None)
                late = ws is not None and self._shutdown_request
                if ws is not None and not late:
                    self.connections.add(ws)
        if late:
            ws.close(CLOSE_GOING_AWAY, "server shutting down")  # type: ignore[union-attr]
        client = ws.remote_address if ws is not None else address  # its slot's key, before the handler runs
        try:
            if ws is None:
                sock.close()
            elif not ws.closed:
                self._run_handler(ws)
        finally:
            if ws is not None:
                with self._lock:
                    self.connections.discard(ws)
                self._release_slot(client)
                self._drop_subscriptions(ws)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _run_handler(self, ws: WebSocket) -> None:
        _call_handler(self.handler, ws)

    # ------------------------------------------------------------------ handshake

    def _handshake(self, sock: socket.socket, address: Any, local_address: Any = None) -> Optional[WebSocket]:
        """Run the opening handshake; a WebSocket on success, None when rejected or failed.

        ``local_address``: given when :meth:`_prepare_plain` has set the socket up.
        """
        peer = _format_address(address)
        options = self.options
        deadline = time.monotonic() + options.open_timeout
        accepted = sock  # its key in self._handshaking
        proto = None  # type: Optional[ServerProtocol]
        client = address  # the TCP peer, or the client a trusted proxy forwarded (see _client_address)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        plain = self.ssl_context is None
        try:
            if not plain:
                sock = self._tls_handshake(sock, deadline)
            proto = ServerProtocol(max_message_size=options.max_message_size, compression=options.compression,
                                   origins=self.origins, subprotocols=self.subprotocols,
                                   select_subprotocol=self.select_subprotocol, extra_headers=self.extra_headers)
            if not self._read_request(sock, proto, deadline, peer):
                _close_quietly(sock)
                return None
            if proto.request is not None:
                client = self._client_address(address, proto.request.headers)
                if client is not address:
                    peer = "%s via %s" % (_format_address(client), peer)
            if proto.handshake_exc is None:
                response = self._answer(proto, peer, client)
            else:
                response = proto.data_to_send()
            if proto.state.name == "OPEN":
                with self._lock:  # accepted: from now on shutdown closes it with 1001, never aborts it
                    self._handshaking.pop(accepted, None)
            if proto.state.name != "OPEN" or not plain:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
            # else §perf: a 101 response (well under the empty send buffer of a new
            # connection) never blocks; the socket stays blocking as WebSocket wants it.
            sock.sendall(response)
        except (socket.timeout, TimeoutError):
            logger.info("%s: opening handshake timed out after %ss", peer, options.open_timeout)
            _close_quietly(sock)
            if proto is not None and proto.state.name == "OPEN":
                self._release_slot(client)
            return None
        except OSError as exc:
            logger.info("%s: connection failed during the handshake: %s", peer, exc)
            _close_quietly(sock)
            if proto is not None and proto.state.name == "OPEN":
                self._release_slot(client)
            return None
        if proto.handshake_exc is not None:
            rejection = proto.handshake_exc
            logger.info("%s: rejected handshake: HTTP %d: %s", peer, rejection.status, rejection)
        if proto.state.name != "OPEN":
            _lingering_close(sock)
            return None
        request = proto.request
        assert request is not None
        logger.debug("%s: connection open on %s", peer, request.target)
        # its connection slot is released when _run_connection ends
        return WebSocket(sock, proto, options, path=request.target, request_headers=request.headers,
                         response_headers=proto.response_headers, subprotocol=proto.subprotocol,
                         remote_address=client, peer_address=address, housekeeper=self._housekeeper,
                         local_address=local_address, write_timeout_set=plain and local_address is not None)

    def _tls_handshake(self, sock: socket.socket, deadline: float) -> socket.socket:
        tls = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._lock:  # wrap_socket took over the fd: shutdown must now abort ``tls``
            if sock in self._handshaking:
                self._handshaking[sock] = tls
            stopping = self._shutdown_request
        try:
            if stopping:
                raise ConnectionAbortedError("server shutting down")
            tls.settimeout(max(deadline - time.monotonic(), 0.001))
            tls.do_handshake()
        except BaseException as exc:
            if _is_tls_alert(exc):
                # OpenSSL sent the client an alert naming the problem (e.g. "certificate
                # required"): close without a reset so the alert is not lost to the
                # bytes the client already sent after its side of the handshake.
                _lingering_close(socket.socket(fileno=tls.detach()))
            else:
                tls.close()  # wrap_socket took over the fd: closing ``sock`` would not close it
            raise
        return tls  # type: ignore[no-any-return]

    def _read_request(self, sock: socket.socket, proto: ServerProtocol, deadline: float, peer: str) -> bool:
        """Read until the request head is complete (or rejected); False if the peer went away.

        A plain socket stays in blocking mode (what the WebSocket uses next):
        each read waits with poll() up to the deadline, then takes what came.
        """
        plain = not hasattr(sock, "pending")
        if plain and sock.gettimeout() is not None:
            sock.settimeout(None)
        while proto.request is None and proto.handshake_exc is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout()
            if plain:
                if not _wait_readable(sock, remaining):
                    raise socket.timeout()
            else:
                sock.settimeout(remaining)
            data = sock.recv(HANDSHAKE_READ_SIZE)
            if not data:
                logger.info("%s: connection closed before the handshake completed", peer)
                return False
            proto.receive_data(data)
        return True

    def _answer(self, proto: ServerProtocol, peer: str, address: Any = None) -> bytes:
        """The response: from ``process_request`` if it returns one, else the upgrade.

        An accepted upgrade holds a connection slot (see ``max_connections``):
        the caller releases it with :meth:`_release_slot` when the connection
        ends; without a free slot the answer is 503.
        """
        request = proto.request
        assert request is not None
        if self.process_request is not None:
            try:
                result = self.process_request(request.target, request.headers)
            except Exception:
                logger.exception("process_request failed for %s %s; answering 500", peer, request.target)
                return proto.reject(500, (), b"Internal Server Error\n")
            if result is not None:
                status, headers, body = _normalize_response(result)
                logger.info("%s: %s %s answered by process_request: HTTP %d", peer, request.method,
                            request.target, status)
                return proto.reject(status, headers, body)
        refused = self._take_slot(address)
        if refused is not None:
            logger.info("%s: %s %s refused: %s; answering 503", peer, request.method, request.target, refused)
            return proto.reject(503, [("Retry-After", RETRY_AFTER)],
                                b"Too many connections; retry later.\n")
        try:
            response = proto.accept()
        except BaseException:
            self._release_slot(address)
            raise
        if proto.state.name != "OPEN":
            self._release_slot(address)
        return response

    # ------------------------------------------------------------------ broadcast and shutdown

    def _broadcast_local(self, message: Data) -> int:
        """Send ``message`` to every open connection; returns how many it reached.

        A slow client holds it up at most its ``write_timeout`` (then that
        connection is closed); closed connections are skipped.
        """
        with self._lock:
            targets = list(self.connections)
        sent = 0
        for ws in targets:
            try:
                ws.send(message)
                sent += 1
            except ConnectionClosed:
                continue
        return sent

    def shutdown(self) -> None:
        """Stop accepting, close every connection with 1001, join the threads, return.

        Callable from any thread, including a handler's. From a signal handler
        that interrupts ``serve_forever`` (e.g. on SIGTERM) it returns at once,
        and ``serve_forever`` closes everything before it returns.
        """
        if threading.current_thread() is self._loop_thread:
            # Take no lock here: the signal may have interrupted this thread holding one.
            self._close_after_loop = True
            self._shutdown_request = True
            self._wake_accept_loop()
            return
        self._shutdown_request = True
        self._wake_accept_loop()
        if self._serving.is_set() and not _called_from(self._threads_snapshot()):
            while not self._stopped.wait(1.0):
                self._wake_accept_loop()  # belt and braces: a lost wake-up must not hang shutdown()
        self._close_everything()

    def _wake_accept_loop(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:  # full (it is awake anyway) or closed (it has ended)
            pass

    def _threads_snapshot(self) -> List[threading.Thread]:
        with self._lock:
            return list(self._threads)

    def _close_everything(self) -> None:
        with self._lock:
            if self._closed:
                first = False
            else:
                first = self._closed = True
        if not first:
            self._all_closed.wait()  # a concurrent caller is closing: return when it is done
            return
        try:
            self._close_all_now()
        finally:
            self._all_closed.set()

    def _close_all_now(self) -> None:
        with self._lock:
            pending = list(self._handshaking.values())
            live = list(self.connections)
            loop_owns_sockets = self._accepting  # then the loop closes them as it ends (serve_forever)
        if not loop_owns_sockets:
            _close_quietly(self._socket)
        for sock in pending:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._close_connections(live)
        self._housekeeper.stop()
        self._join_threads()
        if not loop_owns_sockets:
            self._close_loop_sockets()
        logger.info("server on port %d stopped", self.port)

    def _close_loop_sockets(self) -> None:
        _close_quietly(self._socket)
        _close_quietly(self._wake_r)
        _close_quietly(self._wake_w)

    def _close_connections(self, live: List[WebSocket]) -> None:
        """Close handshakes run in parallel: send every 1001 first, then wait once."""
        for ws in live:
            try:
                with ws._lock:
                    ws._write(ws._proto.send_close(CLOSE_GOING_AWAY, "server shutting down"))
            except (ConnectionClosed, ValueError):
                pass
        deadline = time.monotonic() + self.options.close_timeout
        for ws in live:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                ws._wait_for(lambda ws=ws: ws._sock_closed, remaining,  # type: ignore[misc]
                             raise_closed=False, closing=True)
            if not ws._sock_closed:
                ws.abort()

    def _join_threads(self) -> None:
        current = threading.current_thread()
        deadline = time.monotonic() + self.options.close_timeout + 1.0
        for thread in self._threads_snapshot():
            if thread is current:
                continue
            thread.join(max(deadline - time.monotonic(), 0.01))
            if thread.is_alive():
                logger.warning("handler thread %s did not finish after shutdown", thread.name)

    def server_close(self) -> None:
        """Release the listening socket without serving (after creation or after shutdown)."""
        self._shutdown_request = True
        self._close_everything()

    def __enter__(self) -> "SimpleWSServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def _log_listening(self) -> None:
        host = self.host
        message = "listening on %s" % self.url
        if host in ("127.0.0.1", "::1") or host.startswith("127."):
            message += " (loopback only; pass host=\"0.0.0.0\" or host=\"::\" to listen on all interfaces)"
        logger.info(message)

    def __repr__(self) -> str:
        where = self.url if not self._closed else "closed"
        return "<SimpleWSServer %s, %d connections>" % (where, len(self.connections))


# ---------------------------------------------------------------------- helpers

def _call_handler(handler: Union[HandlerFunc, WebSocketHandler], ws: WebSocket) -> None:
    """Run ``handler`` on an open connection until it ends, then close it
    (also used by :mod:`simplews.integration`)."""
    try:
        if isinstance(handler, WebSocketHandler):
            handler.on_open(ws)
            for message in ws:
                handler.on_message(ws, message)
        else:
            handler(ws)
    except ConnectionClosed as exc:
        logger.debug("%s: handler stopped: %s", ws._peer(), exc)
    except Exception:
        logger.exception("handler failed on %s %s; closing with 1011", ws._peer(), ws.path)
        ws.close(CLOSE_INTERNAL_ERROR, "internal server error")
    finally:
        ws.close()
        if isinstance(handler, WebSocketHandler):
            try:
                handler.on_close(ws, ws.close_code or 1006, ws.close_reason or "")
            except Exception:
                logger.exception("on_close failed on %s", ws._peer())


def _server_header() -> str:
    from . import __version__
    return "simplews/%s" % __version__


def _listen(host: Optional[str], port: int, backlog: int) -> socket.socket:
    """A listening socket for ``host`` (IPv4 or IPv6, "" or None: all interfaces)."""
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    if not host:  # prefer a dual-stack IPv6 socket for "all interfaces"
        infos.sort(key=lambda info: info[0] != socket.AF_INET6)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _is_windows():
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and not host and hasattr(socket, "IPV6_V6ONLY"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def _is_windows() -> bool:
    import sys
    return sys.platform == "win32"


def _normalize_response(result: Any) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """``process_request``'s answer as (status, header list, body bytes)."""
    if not isinstance(result, tuple) or len(result) != 3:
        raise TypeError("process_request must return None or (status, headers, body), not %r" % (result,))
    status, headers, body = result
    if isinstance(headers, Mapping):
        headers = list(headers.items())
    elif isinstance(headers, http11.Headers):
        headers = headers.items()
    if isinstance(body, str):
        body = body.encode("utf-8")
    return int(status), list(headers or ()), bytes(body or b"")


def _lingering_close(sock: socket.socket) -> None:
    """Close after an HTTP answer without losing it to a TCP reset: stop writing,
    read what the client still sends for a moment, then close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        received = 0
        while received < READ_SIZE * 4:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait_readable(sock, remaining):
                break
            data = sock.recv(READ_SIZE)
            if not data:
                break
            received += len(data)
    except OSError:
        pass
    _close_quietly(sock)


def _is_tls_alert(exc: BaseException) -> bool:
    """A TLS handshake failure after which OpenSSL has sent the peer an alert."""
    ssl = sys.modules.get("ssl")
    return (ssl is not None and isinstance(exc, ssl.SSLError)
            and not isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError,
                                     ssl.SSLWantReadError, ssl.SSLWantWriteError)))


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _drain_wakeup(sock: socket.socket) -> None:
    try:
        while sock.recv(512):
            pass
    except OSError:
        pass


def _called_from(threads: List[threading.Thread]) -> bool:
    return threading.current_thread() in threads


def _handshake_limit(max_connections: int) -> int:
    """How many handshakes may be in progress at once (more are closed at accept)."""
    return max(max_connections, 64)


def _address_ip(address: Any) -> str:
    """The host part of a remote address (the key of ``max_connections_per_ip``)."""
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return ("[%s]:%s" if ":" in host else "%s:%s") % (host, address[1])
    return str(address)
