"""Tests of simplews.deflate: RFC 7692 negotiation and the message codec."""

import os
import tracemalloc
import zlib
from typing import List, Optional, Tuple

import pytest

from simplews.deflate import (
    DeflateConfig,
    PerMessageDeflate,
    client_accept,
    client_offer,
    server_negotiate,
)
from simplews.exceptions import NegotiationError, PayloadTooBig, ProtocolError

PMD = "permessage-deflate"
Param = Tuple[str, Optional[str]]


def ext(*params: Param) -> Tuple[str, List[Param]]:
    """One parsed permessage-deflate element."""
    return (PMD, list(params))


def codec(
    local_nct: bool = False,
    remote_nct: bool = False,
    local_bits: int = 15,
    remote_bits: int = 15,
    is_server: bool = False,
) -> PerMessageDeflate:
    return PerMessageDeflate(is_server, local_nct, remote_nct, local_bits, remote_bits)


def pair(nct: bool = False, bits: int = 15) -> Tuple[PerMessageDeflate, PerMessageDeflate]:
    """A sender and a receiver agreeing on the same parameters."""
    return codec(local_nct=nct, local_bits=bits), codec(remote_nct=nct, remote_bits=bits, is_server=True)


def negotiate(config: DeflateConfig, *offers: Tuple[str, List[Param]]) -> Tuple[str, PerMessageDeflate]:
    result = server_negotiate(config, list(offers))
    assert result is not None
    return result


# DeflateConfig


def test_config_defaults() -> None:
    config = DeflateConfig()
    assert not config.server_no_context_takeover and not config.client_no_context_takeover
    assert config.server_max_window_bits is None and config.client_max_window_bits is None
    assert (config.compress_level, config.mem_level, config.min_size) == (6, 8, 32)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"client_max_window_bits": 0},
        {"client_max_window_bits": "10"},
        {"client_max_window_bits": True},
        {"mem_level": 0},
        {"mem_level": 10},
        {"compress_level": -2},
        {"compress_level": 10},
        {"min_size": -1},
    ],
)
def test_config_rejects_out_of_range(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        DeflateConfig(**kwargs)


def test_config_accepts_window_bits_8_to_15() -> None:
    for bits in range(8, 16):
        DeflateConfig(server_max_window_bits=bits, client_max_window_bits=bits)
    DeflateConfig(compress_level=-1, mem_level=1, min_size=0)


def test_low_memory_preset() -> None:
    config = DeflateConfig.low_memory()
    assert (config.server_max_window_bits, config.client_max_window_bits, config.mem_level) == (10, 10, 4)
    assert "DeflateConfig(" in repr(config)


def test_codec_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        PerMessageDeflate(False, False, False, 16, 15)
    with pytest.raises(ValueError):
        PerMessageDeflate(False, False, False, 15, 7)


# Client offer


@pytest.mark.parametrize(
    "config, expected",
    [
        (DeflateConfig(), "permessage-deflate; client_max_window_bits"),
        (DeflateConfig(client_max_window_bits=12), "permessage-deflate; client_max_window_bits=12"),
        (
            DeflateConfig(server_max_window_bits=10, server_no_context_takeover=True),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_max_window_bits",
        ),
        (
            DeflateConfig(client_no_context_takeover=True),
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
        ),
        (
            DeflateConfig.low_memory(),
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10",
        ),
    ],
)
def test_client_offer(config: DeflateConfig, expected: str) -> None:
    assert client_offer(config) == expected


# Client accepting the response


def test_client_accept_no_extension() -> None:
    assert client_accept(DeflateConfig(), []) is None


def test_client_accept_plain() -> None:
    result = client_accept(DeflateConfig(), [ext()])
    assert result is not None and not result.is_server
    assert (result.local_max_window_bits, result.remote_max_window_bits) == (15, 15)
    assert not result.local_no_context_takeover and not result.remote_no_context_takeover
    assert result.min_size == 32


def test_client_accept_all_parameters() -> None:
    response = ext(
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "9"),
        ("client_max_window_bits", "8"),
    )
    result = client_accept(DeflateConfig(), [response])
    assert result is not None
    assert result.local_no_context_takeover and result.remote_no_context_takeover
    assert (result.local_max_window_bits, result.remote_max_window_bits) == (8, 9)


def test_client_accept_server_no_context_takeover_unrequested() -> None:
    result = client_accept(DeflateConfig(), [ext(("server_no_context_takeover", None))])
    assert result is not None and result.remote_no_context_takeover


def test_client_keeps_its_no_context_takeover_promise() -> None:
    result = client_accept(DeflateConfig(client_no_context_takeover=True), [ext()])
    assert result is not None and result.local_no_context_takeover


def test_client_uses_its_own_window_limit_when_response_omits_it() -> None:
    result = client_accept(DeflateConfig(client_max_window_bits=11), [ext()])
    assert result is not None and result.local_max_window_bits == 11
    result = client_accept(DeflateConfig(client_max_window_bits=11), [ext(("client_max_window_bits", "9"))])
    assert result is not None and result.local_max_window_bits == 9


def test_client_accepts_smaller_server_window_than_asked() -> None:
    config = DeflateConfig(server_max_window_bits=12)
    result = client_accept(config, [ext(("server_max_window_bits", "10"))])
    assert result is not None and result.remote_max_window_bits == 10
    result = client_accept(config, [ext(("server_max_window_bits", "12"))])
    assert result is not None and result.remote_max_window_bits == 12


def test_client_accepts_case_insensitive_names() -> None:
    result = client_accept(DeflateConfig(), [("Permessage-Deflate", [("Server_No_Context_Takeover", None)])])
    assert result is not None and result.remote_no_context_takeover


@pytest.mark.parametrize(
    "config, response",
    [
        (DeflateConfig(), [("x-webkit-deflate-frame", [])]),
        (DeflateConfig(), [ext(), ext()]),
        (DeflateConfig(), [ext(), ("foo", [])]),
        (DeflateConfig(), [ext(("unknown", None))]),
        (DeflateConfig(), [ext(("server_no_context_takeover", None), ("server_no_context_takeover", None))]),
        (DeflateConfig(), [ext(("client_max_window_bits", "10"), ("client_max_window_bits", "10"))]),
        (DeflateConfig(), [ext(("server_no_context_takeover", "1"))]),
        (DeflateConfig(), [ext(("client_no_context_takeover", ""))]),
        (DeflateConfig(), [ext(("server_max_window_bits", None))]),
        (DeflateConfig(), [ext(("client_max_window_bits", None))]),
        (DeflateConfig(), [ext(("server_max_window_bits", "7"))]),
        (DeflateConfig(), [ext(("server_max_window_bits", "16"))]),
        (DeflateConfig(), [ext(("server_max_window_bits", "010"))]),
        (DeflateConfig(), [ext(("server_max_window_bits", "abc"))]),
        (DeflateConfig(), [ext(("client_max_window_bits", "7"))]),
        (DeflateConfig(), [ext(("client_max_window_bits", "16"))]),
        (DeflateConfig(), [ext(("client_max_window_bits", " 9"))]),
        (DeflateConfig(), [ext(("client_max_window_bits", "+9"))]),
        (DeflateConfig(server_no_context_takeover=True), [ext()]),
        (DeflateConfig(server_max_window_bits=10), [ext()]),
        (DeflateConfig(server_max_window_bits=10), [ext(("server_max_window_bits", "11"))]),
        (DeflateConfig(client_max_window_bits=10), [ext(("client_max_window_bits", "11"))]),
    ],
)
def test_client_rejects_bad_response(config: DeflateConfig, response: list) -> None:
    with pytest.raises(NegotiationError):
        client_accept(config, response)


# Server negotiation


def test_server_browser_offer() -> None:
    header, result = negotiate(DeflateConfig(), ext(("client_max_window_bits", None)))
    assert header == "permessage-deflate"
    assert result.is_server
    assert (result.local_max_window_bits, result.remote_max_window_bits) == (15, 15)
    assert not result.local_no_context_takeover and not result.remote_no_context_takeover


def test_server_plain_offer() -> None:
    header, _ = negotiate(DeflateConfig(), ext())
    assert header == "permessage-deflate"


def test_server_no_extension_or_other_extensions() -> None:
    assert server_negotiate(DeflateConfig(), []) is None
    assert server_negotiate(DeflateConfig(), [("x-webkit-deflate-frame", [])]) is None


def test_server_honours_server_no_context_takeover() -> None:
    header, result = negotiate(DeflateConfig(), ext(("server_no_context_takeover", None)))
    assert header == "permessage-deflate; server_no_context_takeover"
    assert result.local_no_context_takeover


def test_server_echoes_client_no_context_takeover() -> None:
    header, result = negotiate(DeflateConfig(), ext(("client_no_context_takeover", None)))
    assert header == "permessage-deflate; client_no_context_takeover"
    assert result.remote_no_context_takeover and not result.local_no_context_takeover


def test_server_honours_server_max_window_bits() -> None:
    header, result = negotiate(DeflateConfig(), ext(("server_max_window_bits", "10")))
    assert header == "permessage-deflate; server_max_window_bits=10"
    assert result.local_max_window_bits == 10
    header, result = negotiate(DeflateConfig(server_max_window_bits=9), ext(("server_max_window_bits", "12")))
    assert header == "permessage-deflate; server_max_window_bits=9"
    assert result.local_max_window_bits == 9
    header, result = negotiate(DeflateConfig(server_max_window_bits=12), ext(("server_max_window_bits", "9")))
    assert header == "permessage-deflate; server_max_window_bits=9"


def test_server_echoes_client_max_window_bits_value() -> None:
    header, result = negotiate(DeflateConfig(), ext(("client_max_window_bits", "10")))
    assert header == "permessage-deflate; client_max_window_bits=10"
    assert result.remote_max_window_bits == 10


def test_server_config_limits_client_window() -> None:
    config = DeflateConfig(client_max_window_bits=11)
    header, result = negotiate(config, ext(("client_max_window_bits", None)))
    assert header == "permessage-deflate; client_max_window_bits=11"
    assert result.remote_max_window_bits == 11
    header, result = negotiate(config, ext(("client_max_window_bits", "9")))
    assert header == "permessage-deflate; client_max_window_bits=9"
    assert result.remote_max_window_bits == 9


def test_server_declines_offer_that_cannot_carry_client_limit() -> None:
    config = DeflateConfig(client_max_window_bits=11)
    assert server_negotiate(config, [ext()]) is None
    header, _ = negotiate(config, ext(), ext(("client_max_window_bits", None)))
    assert header == "permessage-deflate; client_max_window_bits=11"


def test_server_config_requires_no_context_takeover() -> None:
    config = DeflateConfig(server_no_context_takeover=True, client_no_context_takeover=True)
    header, result = negotiate(config, ext(("client_max_window_bits", None)))
    assert header == "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    assert result.local_no_context_takeover and result.remote_no_context_takeover


def test_server_config_window_without_client_request() -> None:
    header, result = negotiate(DeflateConfig(server_max_window_bits=12), ext())
    assert header == "permessage-deflate; server_max_window_bits=12"
    assert result.local_max_window_bits == 12 and result.remote_max_window_bits == 15


def test_server_all_parameters() -> None:
    offer = ext(
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("server_max_window_bits", "8"),
        ("client_max_window_bits", "8"),
    )
    header, result = negotiate(DeflateConfig(compress_level=1, mem_level=3, min_size=5), offer)
    assert header == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=8; client_max_window_bits=8"
    )
    assert (result.local_max_window_bits, result.remote_max_window_bits) == (8, 8)
    assert (result.compress_level, result.mem_level, result.min_size) == (1, 3, 5)


def test_server_low_memory_with_browser_offer() -> None:
    header, result = negotiate(DeflateConfig.low_memory(), ext(("client_max_window_bits", None)))
    assert header == "permessage-deflate; server_max_window_bits=10; client_max_window_bits=10"
    assert (result.local_max_window_bits, result.remote_max_window_bits, result.mem_level) == (10, 10, 4)


@pytest.mark.parametrize(
    "bad_offer",
    [
        ext(("unknown", None)),
        ext(("server_no_context_takeover", None), ("server_no_context_takeover", None)),
        ext(("client_max_window_bits", None), ("client_max_window_bits", "10")),
        ext(("server_max_window_bits", "10"), ("server_max_window_bits", "10")),
        ext(("server_no_context_takeover", "true")),
        ext(("client_no_context_takeover", "1")),
        ext(("server_max_window_bits", None)),
        ext(("server_max_window_bits", "7")),
        ext(("server_max_window_bits", "16")),
        ext(("server_max_window_bits", "09")),
        ext(("server_max_window_bits", "")),
        ext(("client_max_window_bits", "7")),
        ext(("client_max_window_bits", "16")),
        ext(("client_max_window_bits", "1O")),
        ext(("client_max_window_bits", "-9")),
    ],
)
def test_server_declines_invalid_offer_and_falls_back(bad_offer: Tuple[str, List[Param]]) -> None:
    assert server_negotiate(DeflateConfig(), [bad_offer]) is None
    fallback = ext(("client_no_context_takeover", None))
    header, result = negotiate(DeflateConfig(), bad_offer, ("x-other", []), fallback)
    assert header == "permessage-deflate; client_no_context_takeover"
    assert result.remote_no_context_takeover


def test_server_takes_first_acceptable_offer() -> None:
    offers = [ext(("server_max_window_bits", "10")), ext(("server_max_window_bits", "12"))]
    header, _ = negotiate(DeflateConfig(), *offers)
    assert header == "permessage-deflate; server_max_window_bits=10"


@pytest.mark.parametrize(
    "server_config, client_config",
    [
        (DeflateConfig(), DeflateConfig()),
        (DeflateConfig.low_memory(), DeflateConfig()),
        (DeflateConfig(), DeflateConfig.low_memory()),
        (DeflateConfig(server_no_context_takeover=True), DeflateConfig(client_max_window_bits=9)),
        (DeflateConfig(client_max_window_bits=8), DeflateConfig(server_max_window_bits=8)),
        (DeflateConfig(client_no_context_takeover=True), DeflateConfig(server_no_context_takeover=True)),
    ],
)
def test_end_to_end_negotiation_and_messages(server_config: DeflateConfig, client_config: DeflateConfig) -> None:
    offer = client_offer(client_config)
    parsed = [(PMD, [_split_param(part) for part in offer.split("; ")[1:]])]
    header, server = negotiate(server_config, *parsed)
    client = client_accept(client_config, [(PMD, [_split_param(part) for part in header.split("; ")[1:]])])
    assert client is not None
    assert client.local_max_window_bits == server.remote_max_window_bits
    assert client.remote_max_window_bits == server.local_max_window_bits
    for index in range(5):
        message = b'{"seq": %d, "payload": "%s"}' % (index, b"abc" * index * 100)
        assert server.decompress(client.compress(message), True, None) == message
        assert client.decompress(server.compress(message), True, None) == message


def _split_param(text: str) -> Param:
    name, _, value = text.partition("=")
    return (name, value if value else None)


# Compression and decompression: RFC 7692 §7.2.3 examples


HELLO = bytes.fromhex("f248cdc9c90700")
HELLO_AGAIN = bytes.fromhex("f200110000")


def test_rfc_compress_hello_and_context_takeover() -> None:
    sender = codec()
    assert sender.compress(b"Hello") == HELLO
    assert sender.compress(b"Hello") == HELLO_AGAIN


def test_rfc_compress_without_context_takeover() -> None:
    sender = codec(local_nct=True)
    assert sender.compress(b"Hello") == HELLO
    assert sender.compress(b"Hello") == HELLO


def test_rfc_decompress_hello_and_context_takeover() -> None:
    receiver = codec()
    assert receiver.decompress(HELLO, True, None) == b"Hello"
    assert receiver.decompress(HELLO_AGAIN, True, None) == b"Hello"


def test_rfc_decompress_fragmented() -> None:
    receiver = codec()
    assert receiver.decompress(bytes.fromhex("f248cd"), False, None) + receiver.decompress(
        bytes.fromhex("c9c90700"), True, None
    ) == b"Hello"


def test_rfc_decompress_uncompressed_block() -> None:
    assert codec().decompress(bytes.fromhex("000500faff48656c6c6f00"), True, None) == b"Hello"


def test_rfc_decompress_bfinal_block() -> None:
    receiver = codec()
    assert receiver.decompress(bytes.fromhex("f348cdc9c9070000"), True, None) == b"Hello"
    # The stream ended: the next message starts a fresh one.
    assert receiver.decompress(HELLO, True, None) == b"Hello"


def test_bytes_after_bfinal_in_later_frame_are_ignored() -> None:
    receiver = codec()
    output = receiver.decompress(bytes.fromhex("f348cdc9c90700"), False, 5)
    output += receiver.decompress(b"\x00" * 1000, False, 0)
    output += receiver.decompress(b"", True, 0)
    assert output == b"Hello"


def test_rfc_decompress_two_blocks_in_one_message() -> None:
    data = bytes.fromhex("f24805000000ffffcac9c90700")
    assert codec().decompress(data, True, None) == b"Hello"


def test_decompress_without_context_takeover_drops_window() -> None:
    receiver = codec(remote_nct=True)
    assert receiver.decompress(HELLO, True, None) == b"Hello"
    with pytest.raises(ProtocolError) as info:
        receiver.decompress(HELLO_AGAIN, True, None)
    assert info.value.code == 1007


# Round trips


MESSAGES = [b"Hello", b"Hello", b"", b"x" * 10000, os.urandom(3000), b"Hello, world! " * 50, b"", b"Hello"]


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", [8, 9, 10, 12, 15])
def test_round_trip(nct: bool, bits: int) -> None:
    sender, receiver = pair(nct, bits)
    for message in MESSAGES:
        assert receiver.decompress(sender.compress(message), True, len(message)) == message


def test_context_takeover_compresses_repeats() -> None:
    sender_takeover, _ = pair(False)
    sender_fresh, _ = pair(True)
    message = os.urandom(200)
    sender_takeover.compress(message)
    sender_fresh.compress(message)
    assert len(sender_takeover.compress(message)) < 20
    assert len(sender_fresh.compress(message)) > 200


@pytest.mark.parametrize("nct", [False, True])
def test_fragmented_decompression_matches_whole(nct: bool) -> None:
    sender, receiver = pair(nct)
    for message in MESSAGES + [b"fragmented " * 2000]:
        data = sender.compress(message)
        chunks = [data[i:i + 7] for i in range(0, len(data), 7)] or [b""]
        output = b"".join(receiver.decompress(chunk, False, None) for chunk in chunks)
        output += receiver.decompress(b"", True, None)
        assert output == message


def test_fragment_budget_shrinks_per_frame() -> None:
    sender, receiver = pair()
    message = b"abcdefgh" * 5000
    data = sender.compress(message)
    remaining = len(message)
    output = b""
    for start in range(0, len(data), 100):
        chunk = receiver.decompress(data[start:start + 100], False, remaining)
        remaining -= len(chunk)
        output += chunk
    output += receiver.decompress(b"", True, remaining)
    assert output == message


def test_empty_message() -> None:
    sender, receiver = pair()
    assert sender.compress(b"") == b"\x00"
    assert receiver.decompress(b"\x00", True, 0) == b""
    sender.compress(b"Hello")
    empty = sender.compress(b"")
    assert receiver.decompress(HELLO, True, None) == b"Hello"
    assert receiver.decompress(empty, True, 0) == b""
    assert codec().decompress(b"", True, 0) == b""


def test_compress_accepts_bytes_like() -> None:
    sender, receiver = pair()
    assert receiver.decompress(sender.compress(bytearray(b"Hello")), True, None) == b"Hello"
    assert receiver.decompress(sender.compress(memoryview(b"Hello")), True, None) == b"Hello"


def test_should_compress() -> None:
    assert codec().should_compress(0)
    sized = PerMessageDeflate(False, False, False, 15, 15, min_size=32)
    assert not sized.should_compress(31)
    assert sized.should_compress(32)


def test_zlib_objects_are_created_lazily_and_dropped() -> None:
    takeover = codec()
    assert takeover._compressor is None and takeover._decompressor is None
    takeover.decompress(takeover.compress(b"Hello"), True, None)
    assert takeover._compressor is not None and takeover._decompressor is not None
    fresh = codec(local_nct=True, remote_nct=True)
    fresh.decompress(fresh.compress(b"Hello"), True, None)
    assert fresh._compressor is None and fresh._decompressor is None


# Window bits 8


def test_zlib_cannot_deflate_raw_8_bits() -> None:
    """Why the codec does not simply pass -8 to zlib."""
    with pytest.raises(ValueError):
        zlib.compressobj(6, zlib.DEFLATED, -8)


def test_window_8_output_inflates_with_256_byte_window_across_messages() -> None:
    sender, receiver = pair(bits=8)
    block = os.urandom(100)
    messages = [block * 3, b"a" * 1000, block, block + b"b" * 300, block * 2]
    for message in messages:
        data = sender.compress(message)
        # Feed byte by byte so the inflater can only rely on its 256-byte window.
        output = b"".join(receiver.decompress(data[i:i + 1], False, None) for i in range(len(data)))
        assert output + receiver.decompress(b"", True, None) == message
    assert len(sender.compress(b"c" * 1000)) < 50  # RLE still compresses runs


def test_peer_exceeding_agreed_window_is_rejected() -> None:
    """A 1 KiB-window stream referring 300 bytes back, across frames, fails with 8 bits."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -10)
    block = os.urandom(300)
    data = compressor.compress(block * 2) + compressor.flush(zlib.Z_SYNC_FLUSH)
    receiver = codec(remote_bits=8)
    with pytest.raises(ProtocolError) as info:
        for i in range(len(data)):
            receiver.decompress(data[i:i + 1], False, None)
    assert info.value.code == 1007


# The decompression bound


def test_bound_exactly_at_limit() -> None:
    sender, receiver = pair()
    message = os.urandom(64) * 100
    assert receiver.decompress(sender.compress(message), True, len(message)) == message


def test_bound_exactly_at_limit_fragmented() -> None:
    sender, receiver = pair()
    message = b"z" * 5000
    data = sender.compress(message)
    output = receiver.decompress(data, False, len(message))
    assert output == message  # everything inflated; the tail still to come
    assert receiver.decompress(b"", True, 0) == b""


def test_bound_exceeded_by_one() -> None:
    sender, receiver = pair()
    message = os.urandom(64) * 100
    with pytest.raises(PayloadTooBig) as info:
        receiver.decompress(sender.compress(message), True, len(message) - 1)
    assert info.value.code == 1009


def test_bound_exceeded_by_one_in_non_final_frame() -> None:
    """Raised at once, not truncated silently and left for a later frame."""
    sender, receiver = pair()
    message = b"z" * 5000
    with pytest.raises(PayloadTooBig):
        receiver.decompress(sender.compress(message), False, len(message) - 1)


def test_bound_exceeded_in_later_frame() -> None:
    sender, receiver = pair()
    data = sender.compress(b"q" * 10000)
    first = receiver.decompress(data[:5], False, 9999)
    with pytest.raises(PayloadTooBig):
        receiver.decompress(data[5:], True, 9999 - len(first))


def test_bound_zero_and_negative() -> None:
    sender, receiver = pair()
    with pytest.raises(PayloadTooBig):
        receiver.decompress(sender.compress(b"x"), True, 0)
    with pytest.raises(PayloadTooBig):
        codec().decompress(HELLO, True, -3)


def _bomb() -> bytes:
    """~1 MiB of raw deflate inflating to 1 GiB of zeros.

    Each 16 MiB chunk is deflated by a fresh compressor, so the pieces are
    independent and simply concatenate.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(16 << 20)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return piece * 64


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _bomb()


def test_bomb_sanity(bomb: bytes) -> None:
    assert len(bomb) < 2 << 20
    decompressor = zlib.decompressobj(-15)
    assert len(decompressor.decompress(bomb[: len(bomb) // 64])) == 16 << 20


@pytest.mark.parametrize("frame_size", [None, 4096])
def test_bomb_fails_fast_with_bounded_memory(bomb: bytes, frame_size: Optional[int]) -> None:
    receiver = codec()
    limit = 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig):
            if frame_size is None:
                receiver.decompress(bomb, True, limit)
            else:
                for start in range(0, len(bomb), frame_size):
                    limit -= len(receiver.decompress(bomb[start:start + frame_size], False, limit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # the inflated gigabyte would be 1024 MiB
    assert receiver._decompressor is None


# Corrupt data


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",  # reserved block type 11
        bytes.fromhex("0005000000"),  # stored block with LEN != ~NLEN
        bytes.fromhex("f248cdc9c907ff"),  # garbage after a valid block
    ],
)
def test_corrupt_data_is_1007(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        codec().decompress(data, True, None)
    assert info.value.code == 1007
    assert not isinstance(info.value, PayloadTooBig)


def test_corrupt_data_with_bound_is_1007() -> None:
    with pytest.raises(ProtocolError) as info:
        codec().decompress(b"\xff\xff\xff\xff", True, 100)
    assert info.value.code == 1007


def test_repr() -> None:
    text = repr(codec(local_nct=True, local_bits=9, is_server=True))
    assert "is_server=True" in text and "no_context_takeover" in text
