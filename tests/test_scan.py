"""scan_frames (RFC 6455 §5.2 header decoding): the C wrapper and the Python twin, one matrix."""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfc6455 import _kernels_py
from rfc6455._kernels import PYTHON_KERNELS, native_kernels
from rfc6455._kernels_py import (
    ERR_CONTROL_FRAGMENTED,
    ERR_CONTROL_TOO_LONG,
    ERR_LENGTH_MSB,
    ERR_MASKED,
    ERR_NON_MINIMAL_LENGTH,
    ERR_NONE,
    ERR_RESERVED_OPCODE,
    ERR_RSV_BITS,
    ERR_TOO_BIG,
    ERR_UNMASKED,
)


def _import_native() -> ModuleType | None:
    try:
        from rfc6455 import _native
    except ImportError:
        return None
    return _native


NATIVE = _import_native()
ScanFrames = Callable[..., tuple[list[int], int, int, int]]
IMPLS = [pytest.param(PYTHON_KERNELS.scan_frames, id="python")]
if NATIVE is not None:
    native_scan_frames = native_kernels(NATIVE).scan_frames
    IMPLS.append(pytest.param(native_scan_frames, id="c"))

KEY = bytes.fromhex("37fa213d")
SERVER = True  # expect_masked: a server receives masked frames
CLIENT = False
BIG = 1 << 20


def frame(
    opcode: int = 0x2,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    form: int | None = None,
    length: int | None = None,
) -> bytes:
    """Encode one frame; ``form`` forces the 7/16/64-bit length field, ``length`` lies."""
    n = len(payload) if length is None else length
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if key is not None else 0
    if form == 7:
        header = bytes([b0, mask_bit | n])
    elif form == 16:
        header = bytes([b0, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([b0, mask_bit | 127]) + n.to_bytes(8, "big")
    if key is None:
        return header + payload
    return header + key + _kernels_py.apply_mask(payload, key)


def scan(
    impl: ScanFrames,
    data: bytes | bytearray,
    expect_masked: bool = SERVER,
    *,
    start: int = 0,
    end: int | None = None,
    allowed_rsv: int = 0,
    max_payload: int = BIG,
    max_frames: int = 1000,
) -> tuple[list[int], int, int, int]:
    buf = data if isinstance(data, bytearray) else bytearray(data)
    return impl(
        buf,
        start,
        len(buf) if end is None else end,
        expect_masked,
        allowed_rsv,
        max_payload,
        max_frames,
    )


@pytest.mark.parametrize("impl", IMPLS)
class TestCompleteFrames:
    def test_rfc_hello_masked(self, impl: ScanFrames) -> None:
        # §5.7: 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f 0x9f 0x4d 0x51 0x58 contains "Hello".
        buf = bytearray.fromhex("818537fa213d7f9f4d5158")
        assert scan(impl, buf) == ([0x81, 6, 11], 11, ERR_NONE, 0)
        assert buf == bytearray.fromhex("818537fa213d") + b"Hello"

    def test_rfc_hello_unmasked(self, impl: ScanFrames) -> None:
        buf = bytearray.fromhex("810548656c6c6f")
        assert scan(impl, buf, CLIENT) == ([0x81, 2, 7], 7, ERR_NONE, 0)
        assert buf[2:] == b"Hello"

    def test_client_may_scan_read_only_bytes(self, impl: ScanFrames) -> None:
        data = bytes.fromhex("810548656c6c6f")
        assert impl(data, 0, len(data), CLIENT, 0, BIG, 10) == ([0x81, 2, 7], 7, ERR_NONE, 0)

    @pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
    @pytest.mark.parametrize("masked", [True, False])
    def test_length_forms(self, impl: ScanFrames, size: int, masked: bool) -> None:
        payload = bytes(i & 0xFF for i in range(size))
        data = frame(0x2, payload, key=KEY if masked else None)
        header = len(data) - size
        buf = bytearray(data)
        assert scan(impl, buf, masked) == ([0x82, header, len(data)], len(data), ERR_NONE, 0)
        assert buf[header:] == payload
        assert buf[:header] == data[:header]

    def test_back_to_back_in_a_window(self, impl: ScanFrames) -> None:
        frames = [
            frame(0x1, b"abc", fin=False, key=KEY),
            frame(0x9, b"ping", key=KEY),
            frame(0x0, b"de" * 100, key=KEY),
            frame(0x8, b"", key=KEY),
        ]
        junk = b"\xff" * 5
        partial = frame(0x2, b"x" * 50, key=KEY)[:20]
        buf = bytearray(junk + b"".join(frames) + partial + b"trailing")
        end = len(buf) - len(b"trailing")
        records, consumed, error, needed = scan(impl, buf, start=5, end=end)
        starts = [5]
        for f in frames:
            starts.append(starts[-1] + len(f))
        assert records == [
            0x01, starts[0] + 6, starts[1],
            0x89, starts[1] + 6, starts[2],
            0x80, starts[2] + 8, starts[3],
            0x88, starts[3] + 6, starts[4],
        ]  # fmt: skip
        assert (consumed, error, needed) == (starts[4], ERR_NONE, 2 + 4 + 50)
        assert buf[starts[0] + 6 : starts[1]] == b"abc"
        assert buf[starts[2] + 8 : starts[3]] == b"de" * 100
        assert buf[:5] == junk
        assert buf[end:] == b"trailing"

    def test_masked_empty_payload_keeps_key(self, impl: ScanFrames) -> None:
        buf = bytearray(frame(0xA, b"", key=KEY))
        assert scan(impl, buf) == ([0x8A, 6, 6], 6, ERR_NONE, 0)
        assert buf[2:] == KEY

    def test_control_frame_of_125_bytes(self, impl: ScanFrames) -> None:
        data = frame(0x9, b"p" * 125, key=KEY)
        assert scan(impl, data) == ([0x89, 6, 131], 131, ERR_NONE, 0)

    def test_max_payload_is_inclusive(self, impl: ScanFrames) -> None:
        data = frame(0x2, b"x" * 300, key=KEY)
        assert scan(impl, data, max_payload=300)[2] == ERR_NONE
        assert scan(impl, data, max_payload=299) == ([], 0, ERR_TOO_BIG, 0)

    @pytest.mark.parametrize("allowed", [0x40, 0x70, -1, 0x40 | 0x100])
    def test_allowed_rsv1(self, impl: ScanFrames, allowed: int) -> None:
        data = frame(0x1, b"z", rsv=0x40, key=KEY)
        assert scan(impl, data, allowed_rsv=allowed) == ([0xC1, 6, 7], 7, ERR_NONE, 0)


@pytest.mark.parametrize("impl", IMPLS)
class TestIncomplete:
    @pytest.mark.parametrize(
        "data",
        [
            b"",
            b"\x82",
            frame(0x2, b"x" * 200, key=KEY)[:3],  # 16-bit length not all there
            frame(0x2, b"x" * 70000, key=KEY)[:9],  # 64-bit length not all there
        ],
    )
    def test_header_unknown(self, impl: ScanFrames, data: bytes) -> None:
        assert scan(impl, data) == ([], 0, ERR_NONE, 0)

    @pytest.mark.parametrize(
        ("size", "cut"), [(0, 2), (0, 5), (5, 6), (5, 10), (200, 4), (200, 100), (70000, 14)]
    )
    def test_header_known(self, impl: ScanFrames, size: int, cut: int) -> None:
        data = frame(0x2, b"y" * size, key=KEY)
        buf = bytearray(data[:cut])
        assert scan(impl, buf) == ([], 0, ERR_NONE, len(data))
        assert buf == data[:cut]  # nothing unmasked before the frame is complete

    def test_needed_beyond_int64(self, impl: ScanFrames) -> None:
        length = (1 << 63) - 1
        data = frame(0x2, length=length, key=KEY)
        for max_payload in (length, 1 << 63, 1 << 100):
            assert scan(impl, data, max_payload=max_payload) == ([], 0, ERR_NONE, 14 + length)

    def test_end_cuts_a_frame(self, impl: ScanFrames) -> None:
        data = frame(0x2, b"a", key=KEY) * 2
        assert scan(impl, data, end=len(data) - 1) == ([0x82, 6, 7], 7, ERR_NONE, 7)
        assert scan(impl, data, start=7, end=7) == ([], 7, ERR_NONE, 0)


@pytest.mark.parametrize("impl", IMPLS)
class TestErrors:
    @pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
    def test_reserved_opcode(self, impl: ScanFrames, opcode: int) -> None:
        assert scan(impl, frame(opcode, key=KEY)) == ([], 0, ERR_RESERVED_OPCODE, 0)
        # Checked first: also with reserved bits, no mask, and only two bytes.
        assert scan(impl, bytes([0x70 | opcode, 0x7F])) == ([], 0, ERR_RESERVED_OPCODE, 0)

    @pytest.mark.parametrize(("rsv", "allowed"), [(0x40, 0), (0x20, 0x40), (0x10, 0x60)])
    def test_rsv_bits(self, impl: ScanFrames, rsv: int, allowed: int) -> None:
        data = frame(0x1, b"t", rsv=rsv)  # unmasked too: RSV is checked before the mask
        assert scan(impl, data, allowed_rsv=allowed) == ([], 0, ERR_RSV_BITS, 0)

    def test_server_needs_masked(self, impl: ScanFrames) -> None:
        assert scan(impl, frame(0x1, b"hi"), SERVER) == ([], 0, ERR_UNMASKED, 0)
        # Checked before control-frame rules and lengths.
        assert scan(impl, bytes([0x09, 0x7E])) == ([], 0, ERR_UNMASKED, 0)

    def test_client_refuses_masked(self, impl: ScanFrames) -> None:
        assert scan(impl, frame(0x1, b"hi", key=KEY), CLIENT) == ([], 0, ERR_MASKED, 0)

    @pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA])
    def test_control_rules(self, impl: ScanFrames, opcode: int) -> None:
        too_long = frame(opcode, b"c" * 126, key=KEY)
        assert scan(impl, too_long) == ([], 0, ERR_CONTROL_TOO_LONG, 0)
        # Known from the first two bytes, before the extended length arrives.
        assert scan(impl, too_long[:2]) == ([], 0, ERR_CONTROL_TOO_LONG, 0)
        fragmented = frame(opcode, b"c", fin=False, key=KEY)
        assert scan(impl, fragmented) == ([], 0, ERR_CONTROL_FRAGMENTED, 0)
        # Length is checked before FIN.
        both = frame(opcode, b"c" * 200, fin=False, key=KEY)
        assert scan(impl, both) == ([], 0, ERR_CONTROL_TOO_LONG, 0)

    @pytest.mark.parametrize(("size", "form"), [(0, 16), (125, 16), (0, 64), (65535, 64)])
    def test_non_minimal_length(self, impl: ScanFrames, size: int, form: int) -> None:
        data = frame(0x2, b"n" * size, key=KEY, form=form)
        assert scan(impl, data) == ([], 0, ERR_NON_MINIMAL_LENGTH, 0)
        # Even when the payload is not all there yet.
        header = 4 if form == 16 else 10
        assert scan(impl, data[:header]) == ([], 0, ERR_NON_MINIMAL_LENGTH, 0)

    def test_length_msb(self, impl: ScanFrames) -> None:
        data = frame(0x2, length=1 << 63, key=KEY)
        assert scan(impl, data, max_payload=1 << 70) == ([], 0, ERR_LENGTH_MSB, 0)
        data = frame(0x2, length=(1 << 64) - 1, key=KEY)
        assert scan(impl, data) == ([], 0, ERR_LENGTH_MSB, 0)

    def test_too_big_before_incomplete(self, impl: ScanFrames) -> None:
        data = frame(0x2, length=BIG + 1, key=KEY)
        assert scan(impl, data) == ([], 0, ERR_TOO_BIG, 0)

    @pytest.mark.parametrize("max_payload", [-1, -5, -(1 << 70)])
    def test_negative_max_payload_rejects_everything(
        self, impl: ScanFrames, max_payload: int
    ) -> None:
        data = frame(0x2, b"", key=KEY)
        assert scan(impl, data, max_payload=max_payload) == ([], 0, ERR_TOO_BIG, 0)

    def test_error_after_good_frames(self, impl: ScanFrames) -> None:
        good = frame(0x2, b"ok", key=KEY)
        buf = bytearray(good + good + frame(0x1, b"bad") + good)
        assert scan(impl, buf) == ([0x82, 6, 8, 0x82, 14, 16], 16, ERR_UNMASKED, 0)
        assert buf[6:8] == b"ok"
        assert buf[14:16] == b"ok"
        assert buf[21:] == good  # nothing past the error is touched


@pytest.mark.parametrize("impl", IMPLS)
class TestMaxFrames:
    def test_zero(self, impl: ScanFrames) -> None:
        data = frame(0x2, b"a", key=KEY)
        assert scan(impl, data, max_frames=0) == ([], 0, ERR_NONE, 0)
        assert scan(impl, b"\x00" + data, start=1, max_frames=-3) == ([], 1, ERR_NONE, 0)

    def test_stops_at_the_count(self, impl: ScanFrames) -> None:
        data = frame(0x2, b"a", key=KEY) * 3
        buf = bytearray(data)
        assert scan(impl, buf, max_frames=2) == ([0x82, 6, 7, 0x82, 13, 14], 14, ERR_NONE, 0)
        assert buf[14:] == data[14:]  # the third frame is left masked

    @pytest.mark.parametrize("max_frames", [1, 4095, 4096, 4097, 8192, 8193, 10000, 1 << 40])
    def test_many_frames(self, impl: ScanFrames, max_frames: int) -> None:
        # Beyond the native wrapper's per-call array (4096 frames) it loops in C calls.
        count = 10000
        data = frame(0x2, b"q", key=KEY) * count + frame(0x1, b"bad")
        records, consumed, error, needed = scan(impl, data, max_frames=max_frames)
        reported = min(count, max_frames)
        assert len(records) == 3 * reported
        assert records[-3:] == [0x82, 7 * reported - 1, 7 * reported]
        assert consumed == 7 * reported
        assert error == (ERR_UNMASKED if max_frames > count else ERR_NONE)
        assert needed == 0


needs_native = pytest.mark.skipif(NATIVE is None, reason="rfc6455._native is not built")


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("start", "end"), [(-1, 3), (4, 3), (0, 21), (50, 60)])
def test_window_must_lie_in_the_buffer(impl: ScanFrames, start: int, end: int) -> None:
    with pytest.raises(ValueError, match="0 <= start <= end <= len"):
        impl(bytearray(20), start, end, SERVER, 0, BIG, 10)


@needs_native
class TestNativeWrapper:
    def test_threads_do_not_share_result_arrays(self) -> None:
        # The C call releases the GIL; each call must still read back its own results.
        def work(size: int, errors: list[str]) -> None:
            data = frame(0x2, bytes([size]) * size, key=KEY) * (size + 1)
            expected = _kernels_py.scan_frames(bytearray(data), 0, len(data), SERVER, 0, BIG, 4096)
            for _ in range(1000):
                got = native_scan_frames(bytearray(data), 0, len(data), SERVER, 0, BIG, 4096)
                if got != expected:
                    errors.append(f"size {size}: {got[1:]} != {expected[1:]}")
                    return

        errors: list[str] = []
        threads = [threading.Thread(target=work, args=(size, errors)) for size in (1, 7, 30, 90)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)  # switch threads as often as possible
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            sys.setswitchinterval(interval)
        assert errors == []

    def test_server_needs_a_writable_buffer(self) -> None:
        data = frame(0x2, b"x", key=KEY)
        with pytest.raises(BufferError):
            native_scan_frames(data, 0, len(data), SERVER, 0, BIG, 10)  # type: ignore[arg-type]


# --- C == Python on generated input ------------------------------------------------------

MAX_PAYLOADS = st.one_of(
    st.sampled_from([-1, 0, 1, 125, 126, 200, 65535, 65536, BIG, (1 << 63) - 1, 1 << 64]),
    st.integers(min_value=-3, max_value=400),
)
ALLOWED_RSV = st.one_of(st.sampled_from([0, 0x40, 0x70, 0x10, -1]), st.integers(-300, 300))


@st.composite
def frame_streams(draw: st.DrawFn, masked: bool) -> bytes:
    """Mostly valid frames for the role, with a rule broken now and then, maybe truncated."""
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        wild = draw(st.integers(0, 7)) == 0  # anything goes: errors of every kind
        opcode = draw(st.sampled_from(list(range(16)) if wild else [0, 1, 2, 8, 9, 10]))
        sizes = [0, 1, 5, 125, 126, 127, 300, 65535, 65536]
        size = draw(st.sampled_from(sizes) | st.integers(0, 40))
        if opcode & 8 and not wild:
            size = min(size, 125)
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        if wild and draw(st.booleans()):
            key = None if masked else b"\x00\x01\x02\x03"
        form = draw(st.sampled_from([None, 7, 16, 64])) if wild else None
        if (form == 7 and size > 125) or (form == 16 and size > 65535):
            form = None
        parts.append(
            frame(
                opcode,
                draw(st.binary(min_size=size, max_size=size)) if size < 200 else bytes(size),
                fin=draw(st.booleans()) if wild or not opcode & 8 else True,
                rsv=draw(st.sampled_from([0, 0x40, 0x20, 0x10, 0x70] if wild else [0, 0x40])),
                key=key,
                form=form,
            )
        )
    stream = b"".join(parts)
    if stream and draw(st.booleans()):
        stream = stream[: draw(st.integers(0, len(stream)))]
    return stream


def _compare(
    data: bytes,
    start: int,
    end: int,
    expect_masked: bool,
    allowed_rsv: int,
    max_payload: int,
    max_frames: int,
) -> None:
    start = min(start, len(data))
    end = max(start, min(end, len(data)))
    py_buf, c_buf = bytearray(data), bytearray(data)
    args = (start, end, expect_masked, allowed_rsv, max_payload, max_frames)
    expected = _kernels_py.scan_frames(py_buf, *args)
    assert native_scan_frames(c_buf, *args) == expected
    assert c_buf == py_buf


@needs_native
@given(
    data=st.binary(max_size=200),
    start=st.integers(0, 10),
    end=st.integers(0, 220),
    expect_masked=st.booleans(),
    allowed_rsv=ALLOWED_RSV,
    max_payload=MAX_PAYLOADS,
    max_frames=st.integers(-1, 12),
)
def test_c_equals_python_on_garbage(
    data: bytes,
    start: int,
    end: int,
    expect_masked: bool,
    allowed_rsv: int,
    max_payload: int,
    max_frames: int,
) -> None:
    _compare(data, start, end, expect_masked, allowed_rsv, max_payload, max_frames)


@needs_native
@given(
    prefix=st.binary(max_size=3),
    role_and_stream=st.booleans().flatmap(
        lambda masked: st.tuples(st.just(masked), frame_streams(masked))
    ),
    allowed_rsv=ALLOWED_RSV,
    max_payload=MAX_PAYLOADS,
    max_frames=st.integers(0, 12),
)
def test_c_equals_python_on_frame_streams(
    prefix: bytes,
    role_and_stream: tuple[bool, bytes],
    allowed_rsv: int,
    max_payload: int,
    max_frames: int,
) -> None:
    expect_masked, stream = role_and_stream
    data = prefix + stream
    _compare(data, len(prefix), len(data), expect_masked, allowed_rsv, max_payload, max_frames)


def test_error_codes_match_the_c_header() -> None:
    header = (Path(__file__).resolve().parents[1] / "native" / "rfc6455_native.h").read_text()
    defined = {
        name: int(value) for name, value in re.findall(r"#define RFC6455_(ERR_\w+) (\d+)", header)
    }
    twin = {name: value for name, value in vars(_kernels_py).items() if name.startswith("ERR_")}
    assert defined == twin
    assert len(set(twin.values())) == len(twin)
