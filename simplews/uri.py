"""ws:// and wss:// URIs (RFC 6455 §3), parsed into what the client needs."""

from typing import NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

from .exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]

WebSocketURI = NamedTuple("WebSocketURI", [
    ("secure", bool),
    ("host", str),
    ("port", int),
    ("resource", str),
    ("credentials", Optional[Tuple[str, str]]),
])


def parse_uri(uri: str) -> WebSocketURI:
    """Split a WebSocket URI; InvalidURI says what is wrong with it.

    The resource is the path and query (never the fragment, §3); user:password
    becomes Basic credentials; IPv6 literals come without brackets.
    """
    if not isinstance(uri, str):
        raise InvalidURI("URI must be a str, not %s" % type(uri).__name__)
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidURI("%r is not a valid URI: %s" % (uri, exc)) from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI("%r is not a WebSocket URI: expected the scheme ws:// or wss://" % uri)
    if parts.fragment or uri.endswith("#"):
        raise InvalidURI("%r has a fragment; WebSocket URIs must not (RFC 6455 §3)" % uri)
    if not parts.hostname:
        raise InvalidURI("%r has no host" % uri)
    secure = parts.scheme == "wss"
    if port is None:
        port = 443 if secure else 80
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    credentials = None
    if parts.username is not None or parts.password is not None:
        credentials = (unquote(parts.username or ""), unquote(parts.password or ""))
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in resource):
        resource = _quote_resource(resource)
    return WebSocketURI(secure, parts.hostname, port, resource, credentials)


def _quote_resource(resource: str) -> str:
    from urllib.parse import quote
    return quote(resource, safe="/?&=%:@!$'()*+,;~[]")
