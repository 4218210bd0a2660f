"""What a connection holds for input: bounded by construction, and reported.

A fragmented message is assembled in one buffer, so its memory follows its
payload whatever the fragmentation (the hostile-input finding: 2-byte
fragments used to cost ~28x the payload, one object per fragment).
``buffered_bytes`` and ``receiving`` are what the I/O layer reads for a
server-wide memory budget and a message-completion deadline.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
import zlib

import pytest
from helpers import OP_BINARY, OP_CONT, OP_PING, OP_TEXT, close_payload, frame

from rfc6455 import (
    BinaryMessage,
    ClientConnection,
    Connection,
    ConnectionFailed,
    ConnectionState,
    Ping,
    ServerConnection,
    TextChunk,
    TextMessage,
)
from rfc6455._constants import DEFAULT_MAX_MESSAGE_SIZE, FRAGMENT_OVERHEAD
from rfc6455.permessage_deflate import PerMessageDeflate

ROLES = ["server", "client"]
RSV1 = 4  # as helpers.frame counts RSV bits


def make(role: str, **kwargs: object) -> Connection:
    cls = ServerConnection if role == "server" else ClientConnection
    return cls(**kwargs)  # type: ignore[arg-type]


def f(role: str, opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A frame as the peer of ``role`` sends it: masked towards a server (§5.3)."""
    key = os.urandom(4) if role == "server" else None
    return frame(opcode, payload, mask=key, **kwargs)  # type: ignore[arg-type]


def in_fragments(role: str, opcode: int, data: bytes, size: int, *, last: bool) -> bytes:
    """``data`` as a fragmented message of ``size``-byte fragments; FIN on the last if ``last``."""
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(
        f(role, opcode if i == 0 else OP_CONT, piece, fin=last and i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )


def chunked(wire: bytes, size: int = 65536) -> list[bytes]:
    return [wire[i : i + size] for i in range(0, len(wire), size)]


# ------------------------------------------------------------------ memory

#: Payload of the largest message that 2-byte fragments can carry under the
#: default limit (each fragment counts 2 + FRAGMENT_OVERHEAD), rounded down to
#: a multiple of 6 so that the 3-byte characters below split evenly.
TINY = 2
PAYLOAD = (DEFAULT_MAX_MESSAGE_SIZE // (TINY + FRAGMENT_OVERHEAD) * TINY) // 6 * 6


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(
    ("opcode", "data"),
    [
        (OP_BINARY, bytes(range(256)) * (PAYLOAD // 256) + bytes(PAYLOAD % 256)),
        (OP_TEXT, b"ab" * (PAYLOAD // 2)),
        # Every 3-byte character split across two fragments: an incomplete
        # sequence is carried from one fragment to the next all the way.
        (OP_TEXT, "€".encode() * (PAYLOAD // 3)),
    ],
    ids=["binary", "ascii", "split-characters"],
)
def test_tiny_fragments_cost_their_payload(role: str, opcode: int, data: bytes) -> None:
    assert len(data) == PAYLOAD
    # All but the last fragment: the message is open, just under the limit.
    wire = in_fragments(role, opcode, data[:-TINY], TINY, last=False)
    held_payload = PAYLOAD - TINY
    # Process-wide caches (the kernels' result arrays) exist before we measure.
    make(role).receive(wire[:65536])
    pieces = chunked(wire)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        conn = make(role)
        for chunk in pieces:
            assert conn.receive(chunk) == []
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert conn.state is ConnectionState.OPEN and conn.receiving
    assert conn.buffered_bytes == held_payload
    # ~1.1x in fact (the bytearray's growth); it was ~28x with an object per fragment.
    assert held <= 3 * held_payload + 64 * 1024, (held, held_payload)
    [message] = conn.receive(f(role, OP_CONT, data[-TINY:]))
    expected = data.decode() if opcode == OP_TEXT else data
    assert message == (TextMessage if opcode == OP_TEXT else BinaryMessage)(data=expected)  # type: ignore[arg-type]
    assert conn.buffered_bytes == 0 and not conn.receiving


@pytest.mark.parametrize("role", ROLES)
def test_streamed_fragments_hold_nothing(role: str) -> None:
    conn = make(role, stream_messages=True)
    wire = in_fragments(role, OP_TEXT, "€".encode() * 1000, TINY, last=False)
    events = conn.receive(wire)
    assert "".join(e.data for e in events if isinstance(e, TextChunk)) == "€" * 1000
    assert conn.buffered_bytes == 0
    assert conn.receiving


# ---------------------------------------------------------- buffered_bytes


class TestBufferedBytes:
    @pytest.mark.parametrize("role", ROLES)
    def test_counts_the_frame_still_arriving(self, role: str) -> None:
        conn = make(role)
        assert conn.buffered_bytes == 0
        wire = f(role, OP_BINARY, b"x" * 1000)
        for cut in (1, 2, 5, 300, len(wire) - 1):
            conn = make(role)
            conn.receive(wire[:cut])
            assert conn.buffered_bytes == cut
        assert conn.receive(wire[len(wire) - 1 :]) == [BinaryMessage(data=b"x" * 1000)]
        assert conn.buffered_bytes == 0

    @pytest.mark.parametrize("role", ROLES)
    def test_complete_frames_are_let_go(self, role: str) -> None:
        # Their bytes are dropped once the events are built, not at the next chunk.
        conn = make(role)
        second = f(role, OP_TEXT, b"y" * 500)
        events = conn.receive(f(role, OP_BINARY, bytes(100_000)) + second[:10])
        assert events == [BinaryMessage(data=bytes(100_000))]
        assert conn.buffered_bytes == 10

    @pytest.mark.parametrize("role", ROLES)
    def test_counts_the_message_being_assembled(self, role: str) -> None:
        conn = make(role)
        conn.receive(f(role, OP_TEXT, b"a" * 100, fin=False) + f(role, OP_CONT, b"b" * 50, fin=False))
        assert conn.buffered_bytes == 150
        third = f(role, OP_CONT, b"c" * 40)
        conn.receive(third[:5])
        assert conn.buffered_bytes == 155
        assert conn.receive(third[5:]) == [TextMessage(data="a" * 100 + "b" * 50 + "c" * 40)]
        assert conn.buffered_bytes == 0

    @pytest.mark.parametrize("role", ROLES)
    def test_counts_decompressed_bytes(self, role: str) -> None:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        pieces = [
            compressor.compress(b"z" * 10_000) + compressor.flush(zlib.Z_SYNC_FLUSH) for _ in range(2)
        ]
        conn = make(role, extensions=[PerMessageDeflate()])
        wire = f(role, OP_BINARY, pieces[0], fin=False, rsv=RSV1)
        wire += f(role, OP_CONT, pieces[1], fin=False)
        assert conn.receive(wire) == []
        assert conn.buffered_bytes == 20_000

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("end", ["close", "failure", "eof"])
    def test_zero_once_nothing_more_is_read(self, role: str, end: str) -> None:
        conn = make(role)
        cont = f(role, OP_CONT, b"n" * 100, fin=False)
        conn.receive(f(role, OP_BINARY, b"m" * 100, fin=False) + cont[:50])
        assert conn.buffered_bytes == 150
        assert conn.receiving
        if end == "close":
            # The close frame's chunk also holds the start of a frame after it.
            conn.receive(cont[50:] + f(role, 0x8, close_payload(1000)) + f(role, OP_CONT, b"x")[:3])
            assert conn.state is ConnectionState.REPLYING
        elif end == "failure":
            conn.receive(cont[50:] + f(role, OP_TEXT, b"new message inside a fragmented one"))
            assert conn.failure is not None and conn.failure.close_code == 1002
        else:
            conn.receive(b"")
            assert conn.state is ConnectionState.CLOSED
        assert conn.buffered_bytes == 0
        assert not conn.receiving


# ---------------------------------------------------------------- receiving


class TestReceiving:
    @pytest.mark.parametrize("role", ROLES)
    def test_between_messages_is_false(self, role: str) -> None:
        conn = make(role)
        assert not conn.receiving
        conn.receive(f(role, OP_TEXT, b"hi") + f(role, OP_PING, b"p"))
        assert not conn.receiving

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("opcode", [OP_TEXT, OP_PING])
    def test_a_frame_started(self, role: str, opcode: int) -> None:
        wire = f(role, opcode, b"12345")
        for cut in range(1, len(wire)):
            conn = make(role)
            conn.receive(wire[:cut])
            assert conn.receiving, cut
        conn = make(role)
        conn.receive(wire)
        assert not conn.receiving

    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize("stream", [False, True])
    def test_a_fragmented_message_started(self, role: str, stream: bool) -> None:
        conn = make(role, stream_messages=stream)
        conn.receive(f(role, OP_BINARY, b"a", fin=False))
        assert conn.receiving
        # A control frame between fragments does not end the message.
        assert conn.receive(f(role, OP_PING, b"p")) == [Ping(payload=b"p")]
        assert conn.receiving
        conn.receive(f(role, OP_CONT, b"b", fin=False))
        assert conn.receiving
        conn.receive(f(role, OP_CONT, b"c"))
        assert not conn.receiving

    @pytest.mark.parametrize("role", ROLES)
    def test_false_after_a_failure(self, role: str) -> None:
        conn = make(role, max_message_size=100)
        # Refused from the header: 5 + 16, then 16 + 100 declared.
        events = conn.receive(f(role, OP_BINARY, b"a" * 5, fin=False) + f(role, OP_CONT, b"b" * 100)[:8])
        assert isinstance(events[-1], ConnectionFailed) and events[-1].code == 1009
        assert not conn.receiving
        assert conn.buffered_bytes == 0
