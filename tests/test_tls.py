"""wss:// over real loopback sockets, with a CA and a server certificate made for the test (trustme)."""

import logging
import os
import queue
import ssl
import threading
import time
from typing import Any, Iterator, Tuple

import pytest

import simplews
from simplews.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidHandshake

from _peers import GUARD, RawClient, assert_one_info_line, wait_until
from conftest import echo

trustme = pytest.importorskip("trustme", reason="trustme (test extra) makes the TLS certificates")

MiB = 1 << 20
# ssl.SSLCertVerificationError arrived in Python 3.7; 3.6 raises its base class
CertVerificationError = getattr(ssl, "SSLCertVerificationError", ssl.SSLError)


@pytest.fixture(scope="module")
def tls() -> Iterator[Tuple[ssl.SSLContext, ssl.SSLContext]]:
    """(server context, client context trusting the test CA) for 127.0.0.1, ::1 and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1", "::1")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield server_context, client_context


def wss_url(server: Any, path: str = "") -> str:
    return "wss://127.0.0.1:%d/%s" % (server.port, path)


def test_wss_echo(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        box.put((ws.path, ws.remote_address))
        echo(ws)

    server = serve(handler, ssl_context=server_context)
    assert server.url.startswith("wss://127.0.0.1:")
    binary = os.urandom(MiB)
    with simplews.connect(wss_url(server, "secure?x=1"), ssl_context=client_context) as ws:
        ws.send("over TLS ☃")
        ws.send(binary)
        ws.send(["frag", "mented"])
        assert ws.recv(timeout=GUARD) == "over TLS ☃"
        assert ws.recv(timeout=GUARD) == binary
        assert ws.recv(timeout=GUARD) == "fragmented"
        assert ws.remote_address[:2] == ("127.0.0.1", server.port)
        local = ws.local_address
    path, remote = box.get(timeout=GUARD)
    assert path == "/secure?x=1"
    assert tuple(remote[:2]) == tuple(local[:2])


def test_wss_many_messages_both_ways(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    with simplews.connect(wss_url(server), ssl_context=client_context) as ws:
        for i in range(200):
            ws.send("message %d " % i * (i % 40 + 1))
        for i in range(200):
            assert ws.recv(timeout=GUARD) == "message %d " % i * (i % 40 + 1)


def test_default_context_rejects_the_unknown_ca(serve: Any, tls: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server_context, _ = tls
    server = serve(echo, ssl_context=server_context)
    with pytest.raises(CertVerificationError) as info:
        simplews.connect(wss_url(server))
    assert "certificate verify failed" in str(info.value)
    server.stop()
    assert "Traceback" not in caplog.text
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "simplews")


def test_hostname_mismatch_is_refused(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    client = simplews.SimpleWSClient(wss_url(server), ssl_context=client_context,
                                     server_hostname="wrong.example")
    with pytest.raises(CertVerificationError) as info:
        client.connect()
    assert "wrong.example" in str(info.value) or "mismatch" in str(info.value).lower()


def test_plain_ws_to_a_tls_port_fails_cleanly(serve: Any, tls: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server_context, _ = tls
    server = serve(echo, ssl_context=server_context)
    with pytest.raises((InvalidHandshake, ConnectionError)):
        simplews.connect("ws://127.0.0.1:%d/" % server.port)
    with simplews.connect(wss_url(server), ssl_context=tls[1]) as ws:  # still serving
        ws.send("ok")
        assert ws.recv(timeout=GUARD) == "ok"
    server.stop()
    assert "Traceback" not in caplog.text
    assert any("handshake" in r.getMessage() and r.levelno == logging.INFO for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "simplews")


def test_tls_client_hello_to_a_plain_port_gets_400(serve: Any, tls: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    _, client_context = tls
    server = serve(echo)
    with RawClient(server.port) as raw:
        port = raw.local_port
        with pytest.raises(ssl.SSLError):
            client_context.wrap_socket(raw.sock, server_hostname="127.0.0.1").close()
    server.stop()
    assert_one_info_line(caplog, port, "HTTP 400", "TLS")


def test_silent_client_on_the_tls_port_is_cut_off_after_open_timeout(
        serve: Any, tls: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context, open_timeout=0.5)
    with RawClient(server.port) as raw:  # never starts the TLS handshake
        assert raw.sock.recv(1024) == b""
        port = raw.local_port
    with simplews.connect(wss_url(server), ssl_context=client_context) as ws:
        ws.send("others still served")
        assert ws.recv(timeout=GUARD) == "others still served"
    server.stop()
    assert_one_info_line(caplog, port, "timed out")


def test_tls_close_from_another_thread_wakes_recv(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    ws = simplews.connect(wss_url(server), ssl_context=client_context)
    box = queue.Queue()  # type: queue.Queue

    def reader() -> None:
        try:
            box.put(ws.recv())
        except Exception as exc:
            box.put(exc)

    thread = threading.Thread(target=reader, name="blocked-recv")
    thread.start()
    time.sleep(0.2)  # let the reader block in recv()
    closer = threading.Thread(target=ws.close, name="closer")
    closer.start()
    closer.join(GUARD)
    thread.join(GUARD)
    assert not closer.is_alive() and not thread.is_alive()
    exc = box.get_nowait()
    assert isinstance(exc, ConnectionClosedOK) and exc.code == 1000


def test_tls_busy_handler_still_answers_pings(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    release = threading.Event()

    def handler(ws: simplews.WebSocket) -> None:
        release.wait(GUARD)  # busy: not reading
        echo(ws)

    server = serve(handler, ssl_context=server_context)
    with simplews.connect(wss_url(server), ssl_context=client_context) as ws:
        try:
            answered = ws.ping().wait(GUARD)
            busy = not release.is_set()
        finally:
            release.set()
        assert answered and busy
        ws.send("after")
        assert ws.recv(timeout=GUARD) == "after"


def test_tls_keepalive_timeout_closes_with_1011(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        try:
            ws.recv()
        except ConnectionClosed as exc:
            box.put(exc)

    server = serve(handler, ssl_context=server_context, ping_interval=0.2, ping_timeout=0.3)
    with RawClient(server.port) as raw:
        raw.sock = client_context.wrap_socket(raw.sock, server_hostname="127.0.0.1")
        raw.handshake()  # then never answers the pings
        exc = box.get(timeout=GUARD)
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1011


def test_tls_send_to_a_peer_that_never_reads_fails_after_write_timeout(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    box = queue.Queue()  # type: queue.Queue
    payload = os.urandom(MiB)

    def handler(ws: simplews.WebSocket) -> None:
        if ws.path != "/flood":
            echo(ws)
            return
        try:
            for _ in range(200):
                ws.send(payload)
            box.put("everything sent")
        except ConnectionClosed as exc:
            box.put(exc)

    server = serve(handler, ssl_context=server_context, write_timeout=0.5, compression=None)
    with RawClient(server.port, rcvbuf=16384) as raw:
        raw.sock = client_context.wrap_socket(raw.sock, server_hostname="127.0.0.1")
        raw.handshake(path="/flood")  # then never reads
        with simplews.connect(wss_url(server), ssl_context=client_context) as ws:
            ws.send("meanwhile")
            assert ws.recv(timeout=GUARD) == "meanwhile"
        exc = box.get(timeout=GUARD * 3)
    assert isinstance(exc, ConnectionClosedError), exc


def test_tls_shutdown_with_live_connections(serve: Any, tls: Any) -> None:
    server_context, client_context = tls
    server = serve(echo, ssl_context=server_context)
    clients = [simplews.connect(wss_url(server), ssl_context=client_context) for _ in range(2)]
    try:
        wait_until(lambda: len(server.server.connections) == 2, message="2 connections")
        stopper = threading.Thread(target=server.stop, name="stopper")
        stopper.start()
        for ws in clients:
            with pytest.raises(ConnectionClosedOK) as info:
                ws.recv(timeout=GUARD)
            assert info.value.code == 1001
        stopper.join(GUARD * 2)
        assert not stopper.is_alive()
    finally:
        for ws in clients:
            ws.close()


def test_ssl_context_with_ws_uri_is_refused(tls: Any) -> None:
    with pytest.raises(ValueError):
        simplews.connect("ws://127.0.0.1:1/", ssl_context=tls[1])


class BioTLS(object):
    """TLS driven through memory BIOs over a RawClient's socket, so a test can send half a record."""

    def __init__(self, raw: RawClient, context: ssl.SSLContext) -> None:
        self.raw = raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.incoming.write(self._recv())
        self.flush()

    def _recv(self) -> bytes:
        data = self.raw.sock.recv(65536)
        assert data, "the server closed the connection"
        return data

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.send(data)

    def records(self, data: bytes) -> bytes:
        """The TLS records carrying ``data`` (not sent)."""
        self.tls.write(data)
        return self.outgoing.read()

    def read(self) -> bytes:
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.incoming.write(self._recv())


def test_half_a_tls_record_does_not_block_the_connection(serve: Any, tls: Any) -> None:
    """The housekeeping drain reads a busy handler's TLS socket; half a record must not make it wait."""
    server_context, client_context = tls
    release = threading.Event()
    box = queue.Queue()  # type: queue.Queue

    def handler(ws: simplews.WebSocket) -> None:
        release.wait(GUARD)  # busy: the housekeeping thread reads for us meanwhile
        ws.send("sent while half a record is pending")
        box.put("sent")
        box.put(ws.recv(timeout=GUARD))

    server = serve(handler, ssl_context=server_context, compression=None)
    with RawClient(server.port) as raw:
        bio = BioTLS(raw, client_context)
        raw.send(bio.records(raw.request_bytes()))
        response = b""
        while b"\r\n\r\n" not in response:
            response += bio.read()
        assert response.startswith(b"HTTP/1.1 101 ")
        records = bio.records(simplews.frames.build_frame(simplews.frames.OP_TEXT, b"late" * 500, mask=True))
        raw.send(records[:len(records) // 2])
        try:
            time.sleep(1.5)  # at least one housekeeping drain round finds the half record
        finally:
            release.set()
        assert box.get(timeout=GUARD) == "sent"
        raw.send(records[len(records) // 2:])
        assert box.get(timeout=GUARD) == "late" * 500


def test_shutdown_aborts_a_tls_handshake_in_progress(serve: Any, tls: Any, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    server_context, _ = tls
    server = serve(echo, ssl_context=server_context)  # open_timeout: the default 10 s
    with RawClient(server.port) as raw:  # connects, never starts TLS
        wait_until(lambda: any(t.name.startswith("simplews-127.0.0.1") for t in threading.enumerate()),
                   message="the connection thread")
        server.stop()
        assert raw.sock.recv(1024) == b""
    assert not any(r.levelno >= logging.WARNING for r in caplog.records if r.name == "simplews")


@pytest.fixture(scope="module")
def mutual_tls() -> Iterator[Tuple[Any, ssl.SSLContext, ssl.SSLContext]]:
    """(CA, server context requiring a client certificate from the CA, client context trusting the CA)."""
    ca = trustme.CA()
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield ca, server_context, client_context


def peer_common_name(certificate: Any) -> str:
    return dict(item[0] for item in certificate["subject"]).get("commonName", "")


@pytest.mark.parametrize("mode", ["threaded", "selectors"])
def test_client_certificate_identifies_the_client(serve: Any, mutual_tls: Any, mode: str) -> None:
    ca, server_context, _ = mutual_tls
    seen = queue.Queue()  # type: queue.Queue

    class Identify(simplews.WebSocketHandler):
        def on_open(self, ws: Any) -> None:
            seen.put(ws.peer_certificate)

        def on_message(self, ws: Any, message: Any) -> None:
            ws.send(message)

    server = serve(Identify(), ssl_context=server_context, mode=mode)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    # trustme puts a name in the certificate's SAN only; give it a subject CN to read back
    device = ca.issue_cert("device-42.example.com", common_name="device-42")
    device.configure_cert(client_context)  # load_cert_chain with the certificate and its key
    with simplews.connect(wss_url(server), ssl_context=client_context) as ws:
        ws.send("signed in")
        assert ws.recv(timeout=GUARD) == "signed in"
        assert ws.peer_certificate is not None  # the client sees the server's certificate too
    certificate = seen.get(timeout=GUARD)
    assert peer_common_name(certificate) == "device-42"
    assert ("DNS", "device-42.example.com") in certificate["subjectAltName"]


@pytest.mark.parametrize("mode", ["threaded", "selectors"])
def test_missing_client_certificate_is_named_in_the_error(serve: Any, mutual_tls: Any, mode: str,
                                                         caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    _, server_context, client_context = mutual_tls
    server = serve(simplews.WebSocketHandler(), ssl_context=server_context, mode=mode)
    with pytest.raises(ssl.SSLError) as info:
        simplews.connect(wss_url(server), ssl_context=client_context, open_timeout=GUARD)
    # TLS 1.3 reports "certificate required", TLS 1.2 a handshake failure alert
    message = str(info.value).lower().replace("_", " ")
    assert "certificate required" in message or "handshake failure" in message, info.value
    wait_until(lambda: any("certificate" in record.getMessage() for record in caplog.records),
               message="the server's log line naming the missing certificate")


def test_client_certificate_from_an_unknown_ca_is_refused(serve: Any, mutual_tls: Any) -> None:
    ca, server_context, _ = mutual_tls
    server = serve(echo, ssl_context=server_context)
    stranger = trustme.CA().issue_cert("intruder.example.com")
    context = ssl.create_default_context()
    ca.configure_trust(context)  # the client trusts the server...
    with stranger.private_key_and_cert_chain_pem.tempfile() as pem:
        context.load_cert_chain(pem)  # ...but its own certificate comes from a CA the server does not know
    with pytest.raises(ssl.SSLError) as info:
        simplews.connect(wss_url(server), ssl_context=context, open_timeout=GUARD)
    assert "unknown ca" in str(info.value).lower().replace("_", " "), info.value
