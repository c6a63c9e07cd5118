"""Hand-driven peers for the I/O tests: a raw-socket client and a fake server.

They speak just enough HTTP and WebSocket to put a real simplews endpoint in a
situation a well-behaved peer never creates (never reading, never answering
pings or close frames, sending garbage). Every socket and thread they open is
closed by ``close()`` (both are context managers), so the leak check holds.
"""

import base64
import contextlib
import hashlib
import logging
import os
import re
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import pytest

from simplews import frames
from simplews.frames import Frame, FrameParser

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
GUARD = 10.0  # seconds: hang guard for every blocking step, never a timing assertion


def wait_until(predicate: Callable[[], bool], timeout: float = GUARD, message: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % message)
        time.sleep(0.01)


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def client_hello() -> bytes:
    """The bytes of a real TLS ClientHello, produced without any network I/O."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = outgoing.read()
    assert data[:1] == b"\x16", data[:16]
    return data


def peer_records(caplog: Any, port: int) -> List[logging.LogRecord]:
    """simplews log records about the client connected from local ``port``."""
    tag = "127.0.0.1:%d:" % port
    return [r for r in caplog.records if r.name == "simplews" and tag in r.getMessage()]


def assert_one_info_line(caplog: Any, port: int, *needles: str) -> logging.LogRecord:
    """Exactly one INFO-or-above line about this peer, at INFO, without a traceback."""
    records = [r for r in peer_records(caplog, port) if r.levelno >= logging.INFO]
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.levelno == logging.INFO
    for needle in needles:
        assert needle in record.getMessage()
    assert not any(r.exc_info for r in caplog.records), "a traceback was logged"
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "simplews")
    assert "Traceback" not in caplog.text
    return record


def parse_head(head: bytes) -> Tuple[int, List[Tuple[str, str]]]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1"), value.decode("latin-1").strip()))
    return status, headers


def header(headers: List[Tuple[str, str]], name: str) -> Optional[str]:
    values = [value for key, value in headers if key.lower() == name.lower()]
    return ", ".join(values) if values else None


class RawClient(object):
    """A client socket driven by hand: send any bytes, read frames or an HTTP answer."""

    def __init__(self, port: int, host: str = "127.0.0.1", rcvbuf: Optional[int] = None,
                 timeout: float = GUARD) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:  # a small fixed buffer also disables receive autotuning
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise
        self.host = host
        self.port = port
        self.local_port = self.sock.getsockname()[1]  # type: int
        self.parser = FrameParser(expect_masked=False, allow_rsv1=True)
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request_bytes(self, path: str = "/", method: str = "GET", version: str = "HTTP/1.1",
                      headers: Optional[Dict[str, Optional[str]]] = None) -> bytes:
        """An upgrade request; ``headers`` overrides (None removes) the defaults."""
        fields = {
            "Host": "%s:%d" % (self.host, self.port),
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": self.key,
            "Sec-WebSocket-Version": "13",
        }  # type: Dict[str, Optional[str]]
        fields.update(headers or {})
        lines = ["%s %s %s" % (method, path, version)]
        lines += ["%s: %s" % (name, value) for name, value in fields.items() if value is not None]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def read_head(self) -> Tuple[int, List[Tuple[str, str]], bytes]:
        """Read an HTTP response head: (status, headers, bytes after the head)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before a response head; got %r" % data[:200])
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status, headers = parse_head(head)
        return status, headers, rest

    def read_response(self) -> Tuple[int, List[Tuple[str, str]], bytes]:
        """A rejection: (status, headers, body), reading until the server closes."""
        status, headers, body = self.read_head()
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            body += chunk
        length = header(headers, "Content-Length")
        assert length is not None and int(length) == len(body), (headers, body)
        return status, headers, body

    def handshake(self, path: str = "/", headers: Optional[Dict[str, Optional[str]]] = None
                  ) -> List[Tuple[str, str]]:
        """Open the WebSocket connection; returns the 101 response headers."""
        self.send(self.request_bytes(path, headers=headers))
        status, response_headers, rest = self.read_head()
        assert status == 101, (status, response_headers)
        assert header(response_headers, "Sec-WebSocket-Accept") == accept_for(self.key)
        self.parser.feed(rest)
        return response_headers

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True) -> None:
        self.send(frames.build_frame(opcode, payload, fin=fin, mask=True))

    def recv_frame(self) -> Optional[Frame]:
        """The next frame from the server, None at EOF."""
        while True:
            frame = self.parser.next_frame()
            if frame is not None:
                return frame
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.parser.feed(data)

    def frames_until_eof(self) -> List[Frame]:
        result = []
        while True:
            frame = self.recv_frame()
            if frame is None:
                return result
            result.append(frame)


class FakeServer(object):
    """A listening socket that answers one client's handshake, then runs ``script(conn)``.

    The default script holds the connection open without reading or writing
    until :meth:`close`: a peer that never answers pings or close frames.
    """

    def __init__(self, status_line: str = "HTTP/1.1 101 Switching Protocols",
                 extra_headers: Iterable[Tuple[str, str]] = (), answer: bool = True,
                 script: Optional[Callable[[socket.socket], None]] = None,
                 after_head: bytes = b"") -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]  # type: int
        self.url = "ws://127.0.0.1:%d/" % self.port
        self.status_line = status_line
        self.extra_headers = list(extra_headers)
        self.answer = answer
        self.script = script
        self.after_head = after_head  # sent in the same write as the 101 response
        self.request = b""
        self.conn = None  # type: Optional[socket.socket]
        self.handshaken = threading.Event()
        self.stopping = threading.Event()
        self.error = None  # type: Optional[BaseException]
        self.thread = threading.Thread(target=self._run, name="fake-server")
        self.thread.start()

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _run(self) -> None:
        try:
            self.listener.settimeout(GUARD)
            conn, _ = self.listener.accept()
            self.conn = conn
            conn.settimeout(GUARD)
            while b"\r\n\r\n" not in self.request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                self.request += chunk
            if self.answer:
                key = ""
                for line in self.request.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"sec-websocket-key":
                        key = value.strip().decode("ascii")
                lines = [self.status_line, "Upgrade: websocket", "Connection: Upgrade",
                         "Sec-WebSocket-Accept: %s" % accept_for(key)]
                lines += ["%s: %s" % item for item in self.extra_headers]
                conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.after_head)
            self.handshaken.set()
            if self.script is not None:
                self.script(conn)
            else:
                self.stopping.wait(GUARD * 2)
        except BaseException as exc:  # kept for a test to inspect (the client may have gone)
            self.error = exc

    def close(self) -> None:
        self.stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() still waiting (Linux)
        except OSError:
            pass
        self.thread.join(GUARD * 3)
        self.listener.close()
        assert not self.thread.is_alive(), "fake server thread did not finish"
        if self.conn is not None:
            self.conn.close()


# ---------------------------------------------------------------------- nginx (test_nginx_lb, test_nginx_proxy)

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
NGINX_MISSING = "nginx is not installed (Debian: apt-get install nginx-light)"


def free_port() -> int:
    """A loopback port free right now (for a process that cannot be told port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


def nginx_main_context(prefix: str) -> str:
    """Main-context lines keeping nginx's pid file and error log inside ``prefix``."""
    head = "pid %s;\nerror_log %s info;\n" % (os.path.join(prefix, "nginx.pid"), os.path.join(prefix, "error.log"))
    if os.geteuid() == 0:
        head += "user root;\n"  # workers must read the temp prefix
    return head


def nginx_http_paths(prefix: str) -> str:
    """http-context lines keeping nginx's temp directories and access log inside ``prefix``."""
    paths = "".join("    %s %s;\n" % (name, os.path.join(prefix, name.split("_")[0]))
                    for name in ("client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                                 "uwsgi_temp_path", "scgi_temp_path"))
    return paths + "    access_log %s;\n" % os.path.join(prefix, "access.log")


@contextlib.contextmanager
def running_nginx(prefix: str, config: str, port: int) -> Iterator[subprocess.Popen]:  # type: ignore[type-arg]
    """nginx in the foreground with ``config`` (written to ``prefix``/nginx.conf), once it listens on ``port``.

    The configuration must pass ``nginx -t``; nginx is stopped (SIGTERM, then
    SIGKILL after a hang guard) when the block ends.
    """
    path = os.path.join(prefix, "nginx.conf")
    errors = os.path.join(prefix, "error.log")
    with open(path, "w") as f:
        f.write(config)
    check = subprocess.run([NGINX, "-t", "-p", prefix, "-c", path, "-e", errors],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=GUARD * 3)
    assert check.returncode == 0, check.stdout.decode(errors="replace")
    nginx = subprocess.Popen([NGINX, "-p", prefix, "-c", path, "-e", errors, "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            if nginx.poll() is not None:
                with open(errors) as log:
                    raise AssertionError("nginx exited: %s" % log.read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(listening, GUARD * 3, "nginx to listen")
        yield nginx
    finally:
        nginx.terminate()  # SIGTERM: fast shutdown of master and workers
        try:
            nginx.wait(GUARD * 3)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


# ---------------------------------------------------------------------- server subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
PROCESS_TIMEOUT = 60.0  # seconds: a hang guard for subprocesses, never a measure of speed


def subprocess_env() -> Dict[str, str]:
    """The environment for a Python subprocess that must use the simplews under test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["LC_ALL"] = "C.UTF-8"  # non-ASCII command-line arguments, even on Python 3.6
    return env


class ServerProcess(object):
    """A server subprocess: stdout read as it comes (:meth:`wait_for_line`), stderr
    in a temporary file; :meth:`stop` reaps it and releases its pipes (idempotent)."""

    def __init__(self, args: List[str]) -> None:
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
                                     cwd=ROOT, env=subprocess_env())
        self.output = ""
        self.errors = ""

    def wait_for_line(self, pattern: "re.Pattern[str]", what: str = "") -> "re.Match[str]":
        """The first match of ``pattern`` in stdout, once its line is complete."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + PROCESS_TIMEOUT
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                match = pattern.search(self.output)
                if match and "\n" in self.output[match.end():]:
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail("no %s line within %ss; stdout: %r; stderr: %s"
                                % (what or repr(pattern.pattern), PROCESS_TIMEOUT, self.output,
                                   self.error_output()))
                if selector.select(remaining):
                    data = os.read(fd, 4096)
                    if not data:
                        pytest.fail("exited early (code %s); stdout: %r; stderr: %s"
                                    % (self.proc.wait(PROCESS_TIMEOUT), self.output, self.error_output()))
                    self.output += data.decode("utf-8", "replace")

    def error_output(self) -> str:
        if self.stderr.closed:
            return self.errors
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")

    def stop(self, signum: int = signal.SIGINT) -> Optional[int]:
        """Signal the process (Ctrl+C by default), wait for it, release its pipes; its exit code."""
        if self.stderr.closed:
            return self.proc.returncode
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signum)
            try:
                return self.proc.wait(PROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(PROCESS_TIMEOUT)
                return None
        finally:
            if self.proc.stdout is not None:
                self.output += self.proc.stdout.read().decode("utf-8", "replace")
                self.proc.stdout.close()
            self.errors = self.error_output()
            self.stderr.close()

    def assert_stops_cleanly(self, signum: int = signal.SIGINT) -> None:
        code = self.stop(signum)
        assert code == 0, "exit code %r; stderr:\n%s" % (code, self.errors)
        assert "Traceback" not in self.errors, self.errors
