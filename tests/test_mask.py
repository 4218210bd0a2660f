"""Masking kernels (RFC 6455 §5.3): the C wrappers and the Python twin, one test matrix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfc6455 import _kernels, _kernels_py
from rfc6455._kernels import KERNELS, PYTHON_KERNELS, Kernels, native_kernels


def _import_native() -> ModuleType | None:
    try:
        from rfc6455 import _native
    except ImportError:
        return None
    return _native


ROOT = Path(__file__).resolve().parents[1]
NATIVE = _import_native()
# Each implementation as (apply_mask, apply_mask_inplace). The native pair is built straight
# from the extension, so it is tested even when RFC6455_NO_EXTENSIONS makes _kernels use Python.
IMPLS = [pytest.param((PYTHON_KERNELS.apply_mask, PYTHON_KERNELS.apply_mask_inplace), id="python")]
if NATIVE is not None:
    NATIVE_KERNELS = native_kernels(NATIVE)
    _native_apply_mask = NATIVE_KERNELS.apply_mask
    _native_apply_mask_inplace = NATIVE_KERNELS.apply_mask_inplace
    IMPLS.append(pytest.param((_native_apply_mask, _native_apply_mask_inplace), id="c"))

ApplyMask = Callable[..., bytes]
ApplyMaskInplace = Callable[..., None]
Impl = tuple[ApplyMask, ApplyMaskInplace]

KEY = bytes.fromhex("37fa213d")
LENGTHS = [*range(71), 127, 128, 255, 256, 1000, 4099, 65536 + 5]


def reference(data: bytes, key: bytes, offset: int) -> bytes:
    """The RFC's definition, byte by byte: j = i MOD 4, transformed = original XOR key[j]."""
    return bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))


def pattern(n: int) -> bytes:
    return bytes((i * 151 + 7) & 0xFF for i in range(n))


@pytest.mark.parametrize("impl", IMPLS)
class TestApplyMask:
    def test_rfc_hello_vector(self, impl: Impl) -> None:
        # §5.7: a single-frame masked text message, 0x81 0x85 0x37 0xfa 0x21 0x3d 0x7f ...
        frame = bytes.fromhex("818537fa213d7f9f4d5158")
        apply_mask, apply_mask_inplace = impl
        assert apply_mask(frame[6:], frame[2:6]) == b"Hello"
        assert apply_mask(b"Hello", KEY) == frame[6:]
        buf = bytearray(frame)
        apply_mask_inplace(memoryview(buf)[6:], frame[2:6])
        assert buf[6:] == b"Hello"
        assert buf[:6] == frame[:6]

    @pytest.mark.parametrize("offset", [0, 1, 2, 3])
    @pytest.mark.parametrize("length", LENGTHS)
    def test_every_offset_and_length(self, impl: Impl, offset: int, length: int) -> None:
        apply_mask, apply_mask_inplace = impl
        data = pattern(length)
        expected = reference(data, KEY, offset)
        assert apply_mask(data, KEY, offset) == expected
        buf = bytearray(data)
        apply_mask_inplace(buf, KEY, offset)
        assert buf == expected

    @pytest.mark.parametrize("offset", [-1, 4, 5, 7, 1 << 40])
    def test_offset_taken_modulo_4(self, impl: Impl, offset: int) -> None:
        apply_mask, apply_mask_inplace = impl
        data = pattern(100)
        expected = reference(data, KEY, offset % 4)
        assert apply_mask(data, KEY, offset) == expected
        buf = bytearray(data)
        apply_mask_inplace(buf, KEY, offset)
        assert buf == expected

    def test_large(self, impl: Impl) -> None:
        apply_mask, apply_mask_inplace = impl
        data = pattern((1 << 20) + 3)
        expected = _kernels_py.apply_mask(data, KEY, 3)
        # Spot-check the twin at the far end against the definition.
        assert expected[-5:] == reference(data, KEY, 3)[-5:]
        assert apply_mask(data, KEY, 3) == expected
        buf = bytearray(data)
        apply_mask_inplace(buf, KEY, 3)
        assert buf == expected

    @pytest.mark.parametrize("start", [1, 3, 5, 7, 9, 15, 17, 31, 33])
    @pytest.mark.parametrize("length", [0, 1, 7, 31, 63, 64, 65, 257, 4097])
    def test_unaligned_memoryview_slices(self, impl: Impl, start: int, length: int) -> None:
        apply_mask, apply_mask_inplace = impl
        original = pattern(start + length + 40)
        buf = bytearray(original)
        view = memoryview(buf)[start : start + length]
        expected = reference(original[start : start + length], KEY, 1)
        assert apply_mask(view, KEY, 1) == expected
        assert apply_mask(memoryview(original)[start : start + length], KEY, 1) == expected
        apply_mask_inplace(view, KEY, 1)
        assert buf[start : start + length] == expected
        # Nothing outside the slice is touched.
        assert buf[:start] == original[:start]
        assert buf[start + length :] == original[start + length :]

    @pytest.mark.parametrize("step", [2, 3, -1])
    def test_non_contiguous_memoryview(self, impl: Impl, step: int) -> None:
        apply_mask, apply_mask_inplace = impl
        original = pattern(200)
        buf = bytearray(original)
        view = memoryview(buf)[::step]
        expected = reference(original[::step], KEY, 1)
        assert apply_mask(view, KEY, 1) == expected
        apply_mask_inplace(view, KEY, 1)
        assert bytes(view) == expected
        if step == -1:
            assert bytes(buf) == expected[::-1]
        else:
            untouched = [i for i in range(200) if i % step]
            assert [buf[i] for i in untouched] == [original[i] for i in untouched]

    @pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
    def test_returns_new_bytes_and_leaves_input(self, impl: Impl, kind: type) -> None:
        apply_mask, _ = impl
        for n in (0, 1, 2, 15, 16, 17, 1000):
            data = pattern(n)
            source = kind(data)
            result = apply_mask(source, KEY)
            assert type(result) is bytes
            assert result == reference(data, KEY, 0)
            assert bytes(source) == data
            assert n == 0 or result is not source

    def test_does_not_disturb_shared_bytes(self, impl: Impl) -> None:
        # The native copy fills a fresh bytes object; CPython's shared empty and one-byte
        # bytes must never be the one it writes into.
        apply_mask, _ = impl
        for n in range(40):
            apply_mask(b"\xff" * n, KEY)
        assert bytes(0) == b""
        assert bytes(1) == b"\x00"
        assert bytes(2) == b"\x00\x00"
        assert bytes(range(256))[0:1] == b"\x00"
        assert b"a" == bytes([97])

    @pytest.mark.parametrize("key_kind", [bytes, bytearray, memoryview])
    def test_key_may_be_any_buffer(self, impl: Impl, key_kind: type) -> None:
        apply_mask, apply_mask_inplace = impl
        data = pattern(50)
        assert apply_mask(data, key_kind(KEY), 2) == reference(data, KEY, 2)
        buf = bytearray(data)
        apply_mask_inplace(buf, key_kind(KEY), 2)
        assert buf == reference(data, KEY, 2)

    @pytest.mark.parametrize("key", [b"", b"abc", b"abcde", bytearray(8)])
    def test_bad_key_length(self, impl: Impl, key: bytes) -> None:
        apply_mask, apply_mask_inplace = impl
        with pytest.raises(ValueError, match="mask key must be 4 bytes"):
            apply_mask(b"payload of some length", key)
        with pytest.raises(ValueError, match="mask key must be 4 bytes"):
            apply_mask(b"", key)
        with pytest.raises(ValueError, match="mask key must be 4 bytes"):
            apply_mask_inplace(bytearray(40), key)

    @pytest.mark.parametrize(
        "buf", [b"read-only bytes", memoryview(b"read-only view"), memoryview(bytes(64))]
    )
    def test_inplace_needs_writable_buffer(self, impl: Impl, buf: bytes | memoryview) -> None:
        _, apply_mask_inplace = impl
        with pytest.raises(TypeError, match="apply_mask_inplace needs a writable buffer"):
            apply_mask_inplace(buf, KEY)
        # The buffer check comes first, as in the twin.
        with pytest.raises(TypeError, match="apply_mask_inplace needs a writable buffer"):
            apply_mask_inplace(buf, b"bad")

    def test_inplace_twice_restores(self, impl: Impl) -> None:
        _, apply_mask_inplace = impl
        data = pattern(333)
        buf = bytearray(data)
        apply_mask_inplace(buf, KEY, 3)
        assert buf != data
        apply_mask_inplace(buf, KEY, 3)
        assert buf == data


needs_native = pytest.mark.skipif(NATIVE is None, reason="rfc6455._native is not built")


@needs_native
@given(
    data=st.binary(max_size=3000),
    key=st.binary(min_size=4, max_size=4),
    offset=st.integers(min_value=-10, max_value=10),
    start=st.integers(min_value=0, max_value=40),
)
def test_c_equals_python(data: bytes, key: bytes, offset: int, start: int) -> None:
    start = min(start, len(data))
    expected = _kernels_py.apply_mask(data[start:], key, offset)
    assert _native_apply_mask(data[start:], key, offset) == expected
    assert _native_apply_mask(memoryview(data)[start:], key, offset) == expected
    c_buf, py_buf = bytearray(data), bytearray(data)
    _native_apply_mask_inplace(memoryview(c_buf)[start:], key, offset)
    _kernels_py.apply_mask_inplace(memoryview(py_buf)[start:], key, offset)
    assert c_buf == py_buf


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 70001])
@pytest.mark.parametrize("first", [0x81, 0x82, 0x02, 0x89, 0x88, 0xC1])
def test_encode_masked_is_header_key_and_masked_payload(n: int, first: int) -> None:
    from rfc6455._frames import frame_header

    payload = pattern(n)
    key = b"\x9a\x01\xff\x37"
    expected = frame_header(first, n, 0x80) + key + reference(payload, key, 0)
    assert _kernels_py.encode_masked(first, payload, key) == expected
    if NATIVE is not None:
        native = NATIVE_KERNELS.encode_masked
        assert native(first, payload, key) == expected
        # Other buffer types go to the twin: same bytes.
        assert native(first, bytearray(payload), bytearray(key)) == expected  # type: ignore[arg-type]
        out = native(first, payload, key)
        assert out is not native(first, payload, key)  # a fresh object every time


@needs_native
@given(
    data=st.binary(max_size=70_000),
    key=st.binary(min_size=4, max_size=4),
    first=st.integers(min_value=0, max_value=255),
)
def test_encode_masked_c_equals_python(data: bytes, key: bytes, first: int) -> None:
    before = bytearray(data)
    assert NATIVE_KERNELS.encode_masked(first, data, key) == _kernels_py.encode_masked(
        first, data, key
    )
    assert data == before  # the payload (written into a fresh object only) is untouched


class TestImplementationChoice:
    def test_matches_environment(self) -> None:
        if os.environ.get("RFC6455_NO_EXTENSIONS"):
            assert _kernels.IMPLEMENTATION == "python"
            assert KERNELS is PYTHON_KERNELS
            assert _kernels.apply_mask is _kernels_py.apply_mask
        elif NATIVE is not None:
            assert _kernels.IMPLEMENTATION == "c"
            assert KERNELS is native_kernels()
            assert _kernels.apply_mask is not _kernels_py.apply_mask
        else:
            assert _kernels.IMPLEMENTATION == "python"

    def test_implementation_is_the_default_kernels_name(self) -> None:
        assert _kernels.IMPLEMENTATION == KERNELS.name
        assert (_kernels.apply_mask, _kernels.apply_mask_inplace, _kernels.scan_frames) == (
            KERNELS.apply_mask,
            KERNELS.apply_mask_inplace,
            KERNELS.scan_frames,
        )

    def test_python_kernels_are_the_twins(self) -> None:
        assert PYTHON_KERNELS == Kernels(
            "python",
            _kernels_py.apply_mask,
            _kernels_py.apply_mask_inplace,
            _kernels_py.scan_frames,
            _kernels_py.take_frame,
            _kernels_py.encode_masked,
        )

    def test_kernels_are_frozen_values(self) -> None:
        with pytest.raises(AttributeError):
            PYTHON_KERNELS.name = "c"  # type: ignore[misc]
        assert not hasattr(PYTHON_KERNELS, "__dict__")

    @needs_native
    def test_native_kernels_wrap_the_extension_once(self) -> None:
        kernels = native_kernels()
        assert kernels.name == "c"
        assert native_kernels(NATIVE) is kernels
        # The wrappers pass for the twins in help() and tracebacks.
        for field in ("apply_mask", "apply_mask_inplace", "scan_frames"):
            wrapper, twin = getattr(kernels, field), getattr(_kernels_py, field)
            assert wrapper is not twin
            assert (wrapper.__qualname__, wrapper.__doc__) == (twin.__qualname__, twin.__doc__)

    def test_native_kernels_need_the_extension(self) -> None:
        # Without the extension (a None entry in sys.modules makes its import fail) the
        # default falls back to Python, and asking for the native kernels says why.
        probe = (
            "import sys; sys.modules['rfc6455._native'] = None; "
            "import rfc6455._kernels as m\n"
            "try:\n    m.native_kernels()\nexcept ImportError:\n    print(m.IMPLEMENTATION)"
        )
        env = {k: v for k, v in os.environ.items() if k != "RFC6455_NO_EXTENSIONS"}
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        assert out == ["python"]

    def test_environment_forces_python(self) -> None:
        probe = (
            "import sys, rfc6455._kernels as m, rfc6455._kernels_py as p; "
            "print(m.IMPLEMENTATION, m.scan_frames is p.scan_frames, "
            "m.KERNELS is m.PYTHON_KERNELS, 'rfc6455._native' in sys.modules)"
        )
        env = dict(os.environ, RFC6455_NO_EXTENSIONS="1")
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        # Forced Python does not even load the extension.
        assert out == ["python", "True", "True", "False"]

    @needs_native
    def test_native_chosen_without_the_switch(self) -> None:
        probe = "import rfc6455._kernels as m; print(m.IMPLEMENTATION)"
        env = {k: v for k, v in os.environ.items() if k != "RFC6455_NO_EXTENSIONS"}
        out = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        assert out == ["c"]

    def test_ci_built_the_extension(self) -> None:
        # In CI the extension must have been compiled; a silent fallback to Python fails here.
        if os.environ.get("CI") == "true" and not os.environ.get("RFC6455_NO_EXTENSIONS"):
            assert _kernels.IMPLEMENTATION == "c"
        else:
            assert _kernels.IMPLEMENTATION in ("c", "python")
