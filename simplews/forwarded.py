"""The client's address behind trusted reverse proxies (``trusted_proxies=``).

Sans-I/O: the server hands over the TCP peer's address and the request
headers, and gets back the address to expose as ``ws.remote_address``.

A server behind a reverse proxy (nginx, HAProxy, a load balancer) sees the
proxy as its TCP peer; the proxy passes the real client's address in
``X-Forwarded-For`` (a list to which each proxy appends the address it received
the request from) or ``X-Real-IP`` (one address, set by the proxy). Any client
can send these headers too, so they are believed only when the TCP peer is a
proxy the operator listed, and ``X-Forwarded-For`` is read from the right:

* its entries are walked right to left (several ``X-Forwarded-For`` headers
  are one list, in order); an entry that is itself a trusted proxy was added by
  one of ours, and the walk goes on to its left; the first entry that is not a
  trusted proxy is the client (whatever lies to its left was written by the
  client or its own proxies, and is ignored);
* an entry that is not an IP address stops the walk: what is left of it cannot
  be vouched for, so the last trusted proxy reached is the client (logged at
  DEBUG); if every entry is a trusted proxy, the left-most is the client;
* without ``X-Forwarded-For``, ``X-Real-IP`` (its last value) is the client;
  an invalid value is ignored (logged at DEBUG) and the TCP peer stays.

A forwarded client's address is ``(host, 0)``: proxies do not forward the
client's port in a standard header (``X-Forwarded-Port`` is the port the
client connected *to*). Hosts are normalized (``str`` of the parsed address;
IPv4-mapped IPv6 addresses such as ``::ffff:10.0.0.1`` become IPv4), and an
entry may carry a port (``203.0.113.7:4711``, ``[2001:db8::7]:4711``), which
is dropped. The :mod:`ipaddress` module is imported only when this module is
used, i.e. when a server was given ``trusted_proxies``.
"""

import logging
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Tuple, Union

from .http11 import Headers

if TYPE_CHECKING:  # pragma: no cover
    import ipaddress
    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

__all__ = ["TrustedProxies", "forwarded_address", "parse_ip"]

logger = logging.getLogger("simplews")

FORWARDED_PORT = 0  # the port of a forwarded client's (host, port) address

_DIGITS = frozenset("0123456789")


class TrustedProxies(object):
    """The reverse proxies whose forwarding headers a server believes.

    ``proxies`` is a list of IP addresses and networks, IPv4 or IPv6, as
    strings (``"127.0.0.1"``, ``"10.0.0.0/8"``, ``"::1"``, ``"fd00::/8"``) or
    :mod:`ipaddress` objects. Anything else raises :class:`ValueError`
    (hostnames are not resolved; a network with host bits set, such as
    ``"10.0.0.1/8"``, is refused rather than widened). An empty list trusts
    nobody.
    """

    __slots__ = ("networks",)

    def __init__(self, proxies: Iterable[Any]) -> None:
        import ipaddress
        if isinstance(proxies, (str, bytes)) or not _iterable(proxies):
            raise ValueError("trusted_proxies must be a list of IP addresses or networks, e.g. "
                             "[\"127.0.0.1\", \"10.0.0.0/8\", \"::1\"], not %r" % (proxies,))
        networks = []  # type: List[IPNetwork]
        for entry in proxies:
            if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
                networks.append(entry)
                continue
            if isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                networks.append(ipaddress.ip_network(entry))
                continue
            if not isinstance(entry, str):
                raise ValueError("invalid trusted_proxies entry %r: expected an IP address or network "
                                 "as a string, such as \"10.0.0.0/8\"" % (entry,))
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=True))
            except ValueError as exc:
                raise ValueError("invalid trusted_proxies entry %r: %s (expected an IP address such as "
                                 "\"127.0.0.1\" or a network such as \"10.0.0.0/8\"; hostnames are not "
                                 "resolved)" % (entry, exc)) from None
        self.networks = tuple(networks)  # type: Tuple[IPNetwork, ...]

    def trusts(self, ip: "IPAddress") -> bool:
        """Whether ``ip`` (as returned by :func:`parse_ip`) is one of the trusted proxies."""
        return any(ip in network for network in self.networks)

    def __contains__(self, host: object) -> bool:
        """``"10.1.2.3" in trusted``: a host string that is a trusted proxy's address."""
        ip = parse_ip(host) if isinstance(host, str) else None
        return ip is not None and self.trusts(ip)

    def __repr__(self) -> str:
        return "TrustedProxies([%s])" % ", ".join(repr(str(network)) for network in self.networks)


def parse_ip(text: str) -> Optional["IPAddress"]:
    """``text`` as an IP address, or None when it is not one.

    Accepts surrounding spaces, a port (``1.2.3.4:80``, ``[::1]:80``), brackets
    around IPv6 and an IPv6 scope (``fe80::1%eth0``, dropped); IPv4-mapped IPv6
    addresses come back as IPv4.
    """
    import ipaddress
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1:] if end > 0 else ""
        if end < 0 or (rest and not (rest[:1] == ":" and _is_port(rest[1:]))):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _is_port(port):
            return None
    if ":" in text:  # the scope of a link-local IPv6 address (ipaddress knows it from 3.9 only)
        text = text.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(text)  # type: IPAddress
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def forwarded_address(peer: Any, headers: Headers, trusted: TrustedProxies) -> Any:
    """The client's address: ``peer`` itself unless it is a trusted proxy.

    ``peer`` is the TCP peer's address as the socket gives it ((host, port) or
    (host, port, flowinfo, scope_id)); ``headers`` the request's headers. When
    ``peer`` is a trusted proxy, the result comes from ``X-Forwarded-For``
    (right-most entry that is not a trusted proxy) or else ``X-Real-IP``, as
    ``(host, 0)``; when those say nothing usable, ``peer`` is returned as it is.
    See the module documentation for the exact rules.
    """
    host = peer[0] if isinstance(peer, tuple) and peer and isinstance(peer[0], str) else None
    peer_ip = parse_ip(host) if host is not None else None
    if peer_ip is None or not trusted.trusts(peer_ip):
        return peer  # a client talking to us directly: its headers are its own word
    entries = [entry.strip() for value in headers.get_all("X-Forwarded-For") for entry in value.split(",")]
    entries = [entry for entry in entries if entry]  # empty list elements are allowed and mean nothing
    client = peer_ip
    if entries:
        for entry in reversed(entries):
            ip = parse_ip(entry)
            if ip is None:
                logger.debug("%s: X-Forwarded-For entry %r is not an IP address; the client is taken to "
                             "be %s", _format(peer), entry[:100], client)
                break
            client = ip
            if not trusted.trusts(ip):
                break
    else:
        values = headers.get_all("X-Real-IP")
        if values:
            ip = parse_ip(values[-1])
            if ip is None:
                logger.debug("%s: X-Real-IP %r is not an IP address; ignored", _format(peer), values[-1][:100])
            else:
                client = ip
    if client is peer_ip:
        return peer
    return (str(client), FORWARDED_PORT)


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and all(char in _DIGITS for char in text) and int(text) <= 65535


def _iterable(value: Any) -> bool:
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _format(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return ("[%s]:%s" if ":" in host else "%s:%s") % (host, address[1])
    return str(address)
