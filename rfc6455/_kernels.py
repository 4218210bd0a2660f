"""The one place that picks the native (cffi) or pure-Python masking and scanning kernels.

Strategy: ``rfc6455._native`` is imported here and nowhere else. It is used when it imports
and ``RFC6455_NO_EXTENSIONS`` is unset or empty at import time; otherwise the twins in
:mod:`rfc6455._kernels_py` are re-exported unchanged. The native wrappers keep the twins'
signatures, results and error messages, so callers and tests cannot tell them apart except
by :data:`IMPLEMENTATION`. :func:`_native_kernels` builds the wrappers for a given module,
so tests can run the native ones whatever the environment says.

The wrappers are on the per-chunk path, so each does the least Python work it can: one
``ffi.from_buffer`` per buffer (none for ``bytes``, which cffi passes as they are), the
``int64`` result array for ``scan_frames`` taken from a free list (``list.pop``/``append``
are atomic under the GIL, so no lock is needed and the core stays free of ``threading``),
and one ``tolist()`` to turn the records into a list.
``apply_mask`` on inputs below 16 bytes, and both maskers on non-contiguous memoryviews,
take the pure-Python path.
"""

from __future__ import annotations

import os
import sys
from array import array
from types import ModuleType
from typing import Any, Protocol

from . import _kernels_py
from ._kernels_py import Buffer

__all__ = ["IMPLEMENTATION", "apply_mask", "apply_mask_inplace", "scan_frames"]


class ApplyMask(Protocol):
    """The signature of :func:`rfc6455._kernels_py.apply_mask`."""

    def __call__(self, data: Buffer, key: Buffer, offset: int = 0) -> bytes: ...


class ApplyMaskInplace(Protocol):
    """The signature of :func:`rfc6455._kernels_py.apply_mask_inplace`."""

    def __call__(self, data: bytearray | memoryview, key: Buffer, offset: int = 0) -> None: ...


class ScanFrames(Protocol):
    """The signature of :func:`rfc6455._kernels_py.scan_frames`."""

    def __call__(
        self,
        buf: bytearray,
        start: int,
        end: int,
        expect_masked: bool,
        allowed_rsv: int,
        max_payload: int,
        max_frames: int,
    ) -> tuple[list[int], int, int, int]: ...


# Below this size the big-integer XOR of the twin is as fast as entering C through cffi
# (~0.7 us for either, measured here); the in-place C path wins at every size.
_NATIVE_MIN_COPY = 16

# Frames per C call in scan_frames; bounds the result array (3 int64 per frame + 3 of
# status, 96 KiB). Callers asking for more get several C calls.
_CAP = 4096
_INT64_MAX = (1 << 63) - 1


def _native_kernels(native: ModuleType) -> tuple[ApplyMask, ApplyMaskInplace, ScanFrames]:
    """Wrap the C functions of ``native`` with the twins' Python signatures and errors."""
    ffi: Any = native.ffi
    lib: Any = native.lib
    from_buffer = ffi.from_buffer
    u8 = ffi.typeof("uint8_t[]")  # untyped from_buffer (char[]) is ~10% faster where it fits
    i64 = ffi.typeof("int64_t[]")
    c_mask_copy = lib.rfc6455_mask_copy
    c_mask_inplace = lib.rfc6455_mask_inplace
    c_scan_frames = lib.rfc6455_scan_frames
    py_xor = _kernels_py._xor
    err_none = _kernels_py.ERR_NONE

    # Writing into a fresh ``bytes(n)`` saves a copy of the whole output: the object was
    # just allocated (zeroed by calloc), is referenced only here and has no cached hash, so
    # filling it before anyone else sees it is indistinguishable from building it. Only on
    # CPython, where cffi passes a bytes argument to a byte-pointer parameter as a pointer
    # to the object's own storage (no from_buffer call needed, for the input either), and
    # never for n < 2, where CPython may hand out shared singletons.
    fill_fresh_bytes = sys.implementation.name == "cpython"

    def apply_mask(data: Buffer, key: Buffer, offset: int = 0) -> bytes:
        if type(key) is not bytes:
            key = bytes(key)
        if len(key) != 4:
            raise ValueError("mask key must be 4 bytes")
        if type(data) is bytes and fill_fresh_bytes:
            n = len(data)
            if n < _NATIVE_MIN_COPY:
                return py_xor(data, key, offset)
            out = bytes(n)
            c_mask_copy(out, data, n, key, offset & 3)
            return out
        try:
            src = from_buffer(data)
        except BufferError:  # a non-contiguous memoryview: only the twin copes
            return py_xor(data, key, offset)
        n = len(src)
        if n < _NATIVE_MIN_COPY:
            return py_xor(data, key, offset)
        if fill_fresh_bytes:
            out = bytes(n)
            c_mask_copy(out, src, n, key, offset & 3)
            return out
        tmp = bytearray(n)
        c_mask_copy(from_buffer(tmp), src, n, key, offset & 3)
        return bytes(tmp)

    def apply_mask_inplace(data: bytearray | memoryview, key: Buffer, offset: int = 0) -> None:
        if type(data) is not bytearray and (
            not isinstance(data, (bytearray, memoryview))
            or (isinstance(data, memoryview) and data.readonly)
        ):
            raise TypeError("apply_mask_inplace needs a writable buffer")
        if type(key) is not bytes:
            key = bytes(key)
        if len(key) != 4:
            raise ValueError("mask key must be 4 bytes")
        try:
            buf = from_buffer(data)
        except BufferError:  # a non-contiguous memoryview: only the twin copes
            data[:] = py_xor(data, key, offset)
            return
        c_mask_inplace(buf, len(buf), key, offset & 3)

    # Result arrays: (array('q'), pointer to its records, pointer to its status), the
    # status (consumed, error, needed) after room for _CAP records. An array.array rather
    # than ffi.new: slicing it and calling tolist() is ~2x faster than ffi.unpack(). The
    # pointers hold a buffer export, so the array can never be resized.
    free: list[tuple[array[int], Any, Any]] = []
    at_status = 3 * _CAP

    def new_results() -> tuple[array[int], Any, Any]:
        results = array("q", bytes(8 * (3 * _CAP + 3)))
        records = from_buffer(i64, results, True)
        return results, records, records + at_status

    def scan_frames(
        buf: bytearray,
        start: int,
        end: int,
        expect_masked: bool,
        allowed_rsv: int,
        max_payload: int,
        max_frames: int,
    ) -> tuple[list[int], int, int, int]:
        # Only a server (expect_masked) writes into buf; a client may scan read-only bytes.
        cbuf = from_buffer(u8, buf, expect_masked)
        if not 0 <= start <= end <= len(cbuf):
            raise ValueError("scan_frames needs 0 <= start <= end <= len(buf)")
        if not 0 < max_frames <= _CAP:
            return scan_in_rounds(
                buf, start, end, expect_masked, allowed_rsv, max_payload, max_frames
            )
        # Decoded lengths are < 2**63, so clamping keeps every comparison the same.
        if not -1 <= max_payload <= _INT64_MAX:
            max_payload = -1 if max_payload < 0 else _INT64_MAX
        # The entry goes back only on success; one lost to an exception is just garbage.
        results, records_out, status = entry = free.pop() if free else new_results()
        # ~x & 0x70 only looks at bits 4-6 of allowed_rsv, even for a negative int.
        n = c_scan_frames(
            cbuf,
            start,
            end,
            expect_masked,
            allowed_rsv & 0x70,
            max_payload,
            records_out,
            max_frames,
            status,
        )
        records: list[int] = results[: 3 * n].tolist()
        consumed = results[at_status]
        error = results[at_status + 1]
        needed = results[at_status + 2]
        # Only now: once back in the list, another thread may reuse the array.
        free.append(entry)
        if needed < 0:  # stored as int64; exceeds it only with max_payload near 2**63
            needed += 1 << 64
        return records, consumed, error, needed

    def scan_in_rounds(
        buf: bytearray,
        start: int,
        end: int,
        expect_masked: bool,
        allowed_rsv: int,
        max_payload: int,
        max_frames: int,
    ) -> tuple[list[int], int, int, int]:
        # More frames than one result array holds: several C calls, each going on from
        # where the last one stopped (a full array means it stopped on the count).
        if max_frames <= 0:
            return [], start, err_none, 0
        records: list[int] = []
        consumed = start
        while True:
            want = min(_CAP, max_frames)
            more, consumed, error, needed = scan_frames(
                buf, consumed, end, expect_masked, allowed_rsv, max_payload, want
            )
            records += more
            max_frames -= want
            if len(more) < 3 * want or not max_frames:
                return records, consumed, error, needed

    for wrapper, twin in (
        (apply_mask, _kernels_py.apply_mask),
        (apply_mask_inplace, _kernels_py.apply_mask_inplace),
        (scan_frames, _kernels_py.scan_frames),
    ):
        wrapper.__qualname__ = twin.__qualname__
        wrapper.__doc__ = twin.__doc__
    return apply_mask, apply_mask_inplace, scan_frames


def _load_native() -> ModuleType | None:
    if os.environ.get("RFC6455_NO_EXTENSIONS"):
        return None
    try:
        from . import _native
    except ImportError:
        return None
    return _native


_native_module = _load_native()

#: ``"c"`` when the native kernels are in use, ``"python"`` otherwise.
IMPLEMENTATION: str = "python" if _native_module is None else "c"

apply_mask: ApplyMask
apply_mask_inplace: ApplyMaskInplace
scan_frames: ScanFrames
if _native_module is None:
    apply_mask = _kernels_py.apply_mask
    apply_mask_inplace = _kernels_py.apply_mask_inplace
    scan_frames = _kernels_py.scan_frames
else:
    apply_mask, apply_mask_inplace, scan_frames = _native_kernels(_native_module)
