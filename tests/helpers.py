"""Shared test helpers, written from RFC 6455 and independent of the code under test.

Frames are built and parsed here by hand with ``struct`` (§5.2), so a test
never trusts rfc6455's own serializer or decoder to check rfc6455.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rfc6455 import (
    BinaryMessage,
    ClientConnection,
    Connection,
    Event,
    ServerConnection,
    TextMessage,
)

#: The masking key of the RFC 6455 §5.7 examples.
RFC_KEY = bytes.fromhex("37fa213d")

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def xor_mask(data: bytes, key: bytes) -> bytes:
    """§5.3: octet i of the payload is XORed with octet i MOD 4 of the key."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | bool | None = None,
    length_form: int | None = None,
    declared_length: int | None = None,
) -> bytes:
    """Build one frame byte by byte.

    Args:
        opcode: 4-bit opcode (any value, reserved ones too).
        payload: the unmasked payload.
        fin: the FIN bit.
        rsv: RSV bits as 0..7 (RSV1 = 4, RSV2 = 2, RSV3 = 1).
        mask: a 4-byte key, True for :data:`RFC_KEY`, None/False for no mask.
        length_form: force the length encoding: 7, 16 or 64 bits (None: minimal).
        declared_length: the length to write in the header (default: the real one).
    """
    if mask is True:
        mask = RFC_KEY
    length = len(payload) if declared_length is None else declared_length
    if length_form is None:
        length_form = 7 if length < 126 else 16 if length < 65536 else 64
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mask_bit = 0x80 if mask else 0
    if length_form == 7:
        header = struct.pack("!BB", b0, mask_bit | length)
    elif length_form == 16:
        header = struct.pack("!BBH", b0, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, length)
    if mask:
        assert isinstance(mask, bytes) and len(mask) == 4
        return header + mask + xor_mask(payload, mask)
    return header + payload


def close_payload(code: int | None = None, reason: bytes | str = b"") -> bytes:
    """§5.5.1: a 2-byte big-endian status code then a UTF-8 reason."""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    if code is None:
        return reason
    return struct.pack("!H", code) + reason


@dataclass(frozen=True)
class Frame:
    """A frame as parsed by :func:`parse_frames`."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    key: bytes | None


def parse_frames(data: bytes, *, masked: bool | None = None) -> list[Frame]:
    """Parse a complete stream of frames; assert it is well formed.

    Args:
        masked: if not None, assert every frame's MASK bit equals it.
    """
    frames: list[Frame] = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, "truncated header"
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack_from("!H", data, pos)
            assert length >= 126, "non-minimal 16-bit length"
            pos += 2
        elif length == 127:
            (length,) = struct.unpack_from("!Q", data, pos)
            assert length >= 65536 and length >> 63 == 0, "bad 64-bit length"
            pos += 8
        key = None
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
        if masked is not None:
            assert (key is not None) == masked, f"mask bit {key is not None}, expected {masked}"
        payload = data[pos : pos + length]
        assert len(payload) == length, "truncated payload"
        pos += length
        if key is not None:
            payload = xor_mask(payload, key)
        opcode = b0 & 0x0F
        if opcode >= 8:
            assert b0 & 0x80 and length <= 125, "bad control frame"
        frames.append(Frame(bool(b0 & 0x80), (b0 >> 4) & 7, opcode, payload, key))
    return frames


def parse_close(data: bytes, *, masked: bool | None = None) -> tuple[int | None, bytes]:
    """The (code, reason) of the single close frame in ``data``; code None if empty."""
    frames = parse_frames(data, masked=masked)
    assert len(frames) == 1, frames
    assert frames[0].opcode == OP_CLOSE, frames
    payload = frames[0].payload
    if not payload:
        return None, b""
    assert len(payload) >= 2
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    """``data`` in pieces of ``size`` bytes (the last may be shorter)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def feed(conn: Connection, pieces: Iterable[bytes]) -> list[Event]:
    """Feed every piece, collecting the events after each one."""
    events: list[Event] = []
    for piece in pieces:
        events += conn.receive(piece)
    return events


def as_events(items: Iterable[object]) -> list[object]:
    """What ``receive_one`` / ``receive_messages`` return (a whole message as its ``str`` or
    ``bytes``), as the events ``receive_data`` reports, for comparing the two paths."""
    out: list[object] = []
    for item in items:
        if isinstance(item, str):
            item = TextMessage(data=item)
        elif isinstance(item, bytes):
            item = BinaryMessage(data=item)
        out.append(item)
    return out


def feed_bytewise(conn: Connection, data: bytes) -> list[Event]:
    """Feed ``data`` one byte at a time."""
    return feed(conn, (data[i : i + 1] for i in range(len(data))))


class ConnectionPair:
    """A client and a server connection wired back to back, in memory.

    Bytes each side produces are handed to the other with :meth:`send` or
    :meth:`pump`; events each side reports are returned.
    """

    def __init__(self, **kwargs: object) -> None:
        self.client = ClientConnection(**kwargs)  # type: ignore[arg-type]
        self.server = ServerConnection(**kwargs)  # type: ignore[arg-type]

    def other(self, conn: Connection) -> Connection:
        """The peer of ``conn``."""
        return self.server if conn is self.client else self.client

    def deliver(self, sender: Connection, data: bytes) -> list[Event]:
        """Hand ``data`` (written by ``sender``) to its peer; the peer's events."""
        return self.other(sender).receive(data)

    def pump(self) -> tuple[list[Event], list[Event]]:
        """Move queued output both ways until both are quiet.

        Returns (client events, server events).
        """
        client_events: list[Event] = []
        server_events: list[Event] = []
        while True:
            to_server = self.client.data_to_send()
            to_client = self.server.data_to_send()
            if not to_server and not to_client:
                return client_events, server_events
            if to_server:
                server_events += self.server.receive(to_server)
            if to_client:
                client_events += self.client.receive(to_client)


# RFC 3629 §4: the second byte's range for each lead byte; later bytes are 80-BF.
_SECOND = {
    **{b: (0x80, 0xBF) for b in range(0xC2, 0xE0)},
    0xE0: (0xA0, 0xBF),
    **{b: (0x80, 0xBF) for b in range(0xE1, 0xED)},
    0xED: (0x80, 0x9F),
    0xEE: (0x80, 0xBF),
    0xEF: (0x80, 0xBF),
    0xF0: (0x90, 0xBF),
    0xF1: (0x80, 0xBF),
    0xF2: (0x80, 0xBF),
    0xF3: (0x80, 0xBF),
    0xF4: (0x80, 0x8F),
}


def utf8_first_invalid(data: bytes) -> int | None:
    """Index of the first byte after which ``data`` cannot begin valid UTF-8.

    None if every prefix can still be completed (the data may end inside a
    sequence). Written from the RFC 3629 grammar, independent of codecs.
    """
    i = 0
    n = len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        if lead not in _SECOND:
            return i
        size = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        low, high = _SECOND[lead]
        for k in range(1, size):
            if i + k >= n:
                return None
            byte = data[i + k]
            if k == 1 and not low <= byte <= high or k > 1 and not 0x80 <= byte <= 0xBF:
                return i + k
        i += size
    return None
