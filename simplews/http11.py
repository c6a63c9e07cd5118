"""HTTP/1.1 message heads: just enough of RFC 7230 for the WebSocket handshake.

Sans-I/O: bytes in, objects out, and the reverse. Every limit is enforced while
the head is still arriving, so a hostile peer can never make us buffer more
than a few kilobytes past a limit. The ``http`` stdlib package is not imported
because it is slow to import and not needed for so little.
"""

import re
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from .exceptions import InvalidHandshake

__all__ = [
    "MAX_LINE",
    "MAX_HEADERS",
    "MAX_HEAD",
    "MAX_BODY",
    "Headers",
    "Request",
    "Response",
    "HeadReader",
    "is_token",
    "parse_request",
    "parse_response",
    "serialize_request",
    "serialize_response",
    "content_length",
]

MAX_LINE = 8192  # bytes per request/status line and per header line
MAX_HEADERS = 100  # header lines
MAX_HEAD = 65536  # whole head
MAX_BODY = 65536  # the most of an error-response body a client keeps

CRLF = b"\r\n"
_CR = 0x0D
_LF = 0x0A

# RFC 7230 §3.2.6 token.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_BYTES = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
# Field values: no control characters except HTAB (RFC 7230 §3.2, obs-text allowed).
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Request target: visible ASCII only (RFC 7230 §5.3 forms are all made of these).
_TARGET_RE = re.compile(r"[\x21-\x7e]+")
_REQUEST_LINE_RE = re.compile(rb"[\x20-\x7e]+")
_VERSION_RE = re.compile(r"HTTP/([0-9])\.([0-9])")
_STATUS_RE = re.compile(r"[0-9]{3}")
_LENGTH_RE = re.compile(r"[0-9]{1,18}")

REASONS = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}  # type: Dict[int, str]


def is_token(text: str) -> bool:
    """Tell whether ``text`` is an RFC 7230 token (methods, header names, list items)."""
    return _TOKEN_RE.fullmatch(text) is not None


def _shorten(data: bytes, limit: int = 60) -> str:
    """Render peer bytes for an error message without echoing kilobytes of them."""
    if len(data) > limit:
        return repr(data[:limit]) + "..."
    return repr(data)


class Headers:
    """Case-insensitive, ordered, multi-valued HTTP headers.

    A plain dict would lose repeated headers and their order, which matter for
    Sec-WebSocket-Extensions and for detecting duplicated Sec-WebSocket-Key.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[Tuple[str, str]] = ()) -> None:
        self._items = []  # type: List[Tuple[str, str]]
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping any earlier ones for the same name."""
        self._items.append((name, value))

    def __setitem__(self, name: str, value: str) -> None:
        """Replace all values of ``name``, keeping the place of the first one."""
        key = name.lower()
        for index, (old, _) in enumerate(self._items):
            if old.lower() == key:
                self._items[index] = (name, value)
                self._items[index + 1:] = [
                    item for item in self._items[index + 1:] if item[0].lower() != key
                ]
                return
        self._items.append((name, value))

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [item for item in self._items if item[0].lower() != key]
        if len(kept) == len(self._items):
            raise KeyError(name)
        self._items = kept

    def get_all(self, name: str) -> List[str]:
        """Every value of ``name`` in order; repeated headers must stay visible."""
        key = name.lower()
        return [value for old, value in self._items if old.lower() == key]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """Values joined with ", " (RFC 7230 §3.2.2), or ``default`` when absent."""
        values = self.get_all(name)
        if not values:
            return default
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(old.lower() == key for old, _ in self._items)

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for name, _ in self._items:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> List[Tuple[str, str]]:
        """Every (name, value) pair in order, as it goes on the wire."""
        return list(self._items)

    def copy(self) -> "Headers":
        return Headers(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        mine = [(name.lower(), value) for name, value in self._items]
        theirs = [(name.lower(), value) for name, value in other._items]
        return mine == theirs

    __hash__ = None  # type: ignore  # mutable

    def __repr__(self) -> str:
        return "Headers(%r)" % (self._items,)


class Request:
    """A parsed request head; the WebSocket layer decides what is acceptable."""

    __slots__ = ("method", "target", "version", "headers")

    def __init__(self, method: str, target: str, version: str = "HTTP/1.1",
                 headers: Optional[Headers] = None) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers if headers is not None else Headers()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return (self.method, self.target, self.version, self.headers) == (
            other.method, other.target, other.version, other.headers)

    __hash__ = None  # type: ignore  # mutable

    def __repr__(self) -> str:
        return "Request(%r, %r, %r, %r)" % (self.method, self.target, self.version, self.headers)


class Response:
    """A parsed response head, plus the (bounded) body of an error response."""

    __slots__ = ("status", "reason", "version", "headers", "body")

    def __init__(self, status: int, reason: str = "", version: str = "HTTP/1.1",
                 headers: Optional[Headers] = None, body: bytes = b"") -> None:
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return (self.status, self.reason, self.version, self.headers, self.body) == (
            other.status, other.reason, other.version, other.headers, other.body)

    __hash__ = None  # type: ignore  # mutable

    def __repr__(self) -> str:
        return "Response(%r, %r, %r, %r, %r)" % (
            self.status, self.reason, self.version, self.headers, self.body)


class HeadReader:
    """Accumulates bytes until a whole HTTP head (ending in CRLF CRLF) is there.

    Limits are enforced while the head is still incomplete, so a hostile peer
    can never make us buffer unboundedly. Each byte is searched once: the
    reader remembers where it stopped looking.
    """

    def __init__(self, is_request: bool = True) -> None:
        self.is_request = is_request
        self._buffer = bytearray()
        self._head_start = 0  # after any tolerated leading empty lines
        self._line_start = 0  # start of the line being received
        self._search = 0  # where to resume looking for LF
        self._first_line_done = False
        self._header_lines = 0
        self._state = "reading"  # then "done" or "failed"

    def feed(self, data: bytes) -> Optional[Tuple[bytes, bytes]]:
        """Add bytes; return ``(head, leftover)`` once the head is complete, else None.

        ``head`` includes the final CRLF CRLF. Raises InvalidHandshake as soon
        as a limit is crossed.
        """
        if self._state != "reading":
            raise RuntimeError("HeadReader.feed() called after the head was %s"
                               % ("complete" if self._state == "done" else "rejected"))
        self._buffer += data
        try:
            return self._advance()
        except InvalidHandshake:
            self._state = "failed"
            raise

    def _advance(self) -> Optional[Tuple[bytes, bytes]]:
        """Consume every complete line in the buffer, then check the partial one."""
        buf = self._buffer
        while True:
            if not self._first_line_done:
                self._check_first_bytes()
            end = min(len(buf), self._line_start + MAX_LINE + 2)
            index = buf.find(b"\n", self._search, end)
            if index < 0:
                self._search = max(self._search, end)
                self._check_partial_line()
                return None
            result = self._end_line(index)
            if result is not None:
                return result

    def _end_line(self, index: int) -> Optional[Tuple[bytes, bytes]]:
        """Account for the line ending at the LF at ``index``; return the head if it ended."""
        buf = self._buffer
        if index == self._line_start or buf[index - 1] != _CR:
            raise InvalidHandshake("line ends with a bare LF; expected CRLF line endings")
        length = index - 1 - self._line_start
        self._check_line_length(length)
        next_start = index + 1
        if next_start > MAX_HEAD:
            raise InvalidHandshake("HTTP head is longer than %d bytes" % MAX_HEAD, status=431)
        self._line_start = self._search = next_start
        if length == 0:
            if self._first_line_done:
                self._state = "done"
                return bytes(buf[self._head_start:next_start]), bytes(buf[next_start:])
            if not self.is_request:
                raise InvalidHandshake("not an HTTP response: empty status line")
            self._head_start = next_start  # RFC 7230 §3.5: ignore leading CRLF
        elif not self._first_line_done:
            self._first_line_done = True
        else:
            self._header_lines += 1
            if self._header_lines > MAX_HEADERS:
                raise InvalidHandshake("more than %d header lines" % MAX_HEADERS, status=431)
        return None

    def _check_partial_line(self) -> None:
        """Fail early when the incomplete line or head already exceeds a limit."""
        buf = self._buffer
        pending = len(buf) - self._line_start
        if pending and buf[-1] == _CR:
            pending -= 1  # may be the start of CRLF
        self._check_line_length(pending)
        if len(buf) > MAX_HEAD:
            raise InvalidHandshake("HTTP head is longer than %d bytes" % MAX_HEAD, status=431)

    def _check_line_length(self, length: int) -> None:
        if length <= MAX_LINE:
            return
        if self._first_line_done:
            raise InvalidHandshake("header line longer than %d bytes" % MAX_LINE, status=431)
        if self.is_request:
            raise InvalidHandshake("request line too long: more than %d bytes" % MAX_LINE, status=414)
        raise InvalidHandshake("status line too long: more than %d bytes" % MAX_LINE)

    def _check_first_bytes(self) -> None:
        """Reject a peer that is obviously not speaking HTTP/1 without waiting for CRLF.

        A TLS ClientHello on a plain port would otherwise sit here until a timeout.
        """
        start = self._line_start
        first = bytes(self._buffer[start:start + 5])
        if not first:
            return
        if self.is_request:
            if first[0] == _CR or first[0] in _TOKEN_BYTES:
                return
            if first[0] == 0x16:
                raise InvalidHandshake("not an HTTP request: received what looks like a TLS "
                                       "handshake; expected a plain-text HTTP/1.1 request line")
            raise InvalidHandshake("not an HTTP request: it starts with byte 0x%02x; "
                                   "expected an HTTP method" % first[0])
        if not b"HTTP/".startswith(first):
            raise InvalidHandshake("not an HTTP response: it starts with %s; expected 'HTTP/1.1'"
                                   % _shorten(first))


def _split_head(head: bytes, what: str) -> List[bytes]:
    """Split a complete head into lines, insisting on CRLF endings."""
    if not head.endswith(b"\r\n\r\n"):
        raise InvalidHandshake("incomplete HTTP %s head; expected it to end with CRLF CRLF" % what)
    lines = head[:-4].split(CRLF)
    for line in lines:
        if b"\n" in line:
            raise InvalidHandshake("line ends with a bare LF; expected CRLF line endings")
    return lines


def _parse_version(version: str, line: bytes) -> None:
    """Require the HTTP/d.d syntax; only HTTP/1.x heads can be parsed here."""
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        raise InvalidHandshake("malformed HTTP version %r in %s; expected HTTP/1.1"
                               % (version, _shorten(line)))
    if match.group(1) != "1":
        raise InvalidHandshake("unsupported HTTP version %r; expected HTTP/1.1" % version)


def _parse_headers(lines: List[bytes]) -> Headers:
    """Parse header lines, rejecting everything RFC 7230 §3.2.4 says must be rejected."""
    headers = Headers()
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise InvalidHandshake("obsolete line folding in header line %s; expected each "
                                   "header on one line" % _shorten(line))
        colon = line.find(b":")
        if colon < 0:
            raise InvalidHandshake("header line %s has no colon; expected 'Name: value'"
                                   % _shorten(line))
        raw_name = line[:colon]
        if raw_name[-1:] in (b" ", b"\t"):
            raise InvalidHandshake("whitespace before the colon in header line %s" % _shorten(line))
        name = raw_name.decode("latin-1")
        if not is_token(name):
            raise InvalidHandshake("invalid header name %r; expected a token" % name)
        value = line[colon + 1:].decode("latin-1").strip(" \t")
        if _BAD_VALUE_RE.search(value):
            raise InvalidHandshake("control character in the value of header %r" % name)
        headers.add(name, value)
    return headers


def parse_request(head: bytes) -> Request:
    """Parse a complete request head (as returned by HeadReader)."""
    while head.startswith(CRLF):
        head = head[2:]  # RFC 7230 §3.5
    lines = _split_head(head, "request")
    line = lines[0]
    if not _REQUEST_LINE_RE.fullmatch(line):
        raise InvalidHandshake("not an HTTP request: request line %s is not printable ASCII"
                               % _shorten(line))
    parts = line.decode("ascii").split(" ")
    if len(parts) != 3:
        raise InvalidHandshake("malformed request line %s; expected 'METHOD target HTTP/1.1'"
                               % _shorten(line))
    method, target, version = parts
    if not is_token(method):
        raise InvalidHandshake("invalid method %r in request line; expected a token" % method)
    if not target:
        raise InvalidHandshake("empty request target; expected a path such as '/'")
    _parse_version(version, line)
    return Request(method, target, version, _parse_headers(lines[1:]))


def parse_response(head: bytes) -> Response:
    """Parse a complete response head (as returned by HeadReader)."""
    lines = _split_head(head, "response")
    line = lines[0]
    parts = line.split(b" ", 2)
    if len(parts) < 2:
        raise InvalidHandshake("malformed status line %s; expected 'HTTP/1.1 101 Switching Protocols'"
                               % _shorten(line))
    version = parts[0].decode("latin-1")
    if not version.startswith("HTTP/"):
        raise InvalidHandshake("not an HTTP response: status line %s; expected 'HTTP/1.1 ...'"
                               % _shorten(line))
    _parse_version(version, line)
    code = parts[1].decode("latin-1")
    if not _STATUS_RE.fullmatch(code):
        raise InvalidHandshake("invalid status code %r in status line; expected 3 digits" % code)
    reason = parts[2].decode("latin-1") if len(parts) == 3 else ""
    if _BAD_VALUE_RE.search(reason):
        raise InvalidHandshake("control character in the reason phrase of status line %s"
                               % _shorten(line))
    return Response(int(code), reason, version, _parse_headers(lines[1:]))


def _serialize_headers(headers: Headers) -> bytes:
    """Encode header lines, refusing anything that could split or smuggle a line."""
    out = bytearray()
    for name, value in headers.items():
        if not is_token(name):
            raise ValueError("invalid header name %r; expected a token" % name)
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError("value of header %r contains CR, LF or NUL" % name)
        try:
            out += name.encode("ascii") + b": " + value.encode("latin-1") + CRLF
        except UnicodeEncodeError:
            raise ValueError("value of header %r is not latin-1; encode it first" % name)
    return bytes(out)


def serialize_request(method: str, target: str, headers: Headers) -> bytes:
    """Build a request head; raises ValueError rather than emit a malformed one."""
    if not is_token(method):
        raise ValueError("invalid method %r; expected a token" % method)
    if not _TARGET_RE.fullmatch(target):
        raise ValueError("invalid request target %r; expected visible ASCII without spaces" % target)
    start = ("%s %s HTTP/1.1\r\n" % (method, target)).encode("ascii")
    return start + _serialize_headers(headers) + CRLF


def serialize_response(status: int, headers: Headers, body: bytes = b"",
                       reason: Optional[str] = None) -> bytes:
    """Build a response head plus body; the caller sets Content-Length if needed."""
    if not 100 <= status <= 999:
        raise ValueError("invalid status code %r; expected 3 digits" % status)
    if reason is None:
        reason = REASONS.get(status, "Unknown")
    if _BAD_VALUE_RE.search(reason):
        raise ValueError("reason phrase %r contains control characters" % reason)
    start = ("HTTP/1.1 %d %s\r\n" % (status, reason)).encode("latin-1")
    return start + _serialize_headers(headers) + CRLF + body


def content_length(headers: Headers) -> Optional[int]:
    """The Content-Length, or None when absent.

    Repeated identical values are accepted (RFC 7230 §3.3.2); anything else
    could be a smuggling attempt and is rejected.
    """
    values = headers.get_all("Content-Length")
    if not values:
        return None
    items = [item.strip(" \t") for value in values for item in value.split(",")]
    for item in items:
        if not _LENGTH_RE.fullmatch(item):
            raise InvalidHandshake("invalid Content-Length %r; expected a decimal number"
                                   % ", ".join(values))
    if len(set(int(item) for item in items)) != 1:
        raise InvalidHandshake("conflicting Content-Length values %r; expected one value"
                               % ", ".join(values))
    return int(items[0])
