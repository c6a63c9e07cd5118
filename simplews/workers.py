"""Pre-forked worker processes sharing one listening socket.

``SimpleWSServer(..., workers=N)`` binds the listening socket in the parent
when the server is created; ``serve_forever()`` then forks N workers that
inherit it and each run the ordinary accept loop (threaded or selectors) on
it, while the parent only supervises:

* a worker that dies is restarted, with a log line; more than
  :data:`RESTART_BURST` deaths within :data:`RESTART_WINDOW` seconds delay each
  further restart by :data:`RESTART_DELAY` seconds (a crash-loop guard);
* ``shutdown()``, SIGTERM or SIGINT (when ``serve_forever`` runs on the main
  thread) send SIGTERM to every worker, which closes its clients with 1001 and
  exits; a worker still alive after ``close_timeout`` + :data:`KILL_GRACE`
  seconds is killed; ``serve_forever`` returns when all are reaped;
* with a :class:`~simplews.broker.LocalBroker` (the default broker when
  workers > 1) the parent is the hub: it reads each worker's published
  messages from its socket pair and writes them to every worker, in order.

Workers are forked before the parent starts any thread, and each worker
re-creates its locks, wake-up sockets and housekeeper. A worker whose parent
disappears (its lifeline pipe reaches EOF) shuts itself down. POSIX only.
"""

import collections
import errno
import logging
import os
import selectors
import signal
import socket
import threading
import time
from typing import Any, Deque, Dict, Optional, Set

from .broker import FrameReader, LocalBroker

__all__ = ["supervise", "check_workers", "WORKER_HEADER"]

logger = logging.getLogger("simplews")

WORKER_HEADER = "X-Simplews-Worker"  # response header carrying the worker's pid
RESTART_WINDOW = 60.0
RESTART_BURST = 10
RESTART_DELAY = 5.0
KILL_GRACE = 5.0
HUB_BUFFER_LIMIT = 64 * 1024 * 1024  # bytes waiting for one worker before it is deemed stuck and restarted
POLL_INTERVAL = 0.2


def check_workers(workers: Any) -> int:
    """Validate the ``workers`` option."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError("workers must be a positive int, not %r" % (workers,))
    if workers > 1 and not hasattr(os, "fork"):
        raise RuntimeError("workers > 1 needs os.fork(), which this platform (%s) lacks: run one "
                           "process per port behind a load balancer instead" % os.name)
    return workers


class _Worker(object):
    def __init__(self, index: int) -> None:
        self.index = index
        self.pid = 0
        self.link = None  # type: Optional[socket.socket]  # parent's end of the hub link
        self.reader = FrameReader()
        self.out = bytearray()
        self.started = 0.0
        self.restart_at = 0.0  # when a dead worker may be started again


class Supervisor(object):
    def __init__(self, server: Any) -> None:
        self.server = server
        self.count = server.workers
        self.broker = server.broker
        self.hub = isinstance(self.broker, LocalBroker)
        self.workers = [_Worker(i) for i in range(self.count)]
        self.deaths = collections.deque()  # type: Deque[float]
        self.selector = None  # type: Any
        self.lifeline_r, self.lifeline_w = os.pipe()
        self.stopping = False
        self.parent_pid = os.getpid()

    # ------------------------------------------------------------------ parent

    def run(self) -> None:
        server = self.server
        old_handlers = self._install_signals()
        self.selector = selectors.DefaultSelector()
        try:
            self.selector.register(server._wake_r, selectors.EVENT_READ, None)
            for worker in self.workers:
                self._spawn(worker)
            logger.info("supervising %d workers (pids %s) on %s", self.count,
                        ", ".join(str(w.pid) for w in self.workers), server.url)
            while not server._shutdown_request:
                self._step(POLL_INTERVAL)
                self._reap_and_restart()
            self._stop_all()
        finally:
            self._restore_signals(old_handlers)
            for worker in self.workers:
                self._close_link(worker)
            self.selector.close()
            for fd in (self.lifeline_r, self.lifeline_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _install_signals(self) -> Dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        server = self.server

        def stop(signum: int, frame: Any) -> None:
            server._shutdown_request = True
            try:
                server._wake_w.send(b"x")
            except OSError:
                pass

        old = {}  # type: Dict[int, Any]
        for signum in (signal.SIGTERM, signal.SIGINT):
            old[signum] = signal.signal(signum, stop)
        return old

    def _restore_signals(self, old: Dict[int, Any]) -> None:
        for signum, handler in old.items():
            signal.signal(signum, handler)

    def _step(self, timeout: float) -> None:
        try:
            events = self.selector.select(timeout)
        except InterruptedError:
            return
        for key, mask in events:
            worker = key.data
            if worker is None:
                try:
                    while self.server._wake_r.recv(512):
                        pass
                except OSError:
                    pass
                continue
            if mask & selectors.EVENT_READ:
                self._hub_read(worker)
            if mask & selectors.EVENT_WRITE and worker.link is not None:
                self._hub_flush(worker)

    def _hub_read(self, worker: _Worker) -> None:
        link = worker.link
        assert link is not None
        try:
            data = link.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker is gone; its restart brings a new link
            self._close_link(worker)
            return
        for frame in worker.reader.feed(data):
            for target in self.workers:
                if target.link is not None:
                    target.out += frame
                    self._hub_flush(target)

    def _hub_flush(self, worker: _Worker) -> None:
        link = worker.link
        if link is None:
            return
        if worker.out:
            try:
                sent = link.send(worker.out)
                del worker.out[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._close_link(worker)
                return
        if len(worker.out) > HUB_BUFFER_LIMIT:
            logger.error("worker %d (pid %d) has %d bytes of broker messages unread; killing it so it is "
                         "restarted", worker.index, worker.pid, len(worker.out))
            self._close_link(worker)
            _kill(worker.pid, signal.SIGKILL)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if worker.out else 0)
        try:
            self.selector.modify(link, events, worker)
        except (KeyError, ValueError):
            pass

    def _close_link(self, worker: _Worker) -> None:
        link = worker.link
        if link is None:
            return
        worker.link = None
        worker.out = bytearray()
        try:
            self.selector.unregister(link)
        except (KeyError, ValueError, AttributeError):
            pass
        link.close()

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.pid:
                status = _reap(worker.pid)
                if status is None:
                    continue
                self._close_link(worker)
                self.deaths.append(now)
                while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
                    self.deaths.popleft()
                delay = RESTART_DELAY if len(self.deaths) > RESTART_BURST else 0.0
                worker.restart_at = now + delay
                logger.warning("worker %d (pid %d) %s; restarting it%s", worker.index, worker.pid,
                               _describe(status), " in %.0f s (too many restarts)" % delay if delay else "")
                worker.pid = 0
            if not worker.pid and now >= worker.restart_at and not self.server._shutdown_request:
                self._spawn(worker)
                logger.info("worker %d restarted as pid %d", worker.index, worker.pid)

    def _spawn(self, worker: _Worker) -> None:
        child_link = None
        if self.hub:
            parent_link, child_link = socket.socketpair()
            parent_link.setblocking(False)
            worker.link = parent_link
            worker.reader = FrameReader()
            worker.out = bytearray()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                code = self._child(worker, child_link)
            except BaseException:
                logger.exception("worker %d failed", worker.index)
            finally:
                os._exit(code)
        worker.pid = pid
        worker.started = time.monotonic()
        if child_link is not None:
            child_link.close()
            assert worker.link is not None
            self.selector.register(worker.link, selectors.EVENT_READ, worker)

    def _stop_all(self) -> None:
        live = [w for w in self.workers if w.pid]
        logger.info("stopping %d workers", len(live))
        for worker in live:
            _kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.server.options.close_timeout + KILL_GRACE
        while live:
            self._step(0.05)  # keep relaying: workers may publish while closing
            live = [w for w in live if _reap(w.pid) is None]
            if live and time.monotonic() > deadline:
                for worker in live:
                    logger.warning("worker %d (pid %d) did not stop; killing it", worker.index, worker.pid)
                    _kill(worker.pid, signal.SIGKILL)
                for worker in live:
                    _wait(worker.pid)
                live = []
        for worker in self.workers:
            worker.pid = 0

    # ------------------------------------------------------------------ worker

    def _child(self, me: _Worker, link: Optional[socket.socket]) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the parent, which stops us
        server = self.server
        self.selector.close()
        for worker in self.workers:  # the parent's ends of every link are not ours
            if worker.link is not None:
                worker.link.close()
                worker.link = None
        os.close(self.lifeline_w)
        server._become_worker(me.index)

        def stop(signum: int, frame: Any) -> None:
            server._shutdown_request = True
            try:
                server._wake_w.send(b"x")
            except OSError:
                pass

        signal.signal(signal.SIGTERM, stop)
        broker = server.broker
        if broker is not None:
            if link is not None and isinstance(broker, LocalBroker):
                broker.on_link_lost = lambda: os.kill(os.getpid(), signal.SIGTERM)
                broker._attach(link)
        watcher = threading.Thread(target=_watch_lifeline, args=(self.lifeline_r,),
                                   name="simplews-lifeline", daemon=True)
        watcher.start()
        try:
            server._serve_worker()
        finally:
            if broker is not None:
                try:
                    broker.close()
                except Exception:
                    logger.exception("closing the broker failed")
        return 0


def _watch_lifeline(fd: int) -> None:
    """Block until the parent is gone (the pipe's only writer closed), then stop this worker."""
    while True:
        try:
            data = os.read(fd, 1)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            break
    logger.error("the supervising process is gone; worker %d stopping", os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


def _reap(pid: int) -> Optional[int]:
    """The wait status if ``pid`` ended (and reap it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0
    except InterruptedError:
        return None
    return status if done else None


def _wait(pid: int) -> None:
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return "was killed by %s" % name
    return "exited with status %d" % os.WEXITSTATUS(status)


def supervise(server: Any) -> None:
    """Run ``server``'s workers until shutdown (called by ``serve_forever`` when workers > 1)."""
    Supervisor(server).run()


class ScalingMixin(object):
    """The ``workers=`` and ``broker=`` options, shared by both server modes.

    ``broadcast``, ``publish``, ``subscribe`` and ``unsubscribe`` live here;
    each mode's own fan-out is its ``_broadcast_local``.
    """

    workers = 1
    broker = None  # type: Any
    _worker_index = None  # type: Optional[int]

    def _configure_scaling(self, workers: Any, broker: Any) -> None:
        from .broker import Broker
        self.workers = check_workers(workers)
        if broker is not None and not isinstance(broker, Broker):
            raise TypeError("broker must be a simplews.broker.Broker, not %r" % (broker,))
        if broker is None and self.workers > 1:
            broker = LocalBroker()
        self.broker = broker
        self._members = {}  # type: Dict[str, Set[Any]]  # channel -> local connections
        self._member_lock = threading.Lock()
        self._broker_channels = set()  # type: Set[str]
        if broker is not None and self.workers == 1:
            self._listen_to_broker()

    def _listen_to_broker(self) -> None:
        from .broker import BROADCAST_CHANNEL
        self._broker_channels = {BROADCAST_CHANNEL}
        server = self  # type: Any
        self.broker.subscribe(BROADCAST_CHANNEL, server._broadcast_local)

    # ------------------------------------------------------------------ messages

    def broadcast(self, message: Any) -> int:
        """Send ``message`` to every open connection.

        Without a broker: written to this server's connections now (threaded:
        a slow client holds it up at most its ``write_timeout``; selectors:
        never blocks, connections over ``write_limit`` are skipped); returns
        how many it reached. With a broker (and always with ``workers`` > 1):
        published on the broker's broadcast channel, so every server and
        worker subscribed to it writes it to its connections, once, in publish
        order; returns 0 (delivery is asynchronous) or raises
        :class:`~simplews.broker.BrokerUnavailable`.
        """
        broker = self.broker
        if broker is None:
            server = self  # type: Any
            return server._broadcast_local(message)  # type: ignore[no-any-return]
        from .broker import BROADCAST_CHANNEL
        broker.publish(BROADCAST_CHANNEL, message)
        return 0

    def publish(self, channel: str, message: Any) -> None:
        """Send ``message`` to every connection that joined ``channel`` (see :meth:`subscribe`),
        through the broker when there is one, else to this server's connections."""
        from .broker import BROADCAST_CHANNEL, _check
        _check(channel, message)
        if channel == BROADCAST_CHANNEL:
            raise ValueError("channel %r is reserved for broadcast()" % BROADCAST_CHANNEL)
        if self.broker is None:
            self._deliver(channel, message)
        else:
            self.broker.publish(channel, message)

    def subscribe(self, ws: Any, channel: str) -> None:
        """Make connection ``ws`` receive what is published on ``channel`` (until it closes)."""
        from .broker import BROADCAST_CHANNEL
        if not isinstance(channel, str):
            raise TypeError("a channel must be str, not %s" % type(channel).__name__)
        if channel == BROADCAST_CHANNEL:
            raise ValueError("channel %r is reserved for broadcast()" % BROADCAST_CHANNEL)
        with self._member_lock:
            self._members.setdefault(channel, set()).add(ws)
            listen = self.broker is not None and channel not in self._broker_channels
            if listen:
                self._broker_channels.add(channel)
        if listen:
            self.broker.subscribe(channel, lambda message, channel=channel: self._deliver(channel, message))
        if ws.closed:  # closed meanwhile: its cleanup may have run already
            self.unsubscribe(ws, channel)

    def unsubscribe(self, ws: Any, channel: Optional[str] = None) -> None:
        """Stop ``ws`` receiving ``channel`` (every channel if None). Done automatically on close."""
        with self._member_lock:
            names = [channel] if channel is not None else list(self._members)
            for name in names:
                members = self._members.get(name)
                if members is not None:
                    members.discard(ws)
                    if not members:
                        del self._members[name]

    def _drop_subscriptions(self, ws: Any) -> None:
        if self._members:
            self.unsubscribe(ws)

    def _deliver(self, channel: str, message: Any) -> int:
        from .exceptions import WebSocketError
        with self._member_lock:
            targets = list(self._members.get(channel, ()))
        sent = 0
        for ws in targets:
            try:
                ws.send(message)
                sent += 1
            except WebSocketError:
                continue
        return sent

    # ------------------------------------------------------------------ workers

    def _supervise(self) -> None:
        """``serve_forever`` of the parent of workers: fork them and supervise until shutdown."""
        from .selector import SelectorServer
        server = self  # type: Any
        selectors_mode = isinstance(server, SelectorServer)
        with server._lock:
            if server._closed or (selectors_mode and server._shutdown_request):
                raise RuntimeError("the server is closed")
            if selectors_mode:
                if server._loop_ident is not None:
                    raise RuntimeError("serve_forever() is already running")
                server._loop_ident = threading.get_ident()
            server._stopped.clear()
            server._serving.set()
        try:
            supervise(server)
        finally:
            server._shutdown_request = True
            if selectors_mode:
                with server._lock:
                    server._closed = True
                    server._loop_ident = None
                for sock in (server._socket, server._wake_r, server._wake_w):
                    try:
                        sock.close()
                    except OSError:
                        pass
                logger.info("server on port %d stopped", server.port)
            else:
                server._close_everything()
            server._serving.clear()
            server._stopped.set()

    def _become_worker(self, index: int) -> None:
        """Right after fork, in the worker: fresh locks, events and wake-up sockets."""
        from .selector import SelectorServer
        server = self  # type: Any
        server._worker_index = index
        server._lock = threading.Lock()
        server._member_lock = threading.Lock()
        server._serving = threading.Event()
        server._stopped = threading.Event()
        server._stopped.set()
        if isinstance(server, SelectorServer):
            server._loop_ident = None
        else:
            from .housekeeping import Housekeeper
            server._housekeeper = Housekeeper("simplews-housekeeping")
            server._all_closed = threading.Event()
        for sock in (server._wake_r, server._wake_w):
            sock.close()  # shared with the parent: a fresh pair of our own
        server._wake_r, server._wake_w = socket.socketpair()
        server._wake_r.setblocking(False)
        server._wake_w.setblocking(False)
        server.extra_headers = list(server.extra_headers) + [(WORKER_HEADER, str(os.getpid()))]
        if server.broker is not None:
            server.broker._after_fork()
            server._broker_channels = set()
            server._members = {}

    def _serve_worker(self) -> None:
        """The worker's life: serve until SIGTERM, then close every client with 1001."""
        from .selector import SelectorServer
        server = self  # type: Any
        if server.broker is not None:
            server._listen_to_broker()
        server.serve_forever()
        if not isinstance(server, SelectorServer):
            server._close_everything()
