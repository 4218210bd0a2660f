"""Unmasking throughput: our native kernels vs the Python twin, websockets and a memory copy.

Run with ``pytest benchmarks/bench_mask.py --benchmark-only`` (add ``--benchmark-json
FILE`` to keep the numbers). Each size is its own group, so the table compares every
implementation on the same input. The budget (issue 2): native in-place >= 1.0x a
same-size memory copy (``bytes(bytearray)``) at 64 KiB and 1 MiB, and faster than
websockets' C ``apply_mask`` from 1 KiB up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rfc6455._kernels import PYTHON_KERNELS, Kernels, native_kernels

try:
    from rfc6455 import _native
except ImportError:  # pragma: no cover - a pure build
    _native = None  # type: ignore[assignment]

NATIVE_KERNELS: Kernels | None = None if _native is None else native_kernels(_native)

websockets_apply_mask: Callable[..., bytes] | None
try:
    from websockets.speedups import apply_mask as websockets_apply_mask
except ImportError:  # pragma: no cover - websockets without its C extension
    websockets_apply_mask = None

SIZES = [16, 125, 1024, 64 * 1024, 1024 * 1024]
KEY = bytes.fromhex("37fa213d")


def _payload(size: int) -> bytes:
    return bytes((i * 151 + 7) & 0xFF for i in range(size))


def _cases() -> dict[str, Callable[[int], Callable[[], Any]]]:
    cases: dict[str, Callable[[int], Callable[[], Any]]] = {}

    def memcopy(size: int) -> Callable[[], Any]:
        buf = bytearray(_payload(size))
        return lambda: bytes(buf)

    cases["memcopy"] = memcopy

    if _native is not None and NATIVE_KERNELS is not None:
        apply_mask = NATIVE_KERNELS.apply_mask
        apply_mask_inplace = NATIVE_KERNELS.apply_mask_inplace

        def native_inplace(size: int) -> Callable[[], Any]:
            buf = bytearray(_payload(size))
            return lambda: apply_mask_inplace(buf, KEY)

        def native_copy(size: int) -> Callable[[], Any]:
            data = _payload(size)
            return lambda: apply_mask(data, KEY)

        def native_kernel_only(size: int) -> Callable[[], Any]:
            # The C loop with the cffi call but none of the wrapper's checks.
            buf = bytearray(_payload(size))
            cbuf = _native.ffi.from_buffer("uint8_t[]", buf)
            kernel = _native.lib.rfc6455_mask_inplace
            return lambda: kernel(cbuf, size, KEY, 0)

        cases["native_inplace"] = native_inplace
        cases["native_copy"] = native_copy
        cases["native_kernel_only"] = native_kernel_only

    def python(size: int) -> Callable[[], Any]:
        data = _payload(size)
        return lambda: PYTHON_KERNELS.apply_mask(data, KEY)

    cases["python"] = python

    if websockets_apply_mask is not None:
        ws_apply_mask = websockets_apply_mask

        def websockets(size: int) -> Callable[[], Any]:
            data = _payload(size)
            return lambda: ws_apply_mask(data, KEY)

        cases["websockets"] = websockets
    return cases


CASES = _cases()


@pytest.mark.parametrize("impl", list(CASES))
@pytest.mark.parametrize("size", SIZES)
def test_unmask(benchmark: Any, size: int, impl: str) -> None:
    benchmark.group = f"unmask {size} B"
    benchmark.extra_info["bytes"] = size
    fn = CASES[impl](size)
    benchmark(fn)


# Unmasking where the receive path really does it: inside scan_frames, one C call per
# 64 KiB chunk, no Python call per frame. Compared with websockets' apply_mask called once
# per frame, as its parser does. Divide the time by extra_info["frames"] for ns per frame.
CHUNK = 64 * 1024
FRAME_SIZES = [125, 1024, 16 * 1024]


def _masked_chunk(size: int) -> tuple[bytearray, int, list[tuple[int, int]]]:
    header = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0xFE]) + size.to_bytes(2)
    one = header + KEY + PYTHON_KERNELS.apply_mask(_payload(size), KEY)
    count = CHUNK // len(one)
    spans = [(i * len(one) + len(header) + 4, (i + 1) * len(one)) for i in range(count)]
    return bytearray(one * count), count, spans


def _scan_cases() -> dict[str, Callable[[int], tuple[Callable[[], Any], int]]]:
    cases: dict[str, Callable[[int], tuple[Callable[[], Any], int]]] = {}

    def make_scan(kernels: Kernels) -> Callable[[int], tuple[Callable[[], Any], int]]:
        scan = kernels.scan_frames

        def case(size: int) -> tuple[Callable[[], Any], int]:
            # Scanning unmasks in place; scanning again re-masks: the frames stay valid.
            buf, count, _ = _masked_chunk(size)
            end = len(buf)
            return (lambda: scan(buf, 0, end, True, 0, 1 << 20, 4096)), count

        return case

    for prefix, kernels in (("native", NATIVE_KERNELS), ("python", PYTHON_KERNELS)):
        if kernels is not None:
            cases[f"{prefix}_scan_frames"] = make_scan(kernels)

    if websockets_apply_mask is not None:
        ws_apply_mask = websockets_apply_mask

        def websockets_per_frame(size: int) -> tuple[Callable[[], Any], int]:
            buf, count, spans = _masked_chunk(size)
            view = memoryview(buf)

            def run() -> None:
                for start, end in spans:
                    ws_apply_mask(view[start:end], view[start - 4 : start])

            return run, count

        cases["websockets_apply_mask_per_frame"] = websockets_per_frame
    return cases


SCAN_CASES = _scan_cases()


@pytest.mark.parametrize("impl", list(SCAN_CASES))
@pytest.mark.parametrize("size", FRAME_SIZES)
def test_unmask_64k_chunk(benchmark: Any, size: int, impl: str) -> None:
    fn, frames = SCAN_CASES[impl](size)
    benchmark.group = f"unmask a 64 KiB chunk of {size} B frames ({frames} frames)"
    benchmark.extra_info["frames"] = frames
    benchmark(fn)
