"""Swap the pure-Python twins of the native kernels into the core for a while: what
``RFC6455_NO_EXTENSIONS=1`` would pick, in a process that also measures the native ones.

Used by bench_parse.py (and parse_table.py through it) and shared_bench_adapter.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rfc6455 import _connection, _frames, _mask_py


@contextlib.contextmanager
def python_kernels() -> Iterator[None]:
    """Run the connection on the pure-Python twins of the native kernels.

    The module globals the core calls through are swapped, then restored; a
    name the core no longer uses is left alone.
    """
    swaps = [
        (vars(module), name, twin)
        for module in (_frames, _connection)
        for name, twin in (("scan_frames", _mask_py.scan_frames), ("apply_mask", _mask_py.apply_mask))
        if name in vars(module)
    ]
    saved = [(namespace, name, namespace[name]) for namespace, name, _ in swaps]
    for namespace, name, twin in swaps:
        namespace[name] = twin
    try:
        yield
    finally:
        for namespace, name, original in saved:
            namespace[name] = original
