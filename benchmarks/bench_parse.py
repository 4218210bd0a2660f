"""Frame-parse throughput, server role, side by side with wsproto and websockets.

Run: ``python -m pytest benchmarks/bench_parse.py --benchmark-only`` (not part
of the default test run). ``python benchmarks/parse_table.py`` prints the same
comparison as a frames/s table with ratios, without pytest.

The input is what a server reads from a client: a pre-built stream of masked
binary frames (a fresh random key per frame), cut into 64 KiB chunks before
timing, so frames straddle chunk boundaries as they do on a socket. Each timed
run makes a fresh parser, feeds every chunk, drains the events and checks
that every frame and every payload byte came out.

Implementations:
- ``rfc6455``: ``ServerConnection`` with the default kernels (native when
  built, see ``rfc6455._kernels.KERNELS``);
- ``rfc6455-python``: the same given ``kernels=PYTHON_KERNELS``, the
  pure-Python twins that ``RFC6455_NO_EXTENSIONS=1`` would pick;
- ``wsproto``: ``wsproto.connection.Connection(ConnectionType.SERVER)``, the
  post-handshake sans-I/O connection;
- ``websockets``: ``websockets.protocol.Protocol(Side.SERVER)``, the sans-I/O
  protocol, which starts OPEN (what ``ServerProtocol`` is after a handshake).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rfc6455
from rfc6455._kernels import KERNELS, PYTHON_KERNELS, Kernels

CHUNK = 64 * 1024

#: Frames per stream, per payload size: a few MB of wire bytes each.
FRAMES = {16: 20_000, 1024: 5_000, 65536: 100}

#: (frames, payload bytes) a run delivered.
Result = tuple[int, int]


def _xor(data: bytes, key: bytes) -> bytes:
    n = len(data)
    mask = int.from_bytes((key * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(data, "little") ^ mask).to_bytes(n, "little")


def client_frame(payload: bytes, key: bytes) -> bytes:
    """One masked binary frame, FIN set (built here, not with the code under test)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x82, 0x80 | n))
    elif n < 65536:
        header = bytes((0x82, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x82, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + key + _xor(payload, key)


def build_chunks(size: int, frames: int, chunk: int = CHUNK) -> list[bytes]:
    """``frames`` masked frames of ``size`` random bytes, cut into ``chunk``-byte pieces."""
    payload = os.urandom(size)
    stream = b"".join(client_frame(payload, os.urandom(4)) for _ in range(frames))
    return [stream[i : i + chunk] for i in range(0, len(stream), chunk)]


# ----------------------------------------------------------------- runners
# Each runner parses a whole stream with a fresh parser: same shape for all, so
# the harness costs them the same.


def run_rfc6455(chunks: Sequence[bytes], kernels: Kernels | None = None) -> Result:
    conn = rfc6455.ServerConnection(max_message_size=None, kernels=kernels)
    receive = conn.receive
    frames = nbytes = 0
    for chunk in chunks:
        for event in receive(chunk):
            frames += 1
            nbytes += len(event.data)  # type: ignore[attr-defined]
    return frames, nbytes


def run_wsproto(chunks: Sequence[bytes]) -> Result:
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage

    conn = Connection(ConnectionType.SERVER)
    frames = nbytes = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            if type(event) is BytesMessage:
                nbytes += len(event.data)
                frames += event.message_finished
    return frames, nbytes


def run_websockets(chunks: Sequence[bytes]) -> Result:
    from websockets.protocol import Protocol, Side

    protocol = Protocol(Side.SERVER, max_size=None)
    frames = nbytes = 0
    for chunk in chunks:
        protocol.receive_data(chunk)
        for frame in protocol.events_received():
            nbytes += len(frame.data)  # type: ignore[union-attr]
            frames += frame.fin  # type: ignore[union-attr]
    return frames, nbytes


RUNNERS: dict[str, Callable[[Sequence[bytes]], Result]] = {
    "rfc6455": run_rfc6455,
    "rfc6455-python": functools.partial(run_rfc6455, kernels=PYTHON_KERNELS),
    "wsproto": run_wsproto,
    "websockets": run_websockets,
}


def implementation_label() -> str:
    """Which kernels the default ``rfc6455`` runner uses."""
    return f"masking: {KERNELS.name}"


# ------------------------------------------------------------------ pytest

_streams: dict[int, list[bytes]] = {}


def _chunks(size: int) -> list[bytes]:
    if size not in _streams:
        _streams[size] = build_chunks(size, FRAMES[size])
    return _streams[size]


@pytest.mark.parametrize("size", sorted(FRAMES), ids=lambda s: f"{s}B")
@pytest.mark.parametrize("impl", list(RUNNERS))
def test_parse(benchmark: Any, impl: str, size: int) -> None:
    chunks = _chunks(size)
    frames = FRAMES[size]
    benchmark.group = f"parse {size} B frames ({frames} frames, 64 KiB chunks)"
    benchmark.extra_info["frames"] = frames
    benchmark.extra_info["kernels"] = implementation_label()
    result = benchmark(RUNNERS[impl], chunks)
    assert result == (frames, frames * size)
    benchmark.extra_info["frames_per_s"] = frames / benchmark.stats.stats.mean
