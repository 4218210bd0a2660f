"""Tests for rfc6455._frames: the incremental decoder and the serializer (RFC 6455 §5.2).

Tables are checked whole, byte by byte, and with trailing data; expected bytes
come from the RFC (§5.7) or from tests/helpers.py, never from the serializer.
"""

from __future__ import annotations

import os
import struct

import pytest
from helpers import RFC_KEY, frame, parse_frames, xor_mask

from rfc6455 import LocalProtocolError, MessageTooBig, ProtocolError, _frames, encode_frame
from rfc6455._frames import MAX_FRAMES_PER_SCAN, FrameDecoder, frame_header, mask_key, scan_error
from rfc6455._kernels_py import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_LENGTH_MSB,
    ERR_MASKED,
    ERR_NON_MINIMAL_LENGTH,
    ERR_RESERVED_OPCODE,
    ERR_RSV_BITS,
    ERR_TOO_BIG,
    ERR_UNMASKED,
)

BIN256 = bytes(range(256))
BIN64K = bytes(i * 7 & 0xFF for i in range(65536))

# (name, masked, wire bytes, [(first header byte, payload)]) -- RFC 6455 §5.7.
RFC_VECTORS = [
    ("single-frame unmasked text", False, bytes.fromhex("810548656c6c6f"), [(0x81, b"Hello")]),
    (
        "single-frame masked text",
        True,
        bytes.fromhex("818537fa213d7f9f4d5158"),
        [(0x81, b"Hello")],
    ),
    (
        "fragmented unmasked text",
        False,
        bytes.fromhex("010348656c") + bytes.fromhex("80026c6f"),
        [(0x01, b"Hel"), (0x80, b"lo")],
    ),
    ("unmasked ping", False, bytes.fromhex("890548656c6c6f"), [(0x89, b"Hello")]),
    ("masked pong", True, bytes.fromhex("8a8537fa213d7f9f4d5158"), [(0x8A, b"Hello")]),
    (
        "256-byte binary, 16-bit length",
        False,
        bytes.fromhex("827e0100") + BIN256,
        [(0x82, BIN256)],
    ),
    (
        "64 KiB binary, 64-bit length",
        False,
        bytes.fromhex("827f0000000000010000") + BIN64K,
        [(0x82, BIN64K)],
    ),
]

VECTOR_IDS = [v[0] for v in RFC_VECTORS]


def decode_all(decoder: FrameDecoder, pieces: list[bytes]) -> tuple[list[tuple[int, bytes]], int]:
    """Feed every piece; the frames (first byte, payload) and the first error code."""
    frames: list[tuple[int, bytes]] = []
    for piece in pieces:
        records, error = decoder.feed(piece)
        buf = decoder.buffer
        for i in range(0, len(records), 3):
            frames.append((records[i], bytes(buf[records[i + 1] : records[i + 2]])))
        if error:
            return frames, error
    return frames, 0


class TestSection5_7Examples:
    @pytest.mark.parametrize(("name", "masked", "wire", "expected"), RFC_VECTORS, ids=VECTOR_IDS)
    def test_decode_whole(
        self, name: str, masked: bool, wire: bytes, expected: list[tuple[int, bytes]]
    ) -> None:
        decoder = FrameDecoder(expect_masked=masked)
        assert decode_all(decoder, [wire]) == (expected, 0)
        assert decoder.pending == 0

    @pytest.mark.parametrize(("name", "masked", "wire", "expected"), RFC_VECTORS, ids=VECTOR_IDS)
    def test_decode_byte_by_byte(
        self, name: str, masked: bool, wire: bytes, expected: list[tuple[int, bytes]]
    ) -> None:
        if len(wire) > 5000:
            # 64 KiB one byte at a time would be 65,546 feeds; 7-byte steps
            # still split every header and the payload at odd offsets.
            pieces = [wire[i : i + 7] for i in range(0, len(wire), 7)]
        else:
            pieces = [wire[i : i + 1] for i in range(len(wire))]
        decoder = FrameDecoder(expect_masked=masked)
        assert decode_all(decoder, pieces) == (expected, 0)
        assert decoder.pending == 0

    @pytest.mark.parametrize(("name", "masked", "wire", "expected"), RFC_VECTORS, ids=VECTOR_IDS)
    @pytest.mark.parametrize("trailing", [b"\x81", b"\x82\x7e\x01", b"\x81\x05Hel"])
    def test_decode_with_trailing_data(
        self,
        name: str,
        masked: bool,
        wire: bytes,
        expected: list[tuple[int, bytes]],
        trailing: bytes,
    ) -> None:
        if masked and len(trailing) > 1:
            trailing = bytes([trailing[0], trailing[1] | 0x80]) + trailing[2:]
        decoder = FrameDecoder(expect_masked=masked)
        assert decode_all(decoder, [wire + trailing]) == (expected, 0)
        assert decoder.pending == len(trailing)
        assert bytes(decoder.pending_view()) == trailing

    @pytest.mark.parametrize(("name", "masked", "wire", "expected"), RFC_VECTORS, ids=VECTOR_IDS)
    def test_decode_every_split_point(
        self, name: str, masked: bool, wire: bytes, expected: list[tuple[int, bytes]]
    ) -> None:
        points = range(len(wire) + 1) if len(wire) < 300 else [0, 1, 2, 3, 4, 9, 10, 11, 4000]
        for split in points:
            decoder = FrameDecoder(expect_masked=masked)
            assert decode_all(decoder, [wire[:split], wire[split:]]) == (expected, 0), split

    @pytest.mark.parametrize(("name", "masked", "wire", "expected"), RFC_VECTORS, ids=VECTOR_IDS)
    def test_serialize(
        self,
        name: str,
        masked: bool,
        wire: bytes,
        expected: list[tuple[int, bytes]],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(_frames, "mask_key", lambda: RFC_KEY)
        out = b"".join(
            encode_frame(first & 0x0F, payload, fin=bool(first & 0x80), mask=masked)
            for first, payload in expected
        )
        assert out == wire

    def test_headers_of_256_bytes_and_64_kib(self) -> None:
        assert frame_header(0x82, 256) == bytes.fromhex("827e0100")
        assert frame_header(0x82, 65536) == bytes.fromhex("827f0000000000010000")
        assert frame_header(0x82, 256, 0x80) == bytes.fromhex("82fe0100")

    def test_hand_built_helper_agrees_with_rfc(self) -> None:
        # The helper other tests rely on reproduces the RFC bytes too.
        assert frame(0x1, b"Hello") == bytes.fromhex("810548656c6c6f")
        assert frame(0x1, b"Hello", mask=True) == bytes.fromhex("818537fa213d7f9f4d5158")
        assert frame(0x2, BIN256)[:4] == bytes.fromhex("827e0100")


class TestSection5_2LengthEncodings:
    @pytest.mark.parametrize(
        ("length", "header"),
        [
            (0, "8200"),
            (1, "8201"),
            (125, "827d"),
            (126, "827e007e"),
            (127, "827e007f"),
            (65535, "827effff"),
            (65536, "827f0000000000010000"),
            (65537, "827f0000000000010001"),
        ],
    )
    def test_minimal_lengths(self, length: int, header: str) -> None:
        payload = b"\xa5" * length
        wire = encode_frame(0x2, payload)
        assert wire == bytes.fromhex(header) + payload
        decoder = FrameDecoder(expect_masked=False)
        assert decode_all(decoder, [wire]) == ([(0x82, payload)], 0)

    @pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536])
    def test_masked_round_trip(self, length: int) -> None:
        payload = os.urandom(length)
        wire = encode_frame(0x2, payload, mask=True)
        [parsed] = parse_frames(wire, masked=True)
        assert parsed.payload == payload
        decoder = FrameDecoder(expect_masked=True)
        assert decode_all(decoder, [wire]) == ([(0x82, payload)], 0)

    def test_fresh_key_per_frame(self) -> None:
        keys = {parse_frames(encode_frame(0x1, b"x", mask=True))[0].key for _ in range(8)}
        assert len(keys) == 8

    def test_serializer_flags(self) -> None:
        assert encode_frame(0x1, b"a", fin=False) == b"\x01\x01a"
        assert encode_frame(0x0, b"a", fin=True) == b"\x80\x01a"
        assert encode_frame(0x1, b"a", rsv=0x40) == b"\xc1\x01a"
        assert encode_frame(0x8, b"") == b"\x88\x00"


# (name, server side?, bytes, scan error, close code)
REJECTIONS = [
    *(
        (f"reserved opcode {op:#x}", False, frame(op, b"ab"), ERR_RESERVED_OPCODE, 1002)
        for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)
    ),
    *((f"rsv {rsv}", False, frame(0x1, b"ab", rsv=rsv), ERR_RSV_BITS, 1002) for rsv in range(1, 8)),
    ("rsv on a ping", False, frame(0x9, b"", rsv=4), ERR_RSV_BITS, 1002),
    (
        "control frame of 126 bytes",
        False,
        frame(0x9, b"p" * 126),
        ERR_CONTROL_TOO_LONG,
        1002,
    ),
    (
        "control frame, 16-bit length 125",
        False,
        frame(0xA, b"p" * 125, length_form=16),
        ERR_CONTROL_TOO_LONG,
        1002,
    ),
    ("fragmented ping", False, frame(0x9, b"p", fin=False), ERR_CONTROL_FRAGMENTED, 1002),
    ("fragmented close", False, frame(0x8, b"", fin=False), ERR_CONTROL_FRAGMENTED, 1002),
    (
        "64-bit length with the MSB set",
        False,
        frame(0x2, b"", length_form=64, declared_length=1 << 63),
        ERR_LENGTH_MSB,
        1002,
    ),
    (
        "64-bit length all ones",
        False,
        frame(0x2, b"", length_form=64, declared_length=(1 << 64) - 1),
        ERR_LENGTH_MSB,
        1002,
    ),
    ("16-bit length 5", False, frame(0x2, b"hello", length_form=16), ERR_NON_MINIMAL_LENGTH, 1002),
    (
        "16-bit length 125",
        False,
        frame(0x2, b"x" * 125, length_form=16),
        ERR_NON_MINIMAL_LENGTH,
        1002,
    ),
    ("64-bit length 5", False, frame(0x2, b"hello", length_form=64), ERR_NON_MINIMAL_LENGTH, 1002),
    (
        "64-bit length 65535",
        False,
        frame(0x2, b"x" * 65535, length_form=64),
        ERR_NON_MINIMAL_LENGTH,
        1002,
    ),
    ("unmasked frame to a server", True, frame(0x1, b"hi"), ERR_UNMASKED, 1002),
    ("unmasked ping to a server", True, frame(0x9, b""), ERR_UNMASKED, 1002),
    ("masked frame to a client", False, frame(0x1, b"hi", mask=True), ERR_MASKED, 1002),
    ("masked close to a client", False, frame(0x8, b"", mask=True), ERR_MASKED, 1002),
]

REJECTION_IDS = [r[0] for r in REJECTIONS]


class TestSection5_2Rejections:
    @pytest.mark.parametrize(
        ("name", "server", "wire", "error", "code"), REJECTIONS, ids=REJECTION_IDS
    )
    def test_rejected_whole(
        self, name: str, server: bool, wire: bytes, error: int, code: int
    ) -> None:
        decoder = FrameDecoder(expect_masked=server)
        frames, got = decode_all(decoder, [wire])
        assert frames == []
        assert got == error
        exc = scan_error(got)
        assert isinstance(exc, ProtocolError)
        assert exc.close_code == code

    @pytest.mark.parametrize(
        ("name", "server", "wire", "error", "code"), REJECTIONS, ids=REJECTION_IDS
    )
    def test_rejected_from_the_header_alone(
        self, name: str, server: bool, wire: bytes, error: int, code: int
    ) -> None:
        # Every rejection is decided by the header: the payload need not arrive.
        header_size = 2 + {126: 2, 127: 8}.get(wire[1] & 0x7F, 0)
        decoder = FrameDecoder(expect_masked=server)
        assert decode_all(decoder, [wire[i : i + 1] for i in range(header_size)]) == ([], error)

    @pytest.mark.parametrize(
        ("name", "server", "wire", "error", "code"), REJECTIONS, ids=REJECTION_IDS
    )
    def test_rejected_after_good_frames(
        self, name: str, server: bool, wire: bytes, error: int, code: int
    ) -> None:
        good = frame(0x1, b"ok", mask=server) + frame(0x9, b"p", mask=server)
        decoder = FrameDecoder(expect_masked=server)
        frames, got = decode_all(decoder, [good + wire + good])
        assert frames == [(0x81, b"ok"), (0x89, b"p")]
        assert got == error

    def test_rsv_allowed_by_extension(self) -> None:
        decoder = FrameDecoder(expect_masked=False, allowed_rsv=0x40)
        assert decode_all(decoder, [frame(0x1, b"ab", rsv=4)]) == ([(0xC1, b"ab")], 0)
        decoder = FrameDecoder(expect_masked=False, allowed_rsv=0x40)
        assert decode_all(decoder, [frame(0x1, b"ab", rsv=2)]) == ([], ERR_RSV_BITS)


class TestMaxPayload:
    def test_at_limit_accepted(self) -> None:
        decoder = FrameDecoder(expect_masked=True, max_payload=300)
        payload = b"z" * 300
        assert decode_all(decoder, [frame(0x2, payload, mask=True)]) == ([(0x82, payload)], 0)

    def test_over_limit_rejected_on_the_header(self) -> None:
        decoder = FrameDecoder(expect_masked=True, max_payload=300)
        header = frame(0x2, b"z" * 301, mask=True)[:4]
        assert decode_all(decoder, [header]) == ([], ERR_TOO_BIG)
        exc = scan_error(ERR_TOO_BIG)
        assert isinstance(exc, MessageTooBig)
        assert exc.close_code == 1009


class TestDecoderBuffering:
    def test_needed_reports_incomplete_frame_size(self) -> None:
        decoder = FrameDecoder(expect_masked=False)
        decoder.feed(b"\x82\x7e\x01\x00abc")
        assert decoder.needed == 4 + 256
        assert decoder.pending == 7

    def test_more_frames_than_one_scan_holds(self) -> None:
        count = MAX_FRAMES_PER_SCAN * 2 + 17
        wire = b"".join(frame(0x2, struct.pack("!I", i), mask=True) for i in range(count))
        decoder = FrameDecoder(expect_masked=True)
        frames, error = decode_all(decoder, [wire])
        assert error == 0
        assert frames == [(0x82, struct.pack("!I", i)) for i in range(count)]
        assert decoder.pending == 0

    @pytest.mark.parametrize("extra", [0, 1])
    def test_exactly_one_scan_of_frames(self, extra: int) -> None:
        count = MAX_FRAMES_PER_SCAN
        wire = b"".join(frame(0x9, b"") for _ in range(count)) + b"\x82" * extra
        decoder = FrameDecoder(expect_masked=False)
        frames, error = decode_all(decoder, [wire])
        assert (len(frames), error, decoder.pending) == (count, 0, extra)

    def test_odd_chunks_across_many_frames(self) -> None:
        payloads = [bytes([i]) * (i * 37 % 300) for i in range(200)]
        wire = b"".join(frame(0x2, p, mask=os.urandom(4)) for p in payloads)
        decoder = FrameDecoder(expect_masked=True)
        frames, error = decode_all(decoder, [wire[i : i + 13] for i in range(0, len(wire), 13)])
        assert error == 0
        assert [p for _, p in frames] == payloads

    def test_unmask_matches_rfc_rule(self) -> None:
        key = bytes.fromhex("01020304")
        payload = bytes(range(50))
        wire = frame(0x2, payload, mask=key)
        assert wire[6:] == xor_mask(payload, key)
        decoder = FrameDecoder(expect_masked=True)
        assert decode_all(decoder, [wire]) == ([(0x82, payload)], 0)


class TestEncodeFrameRefusesWhatMayNotBeSent:
    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcodes(self, opcode: int) -> None:
        with pytest.raises(LocalProtocolError):
            encode_frame(opcode, b"")

    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_control_frames(self, opcode: int) -> None:
        encode_frame(opcode, b"x" * 125)
        with pytest.raises(LocalProtocolError):
            encode_frame(opcode, b"x" * 126)
        with pytest.raises(LocalProtocolError):
            encode_frame(opcode, b"", fin=False)

    def test_rsv_bits_only(self) -> None:
        assert encode_frame(0x1, b"", rsv=0x40)[0] == 0xC1
        with pytest.raises(LocalProtocolError):
            encode_frame(0x1, b"", rsv=0x80)


class TestMaskKeys:
    """§5.3: a fresh, unpredictable key per frame; drawn from os.urandom in batches."""

    def test_keys_are_four_bytes_and_all_different(self) -> None:
        keys = [mask_key() for _ in range(5000)]  # several batches
        assert all(type(k) is bytes and len(k) == 4 for k in keys)
        assert len(set(keys)) > 4990  # 32 random bits: a collision or two at most

    def test_keys_come_from_the_os_csprng(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[int] = []

        def urandom(n: int) -> bytes:
            calls.append(n)
            return bytes(range(256)) * (n // 256)

        monkeypatch.setattr(_frames, "_MASK_KEYS", type(_frames._MASK_KEYS)())
        monkeypatch.setattr(os, "urandom", urandom)
        assert [mask_key() for _ in range(3)] == [b"\x00\x01\x02\x03", b"\x04\x05\x06\x07", b"\x08\x09\x0a\x0b"]
        assert calls == [4096]  # one system call for 1,024 keys

    def test_threads_never_share_a_key(self) -> None:
        import threading

        results: list[list[bytes]] = [[] for _ in range(4)]

        def draw(out: list[bytes]) -> None:
            out.extend(mask_key() for _ in range(3000))

        threads = [threading.Thread(target=draw, args=(r,)) for r in results]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        keys = [k for r in results for k in r]
        assert len(set(keys)) > len(keys) - 10

    @pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
    def test_a_forked_child_does_not_reuse_the_parents_keys(self) -> None:
        mask_key()  # the batch is filled
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.write(w, b"".join(mask_key() for _ in range(8)))
            os._exit(0)
        os.close(w)
        child = os.read(r, 64)
        os.close(r)
        os.waitpid(pid, 0)
        parent = b"".join(mask_key() for _ in range(8))
        assert len(child) == 32 and child != parent
