"""Kernels as a parameter: the decoder, the serializer and the connection use the ones given.

Both implementations run side by side in this one process, whatever
``RFC6455_NO_EXTENSIONS`` says: the native kernels come from ``native_kernels()``, which
imports the extension directly, and no module global is swapped.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest
from helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    chunks,
    close_payload,
    feed,
    frame,
    parse_frames,
)
from hypothesis import given
from hypothesis import strategies as st

from rfc6455 import (
    ClientConnection,
    Connection,
    Event,
    ServerConnection,
    ServerHandshake,
    TextMessage,
    UpgradeRequest,
    encode_frame,
)
from rfc6455._frames import MAX_FRAMES_PER_SCAN, FrameDecoder
from rfc6455._kernels import KERNELS, PYTHON_KERNELS, Kernels, native_kernels
from rfc6455._kernels_py import ScanResult
from rfc6455.permessage_deflate import PerMessageDeflate


def _native() -> Kernels | None:
    try:
        return native_kernels()
    except ImportError:
        return None


NATIVE = _native()
needs_native = pytest.mark.skipif(NATIVE is None, reason="rfc6455._native is not built")
ROLES = ["server", "client"]


class Recording:
    """Kernels that record every call, then delegate to ``inner``."""

    def __init__(self, inner: Kernels = PYTHON_KERNELS) -> None:
        self.inner = inner
        self.scans: list[tuple[Any, ...]] = []
        self.masks: list[tuple[bytes, bytes, int]] = []
        self.kernels = dataclasses.replace(
            inner,
            name="recording",
            scan_frames=self.scan_frames,
            apply_mask=self.apply_mask,
            encode_masked=self.encode_masked,
        )

    def scan_frames(self, buf: bytearray, *args: Any) -> ScanResult:
        self.scans.append((bytes(buf), *args))
        return self.inner.scan_frames(buf, *args)

    def apply_mask(self, data: Any, key: Any, offset: int = 0) -> bytes:
        self.masks.append((bytes(data), bytes(key), offset))
        return self.inner.apply_mask(data, key, offset)

    def encode_masked(self, first: int, payload: bytes, key: bytes) -> bytes:
        self.masks.append((bytes(payload), bytes(key), 0))  # a whole frame, masked from 0
        return self.inner.encode_masked(first, payload, key)


def make(role: str, kernels: Kernels | None = None, **kwargs: Any) -> Connection:
    cls = ServerConnection if role == "server" else ClientConnection
    return cls(kernels=kernels, **kwargs)


def f(role: str, opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
    """A frame as the peer of ``role`` sends it: masked towards a server (§5.3)."""
    return frame(opcode, payload, mask=os.urandom(4) if role == "server" else None, **kwargs)


class TestFrameDecoder:
    def test_default_is_the_module_choice(self) -> None:
        assert FrameDecoder(expect_masked=True).kernels is KERNELS

    @pytest.mark.parametrize("masked", [True, False])
    def test_scans_with_the_kernels_given(self, masked: bool) -> None:
        recording = Recording()
        decoder = FrameDecoder(
            expect_masked=masked, allowed_rsv=0x40, max_payload=1000, kernels=recording.kernels
        )
        assert decoder.kernels is recording.kernels
        wire = frame(OP_BINARY, b"abc", mask=masked) + frame(OP_TEXT, b"de", mask=masked)[:3]
        records, error = decoder.feed(wire)
        assert error == 0
        header = 6 if masked else 2
        assert records == [0x82, header, header + 3]
        assert decoder.buffer[header : header + 3] == b"abc"
        assert recording.scans == [
            (wire, 0, len(wire), masked, 0x40, 1000, MAX_FRAMES_PER_SCAN),
        ]
        # The next feed drops the consumed frame first and scans what is left.
        rest = frame(OP_TEXT, b"de", mask=masked)[3:]
        decoder.feed(rest)
        assert len(recording.scans) == 2
        assert recording.scans[1][0] == frame(OP_TEXT, b"de", mask=masked)[:3] + rest
        assert recording.masks == []  # unmasking is scan_frames' job

    def test_kernels_of_one_decoder_do_not_leak_into_another(self) -> None:
        recording = Recording()
        FrameDecoder(expect_masked=False, kernels=recording.kernels)
        FrameDecoder(expect_masked=False).feed(frame(OP_BINARY, b"x"))
        assert recording.scans == []

    @pytest.mark.parametrize("kernels", [PYTHON_KERNELS, NATIVE], ids=["python", "c"])
    def test_many_rounds_with_either(self, kernels: Kernels | None) -> None:
        if kernels is None:
            pytest.skip("rfc6455._native is not built")
        count = 2 * MAX_FRAMES_PER_SCAN + 5
        wire = frame(OP_PING, b"", mask=True) * count + b"\x82"
        decoder = FrameDecoder(expect_masked=True, kernels=kernels)
        records, error = decoder.feed(wire)
        assert (len(records), error, decoder.pending) == (3 * count, 0, 1)


class TestEncodeFrame:
    def test_masks_with_the_kernels_given(self) -> None:
        recording = Recording()
        wire = encode_frame(OP_TEXT, b"Hello", mask=True, kernels=recording.kernels)
        assert parse_frames(wire, masked=True)[0].payload == b"Hello"
        assert recording.masks == [(b"Hello", wire[2:6], 0)]

    def test_unmasked_needs_no_kernels(self) -> None:
        recording = Recording()
        assert encode_frame(OP_BINARY, b"x", kernels=recording.kernels) == b"\x82\x01x"
        assert recording.masks == []


class TestConnectionUsesItsKernels:
    def test_default_is_the_module_choice(self) -> None:
        assert ServerConnection()._decoder.kernels is KERNELS

    @pytest.mark.parametrize("role", ROLES)
    def test_decodes_with_them(self, role: str) -> None:
        recording = Recording()
        conn = make(role, recording.kernels)
        assert conn.receive(f(role, OP_BINARY, b"data")) == [
            *make(role).receive(f(role, OP_BINARY, b"data"))
        ]
        assert len(recording.scans) == 1
        assert recording.scans[0][3] is (role == "server")  # expect_masked

    @pytest.mark.parametrize("send", ["text", "binary", "fragment", "ping", "pong", "close"])
    def test_client_masks_what_it_sends_with_them(self, send: str) -> None:
        recording = Recording()
        conn = make("client", recording.kernels)
        wire = {
            "text": lambda: conn.send_text("hé"),
            "binary": lambda: conn.send_binary(b"\x00\x01"),
            "fragment": lambda: conn.send_fragment(b"part", final=False),
            "ping": lambda: conn.send_ping(b"p"),
            "pong": lambda: conn.send_pong(b"q"),
            "close": lambda: conn.close(1000, "bye"),
        }[send]()
        (sent,) = parse_frames(wire, masked=True)
        assert recording.masks == [(sent.payload, sent.key, 0)]

    def test_client_masks_its_automatic_replies_with_them(self) -> None:
        recording = Recording()
        conn = make("client", recording.kernels)
        conn.receive(frame(OP_PING, b"hb") + frame(OP_CLOSE, close_payload(1000)))
        pong, close = parse_frames(conn.data_to_send(), masked=True)
        assert (pong.opcode, close.opcode) == (OP_PONG, OP_CLOSE)
        # The pong is encoded when it leaves (a ping may still replace it), after
        # the close frame, which is encoded as the peer's close is read.
        assert recording.masks == [(close.payload, close.key, 0), (pong.payload, pong.key, 0)]

    def test_server_sends_unmasked_without_them(self) -> None:
        recording = Recording()
        conn = make("server", recording.kernels)
        conn.send_text("x")
        conn.send_ping(b"y")
        assert recording.masks == []

    def test_partial_text_check_unmasks_with_them(self) -> None:
        # A masked text frame still arriving is checked for UTF-8 as it comes (§8.1).
        recording = Recording()
        conn = make("server", recording.kernels)
        key = bytes.fromhex("01020304")
        wire = frame(OP_TEXT, "κόσμε".encode() * 3, mask=key)
        assert conn.receive(wire[:9]) == []
        assert conn.receive(wire[9:14]) == []
        assert recording.masks == [(wire[6:9], key, 0), (wire[9:14], key, 3)]

    def test_handshake_passes_them_on(self) -> None:
        # kernels is an ordinary connection option: the handshake hands it to the connection.
        recording = Recording()
        server = ServerHandshake(kernels=recording.kernels)
        server.receive_data(
            b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n" + frame(OP_TEXT, b"Hello", mask=True)
        )
        request = server.next_event()
        assert isinstance(request, UpgradeRequest)
        server.accept(request)
        assert server.connection.next_event() == TextMessage(data="Hello")
        assert server.connection._decoder.kernels is recording.kernels
        assert len(recording.scans) == 1


# --- Python == native, one process -------------------------------------------------------

KAPPA = "κόσμε".encode()
LIMIT = 70_000

# (name, frames from the peer of ``role``): valid traffic, then every kind of failure.
STREAMS: list[tuple[str, Callable[[str], bytes]]] = [
    ("text", lambda r: f(r, OP_TEXT, b"Hello")),
    ("binary sizes", lambda r: b"".join(f(r, OP_BINARY, bytes(n)) for n in (0, 1, 125, 126, 65536))),
    (
        "fragments and controls",
        lambda r: f(r, OP_TEXT, b"a\xc3", fin=False)
        + f(r, OP_PING, b"1")
        + f(r, OP_CONT, b"\xa9", fin=False)
        + f(r, OP_PONG, b"")
        + f(r, OP_CONT, b"z"),
    ),
    ("close", lambda r: f(r, OP_BINARY, b"x") + f(r, OP_CLOSE, close_payload(1001, "bye"))),
    ("many frames", lambda r: f(r, OP_BINARY, b"q") * (MAX_FRAMES_PER_SCAN + 3)),
    ("invalid UTF-8", lambda r: f(r, OP_TEXT, KAPPA + b"\xed\xa0\x80edited")),
    ("invalid UTF-8 in a fragment", lambda r: f(r, OP_TEXT, KAPPA, fin=False) + f(r, OP_CONT, b"\xff")),
    ("reserved opcode", lambda r: f(r, OP_TEXT, b"ok") + f(r, 0x3, b"")),
    ("rsv bits", lambda r: f(r, OP_BINARY, b"x", rsv=2)),
    ("long ping", lambda r: f(r, OP_PING, b"p" * 126)),
    ("fragmented ping", lambda r: f(r, OP_PING, b"p", fin=False)),
    ("non-minimal length", lambda r: f(r, OP_BINARY, b"x", length_form=16)),
    ("length MSB", lambda r: f(r, OP_BINARY, b"", length_form=64, declared_length=1 << 63)),
    ("wrong mask bit", lambda r: frame(OP_BINARY, b"x", mask=r != "server")),
    ("too big", lambda r: f(r, OP_BINARY, bytes(LIMIT + 1))),
    ("too big, still arriving", lambda r: f(r, OP_BINARY, bytes(2 * LIMIT))[:100]),
    ("continuation without a start", lambda r: f(r, OP_CONT, b"x")),
]


def _run(role: str, kernels: Kernels, pieces: list[bytes], **kwargs: Any) -> tuple[Any, ...]:
    conn = make(role, kernels, max_message_size=LIMIT, **kwargs)
    events: list[Event] = feed(conn, [*pieces, b""])
    # A client masks with a fresh random key: compare what the frames say, not the bytes.
    sent = parse_frames(conn.data_to_send(), masked=role == "client")
    failure = conn.failure and (type(conn.failure), conn.failure.close_code, conn.failure.reason)
    return events, [(fr.opcode, fr.payload) for fr in sent], conn.state, failure


@needs_native
class TestPythonEqualsNative:
    @pytest.mark.parametrize("role", ROLES)
    @pytest.mark.parametrize(("name", "stream"), STREAMS, ids=[name for name, _ in STREAMS])
    @pytest.mark.parametrize("size", [0, 1, 7, 4096])
    def test_same_events(
        self, role: str, name: str, stream: Callable[[str], bytes], size: int
    ) -> None:
        assert NATIVE is not None
        wire = stream(role)
        pieces = list(chunks(wire, size)) if size else [wire]
        python = _run(role, PYTHON_KERNELS, pieces)
        assert python == _run(role, NATIVE, pieces)
        assert python[0], "no events at all"

    @pytest.mark.parametrize("role", ROLES)
    def test_same_events_with_deflate(self, role: str) -> None:
        assert NATIVE is not None
        peer = PerMessageDeflate()
        payload = b"compressible " * 50
        rsv, compressed = peer.encode(payload, first=True, fin=True)
        wire = f(role, OP_BINARY, compressed, rsv=rsv >> 4) + f(role, OP_TEXT, b"plain")
        runs = [
            _run(role, kernels, [wire[:40], wire[40:]], extensions=[PerMessageDeflate()])
            for kernels in (PYTHON_KERNELS, NATIVE)
        ]
        assert runs[0] == runs[1]
        assert len(runs[0][0]) == 3  # two messages, then ConnectionLost

    @given(
        role=st.sampled_from(ROLES),
        wire=st.binary(max_size=300),
        cut=st.integers(0, 300),
        stream=st.booleans(),
    )
    def test_same_events_on_garbage(self, role: str, wire: bytes, cut: int, stream: bool) -> None:
        assert NATIVE is not None
        pieces = [wire[:cut], wire[cut:]]
        python = _run(role, PYTHON_KERNELS, pieces, stream_messages=stream)
        assert python == _run(role, NATIVE, pieces, stream_messages=stream)
