"""``python -m simplews``: pipe mode, interactive mode on a pseudo-terminal, serve, --version."""

import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import pytest

import simplews

from conftest import echo

GUARD = 30.0  # subprocesses start slowly on a busy machine: hang guard only
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli_env() -> Dict[str, str]:
    env = dict(os.environ)
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        env.pop(name, None)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: List[str], stdin: bytes = b"",
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    process = subprocess.Popen([sys.executable, "-m", "simplews"] + args, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env or cli_env())
    try:
        out, err = process.communicate(stdin, timeout=GUARD)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail("CLI did not finish: stdout=%r stderr=%r" % (out, err))
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_version() -> None:
    result = run_cli(["--version"])
    assert result.returncode == 0
    assert result.stdout.decode().strip() == "simplews %s" % simplews.__version__


def test_help_mentions_serve() -> None:
    result = run_cli(["--help"])
    assert result.returncode == 0
    assert b"serve" in result.stdout and b"--proxy" in result.stdout


def test_pipe_mode_echo(serve: Any) -> None:
    server = serve(echo)
    result = run_cli([server.url], stdin=b"hello\nworld\n\nlast line without newline")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split("\n") == ["hello", "world", "", "last line without newline", ""]
    assert result.stderr == b""


def test_pipe_mode_closes_cleanly(serve: Any) -> None:
    closes = []  # type: List[Any]
    done = threading.Event()

    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send(message.upper())
        closes.append(ws.close_code)
        done.set()

    server = serve(handler, process_request=None)
    result = run_cli([server.url + "path", "--no-compression", "-H", "X-Test: 1"], stdin=b"abc\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ABC\n"
    assert done.wait(GUARD)
    assert closes == [1000]


def test_pipe_mode_sends_headers_and_subprotocol(serve: Any) -> None:
    seen = {}  # type: Dict[str, Any]

    def record(path: str, headers: Any) -> None:
        seen["headers"] = headers
        return None

    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send("%s|%s" % (ws.subprotocol, message))

    server = serve(handler, process_request=record, subprotocols=["chat"])
    result = run_cli([server.url, "--header", "X-One: 1", "-H", "X-Two:two", "--subprotocol", "chat",
                      "--origin", "http://example.test", "--ping", "5"], stdin=b"hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"chat|hi\n"
    headers = seen["headers"]
    assert headers.get("X-One") == "1" and headers.get("X-Two") == "two"
    assert headers.get("Origin") == "http://example.test"


def test_pipe_mode_binary_display(serve: Any) -> None:
    def to_binary(ws: simplews.WebSocket) -> None:
        for message in ws:
            ws.send(message.encode("utf-8") if isinstance(message, str) else message)

    server = serve(to_binary)
    assert run_cli([server.url], stdin=b"ab\n").stdout == b"b'ab'\n"
    assert run_cli([server.url, "--binary"], stdin=b"ab\n").stdout == b"ab\n"
    assert run_cli([server.url, "--hex"], stdin=b"00ff 10\n").stdout == b"00ff10\n"


def test_pipe_mode_waits_for_late_replies(serve: Any) -> None:
    release = threading.Event()

    def slow(ws: simplews.WebSocket) -> None:
        for message in ws:
            release.wait(GUARD)
            ws.send(message)

    server = serve(slow)
    timer = threading.Timer(0.5, release.set)
    timer.start()
    try:
        result = run_cli([server.url, "--wait", str(GUARD)], stdin=b"late\n")
    finally:
        timer.cancel()
        release.set()
    assert result.stdout == b"late\n"


def test_pipe_mode_wait_zero_does_not_wait(serve: Any) -> None:
    release = threading.Event()

    def never(ws: simplews.WebSocket) -> None:
        for _ in ws:
            release.wait(GUARD)

    server = serve(never)
    try:
        result = run_cli([server.url, "--wait", "0"], stdin=b"x\n")
    finally:
        release.set()
    assert result.returncode == 0
    assert result.stdout == b""


def test_verbose_traces_frames(serve: Any) -> None:
    server = serve(echo)
    result = run_cli([server.url, "--verbose", "--no-compression"], stdin=b"traced\n")
    assert result.returncode == 0
    err = result.stderr.decode()
    assert "> TEXT fin=1 rsv1=0 6 bytes b'traced'" in err
    assert "< TEXT fin=1 rsv1=0 6 bytes b'traced'" in err
    assert "> CLOSE" in err and "code=1000" in err


def test_connection_failure_exit_status() -> None:
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    result = run_cli(["ws://127.0.0.1:%d/" % port], stdin=b"x\n")
    assert result.returncode == 1
    assert b"cannot connect" in result.stderr


def test_handshake_refused_exit_status(serve: Any) -> None:
    server = serve(echo, process_request=lambda path, headers: (403, [], b"no"))
    result = run_cli([server.url], stdin=b"x\n")
    assert result.returncode == 1
    assert b"403" in result.stderr


def test_bad_usage() -> None:
    assert run_cli(["http://not-websocket/"]).returncode == 2
    assert run_cli(["ws://127.0.0.1:1/", "--header", "no colon"]).returncode == 2
    assert run_cli([]).returncode == 2


def test_proxy_option(serve: Any) -> None:
    server = serve(echo)
    env = cli_env()
    env["http_proxy"] = "http://127.0.0.1:1"  # refused: the environment must be ignored with --proxy ''
    result = run_cli([server.url, "--proxy", ""], stdin=b"direct\n", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"direct\n"
    result = run_cli([server.url], stdin=b"x\n", env=env)
    assert result.returncode == 1


# ---------------------------------------------------------------------- interactive mode

def read_until(fd: int, pattern: bytes, buffer: bytearray) -> None:
    """Read from ``fd`` into ``buffer`` until ``pattern`` shows up (hang guard: GUARD)."""
    deadline = time.monotonic() + GUARD
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while pattern not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no %r in %r" % (pattern, bytes(buffer)))
            if selector.select(remaining):
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError("EOF before %r in %r" % (pattern, bytes(buffer)))
                buffer += chunk


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("ending", ["eof", "server-close"])
def test_interactive_mode(serve: Any, ending: str) -> None:
    def handler(ws: simplews.WebSocket) -> None:
        for message in ws:
            if message == "bye":
                ws.close(1000, "asked to")
                return
            ws.send(message)

    server = serve(handler)
    master, slave = os.openpty()
    out_r, out_w = os.pipe()
    process = subprocess.Popen([sys.executable, "-m", "simplews", server.url], stdin=slave, stdout=out_w,
                               stderr=subprocess.PIPE, cwd=ROOT, env=cli_env())
    os.close(slave)
    os.close(out_w)
    try:
        output = bytearray()
        os.write(master, b"hello there\n")
        read_until(out_r, b"< hello there\n", output)
        if ending == "eof":
            os.write(master, b"\x04")  # Ctrl+D on an empty line
        else:
            os.write(master, b"bye\n")
        assert process.wait(GUARD) == 0
        err = process.stderr.read()  # type: ignore[union-attr]
        assert b"connected to" in err
        if ending == "server-close":
            assert b"connection closed: code 1000, reason 'asked to'" in err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(GUARD)
        process.stderr.close()  # type: ignore[union-attr]
        os.close(master)
        os.close(out_r)


# ---------------------------------------------------------------------- serve

def start_serve(code: Optional[str] = None) -> subprocess.Popen:  # type: ignore[type-arg]
    if code is None:
        command = [sys.executable, "-m", "simplews", "serve", "--host", "127.0.0.1", "--port", "0"]
    else:
        command = [sys.executable, "-c", code]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=cli_env())


def check_serve(process: subprocess.Popen, path: str) -> None:  # type: ignore[type-arg]
    try:
        output = bytearray()
        read_until(process.stdout.fileno(), b"\n", output)  # type: ignore[union-attr]
        match = re.search(rb"listening on (ws://127\.0\.0\.1:(\d+))", bytes(output))
        assert match is not None, bytes(output)
        with simplews.connect(match.group(1).decode() + path, timeout=GUARD) as ws:
            ws.send("served")
            assert ws.recv(timeout=GUARD) == "served"
        process.send_signal(signal.SIGTERM)
        assert process.wait(GUARD) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(GUARD)
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]


def test_serve_runs_the_demo_server() -> None:
    check_serve(start_serve(), "/ws")


def test_serve_falls_back_to_echo_without_the_demo() -> None:
    code = ("import sys; sys.modules['simplews.demo'] = None\n"
            "from simplews.__main__ import main\n"
            "sys.exit(main(['serve', '--host', '127.0.0.1', '--port', '0']))\n")
    check_serve(start_serve(code), "/")
