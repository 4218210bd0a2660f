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

from rfc6455._kernels import PYTHON_KERNELS, Kernels


class MyParser:
    """``rfc6455.ServerConnection`` (post-handshake), default kernels, no size limit."""

    #: The kernels the connection is given; None for the default (native when built).
    kernels: Kernels | None = None

    def __init__(self) -> None:
        self.conn = rfc6455.ServerConnection(max_message_size=None, kernels=self.kernels)
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

    Only this parser's connection gets them, so the other implementations measured in
    the same process keep the native ones.
    """

    kernels = PYTHON_KERNELS
