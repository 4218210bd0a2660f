"""permessage-deflate: compressed echo round trips and memory per connection.

    python benchmarks/bench_deflate.py [--repeats 5] [--connections 2000] [--json out.json]

Side by side with websockets' sans-I/O ``Protocol`` and its
``PerMessageDeflate`` extension, with the same settings on both sides
(12-bit windows both ways, memLevel 5, level 6, context takeover: the two
libraries' server defaults), in one process, no sockets:

1. Echo: a client connection compresses and masks a message, the server
   connection parses and inflates it, compresses the echo, the client parses
   and inflates it. Messages are JSON-like text (compressible, repeating with
   a changing counter, as a feed or chat is). Reported: round trips/s (best
   of ``--repeats`` interleaved runs), µs per round trip, bytes on the wire
   per message, and ours / websockets.
2. Memory: ``--connections`` server connections, idle or after one compressed
   message in each direction (so zlib state is allocated where the
   configuration keeps it), measured with tracemalloc (zlib's allocations
   go through Python's raw allocator, so they are traced) and as RSS growth,
   each configuration in a fresh process. RSS is lower than the traced size
   where zlib allocates tables it has not touched yet.
   Configurations: no compression; our defaults with and without context
   takeover; zlib's defaults (15-bit windows, memLevel 8) as a peer that sets
   no limits gets; websockets' server defaults.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rfc6455 import ClientConnection, ServerConnection, TextMessage
from rfc6455.permessage_deflate import PerMessageDeflate

SIZES = {"32 B": 32, "1 KiB": 1024, "64 KiB": 65536}
ROUND_TRIPS = {32: 20_000, 1024: 5_000, 65536: 100}


def messages(size: int, count: int) -> list[str]:
    """``count`` JSON-like texts of ``size`` bytes, each a little different."""
    out = []
    for i in range(count):
        body = f'{{"seq": {i}, "type": "tick", "symbol": "ACME", "price": {100 + i % 97}.25, "q": "'
        filler = "lorem ipsum dolor sit amet " * (size // 27 + 1)
        text = (body + filler)[: max(size - 2, 0)] + '"}'
        out.append(text[:size])
    return out


def our_pair(*, nct: bool = False, bits: int = 12, mem_level: int = 5) -> tuple[ClientConnection, ServerConnection]:
    def ext() -> PerMessageDeflate:
        return PerMessageDeflate(
            local_no_context_takeover=nct,
            remote_no_context_takeover=nct,
            local_max_window_bits=bits,
            remote_max_window_bits=bits,
            mem_level=mem_level,
        )

    return ClientConnection(extensions=[ext()]), ServerConnection(extensions=[ext()])


def ws_pair(*, nct: bool = False, bits: int = 12, mem_level: int = 5) -> tuple[Any, Any]:
    from websockets.extensions.permessage_deflate import PerMessageDeflate as WsDeflate
    from websockets.protocol import Protocol, Side

    def ext() -> Any:
        return WsDeflate(nct, nct, bits, bits, {"memLevel": mem_level})

    client, server = Protocol(Side.CLIENT), Protocol(Side.SERVER)
    client.extensions = [ext()]
    server.extensions = [ext()]
    return client, server


def run_ours(texts: list[str]) -> tuple[float, int]:
    client, server = our_pair()
    wire = 0
    start = time.perf_counter()
    for text in texts:
        data = client.send_text(text)
        wire += len(data)
        (event,) = server.receive(data)
        assert isinstance(event, TextMessage)
        data = server.send_text(event.data)
        (event,) = client.receive(data)
        assert isinstance(event, TextMessage) and event.data == text
    return time.perf_counter() - start, wire // len(texts)


def run_websockets(texts: list[str]) -> tuple[float, int]:
    client, server = ws_pair()
    wire = 0
    start = time.perf_counter()
    for text in texts:
        client.send_text(text.encode())
        data = b"".join(client.data_to_send())
        wire += len(data)
        server.receive_data(data)
        (frame,) = server.events_received()
        server.send_text(frame.data)
        client.receive_data(b"".join(server.data_to_send()))
        (frame,) = client.events_received()
        assert frame.data.decode() == text
    return time.perf_counter() - start, wire // len(texts)


RUNNERS: dict[str, Callable[[list[str]], tuple[float, int]]] = {
    "rfc6455": run_ours,
    "websockets": run_websockets,
}


def bench_echo(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for label, size in SIZES.items():
        texts = messages(size, ROUND_TRIPS[size])
        best: dict[str, float] = {}
        wire: dict[str, int] = {}
        for _ in range(repeats):
            for name, runner in RUNNERS.items():
                gc.collect()
                elapsed, per_message = runner(texts)
                best[name] = min(best.get(name, float("inf")), elapsed)
                wire[name] = per_message
        row: dict[str, Any] = {"size": label, "round_trips": len(texts)}
        for name in RUNNERS:
            row[f"{name}_rt_per_s"] = len(texts) / best[name]
            row[f"{name}_us_per_rt"] = best[name] / len(texts) * 1e6
            row[f"{name}_wire_bytes"] = wire[name]
        row["ratio"] = row["rfc6455_rt_per_s"] / row["websockets_rt_per_s"]
        rows.append(row)
    return rows


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _exchange_ours(pair: tuple[ClientConnection, ServerConnection], text: str) -> None:
    client, server = pair
    server.receive(client.send_text(text))
    client.receive(server.send_text(text))


def _exchange_ws(pair: tuple[Any, Any], text: str) -> None:
    client, server = pair
    client.send_text(text.encode())
    server.receive_data(b"".join(client.data_to_send()))
    server.events_received()
    server.send_text(text.encode())
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()


def _no_exchange(pair: Any, text: str) -> None:
    pass


MEMORY_CONFIGS: dict[str, Callable[[], Any]] = {
    "rfc6455, no compression": lambda: (ClientConnection(), ServerConnection()),
    "rfc6455 defaults, idle (no message yet)": lambda: our_pair(),
    "websockets defaults, idle (no message yet)": lambda: ws_pair(),
    "rfc6455 defaults (12/12 bits, memLevel 5), takeover": lambda: our_pair(),
    "rfc6455 defaults, no context takeover": lambda: our_pair(nct=True),
    "rfc6455, zlib defaults (15/15 bits, memLevel 8), takeover": lambda: our_pair(bits=15, mem_level=8),
    "websockets server defaults (12/12, memLevel 5), takeover": lambda: ws_pair(),
    "websockets, no context takeover": lambda: ws_pair(nct=True),
}


def measure_memory(label: str, connections: int, mode: str) -> float:
    """Bytes per server connection for one configuration (run in a fresh process).

    Only the server side of each pair is kept. ``mode`` is "rss" (growth of
    the resident set, no tracing) or "traced" (tracemalloc's current size).
    """
    make = MEMORY_CONFIGS[label]
    exchange = _exchange_ws if label.startswith("websockets") else _exchange_ours
    if "idle" in label:
        exchange = _no_exchange
    text = messages(200, 1)[0]
    warm = make()  # import and warm up every code path first
    _exchange_ws(warm, text) if label.startswith("websockets") else _exchange_ours(warm, text)
    del warm
    gc.collect()
    if mode == "traced":
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if mode == "traced" else _rss()
    servers = []
    for _ in range(connections):
        pair = make()
        exchange(pair, text)
        servers.append(pair[1])
        del pair
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if mode == "traced" else _rss()
    return (after - before) / connections


def bench_memory(connections: int) -> list[dict[str, Any]]:
    rows = []
    for label in MEMORY_CONFIGS:
        row: dict[str, Any] = {"config": label}
        for mode in ("traced", "rss"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-one", label, "--mode", mode,
                 "--connections", str(connections)],
                check=True, capture_output=True, text=True,
            ).stdout
            row[f"{mode}_bytes_per_conn"] = float(out.strip().splitlines()[-1])
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--memory-one", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_one:
        print(measure_memory(args.memory_one, args.connections, args.mode))
        return 0

    import websockets

    print(f"python {platform.python_version()}, websockets {websockets.__version__}, "
          f"zlib {__import__('zlib').ZLIB_RUNTIME_VERSION}")
    echo = bench_echo(args.repeats)
    print(f"\ncompressed echo round trips, in memory (best of {args.repeats})")
    print(f"{'size':>7} | {'rfc6455 rt/s':>12} {'µs/rt':>7} {'wire B':>6} | "
          f"{'websockets rt/s':>15} {'µs/rt':>7} {'wire B':>6} | ratio")
    for row in echo:
        print(f"{row['size']:>7} | {row['rfc6455_rt_per_s']:>12,.0f} {row['rfc6455_us_per_rt']:>7.1f} "
              f"{row['rfc6455_wire_bytes']:>6} | {row['websockets_rt_per_s']:>15,.0f} "
              f"{row['websockets_us_per_rt']:>7.1f} {row['websockets_wire_bytes']:>6} | "
              f"{row['ratio']:.2f}x")
    memory = bench_memory(args.connections)
    print(f"\nmemory per server connection after one message each way ({args.connections} connections)")
    print(f"{'configuration':<60} {'traced KiB':>10} {'RSS KiB':>8}")
    for row in memory:
        print(f"{row['config']:<60} {row['traced_bytes_per_conn'] / 1024:>10.1f} "
              f"{row['rss_bytes_per_conn'] / 1024:>8.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"echo": echo, "memory": memory}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
