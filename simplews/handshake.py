"""The WebSocket opening handshake rules (RFC 6455 §4), sans-I/O.

Builders return bytes to send; checkers take parsed heads and either return
what was negotiated or raise InvalidHandshake carrying the HTTP status (and
headers) the server must answer with, so the I/O layers decide nothing.
"""

import base64
import binascii
import hashlib
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from . import http11
from .exceptions import InvalidHandshake, InvalidStatus, NegotiationError
from .http11 import _TOKEN_RE as _TOKEN_AT, Headers, is_token

__all__ = [
    "GUID",
    "ExtensionList",
    "generate_key",
    "accept_key",
    "parse_extensions",
    "serialize_extensions",
    "parse_token_list",
    "check_request",
    "check_origin",
    "select_subprotocol",
    "build_response",
    "build_rejection",
    "build_request",
    "check_response",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

ExtensionList = List[Tuple[str, List[Tuple[str, Optional[str]]]]]

# What a 426 must carry so a client can tell what this endpoint speaks (RFC 7231 §6.5.15).
UPGRADE_REQUIRED_HEADERS = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
]  # type: List[Tuple[str, str]]

_OWS = " \t"


def generate_key() -> str:
    """A fresh Sec-WebSocket-Key: 16 random bytes, base64-encoded (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value proving the server read ``key`` (RFC 6455 §1.3)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


# --- header value grammars ---------------------------------------------------


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _OWS:
        pos += 1
    return pos


def _read_token(text: str, pos: int, what: str) -> Tuple[str, int]:
    """Read a token at ``pos`` or explain what was found instead."""
    match = _TOKEN_AT.match(text, pos)
    end = pos if match is None else match.end()
    if end == pos:
        found = repr(text[pos]) if pos < len(text) else "end of header"
        raise InvalidHandshake("invalid Sec-WebSocket-Extensions %r: expected %s at position %d, "
                               "found %s" % (text, what, pos, found))
    return text[pos:end], end


def _read_quoted(text: str, pos: int) -> Tuple[str, int]:
    """Read a quoted-string starting at the opening quote at ``pos``."""
    chars = []  # type: List[str]
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos == len(text):
                break
            char = text[pos]
        chars.append(char)
        pos += 1
    raise InvalidHandshake("invalid Sec-WebSocket-Extensions %r: unterminated quoted string" % text)


def _read_param(text: str, pos: int) -> Tuple[Tuple[str, Optional[str]], int]:
    """Read ``name``, ``name=token`` or ``name="token"`` at ``pos``."""
    name, pos = _read_token(text, pos, "a parameter name")
    pos = _skip_ows(text, pos)
    if pos >= len(text) or text[pos] != "=":
        return (name, None), pos
    pos = _skip_ows(text, pos + 1)
    if pos < len(text) and text[pos] == '"':
        value, pos = _read_quoted(text, pos)
        if not is_token(value):
            raise InvalidHandshake("invalid Sec-WebSocket-Extensions %r: quoted value %r of "
                                   "parameter %r is not a token" % (text, value, name))
        return (name, value), pos
    value, pos = _read_token(text, pos, "a value for parameter %r" % name)
    return (name, value), pos


def _read_extension(text: str, pos: int) -> Tuple[Tuple[str, List[Tuple[str, Optional[str]]]], int]:
    """Read one extension and its parameters, stopping before ',' or the end."""
    name, pos = _read_token(text, pos, "an extension name")
    params = []  # type: List[Tuple[str, Optional[str]]]
    while True:
        pos = _skip_ows(text, pos)
        if pos >= len(text) or text[pos] == ",":
            return (name, params), pos
        if text[pos] != ";":
            raise InvalidHandshake("invalid Sec-WebSocket-Extensions %r: expected ';' or ',' at "
                                   "position %d, found %r" % (text, pos, text[pos]))
        param, pos = _read_param(text, _skip_ows(text, pos + 1))
        params.append(param)


def parse_extensions(values: List[str]) -> ExtensionList:
    """Parse Sec-WebSocket-Extensions header values (RFC 6455 §9.1, RFC 7692).

    Several header lines mean one concatenated list; empty list elements are
    ignored as RFC 7230 §7 requires.
    """
    extensions = []  # type: ExtensionList
    for text in values:
        pos = 0
        while True:
            pos = _skip_ows(text, pos)
            if pos >= len(text):
                break
            if text[pos] == ",":
                pos += 1
                continue
            extension, pos = _read_extension(text, pos)
            extensions.append(extension)
    return extensions


def serialize_extensions(exts: ExtensionList) -> str:
    """The Sec-WebSocket-Extensions value for ``exts``; ValueError on non-tokens."""
    parts = []
    for name, params in exts:
        items = [_checked_token(name)]
        for key, value in params:
            if value is None:
                items.append(_checked_token(key))
            else:
                items.append("%s=%s" % (_checked_token(key), _checked_token(value)))
        parts.append("; ".join(items))
    return ", ".join(parts)


def _checked_token(text: str) -> str:
    """Extension names, parameters and values are all tokens (RFC 6455 §9.1)."""
    if not is_token(text):
        raise ValueError("invalid extension name, parameter or value %r; expected a token" % text)
    return text


def parse_token_list(values: List[str], header: str = "header") -> List[str]:
    """Parse comma lists such as Connection or Sec-WebSocket-Protocol.

    ``header`` only names the header in error messages.
    """
    tokens = []  # type: List[str]
    for value in values:
        for item in value.split(","):
            item = item.strip(_OWS)
            if not item:
                continue
            if not is_token(item):
                raise InvalidHandshake("invalid %s value %r: %r is not a token" % (header, value, item))
            tokens.append(item)
    return tokens


def _has_websocket(headers: Headers) -> bool:
    """Whether Upgrade names websocket; protocol versions like 'HTTP/2.0' are not tokens."""
    items = [item.strip(_OWS).lower() for value in headers.get_all("Upgrade") for item in value.split(",")]
    return "websocket" in items


def _has_upgrade(headers: Headers) -> bool:
    tokens = parse_token_list(headers.get_all("Connection"), "Connection")
    return "upgrade" in [token.lower() for token in tokens]


def _missing_token_message(headers: Headers, name: str, token: str) -> str:
    """Say whether the header is absent or present without the needed token."""
    value = headers.get(name)
    if value is None:
        return "missing %s: %s header" % (name, token)
    return "%s header %r has no %r token" % (name, value, token)


def _single(headers: Headers, name: str) -> Optional[str]:
    """The one value of ``name``, None if absent; repeating it is an error."""
    values = headers.get_all(name)
    if len(values) > 1:
        raise InvalidHandshake("more than one %s header; expected exactly one" % name)
    return values[0] if values else None


def _check_version(version: str) -> None:
    """WebSocket needs HTTP/1.1 or a later 1.x (RFC 6455 §4.1)."""
    if not (version.startswith("HTTP/1.") and version[7:].isdigit() and int(version[7:]) >= 1):
        raise InvalidHandshake("%s is not supported; the WebSocket handshake requires HTTP/1.1"
                               % version)


# --- server side ---------------------------------------------------------------


def check_request(request: http11.Request) -> str:
    """Validate a client's opening handshake; return its Sec-WebSocket-Key."""
    if request.method != "GET":
        raise InvalidHandshake("method %s is not allowed; expected GET" % request.method,
                               status=405, headers=[("Allow", "GET")])
    _check_version(request.version)
    headers = request.headers
    if _single(headers, "Host") is None:
        raise InvalidHandshake("missing Host header")
    if not _has_websocket(headers):
        message = _missing_token_message(headers, "Upgrade", "websocket")
        raise InvalidHandshake(message + "; this is a WebSocket endpoint",
                               status=426, headers=UPGRADE_REQUIRED_HEADERS)
    if not _has_upgrade(headers):
        message = _missing_token_message(headers, "Connection", "upgrade")
        raise InvalidHandshake(message + "; this is a WebSocket endpoint",
                               status=426, headers=UPGRADE_REQUIRED_HEADERS)
    _check_client_version(headers)
    return _check_key(headers)


def _check_client_version(headers: Headers) -> None:
    """Only version 13 exists; a 426 tells older clients which one to use (RFC 6455 §4.4)."""
    version = _single(headers, "Sec-WebSocket-Version")
    if version is None:
        raise InvalidHandshake("missing Sec-WebSocket-Version header; expected 13",
                               status=426, headers=UPGRADE_REQUIRED_HEADERS)
    if version != "13":
        raise InvalidHandshake("Sec-WebSocket-Version %s is not supported; expected 13" % version,
                               status=426, headers=UPGRADE_REQUIRED_HEADERS)


def _check_key(headers: Headers) -> str:
    """The key must be base64 of exactly 16 bytes (RFC 6455 §4.2.1 item 5)."""
    key = _single(headers, "Sec-WebSocket-Key")
    if key is None:
        raise InvalidHandshake("missing Sec-WebSocket-Key header")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidHandshake("Sec-WebSocket-Key %r is not valid base64; expected 16 random "
                               "bytes in base64" % key)
    if len(raw) != 16:
        raise InvalidHandshake("Sec-WebSocket-Key %r decodes to %d bytes; expected 16"
                               % (key, len(raw)))
    return key


def check_origin(request: http11.Request, origins: Optional[Sequence[Optional[str]]]) -> None:
    """Refuse cross-site browsers: the Origin must be listed (None allows no Origin)."""
    if origins is None:
        return
    origin = _single(request.headers, "Origin")
    if origin in origins:
        return
    if origin is None:
        raise InvalidHandshake("missing Origin header; this server only allows listed origins",
                               status=403)
    raise InvalidHandshake("origin %r is not allowed" % origin, status=403)


def select_subprotocol(request: http11.Request, supported: Optional[Sequence[str]]) -> Optional[str]:
    """The first subprotocol in the client's preference order that we support."""
    if not supported:
        return None
    offered = parse_token_list(request.headers.get_all("Sec-WebSocket-Protocol"),
                               "Sec-WebSocket-Protocol")
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


def build_response(key: str, subprotocol: Optional[str] = None, extensions: Optional[str] = None,
                   extra_headers: Iterable[Tuple[str, str]] = ()) -> Tuple[bytes, Headers]:
    """The 101 response accepting the handshake, and the headers it carries."""
    headers = Headers([
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ])
    if subprotocol is not None:
        headers.add("Sec-WebSocket-Protocol", subprotocol)
    if extensions:
        headers.add("Sec-WebSocket-Extensions", extensions)
    for name, value in extra_headers:
        headers.add(name, value)
    return http11.serialize_response(101, headers), headers


def build_rejection(status: int, body: bytes = b"", headers: Iterable[Tuple[str, str]] = (),
                    content_type: str = "text/plain; charset=utf-8", head: bool = False) -> bytes:
    """An HTTP response refusing the handshake; the connection closes after it.

    Connection tokens from ``headers`` (e.g. "Upgrade" for a 426) are kept
    alongside "close"; a caller's Content-Length is replaced by the real one.
    ``head``: the answer to a HEAD request, which has the headers a GET would
    get (Content-Length included) and no body (RFC 9110, section 9.3.2).
    """
    extra = Headers(headers)
    out = Headers()
    if "Content-Type" not in extra:
        out.add("Content-Type", content_type)
    out.add("Content-Length", str(len(body)))
    connection = [token.strip(_OWS) for value in extra.get_all("Connection")
                  for token in value.split(",") if token.strip(_OWS)]
    if "close" not in [token.lower() for token in connection]:
        connection.append("close")
    out.add("Connection", ", ".join(connection))
    for name, value in extra.items():
        if name.lower() not in ("connection", "content-length"):
            out.add(name, value)
    return http11.serialize_response(status, out, b"" if head else body)


# --- client side -----------------------------------------------------------------


def _user_agent() -> str:
    try:
        from . import __version__
    except ImportError:
        __version__ = "0"
    return "simplews/%s" % (__version__,)


def _host_header(host: str, port: int, secure: bool) -> str:
    """Host as RFC 7230 §5.4 wants it: IPv6 in brackets, default port omitted."""
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    if port == (443 if secure else 80):
        return host
    return "%s:%d" % (host, port)


def build_request(host: str, port: int, resource: str, key: str, secure: bool,
                  origin: Optional[str] = None, subprotocols: Optional[Sequence[str]] = None,
                  extensions: Optional[str] = None, extra_headers: Iterable[Tuple[str, str]] = (),
                  credentials: Optional[Tuple[str, str]] = None) -> Tuple[bytes, Headers]:
    """The client's opening handshake, and the headers it carries.

    An extra header whose name is already set replaces it, so callers can
    override Host or User-Agent; repeating it in ``extra_headers`` adds values.
    """
    headers = Headers([
        ("Host", _host_header(host, port, secure)),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ])
    if origin is not None:
        headers.add("Origin", origin)
    if subprotocols:
        for protocol in subprotocols:
            if not is_token(protocol):
                raise ValueError("invalid subprotocol %r; expected a token" % protocol)
        headers.add("Sec-WebSocket-Protocol", ", ".join(subprotocols))
    if extensions:
        headers.add("Sec-WebSocket-Extensions", extensions)
    if credentials is not None:
        headers.add("Authorization", _basic_auth(*credentials))
    headers.add("User-Agent", _user_agent())
    _merge(headers, extra_headers)
    return http11.serialize_request("GET", resource or "/", headers), headers


def _basic_auth(username: str, password: str) -> str:
    """RFC 7617 Basic credentials, UTF-8 encoded."""
    if ":" in username:
        raise ValueError("username %r contains ':'; Basic authentication forbids it" % username)
    token = base64.b64encode(("%s:%s" % (username, password)).encode("utf-8"))
    return "Basic " + token.decode("ascii")


def _merge(headers: Headers, extra_headers: Iterable[Tuple[str, str]]) -> None:
    """Add extra headers, the first of each name replacing a default one."""
    replaced = set()
    for name, value in extra_headers:
        key = name.lower()
        if key in headers and key not in replaced:
            headers[name] = value
        else:
            headers.add(name, value)
        replaced.add(key)


def check_response(response: http11.Response, key: str,
                   subprotocols: Optional[Sequence[str]]) -> Optional[str]:
    """Validate the server's 101; return the selected subprotocol, if any."""
    if response.status != 101:
        raise InvalidStatus(response.status, response.reason, response.headers.items(), response.body)
    _check_version(response.version)
    headers = response.headers
    if not _has_websocket(headers):
        raise InvalidHandshake(_missing_token_message(headers, "Upgrade", "websocket")
                               + " in the response")
    if not _has_upgrade(headers):
        raise InvalidHandshake(_missing_token_message(headers, "Connection", "upgrade")
                               + " in the response")
    _check_accept(headers, key)
    return _check_subprotocol(headers, subprotocols)


def _check_accept(headers: Headers, key: str) -> None:
    """The accept value proves the server is a WebSocket server that read our key."""
    accept = _single(headers, "Sec-WebSocket-Accept")
    expected = accept_key(key)
    if accept is None:
        raise InvalidHandshake("missing Sec-WebSocket-Accept header; expected %r" % expected)
    if accept != expected:
        raise InvalidHandshake("Sec-WebSocket-Accept %r does not match the key; expected %r"
                               % (accept, expected))


def _check_subprotocol(headers: Headers, subprotocols: Optional[Sequence[str]]) -> Optional[str]:
    """The server may pick at most one of the subprotocols we offered (RFC 6455 §4.1)."""
    selected = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"), "Sec-WebSocket-Protocol")
    if not selected:
        return None
    if len(selected) > 1:
        raise NegotiationError("server selected more than one subprotocol: %s; expected one"
                               % ", ".join(selected))
    protocol = selected[0]
    if not subprotocols or protocol not in subprotocols:
        raise NegotiationError("server selected subprotocol %r, which was not offered; offered: %s"
                               % (protocol, ", ".join(subprotocols) if subprotocols else "none"))
    return protocol
