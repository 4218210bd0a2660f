"""Print the frame-parse comparison as a table (no pytest): best of N runs per cell.

    python benchmarks/parse_table.py [--repeats 7] [--sizes 16,1024,65536] [--only rfc6455,websockets]

Same streams and runners as bench_parse.py (server role, masked binary frames
with a fresh key each, 64 KiB chunks). Runs are interleaved round-robin over
the implementations so background load hits them alike; the best time of each
cell is kept (the least disturbed run), and every run is checked to deliver
every frame and byte. Ratios are ours (default kernels) over each peer.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_parse import RUNNERS, build_chunks, implementation_label

#: Frames per size: the shared yardstick's defaults (/work/shared/bench/bench_parse.py).
DEFAULT_FRAMES = {16: 100_000, 1024: 20_000, 65536: 400}


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", default="16,1024,65536")
    parser.add_argument("--only", default="", help="comma-separated implementation names")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    names = [n for n in RUNNERS if not args.only or n in args.only.split(",")]
    best: dict[tuple[str, int], float] = {}
    for size in sizes:
        frames = DEFAULT_FRAMES.get(size) or max(100, 16_000_000 // (size + 14))
        chunks = build_chunks(size, frames)
        for _ in range(args.repeats):
            for name in names:
                gc.collect()
                start = time.perf_counter()
                result = RUNNERS[name](chunks)
                elapsed = time.perf_counter() - start
                if result != (frames, frames * size):
                    raise SystemExit(f"{name} at {size} B delivered {result}, not {frames} frames")
                key = (name, size)
                best[key] = min(best.get(key, elapsed), elapsed)
        for name in names:
            best[(name, size)] = frames / best[(name, size)]  # now frames/s

    print(f"# frame parsing, server role, 64 KiB chunks, best of {args.repeats}")
    print(f"# Python {platform.python_version()}, rfc6455 {implementation_label()}")
    print()
    print("| implementation | " + " | ".join(f"{s} B frames/s" for s in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name in names:
        cells = " | ".join(f"{best[(name, s)]:,.0f}" for s in sizes)
        print(f"| {name} | {cells} |")
    if "rfc6455" in names:
        for peer in names:
            if peer == "rfc6455":
                continue
            ratios = " | ".join(f"{best[('rfc6455', s)] / best[(peer, s)]:.2f}x" for s in sizes)
            print(f"| rfc6455 / {peer} | {ratios} |")


if __name__ == "__main__":
    main()
