"""The permessage-deflate extension (RFC 7692): negotiation and the codec.

Sans-I/O: the handshake code hands us parsed ``Sec-WebSocket-Extensions``
values and gets back header values and a :class:`PerMessageDeflate` codec;
the connection code feeds whole outgoing messages and incoming frames to it.

Window bits 8: zlib refuses a raw deflate stream with an 8-bit (256-byte)
window and silently widens zlib-wrapped ones to 9 bits, which a peer limited
to 256 bytes may be unable to inflate. When we must compress within 8 bits we
therefore use a 9-bit window with the ``Z_RLE`` strategy, which zlib documents
as limiting every match distance to one: the stream is valid for any window.
Inflating with an 8-bit window is supported by zlib and needs no trick.
"""

import sys
import zlib
from typing import Dict, List, Optional, Tuple

from .exceptions import NegotiationError, PayloadTooBig, ProtocolError

__all__ = [
    "ExtensionList",
    "DeflateConfig",
    "PerMessageDeflate",
    "client_offer",
    "client_accept",
    "server_negotiate",
]

ExtensionList = List[Tuple[str, List[Tuple[str, Optional[str]]]]]
Params = Dict[str, Optional[int]]

EXTENSION_NAME = "permessage-deflate"

_SERVER_NCT = "server_no_context_takeover"
_CLIENT_NCT = "client_no_context_takeover"
_SERVER_BITS = "server_max_window_bits"
_CLIENT_BITS = "client_max_window_bits"
_KNOWN_PARAMS = (_SERVER_NCT, _CLIENT_NCT, _SERVER_BITS, _CLIENT_BITS)

# RFC 7692 §7.1.2: "a decimal integer value without leading zeroes between
# 8 to 15"; an exact string lookup rejects "08", "+9", " 9" and friends.
_BITS_VALUES = dict((str(bits), bits) for bits in range(8, 16))
_MAX_BITS = 15

# The empty stored block a sync flush ends with (RFC 7692 §7.2.1, §7.2.2).
_SYNC_TAIL = b"\x00\x00\xff\xff"


def _check_range(name: str, value: int, low: int, high: int) -> None:
    """Reject a tunable zlib would refuse later, at a confusing moment."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError("%s must be an integer in %d..%d, not %r" % (name, low, high, value))


def _check_bits(name: str, value: Optional[int]) -> None:
    """Window bits are RFC 7692's 8..15 (8 is handled, see the module docstring)."""
    if value is not None:
        _check_range(name, value, 8, _MAX_BITS)


def _check_codec_tunables(compress_level: int, mem_level: int, min_size: int) -> None:
    """Validate the knobs shared by the config and the codec."""
    _check_range("compress_level", compress_level, -1, 9)
    _check_range("mem_level", mem_level, 1, 9)
    _check_range("min_size", min_size, 0, sys.maxsize)


class DeflateConfig:
    """What one side offers or accepts, and the codec tunables.

    On a client the ``server_*`` options are requests to the server and the
    ``client_*`` ones constrain our own compressor; on a server the
    ``server_*`` options constrain our compressor and the ``client_*`` ones are
    demands on the client (an offer that cannot carry them is declined).

    ``min_size`` (default 32): messages shorter than this are sent
    uncompressed, which RFC 7692 allows per message (RSV1 clear). Below about
    32 bytes deflate saves at most a few bytes per message, less than the
    CPU it costs is worth; set 0 to compress everything.

    Memory per connection, measured with tracemalloc (zlib 1.2.13, with
    context takeover, both directions): about 300 KiB with these defaults
    (262 KiB compressor + 39 KiB decompressor), about 26 KiB with
    :meth:`low_memory`.
    """

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: Optional[int] = None,
        client_max_window_bits: Optional[int] = None,
        compress_level: int = 6,
        mem_level: int = 8,
        min_size: int = 32,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        _check_codec_tunables(compress_level, mem_level, min_size)
        self.server_no_context_takeover = bool(server_no_context_takeover)
        self.client_no_context_takeover = bool(client_no_context_takeover)
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.min_size = min_size

    @classmethod
    def low_memory(cls) -> "DeflateConfig":
        """A preset for small devices: about 26 KiB per connection instead of 300.

        1 KiB windows both ways and ``mem_level=4`` (compressor ~18 KiB,
        decompressor ~8 KiB). Context takeover is kept: on a stream of small
        JSON messages it is what makes compression worthwhile (about 20% of
        the original size with it, 85% without), while the smaller window
        costs only a few percent (20% instead of 17%).
        """
        return cls(server_max_window_bits=10, client_max_window_bits=10, mem_level=4)

    def __repr__(self) -> str:
        fields = ", ".join("%s=%r" % item for item in sorted(vars(self).items()))
        return "DeflateConfig(%s)" % fields


class PerMessageDeflate:
    """The per-connection codec agreed in the handshake.

    ``local_*`` are this side's compressor parameters, ``remote_*`` the
    peer's (a server's local window is ``server_max_window_bits``). zlib
    objects are created on first use and dropped after each message when the
    matching no_context_takeover applies, so an idle connection then holds no
    zlib memory.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        is_server: bool,
        local_no_context_takeover: bool,
        remote_no_context_takeover: bool,
        local_max_window_bits: int,
        remote_max_window_bits: int,
        compress_level: int = 6,
        mem_level: int = 8,
        min_size: int = 0,
    ) -> None:
        _check_bits("local_max_window_bits", local_max_window_bits)
        _check_bits("remote_max_window_bits", remote_max_window_bits)
        _check_codec_tunables(compress_level, mem_level, min_size)
        self.is_server = is_server
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.min_size = min_size
        self._compressor = None  # type: Optional[zlib._Compress]
        self._decompressor = None  # type: Optional[zlib._Decompress]

    def __repr__(self) -> str:
        return "PerMessageDeflate(is_server=%r, local=%d%s, remote=%d%s)" % (
            self.is_server,
            self.local_max_window_bits,
            " no_context_takeover" if self.local_no_context_takeover else "",
            self.remote_max_window_bits,
            " no_context_takeover" if self.remote_no_context_takeover else "",
        )

    def should_compress(self, size: int) -> bool:
        """Tiny messages are cheaper sent as they are (RSV1 is per message)."""
        return size >= self.min_size

    # Compression

    def compress(self, payload: bytes) -> bytes:
        """Compress one whole message (RFC 7692 §7.2.1)."""
        compressor = self._compressor
        if compressor is None:
            compressor = self._new_compressor()
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        # Keeping the object is what context takeover means; dropping it
        # frees its memory until the next message.
        self._compressor = None if self.local_no_context_takeover else compressor
        return _strip_sync_tail(data)

    def _new_compressor(self) -> "zlib._Compress":
        """A raw deflate stream that a peer with our agreed window can inflate."""
        bits, strategy = self.local_max_window_bits, zlib.Z_DEFAULT_STRATEGY
        if bits == 8:
            # zlib cannot deflate in 256 bytes; RLE matches (distance 1) fit.
            bits, strategy = 9, zlib.Z_RLE
        return zlib.compressobj(self.compress_level, zlib.DEFLATED, -bits, self.mem_level, strategy)

    # Decompression

    def decompress(self, data: bytes, fin: bool, max_size: Optional[int]) -> bytes:
        """Inflate one frame of a compressed message (RFC 7692 §7.2.2).

        ``max_size`` is how many bytes this message may still produce (None:
        unbounded); it is enforced while inflating, so a small bomb raises
        :class:`PayloadTooBig` after at most ``max_size + 1`` output bytes.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(-self.remote_max_window_bits)
            self._decompressor = decompressor
        try:
            output = _inflate(decompressor, data, max_size)
            if fin:
                output += _inflate(decompressor, _SYNC_TAIL, _remaining(max_size, len(output)))
        except ProtocolError:
            self._decompressor = None  # the connection fails: free the memory now
            raise
        if fin and (self.remote_no_context_takeover or decompressor.eof):
            # After a BFINAL block the peer's next message starts a new stream.
            self._decompressor = None
        return output


def _strip_sync_tail(data: bytes) -> bytes:
    """Drop the 00 00 ff ff the peer re-appends; add an empty block if absent.

    zlib always ends a sync flush with that marker, but RFC 7692 §7.2.1 says
    what to do otherwise: append an empty stored block (00 00 00 ff ff, the
    output being byte-aligned), then drop 4 bytes, i.e. append 00.
    """
    if data.endswith(_SYNC_TAIL):
        return data[:-4]
    return data + b"\x00"


def _remaining(max_size: Optional[int], produced: int) -> Optional[int]:
    """What is left of the message's budget after ``produced`` bytes."""
    return None if max_size is None else max_size - produced


def _inflate(decompressor: "zlib._Decompress", data: bytes, budget: Optional[int]) -> bytes:
    """Inflate ``data`` producing at most ``budget`` bytes (one more means: too big).

    Asking zlib for ``budget + 1`` bytes keeps memory and time bounded and
    tells "exactly at the limit" (all input consumed, nothing pending) apart
    from "over it" without a second call.
    """
    if decompressor.eof:
        # Bytes after a BFINAL block carry no data; zlib would only pile them
        # up in unused_data, so skip them.
        return b""
    try:
        if budget is None:
            return decompressor.decompress(data)
        output = decompressor.decompress(data, max(budget, 0) + 1)
    except zlib.error as exc:
        raise ProtocolError("invalid compressed data: %s" % exc, code=1007)
    if len(output) > budget:
        raise PayloadTooBig("decompressed message exceeds the size limit")
    return output


# Parameters


def _parse_params(params: List[Tuple[str, Optional[str]]], in_offer: bool) -> Params:
    """Map parameter name to its window bits (None for flags / bare value).

    Raises ValueError on an unknown, duplicated or ill-valued parameter
    (RFC 7692 §5.1, §5.2).
    """
    result = {}  # type: Params
    for raw_name, value in params:
        name = raw_name.lower()
        if name not in _KNOWN_PARAMS:
            raise ValueError("unknown parameter %r" % raw_name)
        if name in result:
            raise ValueError("duplicate parameter %r" % raw_name)
        result[name] = _parse_value(name, value, in_offer)
    return result


def _parse_value(name: str, value: Optional[str], in_offer: bool) -> Optional[int]:
    """Validate one value: flags take none, window bits take 8..15."""
    if name in (_SERVER_NCT, _CLIENT_NCT):
        if value is not None:
            raise ValueError("%s takes no value, got %r" % (name, value))
        return None
    if value is None:
        if name == _CLIENT_BITS and in_offer:
            return None  # §7.1.2.2: a bare offer means "you may limit me"
        raise ValueError("%s needs a value" % name)
    bits = _BITS_VALUES.get(value)
    if bits is None:
        raise ValueError("%s=%r is not an integer in 8..15" % (name, value))
    return bits


def _smallest(*values: Optional[int]) -> Optional[int]:
    """The tightest of the limits that are set, or None if none is."""
    given = [value for value in values if value is not None]
    return min(given) if given else None


def _header(params: List[Tuple[str, Optional[int]]]) -> str:
    """Render ``permessage-deflate; name; name=value`` in the given order."""
    parts = [EXTENSION_NAME]
    for name, value in params:
        parts.append(name if value is None else "%s=%d" % (name, value))
    return "; ".join(parts)


def _make_codec(
    config: DeflateConfig,
    is_server: bool,
    local_nct: bool,
    remote_nct: bool,
    local_bits: Optional[int],
    remote_bits: Optional[int],
) -> PerMessageDeflate:
    """Build the codec, an absent window limit meaning the maximum."""
    return PerMessageDeflate(
        is_server=is_server,
        local_no_context_takeover=local_nct,
        remote_no_context_takeover=remote_nct,
        local_max_window_bits=_MAX_BITS if local_bits is None else local_bits,
        remote_max_window_bits=_MAX_BITS if remote_bits is None else remote_bits,
        compress_level=config.compress_level,
        mem_level=config.mem_level,
        min_size=config.min_size,
    )


# Client side


def client_offer(config: DeflateConfig) -> str:
    """The Sec-WebSocket-Extensions value a client sends.

    client_max_window_bits is always advertised so that a server may limit
    our window rather than decline compression altogether.
    """
    params = []  # type: List[Tuple[str, Optional[int]]]
    if config.server_no_context_takeover:
        params.append((_SERVER_NCT, None))
    if config.client_no_context_takeover:
        params.append((_CLIENT_NCT, None))
    if config.server_max_window_bits is not None:
        params.append((_SERVER_BITS, config.server_max_window_bits))
    params.append((_CLIENT_BITS, config.client_max_window_bits))
    return _header(params)


def client_accept(config: DeflateConfig, response_extensions: ExtensionList) -> Optional[PerMessageDeflate]:
    """Check the server's answer to :func:`client_offer` (RFC 7692 §5.2, §7.1).

    Returns None when the server accepted no extension; raises
    NegotiationError when the answer is one we must fail the connection for.
    """
    if not response_extensions:
        return None
    if len(response_extensions) != 1:
        raise NegotiationError("server accepted %d extensions, we offered one" % len(response_extensions))
    name, raw_params = response_extensions[0]
    if name.lower() != EXTENSION_NAME:
        raise NegotiationError("server accepted extension %r, which we did not offer" % name)
    try:
        params = _parse_params(raw_params, in_offer=False)
    except ValueError as exc:
        raise NegotiationError("invalid permessage-deflate response: %s" % exc)
    _check_response(config, params)
    return _make_codec(
        config,
        is_server=False,
        local_nct=config.client_no_context_takeover or _CLIENT_NCT in params,
        remote_nct=_SERVER_NCT in params,
        local_bits=_smallest(config.client_max_window_bits, params.get(_CLIENT_BITS)),
        remote_bits=params.get(_SERVER_BITS),
    )


def _check_response(config: DeflateConfig, params: Params) -> None:
    """Fail if the server ignored or exceeded what we asked for (§7.1.1, §7.1.2)."""
    if config.server_no_context_takeover and _SERVER_NCT not in params:
        raise NegotiationError("server ignored our server_no_context_takeover")
    wanted = config.server_max_window_bits
    got = params.get(_SERVER_BITS)
    if wanted is not None and (got is None or got > wanted):
        raise NegotiationError("server_max_window_bits=%s does not honour our %d" % (got, wanted))
    limit = config.client_max_window_bits
    granted = params.get(_CLIENT_BITS)
    if limit is not None and granted is not None and granted > limit:
        raise NegotiationError("client_max_window_bits=%d exceeds our offered %d" % (granted, limit))


# Server side


def server_negotiate(config: DeflateConfig, offers: ExtensionList) -> Optional[Tuple[str, PerMessageDeflate]]:
    """Accept the first acceptable permessage-deflate offer (RFC 7692 §5.1).

    Returns the response header value and the codec, or None when no offer
    is acceptable (the connection then proceeds uncompressed). Invalid offers
    are declined, not fatal: the client may have listed a valid fallback.
    """
    for name, raw_params in offers:
        if name.lower() != EXTENSION_NAME:
            continue
        try:
            params = _parse_params(raw_params, in_offer=True)
        except ValueError:
            continue
        accepted = _answer_offer(config, params)
        if accepted is not None:
            return accepted
    return None


def _answer_offer(config: DeflateConfig, offer: Params) -> Optional[Tuple[str, PerMessageDeflate]]:
    """The response to one valid offer, or None if it cannot meet our config."""
    if config.client_max_window_bits is not None and _CLIENT_BITS not in offer:
        return None  # §7.1.2.2: we may not limit a client that did not offer it
    server_nct = config.server_no_context_takeover or _SERVER_NCT in offer
    # Echoing the client's no_context_takeover hint lets us drop our inflater
    # between messages at no cost to the client.
    client_nct = config.client_no_context_takeover or _CLIENT_NCT in offer
    server_bits = _smallest(config.server_max_window_bits, offer.get(_SERVER_BITS))
    client_bits = _smallest(config.client_max_window_bits, offer.get(_CLIENT_BITS))
    response = []  # type: List[Tuple[str, Optional[int]]]
    if server_nct:
        response.append((_SERVER_NCT, None))
    if client_nct:
        response.append((_CLIENT_NCT, None))
    if server_bits is not None:
        response.append((_SERVER_BITS, server_bits))
    if client_bits is not None:
        response.append((_CLIENT_BITS, client_bits))
    codec = _make_codec(config, True, server_nct, client_nct, server_bits, client_bits)
    return _header(response), codec
