"""Adapters for the team yardstick's parse benchmark (shared/bench, "2. Parsing").

Usage, from a scratch copy of the shared harness::

    PYTHONPATH=/path/to/rfc6455/benchmarks python bench_parse.py \\
        --impl "rfc6455=shared_bench_adapter:MyParser" \\
        --impl "rfc6455 (python kernels)=shared_bench_adapter:MyParserPython"

Contract: ``factory()`` returns an object with ``feed(chunk) -> int`` (complete
messages now available) and ``nbytes`` (payload bytes delivered so far).
"""

from __future__ import annotations

import os
import sys

try:
    import rfc6455
except ImportError:  # run from the checkout without installing it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import rfc6455

from rfc6455 import _connection, _frames, _kernels_py


class MyParser:
    """``rfc6455.ServerConnection`` (post-handshake), default kernels, no size limit."""

    def __init__(self) -> None:
        self.conn = rfc6455.ServerConnection(max_message_size=None)
        self.nbytes = 0

    def feed(self, chunk: bytes) -> int:
        """Feed one chunk; return the number of complete messages it produced."""
        n = 0
        nbytes = 0
        for event in self.conn.receive(chunk):
            nbytes += len(event.data)  # type: ignore[attr-defined]
            n += 1
        self.nbytes += nbytes
        return n


class MyParserPython(MyParser):
    """The same with the pure-Python kernels (as ``RFC6455_NO_EXTENSIONS=1``).

    The kernels are swapped in for each ``feed`` and restored after it, so the
    other implementations measured in the same process keep the native ones.
    """

    def feed(self, chunk: bytes) -> int:
        """Feed one chunk with the Python twins of the kernels."""
        saved = [(namespace, name, namespace[name]) for namespace, name, _ in _SWAPS]
        for namespace, name, twin in _SWAPS:
            namespace[name] = twin
        try:
            return super().feed(chunk)
        finally:
            for namespace, name, original in saved:
                namespace[name] = original


#: (module globals, name, Python twin): what RFC6455_NO_EXTENSIONS=1 would pick.
_SWAPS = [
    (vars(module), name, twin)
    for module in (_frames, _connection)
    for name, twin in (("scan_frames", _kernels_py.scan_frames), ("apply_mask", _kernels_py.apply_mask))
    if name in vars(module)
]
