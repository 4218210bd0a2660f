"""The kernels: masking and frame scanning, native (cffi) or pure Python, as values.

Strategy: a :class:`Kernels` is an immutable bundle of the three kernel functions. There are
two kinds: :data:`PYTHON_KERNELS`, the twins in :mod:`rfc6455._kernels_py`, and
:func:`native_kernels`, wrappers around the C functions of ``rfc6455._native`` that keep
the twins' signatures, results and error messages, so callers and tests cannot tell them
apart except by :attr:`Kernels.name`. The frame decoder and the connection take a
``Kernels`` as a parameter (default :data:`KERNELS`), so one process can run both side by
side without touching any module global.

:data:`KERNELS` is the default choice, made once at import: the native kernels when
``rfc6455._native`` imports and ``RFC6455_NO_EXTENSIONS`` is unset or empty, else the
Python ones (the extension is then not even imported). This module is the only one that
imports ``rfc6455._native``.

The wrappers are on the per-chunk path, so each does the least Python work it can: one
``ffi.from_buffer`` per buffer (none for ``bytes``, which cffi passes as they are), the
``int64`` result array for ``scan_frames`` taken from a free list (``list.pop``/``append``
are atomic under the GIL, so no lock is needed and the core stays free of ``threading``),
and one ``tolist()`` to turn the records into a list.
``apply_mask`` on inputs below 16 bytes, and both maskers on non-contiguous memoryviews,
take the pure-Python path.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from array import array
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol

from . import _kernels_py
from ._kernels_py import Buffer, ScanResult

__all__ = [
    "IMPLEMENTATION",
    "KERNELS",
    "PYTHON_KERNELS",
    "Kernels",
    "apply_mask",
    "apply_mask_inplace",
    "native_kernels",
    "pin_buffer",
    "scan_frames",
    "unpin_buffer",
]


class ApplyMask(Protocol):
    """The signature of :func:`rfc6455._kernels_py.apply_mask`."""

    def __call__(self, data: Buffer, key: Buffer, offset: int = 0) -> bytes: ...


class ApplyMaskInplace(Protocol):
    """The signature of :func:`rfc6455._kernels_py.apply_mask_inplace`."""

    def __call__(self, data: bytearray | memoryview, key: Buffer, offset: int = 0) -> None: ...


class ScanFrames(Protocol):
    """The signature of :func:`rfc6455._kernels_py.scan_frames`, declared once.

    The arguments are positional: every caller passes them so, and an implementation may
    name them as it likes.
    """

    def __call__(
        self,
        buf: bytearray,
        start: int,
        end: int,
        expect_masked: bool,
        allowed_rsv: int,
        max_payload: int,
        max_frames: int,
        /,
    ) -> ScanResult: ...


class TakeFrame(Protocol):
    """The signature of :func:`rfc6455._kernels_py.take_frame`."""

    def __call__(self, buf: bytearray, end: int, expect_masked: bool, max_payload: int, /) -> int: ...


class EncodeMasked(Protocol):
    """The signature of :func:`rfc6455._kernels_py.encode_masked`."""

    def __call__(self, first: int, payload: bytes, key: bytes, /) -> bytes: ...


class BoundScan(Protocol):
    """``scan_frames`` with ``expect_masked``, ``allowed_rsv`` and ``max_payload`` bound
    and ``max_frames`` = ``MAX_FRAMES_PER_SCAN`` (see :func:`bind_scan`)."""

    def __call__(self, buf: bytearray, start: int, end: int, /) -> ScanResult: ...


def bind_scan(
    scan_frames: ScanFrames, expect_masked: bool, allowed_rsv: int, max_payload: int
) -> BoundScan | None:
    """A faster ``scan_frames`` with its fixed arguments bound, if the implementation has
    one (the native kernels: fewer arguments for cffi to convert per call), else None.

    Same results as ``scan_frames(buf, start, end, expect_masked, allowed_rsv,
    max_payload, 4096)``; bound to the function itself, so a wrapper of ``scan_frames``
    (a test's recording kernels) has none and is always called.
    """
    bind = getattr(scan_frames, "bind", None)
    if bind is None:
        return None
    bound: BoundScan = bind(bool(expect_masked), allowed_rsv, max_payload)
    return bound


@dataclass(frozen=True, slots=True)
class Kernels:
    """One implementation of the kernels; pass it to ``FrameDecoder`` / ``Connection``.

    Callers that are on the hot path bind the functions once (``self._scan =
    kernels.scan_frames``), not per call.

    Attributes:
        name: ``"c"`` for the native kernels, ``"python"`` for the pure-Python twins.
        apply_mask: see :func:`rfc6455._kernels_py.apply_mask`.
        apply_mask_inplace: see :func:`rfc6455._kernels_py.apply_mask_inplace`.
        scan_frames: see :func:`rfc6455._kernels_py.scan_frames`.
        take_frame: see :func:`rfc6455._kernels_py.take_frame`.
        encode_masked: see :func:`rfc6455._kernels_py.encode_masked`.
    """

    name: str
    apply_mask: ApplyMask
    apply_mask_inplace: ApplyMaskInplace
    scan_frames: ScanFrames
    take_frame: TakeFrame
    encode_masked: EncodeMasked


#: The pure-Python twins: the only definition of "the Python kernels".
PYTHON_KERNELS: Final = Kernels(
    "python",
    _kernels_py.apply_mask,
    _kernels_py.apply_mask_inplace,
    _kernels_py.scan_frames,
    _kernels_py.take_frame,
    _kernels_py.encode_masked,
)

# id(buffer) -> (buffer, its cdata) for the long-lived read buffers of event loops
# (pin_buffer): the per-read kernels then skip ffi.from_buffer. The entry holds the buffer,
# so its id stays unique while it is pinned.
_PINNED: dict[int, tuple[bytearray, Any]] = {}


def pin_buffer(buf: bytearray) -> None:
    """Let the native kernels keep a pointer to ``buf`` until :func:`unpin_buffer`.

    For a buffer that lives as long as an event loop and is read into again and again:
    each call on it then saves a ``from_buffer``. While pinned, ``buf`` cannot be resized
    (its buffer is exported). Does nothing without the native kernels.
    """
    native = _wrap_native_if_loaded()
    if native is not None:
        _PINNED[id(buf)] = (buf, native.ffi.from_buffer("uint8_t[]", buf, True))


def unpin_buffer(buf: bytearray) -> None:
    """Undo :func:`pin_buffer` (a buffer that is not pinned is ignored).

    The export ends when the last holder of the pointer goes: connections that read from
    ``buf`` through :func:`pinned_take_frame` keep it (and ``buf`` unresizable) while
    they live. It is not released here, which would leave them a dangling pointer.
    """
    _PINNED.pop(id(buf), None)


class PinnedBuffer:
    """A read buffer pinned (:func:`pin_buffer`) for as long as this holder lives.

    For a per-thread buffer kept in a ``threading.local``: when the thread ends, the
    holder goes and the buffer is unpinned (a pin of its own would keep it for ever).
    """

    __slots__ = ("__weakref__", "buf")

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)
        pin_buffer(self.buf)
        weakref.finalize(self, unpin_buffer, self.buf)


class PinnedTakeFrame(Protocol):
    """``take_frame`` with the buffer bound (see :func:`pinned_take_frame`)."""

    def __call__(self, end: int, expect_masked: bool, max_payload: int, /) -> int: ...


def pinned_take_frame(kernels: Kernels, buf: bytearray) -> PinnedTakeFrame | None:
    """``kernels.take_frame`` on ``buf`` as one C call with no Python frame around it,
    if ``buf`` is pinned (:func:`pin_buffer`) and ``kernels`` are the native ones; else
    None. It returns what ``take_frame`` returns, and -2 where ``take_frame`` raises
    ValueError; ``max_payload`` must fit in 63 bits."""
    entry = _PINNED.get(id(buf))
    native = _wrap_native_if_loaded()
    if entry is None or native is None or kernels.name != "c":
        return None
    bound: PinnedTakeFrame = functools.partial(
        native.lib.rfc6455_take_frame_in, entry[1], len(buf)
    )
    return bound


def _wrap_native_if_loaded() -> Any:
    return sys.modules.get(__package__ + "._native") if __package__ else None

# Below this size the big-integer XOR of the twin is as fast as entering C through cffi
# (~0.7 us for either, measured here); the in-place C path wins at every size.
_NATIVE_MIN_COPY = 16

# Frames per C call in scan_frames; bounds the result array (3 int64 per frame + 3 of
# status, 96 KiB). Callers asking for more get several C calls.
_CAP = 4096
_INT64_MAX = (1 << 63) - 1


def native_kernels(module: ModuleType | None = None) -> Kernels:
    """The native kernels: the C functions of ``module`` with the twins' signatures and errors.

    Args:
        module: a built ``rfc6455._native``-like cffi module (``ffi`` and ``lib``); by
            default ``rfc6455._native`` itself, imported now whatever
            ``RFC6455_NO_EXTENSIONS`` says, so tests can run both kernels in one process.

    Returns:
        The same :class:`Kernels` for the same module on every call.

    Raises:
        ImportError: ``module`` is None and ``rfc6455._native`` is not built.
    """
    if module is None:
        from . import _native as module
    return _wrap_native(module)


@functools.cache
def _wrap_native(native: ModuleType) -> Kernels:
    ffi: Any = native.ffi
    lib: Any = native.lib
    from_buffer = ffi.from_buffer
    u8 = ffi.typeof("uint8_t[]")  # untyped from_buffer (char[]) is ~10% faster where it fits
    i64 = ffi.typeof("int64_t[]")
    c_mask_copy = lib.rfc6455_mask_copy
    c_mask_inplace = lib.rfc6455_mask_inplace
    c_scan_frames = lib.rfc6455_scan_frames
    py_xor = _kernels_py.xor_bytes

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

    def scan_frames(buf: bytearray, start: int, end: int, expect_masked: bool,
                    allowed_rsv: int, max_payload: int, max_frames: int, /) -> ScanResult:
        # Only a server (expect_masked) writes into buf; a client may scan read-only bytes.
        cbuf = from_buffer(u8, buf, expect_masked)
        if not 0 <= start <= end <= len(cbuf):
            raise ValueError("scan_frames needs 0 <= start <= end <= len(buf)")
        # Decoded lengths are < 2**63, so clamping keeps every comparison the same.
        if not -1 <= max_payload <= _INT64_MAX:
            max_payload = -1 if max_payload < 0 else _INT64_MAX
        # ~x & 0x70 only looks at bits 4-6 of allowed_rsv, even for a negative int.
        allowed_rsv &= 0x70
        # One C call per result array's worth of frames (the decoder never asks for more).
        want = max_frames if 0 < max_frames <= _CAP else max(0, min(_CAP, max_frames))
        # The entry goes back only on success; one lost to an exception is just garbage.
        results, records_out, status = entry = free.pop() if free else new_results()
        n = c_scan_frames(
            cbuf, start, end, expect_masked, allowed_rsv, max_payload, records_out, want, status
        )
        records: list[int] = results[: 3 * n].tolist()
        # More frames wanted than one array holds and it is full, so the C call stopped on
        # the count: go on from where it stopped.
        while n == want and max_frames > want:
            max_frames -= want
            want = min(_CAP, max_frames)
            n = c_scan_frames(
                cbuf,
                results[at_status],
                end,
                expect_masked,
                allowed_rsv,
                max_payload,
                records_out,
                want,
                status,
            )
            records += results[: 3 * n].tolist()
        consumed = results[at_status]
        error = results[at_status + 1]
        needed = results[at_status + 2]
        # Only now: once back in the list, another thread may reuse the array.
        free.append(entry)
        if needed < 0:  # stored as int64; exceeds it only with max_payload near 2**63
            needed += 1 << 64
        return records, consumed, error, needed

    c_scan_bound: Any = getattr(lib, "rfc6455_scan_bound", None)

    @functools.cache
    def bind(expect_masked: bool, allowed_rsv: int, max_payload: int) -> BoundScan:
        # scan_frames(buf, start, end, expect_masked, allowed_rsv, max_payload, _CAP) with
        # the fixed arguments stored once in the control array: 4 arguments to convert
        # per C call instead of 9. One free list per binding (shared by every decoder with
        # these parameters), as for scan_frames: the C call releases the GIL.
        writable = bool(expect_masked)
        params = (
            1 if expect_masked else 0,
            allowed_rsv & 0x70,
            max_payload if -1 <= max_payload <= _INT64_MAX else (-1 if max_payload < 0 else _INT64_MAX),
            _CAP,
        )
        spare: list[tuple[array[int], Any]] = []

        def new_control() -> tuple[array[int], Any]:
            ctl = array("q", bytes(8 * (8 + 3 * _CAP)))
            ctl[0:4] = array("q", params)
            return ctl, from_buffer(i64, ctl, True)

        def scan_bound(buf: bytearray, start: int, end: int, /) -> ScanResult:
            cbuf = from_buffer(u8, buf, writable)
            if not 0 <= start <= end <= len(cbuf):
                raise ValueError("scan_frames needs 0 <= start <= end <= len(buf)")
            ctl, pointer = entry = spare.pop() if spare else new_control()
            n = c_scan_bound(cbuf, start, end, pointer)
            records: list[int] = ctl[8 : 8 + 3 * n].tolist()
            consumed = ctl[4]
            error = ctl[5]
            needed = ctl[6]
            spare.append(entry)
            if needed < 0:
                needed += 1 << 64
            return records, consumed, error, needed

        return scan_bound

    if c_scan_bound is not None:  # a module built from an older header has none
        scan_frames.bind = bind  # type: ignore[attr-defined]

    for wrapper, twin in (
        (apply_mask, _kernels_py.apply_mask),
        (apply_mask_inplace, _kernels_py.apply_mask_inplace),
        (scan_frames, _kernels_py.scan_frames),
    ):
        wrapper.__qualname__ = twin.__qualname__
        wrapper.__doc__ = twin.__doc__
    c_take_frame = lib.rfc6455_take_frame
    pinned = _PINNED

    def take_frame(buf: bytearray, end: int, expect_masked: bool, max_payload: int, /) -> int:
        entry = pinned.get(id(buf))
        # Only a server (expect_masked) writes into buf; a client may pass read-only bytes.
        cbuf = from_buffer(u8, buf, expect_masked) if entry is None else entry[1]
        if not 0 <= end <= len(cbuf):
            raise ValueError("take_frame needs 0 <= end <= len(buf)")
        if max_payload > _INT64_MAX:  # noqa: PLR1730 - cheaper than min() per read
            max_payload = _INT64_MAX
        result: int = c_take_frame(cbuf, end, expect_masked, max_payload)
        return result

    take_frame.__qualname__ = _kernels_py.take_frame.__qualname__
    take_frame.__doc__ = _kernels_py.take_frame.__doc__
    c_encode_masked = lib.rfc6455_encode_masked
    py_encode_masked = _kernels_py.encode_masked

    def encode_masked(first: int, payload: bytes, key: bytes, /) -> bytes:
        if type(payload) is bytes and type(key) is bytes and len(key) == 4:
            n = len(payload)
            # At least 6 bytes: a fresh object, never a shared one (see fill_fresh_bytes).
            out = bytes(n + 6 if n < 126 else n + 8 if n < 65536 else n + 14)
            c_encode_masked(out, first, payload, n, key)
            return out
        return py_encode_masked(first, payload, key)

    encode_masked.__qualname__ = _kernels_py.encode_masked.__qualname__
    encode_masked.__doc__ = _kernels_py.encode_masked.__doc__
    return Kernels(
        "c",
        apply_mask,
        apply_mask_inplace,
        scan_frames,
        take_frame,
        # Elsewhere than CPython there is no fresh object to fill: the twin is as good.
        encode_masked if fill_fresh_bytes else py_encode_masked,
    )


def _default_kernels() -> Kernels:
    if os.environ.get("RFC6455_NO_EXTENSIONS"):
        return PYTHON_KERNELS
    try:
        return native_kernels()
    except ImportError:
        return PYTHON_KERNELS


#: The kernels used unless a caller passes others: native when built and not switched off.
KERNELS: Final = _default_kernels()

#: ``"c"`` when the native kernels are the default, ``"python"`` otherwise.
IMPLEMENTATION: Final = KERNELS.name

apply_mask: Final = KERNELS.apply_mask
apply_mask_inplace: Final = KERNELS.apply_mask_inplace
scan_frames: Final = KERNELS.scan_frames
