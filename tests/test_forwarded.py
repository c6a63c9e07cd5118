"""simplews.forwarded (trusted_proxies=): the pure walk, then the servers using it (both modes)."""

import ipaddress
import logging
import socket
from typing import Any, Callable, List, Tuple

import pytest

import simplews
from simplews.forwarded import FORWARDED_PORT, TrustedProxies, forwarded_address, parse_ip
from simplews.http11 import Headers

from _peers import GUARD, RawClient, wait_until

PROXY = ("10.0.0.1", 43210)
TRUSTED = TrustedProxies(["10.0.0.0/24", "192.0.2.1", "2001:db8::/64"])


def headers(*items: Tuple[str, str]) -> Headers:
    return Headers(items)


def xff(*values: str) -> Headers:
    return Headers(("X-Forwarded-For", value) for value in values)


# ---------------------------------------------------------------------- TrustedProxies


def test_trusted_proxies_accepts_addresses_networks_and_objects() -> None:
    trusted = TrustedProxies(["127.0.0.1", " 10.0.0.0/8 ", "::1", "fd00::/8",
                              ipaddress.ip_address("192.0.2.7"), ipaddress.ip_network("198.51.100.0/24")])
    assert [str(network) for network in trusted.networks] == [
        "127.0.0.1/32", "10.0.0.0/8", "::1/128", "fd00::/8", "192.0.2.7/32", "198.51.100.0/24"]
    for host in ("127.0.0.1", "10.255.0.3", "::1", "fd12::5", "192.0.2.7", "198.51.100.200",
                 "::ffff:10.1.2.3"):  # an IPv4-mapped IPv6 address (dual-stack socket) is the IPv4 one
        assert host in trusted, host
    for host in ("127.0.0.2", "11.0.0.1", "::2", "fe80::1", "192.0.2.8", "not an ip", ""):
        assert host not in trusted, host
    assert 5 not in trusted
    assert repr(trusted).startswith("TrustedProxies(['127.0.0.1/32', '10.0.0.0/8'")


def test_trusted_proxies_v4_and_v6_never_match_each_other() -> None:
    trusted = TrustedProxies(["::/0"])
    assert "2001:db8::1" in trusted
    assert "10.0.0.1" not in trusted
    assert "::ffff:10.0.0.1" not in trusted  # compared as IPv4
    assert "10.0.0.1" in TrustedProxies(["0.0.0.0/0"])


def test_empty_trusted_proxies_trust_nobody() -> None:
    trusted = TrustedProxies([])
    assert trusted.networks == ()
    assert "127.0.0.1" not in trusted
    assert forwarded_address(("127.0.0.1", 5), xff("203.0.113.9"), trusted) == ("127.0.0.1", 5)


@pytest.mark.parametrize("bad", [
    "127.0.0.1",            # a bare string, not a list
    b"127.0.0.1",
    42,
    None,
    ["localhost"],          # hostnames are not resolved
    ["10.0.0.1/8"],         # host bits set: refused, not widened
    ["10.0.0.0/33"],
    ["127.0.0.1", ""],
    ["[::1]"],
    ["::1", 7],
    [None],
    [b"127.0.0.1"],
])
def test_trusted_proxies_validation(bad: Any) -> None:
    with pytest.raises(ValueError) as info:
        TrustedProxies(bad)
    message = str(info.value)
    assert "trusted_proxies" in message
    assert "10.0.0.0/8" in message  # every message shows what a valid entry looks like


# ---------------------------------------------------------------------- parse_ip


@pytest.mark.parametrize("text, expected", [
    ("203.0.113.9", "203.0.113.9"),
    ("  203.0.113.9\t", "203.0.113.9"),
    ("203.0.113.9:4711", "203.0.113.9"),
    ("2001:DB8::7", "2001:db8::7"),
    ("[2001:db8::7]", "2001:db8::7"),
    ("[2001:db8::7]:4711", "2001:db8::7"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("fe80::1%eth0", "fe80::1"),
])
def test_parse_ip(text: str, expected: str) -> None:
    ip = parse_ip(text)
    assert ip is not None and str(ip) == expected


@pytest.mark.parametrize("text", [
    "", "unknown", "_hidden", "example.com", "203.0.113", "203.0.113.256", "203.0.113.9:", "203.0.113.9:x",
    "203.0.113.9:123456", "203.0.113.9:65536", "203.0.113.9%1", "203.0.113.9:\u00b2", "[2001:db8::7", "[2001:db8::7]x", "[2001:db8::7]:", "[]",
    "1.2.3.4, 5.6.7.8", "for=203.0.113.9",
])
def test_parse_ip_refuses(text: str) -> None:
    assert parse_ip(text) is None


# ---------------------------------------------------------------------- forwarded_address


def test_untrusted_peer_headers_are_ignored() -> None:
    """The spoofing case: a client talking directly cannot choose its address."""
    peer = ("198.51.100.20", 5555)
    spoofed = headers(("X-Forwarded-For", "10.0.0.5"), ("X-Real-IP", "10.0.0.6"))
    assert forwarded_address(peer, spoofed, TRUSTED) is peer
    assert forwarded_address(("10.0.1.1", 5555), spoofed, TRUSTED) == ("10.0.1.1", 5555)  # just outside /24


def test_trusted_peer_forwards_the_client() -> None:
    assert forwarded_address(PROXY, xff("203.0.113.9"), TRUSTED) == ("203.0.113.9", FORWARDED_PORT)
    assert FORWARDED_PORT == 0


def test_walk_skips_trusted_proxies_from_the_right() -> None:
    chain = xff("203.0.113.9, 192.0.2.1, 10.0.0.7")
    assert forwarded_address(PROXY, chain, TRUSTED) == ("203.0.113.9", 0)


def test_walk_stops_at_the_first_untrusted_entry() -> None:
    """Whatever is left of the client's entry was written by the client: a spoofed "trusted" value is not used."""
    spoofed = xff("10.0.0.99, 198.51.100.66, 203.0.113.9")  # the client sent "10.0.0.99, 198.51.100.66"
    assert forwarded_address(PROXY, spoofed, TRUSTED) == ("203.0.113.9", 0)
    assert forwarded_address(PROXY, xff("1.1.1.1, 2.2.2.2, 10.0.0.3"), TRUSTED) == ("2.2.2.2", 0)


def test_several_headers_are_one_list() -> None:
    split = xff("203.0.113.9, 198.51.100.1", "192.0.2.1", "10.0.0.2")
    assert forwarded_address(PROXY, split, TRUSTED) == ("198.51.100.1", 0)
    mixed = headers(("X-Forwarded-For", "198.51.100.1"), ("Host", "x"), ("x-forwarded-for", "203.0.113.9"))
    assert forwarded_address(PROXY, mixed, TRUSTED) == ("203.0.113.9", 0)


def test_all_entries_trusted_gives_the_left_most() -> None:
    assert forwarded_address(PROXY, xff("10.0.0.9, 192.0.2.1"), TRUSTED) == ("10.0.0.9", 0)


def test_empty_list_elements_are_skipped() -> None:
    assert forwarded_address(PROXY, xff(", 203.0.113.9 ,,", ""), TRUSTED) == ("203.0.113.9", 0)


def test_invalid_entry_stops_the_walk(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="simplews")
    # right-most invalid: nothing to vouch for, the TCP peer stays (port included)
    assert forwarded_address(PROXY, xff("203.0.113.9, unknown"), TRUSTED) is PROXY
    # invalid left of a trusted proxy: that proxy is the last address we can vouch for
    assert forwarded_address(PROXY, xff("203.0.113.9, garbage, 192.0.2.1"), TRUSTED) == ("192.0.2.1", 0)
    messages = [r.getMessage() for r in caplog.records if r.name == "simplews"]
    assert len(messages) == 2
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    assert "'unknown' is not an IP address" in messages[0] and "10.0.0.1:43210" in messages[0]
    assert "'garbage'" in messages[1]


def test_hostile_values_never_crash() -> None:
    for value in ("\x00\xff", "[", "]", ":", "::::::::::", "%", "[::1]:99999", "1.2.3.4%", "\u0663.1.1.1",
                  "x" * 5000, ",".join(["10.0.0.2"] * 2000)):
        result = forwarded_address(PROXY, xff(value), TRUSTED)
        assert result == PROXY or result == ("10.0.0.2", 0), (value[:20], result)


def test_x_real_ip_without_x_forwarded_for() -> None:
    assert forwarded_address(PROXY, headers(("X-Real-IP", "203.0.113.9")), TRUSTED) == ("203.0.113.9", 0)
    # the last value: a proxy that adds its own after the client's
    two = headers(("X-Real-IP", "198.51.100.1"), ("X-Real-IP", "203.0.113.9"))
    assert forwarded_address(PROXY, two, TRUSTED) == ("203.0.113.9", 0)
    # X-Forwarded-For wins when both are there
    both = headers(("X-Real-IP", "198.51.100.1"), ("X-Forwarded-For", "203.0.113.9"))
    assert forwarded_address(PROXY, both, TRUSTED) == ("203.0.113.9", 0)
    assert forwarded_address(PROXY, headers(), TRUSTED) is PROXY


def test_invalid_x_real_ip_is_ignored(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="simplews")
    assert forwarded_address(PROXY, headers(("X-Real-IP", "nobody")), TRUSTED) is PROXY
    [record] = [r for r in caplog.records if r.name == "simplews"]
    assert record.levelno == logging.DEBUG and "X-Real-IP 'nobody'" in record.getMessage()


def test_ipv6_peer_and_clients() -> None:
    peer = ("2001:db8::2", 443, 0, 0)  # what an AF_INET6 socket gives
    assert forwarded_address(peer, xff("[2001:DB8:1::5]:4711"), TRUSTED) == ("2001:db8:1::5", 0)
    assert forwarded_address(peer, xff("203.0.113.9"), TRUSTED) == ("203.0.113.9", 0)
    assert forwarded_address(("2001:db8:1::2", 443, 0, 0), xff("203.0.113.9"), TRUSTED)[1] == 443  # untrusted


def test_ipv4_mapped_peer_of_a_dual_stack_socket() -> None:
    peer = ("::ffff:10.0.0.1", 5000, 0, 0)
    assert forwarded_address(peer, xff("::ffff:203.0.113.9"), TRUSTED) == ("203.0.113.9", 0)


def test_non_ip_peers_are_returned_unchanged() -> None:
    for peer in ("/run/simplews.sock", None, (), ("", 0), (b"10.0.0.1", 1)):  # type: Any
        assert forwarded_address(peer, xff("203.0.113.9"), TRUSTED) == peer


# ---------------------------------------------------------------------- the servers


class Reporter(simplews.WebSocketHandler):
    """Answers every message with the connection's addresses."""

    def on_message(self, ws: Any, message: Any) -> None:
        ws.send("%s %s|%s %s" % (ws.remote_address[0], ws.remote_address[1],
                                 ws.peer_address[0], ws.peer_address[1]))


MODES = ["threaded", "selectors"]


def addresses(url: str, **headers_: str) -> Tuple[Tuple[str, int], Tuple[str, int]]:
    """(remote_address, peer_address) as the server sees a client sending ``headers_``."""
    fields = [(name.replace("_", "-"), value) for name, value in headers_.items()]
    ws = simplews.connect(url, timeout=GUARD, headers=fields, ping_interval=None)
    try:
        ws.send("?")
        remote, peer = str(ws.recv(GUARD)).split("|")
        local_port = ws.local_address[1]
    finally:
        ws.close()
    remote_host, remote_port = remote.split()
    peer_host, peer_port = peer.split()
    assert (peer_host, int(peer_port)) == ("127.0.0.1", local_port)  # the TCP peer, always
    return (remote_host, int(remote_port)), (peer_host, int(peer_port))


@pytest.mark.parametrize("mode", MODES)
def test_server_without_trusted_proxies_ignores_spoofed_headers(serve: Callable[..., Any], mode: str) -> None:
    running = serve(Reporter(), mode=mode)
    assert running.server.trusted_proxies is None
    remote, peer = addresses(running.url, X_Forwarded_For="203.0.113.9", X_Real_IP="203.0.113.10")
    assert remote == peer


@pytest.mark.parametrize("mode", MODES)
def test_server_with_other_trusted_proxies_ignores_spoofed_headers(serve: Callable[..., Any], mode: str) -> None:
    running = serve(Reporter(), mode=mode, trusted_proxies=["10.0.0.0/8", "::1"])
    remote, peer = addresses(running.url, X_Forwarded_For="203.0.113.9", X_Real_IP="203.0.113.10")
    assert remote == peer


@pytest.mark.parametrize("mode", MODES)
def test_server_with_trusted_proxy_exposes_the_client(serve: Callable[..., Any], mode: str) -> None:
    running = serve(Reporter(), mode=mode, trusted_proxies=["127.0.0.1"])
    assert "127.0.0.1" in running.server.trusted_proxies
    remote, _ = addresses(running.url, X_Forwarded_For="198.51.100.1, 203.0.113.9")
    assert remote == ("203.0.113.9", 0)
    remote, _ = addresses(running.url, X_Real_IP="203.0.113.10")
    assert remote == ("203.0.113.10", 0)
    remote, peer = addresses(running.url, X_Forwarded_For="not-an-address")
    assert remote == peer
    remote, peer = addresses(running.url)
    assert remote == peer


@pytest.mark.parametrize("mode", MODES)
def test_max_connections_per_ip_counts_forwarded_clients(serve: Callable[..., Any], mode: str,
                                                         caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="simplews")
    running = serve(Reporter(), mode=mode, trusted_proxies=["127.0.0.1"], max_connections_per_ip=1,
                    ping_interval=None)
    server = running.server
    port = running.port
    opened = []  # type: List[RawClient]
    try:
        for client in ("203.0.113.1", "203.0.113.2"):  # one proxy, two clients: both get in
            raw = RawClient(port)
            opened.append(raw)
            raw.handshake(headers={"X-Forwarded-For": client})
        wait_until(lambda: len(server.connections) == 2, message="two connections")
        assert sorted(server._slots_per_ip) == ["203.0.113.1", "203.0.113.2"]
        with RawClient(port) as again:  # the same client again, through the same proxy: refused
            again.send(again.request_bytes(headers={"X-Forwarded-For": "203.0.113.1"}))
            status, _, _ = again.read_response()
            assert status == 503
            local = again.local_port
        refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert refused == ["203.0.113.1:0 via 127.0.0.1:%d: GET / refused: max_connections_per_ip=1 reached "
                           "for 203.0.113.1; answering 503" % local]
    finally:
        for raw in opened:
            raw.close()
    wait_until(lambda: not server.connections and not server._slots_per_ip, message="slots released")
    assert server._slots == 0


@pytest.mark.parametrize("mode", MODES)
def test_server_validates_trusted_proxies(mode: str) -> None:
    for bad in ("127.0.0.1", ["localhost"], ["10.0.0.1/8"], [1]):  # type: Any
        with pytest.raises(ValueError, match="trusted_proxies"):
            simplews.SimpleWSServer(Reporter(), port=0, mode=mode, trusted_proxies=bad)
    server = simplews.SimpleWSServer(Reporter(), port=0, mode=mode, trusted_proxies=[])
    try:
        assert server.trusted_proxies.networks == ()
    finally:
        server.server_close()


def test_client_side_peer_address_is_the_server(serve: Callable[..., Any]) -> None:
    running = serve(Reporter())
    ws = simplews.connect(running.url, timeout=GUARD)
    try:
        assert ws.peer_address == ws.remote_address == ("127.0.0.1", running.port)
    finally:
        ws.close()


def test_ipv4_mapped_peer_on_a_dual_stack_server(serve: Callable[..., Any]) -> None:
    """host="" listens dual-stack: IPv4 peers arrive as ::ffff:127.0.0.1 and still match "127.0.0.1"."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    running = serve(Reporter(), host="", trusted_proxies=["127.0.0.1"])
    if running.server.address[0] != "::":
        pytest.skip("no dual-stack socket here")
    url = "ws://127.0.0.1:%d/" % running.port
    ws = simplews.connect(url, timeout=GUARD, headers=[("X-Forwarded-For", "203.0.113.9")], ping_interval=None)
    try:
        ws.send("?")
        remote, peer = str(ws.recv(GUARD)).split("|")
    finally:
        ws.close()
    assert remote == "203.0.113.9 0"
    assert peer.split()[0] == "::ffff:127.0.0.1"
