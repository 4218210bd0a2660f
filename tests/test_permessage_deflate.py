"""permessage-deflate runtime (RFC 7692 §6, §7.2): vectors, round trips, limits.

Frames are built and parsed with tests/helpers.py (by hand, from RFC 6455),
and expected compressed bytes come from the RFC's own examples or from zlib
used directly, never from the code under test.
"""

from __future__ import annotations

import os
import random
import tracemalloc
import zlib

import pytest
from helpers import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    chunks,
    feed_bytewise,
    frame,
    parse_close,
    parse_frames,
)
from hypothesis import given
from hypothesis import strategies as st

from rfc6455 import (
    BinaryChunk,
    BinaryMessage,
    ClientConnection,
    ConnectionFailed,
    ExtensionError,
    MessageTooBig,
    Ping,
    ServerConnection,
    TextMessage,
)
from rfc6455.permessage_deflate import PerMessageDeflate

RSV1 = 4  # as helpers.frame counts RSV bits


def server_with(ext: PerMessageDeflate, **kwargs: object) -> ServerConnection:
    return ServerConnection(extensions=[ext], **kwargs)  # type: ignore[arg-type]


def client_with(ext: PerMessageDeflate, **kwargs: object) -> ClientConnection:
    return ClientConnection(extensions=[ext], **kwargs)  # type: ignore[arg-type]


def pair(
    *,
    server_nct: bool = False,
    client_nct: bool = False,
    server_bits: int = 15,
    client_bits: int = 15,
    max_message_size: int | None = 1 << 21,
    **settings: int,
) -> tuple[ClientConnection, ServerConnection]:
    """A client and a server whose extensions agree, as a handshake would make them."""
    server_ext = PerMessageDeflate(
        local_no_context_takeover=server_nct,
        remote_no_context_takeover=client_nct,
        local_max_window_bits=server_bits,
        remote_max_window_bits=client_bits,
        **settings,
    )
    client_ext = PerMessageDeflate(
        local_no_context_takeover=client_nct,
        remote_no_context_takeover=server_nct,
        local_max_window_bits=client_bits,
        remote_max_window_bits=server_bits,
        **settings,
    )
    return (
        client_with(client_ext, max_message_size=max_message_size),
        server_with(server_ext, max_message_size=max_message_size),
    )


def raw_deflate(data: bytes, *, wbits: int = 15, level: int = 6) -> bytes:
    """A message compressed as §7.2.1 says, with zlib used directly."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# --------------------------------------------------------------- RFC vectors


class TestRFC7692Section7_2_3:
    """The examples of RFC 7692 §7.2.3, received by a client (unmasked frames)."""

    def test_7_2_3_1_one_block(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("c107f248cdc9c90700")
        assert client.receive(data) == [TextMessage(data="Hello")]

    def test_7_2_3_1_fragmented(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("4103f248cd") + bytes.fromhex("8004c9c90700")
        assert client.receive(data) == [TextMessage(data="Hello")]

    def test_7_2_3_1_fragmented_byte_by_byte(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("4103f248cd") + bytes.fromhex("8004c9c90700")
        assert feed_bytewise(client, data) == [TextMessage(data="Hello")]

    def test_7_2_3_2_sharing_the_window(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("c107f248cdc9c90700") + bytes.fromhex("c105f200110000")
        assert client.receive(data) == [TextMessage(data="Hello")] * 2

    def test_7_2_3_2_second_message_needs_the_window(self) -> None:
        # With the peer's context reset after each message, the back-reference
        # of the second example points before the start of the window.
        client = client_with(PerMessageDeflate(remote_no_context_takeover=True))
        events = client.receive(bytes.fromhex("c107f248cdc9c90700") + bytes.fromhex("c105f200110000"))
        assert events[0] == TextMessage(data="Hello")
        assert isinstance(events[1], ConnectionFailed) and events[1].code == 1002

    def test_7_2_3_3_no_compression(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("c10b000500faff48656c6c6f00")
        assert client.receive(data) == [TextMessage(data="Hello")]

    def test_7_2_3_4_bfinal(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("c108f348cdc9c9070000")
        assert client.receive(data) == [TextMessage(data="Hello")]
        # The BFINAL block ended the peer's DEFLATE stream: the next message
        # starts a new one, and must not vanish into zlib's unused_data.
        assert client.receive(bytes.fromhex("c107f248cdc9c90700")) == [TextMessage(data="Hello")]

    def test_7_2_3_5_two_blocks(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("c10d" "f2480500" "0000ffff" "cac9c90700")
        assert client.receive(data) == [TextMessage(data="Hello")]

    def test_7_2_3_6_empty_message(self) -> None:
        client = client_with(PerMessageDeflate())
        assert client.receive(bytes.fromhex("c10100")) == [TextMessage(data="")]
        assert client.receive(bytes.fromhex("c107f248cdc9c90700")) == [TextMessage(data="Hello")]

    def test_empty_payload_with_rsv1_is_an_empty_message(self) -> None:
        # Not what §7.2.1 produces, but sent by some peers; the stream stays usable.
        client = client_with(PerMessageDeflate())
        assert client.receive(bytes.fromhex("c100")) == [TextMessage(data="")]
        assert client.receive(bytes.fromhex("c107f248cdc9c90700")) == [TextMessage(data="Hello")]

    def test_empty_final_fragment(self) -> None:
        client = client_with(PerMessageDeflate())
        data = bytes.fromhex("4107f248cdc9c90700") + bytes.fromhex("8000")
        assert client.receive(data) == [TextMessage(data="Hello")]


class TestSendVectors:
    def test_hello(self) -> None:
        ext = PerMessageDeflate()
        assert ext.encode(b"Hello", first=True, fin=True) == (0x40, bytes.fromhex("f248cdc9c90700"))

    def test_hello_twice_with_context_takeover(self) -> None:
        ext = PerMessageDeflate()
        ext.encode(b"Hello", first=True, fin=True)
        assert ext.encode(b"Hello", first=True, fin=True) == (0x40, bytes.fromhex("f200110000"))

    def test_hello_twice_without_context_takeover(self) -> None:
        ext = PerMessageDeflate(local_no_context_takeover=True)
        ext.encode(b"Hello", first=True, fin=True)
        assert ext.encode(b"Hello", first=True, fin=True) == (0x40, bytes.fromhex("f248cdc9c90700"))

    def test_empty_message_is_one_zero_octet(self) -> None:
        assert PerMessageDeflate().encode(b"", first=True, fin=True) == (0x40, b"\x00")

    def test_server_frame(self) -> None:
        server = server_with(PerMessageDeflate())
        assert server.send_text("Hello") == bytes.fromhex("c107f248cdc9c90700")
        assert server.send_binary(b"Hello") == bytes.fromhex("c205f200110000")

    def test_client_frame_is_masked_with_rsv1(self) -> None:
        client = client_with(PerMessageDeflate())
        (sent,) = parse_frames(client.send_text("Hello"), masked=True)
        assert (sent.fin, sent.rsv, sent.opcode) == (True, RSV1, OP_TEXT)
        assert sent.payload == bytes.fromhex("f248cdc9c90700")

    def test_fragments_rsv1_only_on_first(self) -> None:
        server = server_with(PerMessageDeflate())
        data = server.send_fragment(b"Hel", final=False)
        data += server.send_fragment(b"lo", final=False)
        data += server.send_fragment(b"", final=True)
        frames = parse_frames(data, masked=False)
        assert [(f.fin, f.rsv, f.opcode) for f in frames] == [
            (False, RSV1, OP_BINARY),
            (False, 0, OP_CONT),
            (True, 0, OP_CONT),
        ]
        # Non-final fragments keep their sync-flush tail; only the end strips it.
        assert frames[0].payload.endswith(b"\x00\x00\xff\xff")
        assert frames[1].payload.endswith(b"\x00\x00\xff\xff")
        assert not frames[2].payload.endswith(b"\x00\x00\xff\xff")
        stream = b"".join(f.payload for f in frames) + b"\x00\x00\xff\xff"
        assert zlib.decompressobj(-15).decompress(stream) == b"Hello"

    def test_control_frames_never_compressed(self) -> None:
        server = server_with(PerMessageDeflate())
        data = server.send_fragment(b"a" * 100, final=False)
        data += server.send_ping(b"ping")
        data += server.send_pong(b"pong")
        data += server.send_fragment(b"b" * 100, final=True)
        data += server.close(1000, "bye")
        frames = parse_frames(data, masked=False)
        assert [(f.opcode, f.rsv) for f in frames] == [
            (OP_BINARY, RSV1), (OP_PING, 0), (0xA, 0), (OP_CONT, 0), (0x8, 0),
        ]
        assert frames[1].payload == b"ping"


# --------------------------------------------------------------- round trips

SIZES = [0, 1, 125, 126, 4096, 65535, 65536, 1 << 20]


def payload(size: int, kind: str) -> bytes:
    if kind == "random":
        return random.Random(size).randbytes(size)
    words = b'{"event": "tick", "symbol": "ACME", "price": 101.25, "qty": 7} '
    return (words * (size // len(words) + 1))[:size]


def exchange(sender: ServerConnection | ClientConnection, receiver: ServerConnection | ClientConnection, message: bytes | str) -> None:
    data = sender.send_text(message) if isinstance(message, str) else sender.send_binary(message)
    frames = parse_frames(data, masked=isinstance(sender, ClientConnection))
    assert len(frames) == 1 and frames[0].rsv == RSV1
    expected = TextMessage(data=message) if isinstance(message, str) else BinaryMessage(data=message)
    assert receiver.receive(data) == [expected]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", ["compressible", "random"])
def test_round_trip_sizes(size: int, kind: str) -> None:
    client, server = pair()
    message = payload(size, kind)
    exchange(client, server, message)
    exchange(server, client, message)
    exchange(client, server, message.decode("latin-1"))
    exchange(server, client, message.decode("latin-1"))


def test_compressible_data_shrinks() -> None:
    client, server = pair()
    message = payload(1 << 20, "compressible")
    data = server.send_binary(message)
    assert len(data) < len(message) // 50
    data = client.send_binary(message)
    assert len(data) < len(message) // 50


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("bits", [8, 9, 12, 15])
def test_round_trip_context_takeover_and_windows(server_nct: bool, client_nct: bool, bits: int) -> None:
    client, server = pair(server_nct=server_nct, client_nct=client_nct, server_bits=bits, client_bits=bits)
    rng = random.Random(bits)
    for i in range(30):
        message = payload(rng.choice([5, 60, 300, 5000]), "compressible") + str(i).encode()
        exchange(client, server, message)
        exchange(server, client, message)
    for ext, nct in ((client._extensions[0], client_nct), (server._extensions[0], server_nct)):
        assert isinstance(ext, PerMessageDeflate)
        assert (ext._compressor is None) == nct


def test_context_takeover_makes_repeats_cheaper() -> None:
    message = payload(1000, "random")
    keep, _ = pair()
    reset, _ = pair(client_nct=True)
    keep.send_binary(message)
    reset.send_binary(message)
    assert len(keep.send_binary(message)) < 50 < len(reset.send_binary(message))


@pytest.mark.parametrize("bits", [8, 9])
def test_small_window_distances_stay_within_256(bits: int) -> None:
    # A peer with a 256-byte window must decode what our "8-bit" compressor
    # (zlib with 9 bits) produces: repeats at distances around 250-260 bytes.
    rng = random.Random(8)
    block = rng.randbytes(256)
    message = b"".join(block[: rng.randrange(240, 256)] + rng.randbytes(4) for _ in range(2000))
    ext = PerMessageDeflate(local_max_window_bits=bits)
    rsv, compressed = ext.encode(message, first=True, fin=True)
    assert rsv == 0x40
    assert zlib.decompressobj(-8).decompress(compressed + b"\x00\x00\xff\xff") == message


def test_fragmented_round_trip_both_ways() -> None:
    client, server = pair()
    message = payload(200_000, "compressible")
    for sender, receiver in ((client, server), (server, client)):
        data = b"".join(
            sender.send_fragment(piece, final=False) for piece in chunks(message, 30_000)
        ) + sender.send_fragment(b"", final=True)
        frames = parse_frames(data, masked=sender is client)
        assert [f.rsv for f in frames] == [RSV1] + [0] * (len(frames) - 1)
        assert receiver.receive(data) == [BinaryMessage(data=message)]


def test_streamed_chunks_respect_limit_per_message() -> None:
    client = ClientConnection(extensions=[PerMessageDeflate()])
    server = ServerConnection(extensions=[PerMessageDeflate()], stream_messages=True)
    data = client.send_fragment(b"x" * 1000, final=False) + client.send_fragment(b"y" * 10, final=True)
    events = server.receive(data)
    assert events == [BinaryChunk(data=b"x" * 1000, final=False), BinaryChunk(data=b"y" * 10, final=True)]


@given(
    messages=st.lists(st.binary(max_size=3000), min_size=1, max_size=8),
    server_nct=st.booleans(),
    client_nct=st.booleans(),
    bits=st.integers(8, 15),
    fragment=st.integers(1, 4000),
    split=st.integers(1, 5000),
)
def test_property_round_trip_any_split(
    messages: list[bytes], server_nct: bool, client_nct: bool, bits: int, fragment: int, split: int
) -> None:
    client, server = pair(server_nct=server_nct, client_nct=client_nct, client_bits=bits, server_bits=bits)
    wire = b""
    for message in messages:
        pieces = list(chunks(message, fragment)) or [b""]
        for i, piece in enumerate(pieces):
            wire += client.send_fragment(piece, final=i == len(pieces) - 1)
    events = []
    for piece in chunks(wire, split):
        events += server.receive(piece)
    assert events == [BinaryMessage(data=m) for m in messages]


# ---------------------------------------------------------------- threshold


def test_compress_threshold_sends_short_messages_plain() -> None:
    client, server = pair(compress_threshold=64)
    short = server.send_text("hi")
    (sent,) = parse_frames(short, masked=False)
    assert (sent.rsv, sent.payload) == (0, b"hi")
    assert client.receive(short) == [TextMessage(data="hi")]
    long = "hello world " * 20
    data = server.send_text(long)
    (sent,) = parse_frames(data, masked=False)
    assert sent.rsv == RSV1
    assert client.receive(data) == [TextMessage(data=long)]
    # Interleave: plain messages leave the shared window untouched.
    for message in ["a", long, "b", long + "!", ""]:
        exchange_any = server.send_text(message)
        assert client.receive(exchange_any) == [TextMessage(data=message)]


def test_compress_threshold_does_not_apply_to_fragments() -> None:
    server = server_with(PerMessageDeflate(compress_threshold=1000))
    frames = parse_frames(server.send_fragment(b"ab", final=False) + server.send_fragment(b"c", final=True))
    assert [f.rsv for f in frames] == [RSV1, 0]


def test_uncompressed_message_from_peer_bypasses_extension() -> None:
    client = client_with(PerMessageDeflate())
    assert client.receive(frame(OP_TEXT, b"plain")) == [TextMessage(data="plain")]
    assert client.receive(bytes.fromhex("c107f248cdc9c90700")) == [TextMessage(data="Hello")]


# ------------------------------------------------------------ protocol errors


def failure(events: list[object]) -> ConnectionFailed:
    assert events and isinstance(events[-1], ConnectionFailed), events
    return events[-1]


def test_rsv1_on_continuation_frame_fails_1002() -> None:
    server = server_with(PerMessageDeflate())
    compressed = raw_deflate(b"Hello")
    data = frame(OP_TEXT, compressed[:3], fin=False, rsv=RSV1, mask=True)
    data += frame(OP_CONT, compressed[3:], rsv=RSV1, mask=True)
    assert failure(server.receive(data)).code == 1002
    assert parse_close(server.data_to_send(), masked=False)[0] == 1002


def test_rsv1_on_control_frame_fails_1002() -> None:
    server = server_with(PerMessageDeflate())
    assert failure(server.receive(frame(OP_PING, b"", rsv=RSV1, mask=True))).code == 1002


def test_rsv1_without_negotiation_fails_1002() -> None:
    server = ServerConnection()
    data = frame(OP_TEXT, raw_deflate(b"Hello"), rsv=RSV1, mask=True)
    assert failure(server.receive(data)).code == 1002


@pytest.mark.parametrize("rsv", [2, 1])
def test_rsv2_rsv3_still_rejected(rsv: int) -> None:
    server = server_with(PerMessageDeflate())
    assert failure(server.receive(frame(OP_TEXT, b"x", rsv=rsv, mask=True))).code == 1002


def test_ping_between_compressed_fragments() -> None:
    server = server_with(PerMessageDeflate())
    compressed = raw_deflate(b"Hello")
    data = frame(OP_TEXT, compressed[:3], fin=False, rsv=RSV1, mask=True)
    data += frame(OP_PING, b"p", mask=True)
    data += frame(OP_CONT, compressed[3:], mask=True)
    assert server.receive(data) == [Ping(payload=b"p"), TextMessage(data="Hello")]


@pytest.mark.parametrize(
    "payload_hex",
    [
        "ffffffff",  # BTYPE 11: reserved block type
        "fe",  # BTYPE 11 again, on a non-final block
        "000100ffff",  # stored block whose NLEN is not LEN's complement
        "f2001100000000",  # refers back 5 bytes into an empty window
    ],
)
def test_corrupted_deflate_data_fails_1002(payload_hex: str) -> None:
    server = server_with(PerMessageDeflate())
    data = frame(OP_BINARY, bytes.fromhex(payload_hex), rsv=RSV1, mask=True)
    event = failure(server.receive(data))
    assert event.code == 1002
    assert parse_close(server.data_to_send(), masked=False)[0] == 1002


def test_decode_raises_documented_errors() -> None:
    with pytest.raises(ExtensionError):
        PerMessageDeflate().decode(b"\xff\xff", rsv=0x40, fin=True, max_size=100)
    with pytest.raises(MessageTooBig):
        PerMessageDeflate().decode(raw_deflate(b"a" * 101), rsv=0x40, fin=True, max_size=100)


def final_deflate(data: bytes) -> bytes:
    """``data`` as one DEFLATE block with BFINAL set (zlib's Z_FINISH), as a
    sender without a sync flush produces it (RFC 7692 §7.2.3.4)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)


def deflate_peer(role: str, nct: bool) -> ServerConnection | ClientConnection:
    ext = PerMessageDeflate(remote_no_context_takeover=nct)
    return server_with(ext) if role == "server" else client_with(ext)


def to_peer(role: str, opcode: int, payload: bytes, **kwargs: object) -> bytes:
    """A frame towards ``role``: masked towards a server."""
    return frame(opcode, payload, mask=role == "server", **kwargs)  # type: ignore[arg-type]


class TestBytesAfterTheFinalBlock:
    """A message whose DEFLATE data goes on after a BFINAL block is invalid:
    the bytes would vanish into zlib's unused_data. 1002, as for any invalid
    compressed data; the RFC's own trailing 0x00 (§7.2.3.4) stays valid."""

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("nct", [False, True])
    @pytest.mark.parametrize("size", [5, 5000])  # the one-call and two-call inflate paths
    def test_in_the_same_frame(self, role: str, nct: bool, size: int) -> None:
        conn = deflate_peer(role, nct)
        message = os.urandom(size)
        data = to_peer(role, OP_BINARY, final_deflate(message) + b"extra", rsv=RSV1)
        event = failure(conn.receive(data))
        assert (event.code, event.reason) == (1002, "data after the final DEFLATE block")
        assert parse_close(conn.data_to_send(), masked=role == "client")[0] == 1002

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("nct", [False, True])
    @pytest.mark.parametrize("final", [False, True])
    def test_in_a_later_fragment(self, role: str, nct: bool, final: bool) -> None:
        conn = deflate_peer(role, nct)
        data = to_peer(role, OP_TEXT, final_deflate(b"Hello"), fin=False, rsv=RSV1)
        data += to_peer(role, OP_CONT, raw_deflate(b" world"), fin=final)
        assert failure(conn.receive(data)).code == 1002

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("nct", [False, True])
    def test_a_lone_empty_block_after_it(self, role: str, nct: bool) -> None:
        # A sender's own sync flush after the final block: still data after it.
        conn = deflate_peer(role, nct)
        data = to_peer(role, OP_BINARY, final_deflate(b"x") + b"\x00\x00\x00\xff\xff", rsv=RSV1)
        assert failure(conn.receive(data)).code == 1002

    @pytest.mark.parametrize("role", ["server", "client"])
    @pytest.mark.parametrize("nct", [False, True])
    @pytest.mark.parametrize(
        "pieces",
        [
            ["f348cdc9c90700"],  # no trailing octet: the appended tail follows the block
            ["f348cdc9c9070000"],  # the RFC's example, trailing 0x00 included
            ["f348cdc9c90700", ""],  # the block, then an empty final fragment
            ["f348cdc9c90700", "00"],  # the RFC's 0x00 in the final fragment
            ["f348cdc9c90700", "00", ""],  # ... in a middle one
            ["f348cd", "c9c90700", "00"],  # the block itself fragmented
        ],
    )
    def test_what_may_follow_it(self, role: str, nct: bool, pieces: list[str]) -> None:
        conn = deflate_peer(role, nct)
        data = b""
        for i, piece in enumerate(pieces):
            opcode, rsv = (OP_TEXT, RSV1) if i == 0 else (OP_CONT, 0)
            data += to_peer(role, opcode, bytes.fromhex(piece), fin=i == len(pieces) - 1, rsv=rsv)
        assert conn.receive(data) == [TextMessage(data="Hello")]
        # The stream ended; the next message starts a new one.
        data = to_peer(role, OP_TEXT, bytes.fromhex("f248cdc9c90700"), rsv=RSV1)
        assert conn.receive(data) == [TextMessage(data="Hello")]

    def test_decode_raises_extension_error(self) -> None:
        ext = PerMessageDeflate()
        with pytest.raises(ExtensionError, match="after the final"):
            ext.decode(final_deflate(b"abc") + b"\x01", rsv=0x40, fin=True, max_size=100)
        ext = PerMessageDeflate()
        assert ext.decode(final_deflate(b"abc"), rsv=0x40, fin=False, max_size=100) == b"abc"
        with pytest.raises(ExtensionError, match="after the final"):
            ext.decode(b"\x00\x00", rsv=0x40, fin=False, max_size=100)


def test_invalid_text_after_decompression_fails_1007() -> None:
    server = server_with(PerMessageDeflate())
    data = frame(OP_TEXT, raw_deflate(b"\xff\xfe"), rsv=RSV1, mask=True)
    assert failure(server.receive(data)).code == 1007


# ----------------------------------------------------------- size limits, bombs


@pytest.mark.parametrize("fin_payload_size", ["small", "large"])
def test_exactly_the_limit_passes_one_more_fails(fin_payload_size: str) -> None:
    limit = 10_000 if fin_payload_size == "small" else 1 << 20
    rng = random.Random(1)
    exact = rng.randbytes(limit) if fin_payload_size == "large" else b"z" * limit
    server = server_with(PerMessageDeflate(), max_message_size=limit)
    data = frame(OP_BINARY, raw_deflate(exact), rsv=RSV1, mask=True)
    assert server.receive(data) == [BinaryMessage(data=exact)]
    data = frame(OP_BINARY, raw_deflate(exact + b"!"), rsv=RSV1, mask=True)
    assert failure(server.receive(data)).code == 1009


def test_limit_counts_across_compressed_fragments() -> None:
    limit = 100_000
    server = server_with(PerMessageDeflate(), max_message_size=limit)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = b""
    for _ in range(3):
        piece = compressor.compress(b"q" * 40_000) + compressor.flush(zlib.Z_SYNC_FLUSH)
        data += frame(OP_BINARY if not data else OP_CONT, piece, fin=False, rsv=RSV1 if not data else 0, mask=True)
    events = server.receive(data)
    assert failure(events).code == 1009


def bomb(inflated: int) -> bytes:
    """A compressed message of zeros: about 1,000 times smaller than it inflates."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated >> 20)]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH)[:-4])
    return b"".join(parts)


def test_compression_bomb_fails_1009_with_memory_bounded_by_the_limit() -> None:
    limit = 1 << 20
    compressed = bomb(1 << 30)  # 1 GiB of zeros
    assert len(compressed) < limit  # fits in one frame under the limit
    data = frame(OP_BINARY, compressed, rsv=RSV1, mask=os.urandom(4))
    server = server_with(PerMessageDeflate(), max_message_size=limit)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        events = server.receive(data)
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert failure(events).code == 1009
    # The received frame (1 MiB, masked copy and unmasked copy) plus at most
    # the inflated limit and zlib's state: a few MiB, not 1 GiB.
    assert peak < 4 * limit + len(data) * 3, peak


def test_fragmented_bomb_stops_at_the_limit() -> None:
    limit = 1 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(1 << 22)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    data = frame(OP_BINARY, piece, fin=False, rsv=RSV1, mask=True)
    data += b"".join(frame(OP_CONT, piece, fin=False, mask=True) for _ in range(200))
    server = server_with(PerMessageDeflate(), max_message_size=limit)
    tracemalloc.start()
    try:
        events = server.receive(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert failure(events).code == 1009
    assert peak < 4 * limit + len(data) * 3, peak


def test_no_limit_inflates_everything() -> None:
    server = server_with(PerMessageDeflate(), max_message_size=None)
    data = frame(OP_BINARY, bomb(8 << 20), rsv=RSV1, mask=True)
    (event,) = server.receive(data)
    assert isinstance(event, BinaryMessage) and event.data == bytes(8 << 20)


# --------------------------------------------------------------- memory


def test_idle_extension_holds_no_zlib_state() -> None:
    ext = PerMessageDeflate()
    assert not ext.holds_zlib_state


def test_no_context_takeover_frees_zlib_state_between_messages() -> None:
    client, server = pair(server_nct=True, client_nct=True)
    for _ in range(3):
        exchange(client, server, b"data " * 100)
        exchange(server, client, b"data " * 100)
    for conn in (client, server):
        ext = conn._extensions[0]
        assert isinstance(ext, PerMessageDeflate)
        assert not ext.holds_zlib_state


def test_context_takeover_keeps_zlib_state() -> None:
    client, server = pair()
    exchange(client, server, b"data " * 100)
    ext = server._extensions[0]
    assert isinstance(ext, PerMessageDeflate) and ext._decompressor is not None
    assert ext._compressor is None  # nothing sent yet: still lazy


def zlib_bytes(**settings: int) -> int:
    """Traced bytes held by one extension after a message each way."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ext = PerMessageDeflate(**settings)
        ext.decode(ext.encode(b"x" * 100, first=True, fin=True)[1], rsv=0x40, fin=True, max_size=1000)
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_window_and_mem_level_bound_memory() -> None:
    big = zlib_bytes(local_max_window_bits=15, remote_max_window_bits=15, mem_level=8)
    small = zlib_bytes(local_max_window_bits=12, remote_max_window_bits=12, mem_level=5)
    assert small * 4 < big
    freed = zlib_bytes(local_no_context_takeover=True, remote_no_context_takeover=True)
    assert freed < 2048


def test_settings_are_validated() -> None:
    for kwargs in (
        {"local_max_window_bits": 7},
        {"remote_max_window_bits": 16},
        {"level": 10},
        {"mem_level": 0},
        {"compress_threshold": -1},
    ):
        with pytest.raises(ValueError):
            PerMessageDeflate(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------ differential: websockets

ws_pmd = pytest.importorskip("websockets.extensions.permessage_deflate")
ws_frames = pytest.importorskip("websockets.frames")


def ws_extension(*, local_nct: bool, remote_nct: bool, local_bits: int, remote_bits: int) -> object:
    return ws_pmd.PerMessageDeflate(
        remote_no_context_takeover=remote_nct,
        local_no_context_takeover=local_nct,
        remote_max_window_bits=remote_bits,
        local_max_window_bits=local_bits,
    )


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_websockets_decodes_ours(nct: bool, bits: int) -> None:
    ours = PerMessageDeflate(local_no_context_takeover=nct, local_max_window_bits=bits)
    theirs = ws_extension(local_nct=False, remote_nct=nct, local_bits=15, remote_bits=bits)
    rng = random.Random(bits)
    for i in range(20):
        message = payload(rng.choice([0, 10, 1000, 70_000]), rng.choice(["compressible", "random"]))
        pieces = list(chunks(message, 20_000)) or [b""]
        received = b""
        for j, piece in enumerate(pieces):
            fin = j == len(pieces) - 1
            rsv, data = ours.encode(piece, first=j == 0, fin=fin)
            opcode = ws_frames.Opcode.BINARY if j == 0 else ws_frames.Opcode.CONT
            decoded = theirs.decode(ws_frames.Frame(opcode, data, fin, rsv1=bool(rsv)), max_size=None)
            received += decoded.data
        assert received == message, i


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_ours_decodes_websockets(nct: bool, bits: int) -> None:
    theirs = ws_extension(local_nct=nct, remote_nct=False, local_bits=bits, remote_bits=15)
    ours = PerMessageDeflate(remote_no_context_takeover=nct, remote_max_window_bits=bits)
    rng = random.Random(bits)
    for i in range(20):
        message = payload(rng.choice([0, 10, 1000, 70_000]), rng.choice(["compressible", "random"]))
        pieces = list(chunks(message, 20_000)) or [b""]
        received = b""
        for j, piece in enumerate(pieces):
            fin = j == len(pieces) - 1
            opcode = ws_frames.Opcode.BINARY if j == 0 else ws_frames.Opcode.CONT
            encoded = theirs.encode(ws_frames.Frame(opcode, piece, fin))
            assert encoded.rsv1 == (j == 0)
            received += ours.decode(bytes(encoded.data), rsv=0x40, fin=fin, max_size=1 << 20)
        assert received == message, i


# ------------------------------------------------------- arbitrary input


@given(
    payloads=st.lists(st.binary(max_size=300), min_size=1, max_size=4),
    prefix=st.booleans(),
    remote_nct=st.booleans(),
    bits=st.integers(8, 15),
    limit=st.integers(0, 5000),
)
def test_property_arbitrary_compressed_frames_parse_or_fail(
    payloads: list[bytes], prefix: bool, remote_nct: bool, bits: int, limit: int
) -> None:
    # "Parse or raise a documented error": any bytes in RSV1 frames give
    # messages or one ConnectionFailed (1002, 1007 or 1009), never an exception,
    # and never a message over the limit.
    client = client_with(
        PerMessageDeflate(remote_no_context_takeover=remote_nct, remote_max_window_bits=bits),
        max_message_size=limit,
    )
    if prefix:
        payloads = [raw_deflate(b"Hello" * 20, wbits=max(bits, 9))] + payloads
    data = b""
    for i, piece in enumerate(payloads):
        data += frame(OP_BINARY if i == 0 else OP_CONT, piece, fin=i == len(payloads) - 1,
                      rsv=RSV1 if i == 0 else 0)
    events = client.receive(data)
    for event in events:
        if isinstance(event, ConnectionFailed):
            assert event.code in (1002, 1007, 1009)
            assert event is events[-1]
        else:
            assert isinstance(event, BinaryMessage) and len(event.data) <= limit


@given(messages=st.lists(st.binary(max_size=2000), min_size=1, max_size=5), limit=st.integers(0, 3000))
def test_property_limit_is_exact(messages: list[bytes], limit: int) -> None:
    client, server = pair(max_message_size=limit)
    for message in messages:
        events = server.receive(client.send_binary(message))
        if len(message) <= limit:
            assert events == [BinaryMessage(data=message)]
        else:
            assert failure(events).code == 1009
            return


@pytest.mark.parametrize("bits", [9, 12, 15])
@pytest.mark.parametrize("threshold", [0, 100])
@pytest.mark.parametrize("size", [0, 10, 5000])
def test_compress_message_is_what_encode_sends_without_context_takeover(
    bits: int, threshold: int, size: int
) -> None:
    from rfc6455.permessage_deflate import PerMessageDeflate, compress_message

    ext = PerMessageDeflate(
        local_no_context_takeover=True, local_max_window_bits=bits, compress_threshold=threshold
    )
    key = ext.shared_key
    assert key is not None
    payload = (b"abc" * size)[:size]
    for _ in range(2):  # the second message too: no context carried over
        assert compress_message(payload, key) == ext.encode(payload, first=True, fin=True)
    assert PerMessageDeflate(local_no_context_takeover=False).shared_key is None
