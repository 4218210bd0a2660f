"""Echo through a Starlette endpoint under uvicorn, one ``--ws`` implementation per server.

    python3 benchmarks/bench_uvicorn.py                 # 50 conns, 32 B and 16 KiB, 3 rounds
    python3 benchmarks/bench_uvicorn.py --rounds 5 --duration 10 --json /tmp/uvicorn.json
    python3 benchmarks/bench_uvicorn.py --cprofile /tmp/prof --only rfc6455

Strategy: the servers are ``uvicorn uvicorn_echo_app:app --ws ...`` for uvicorn's
``websockets``, ``websockets-sansio`` and ``wsproto`` protocols and for
``rfc6455.uvicorn:WebSocketProtocol``, with the same loop (``--loop``, uvloop by
default), HTTP parser and options (per-message deflate off: the load generator does not
offer it, so it is never negotiated anyway; pings every 20 s, as uvicorn's default).
loadgen.py runs them: each server pinned to CPU 0 and the generator to CPU 1, the
implementations interleaved round by round, a fresh server per round, medians; the
server's CPU per message comes from ``utime + stime`` in /proc/PID/stat around the
measured window, and the ratio columns are against ours. ``--cprofile DIR`` runs each
server under cProfile instead (uvicorn exits normally on SIGTERM, so the profile is
written) and prints the top functions of each.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loadgen

HOST = "127.0.0.1"

IMPLEMENTATIONS = {
    "rfc6455": "rfc6455.uvicorn:WebSocketProtocol",
    "websockets-sansio": "websockets-sansio",
    "websockets": "websockets",
    "wsproto": "wsproto",
}


def server_command(ws: str, loop: str, profile: Path | None) -> str:
    """The uvicorn command line for one ``--ws`` value ({port} left for loadgen)."""
    if profile is not None:
        argv = [str(Path(__file__)), "--serve-profiled", str(profile), "--ws", ws,
                "--port", "{port}", "--loop", loop]
    else:
        argv = [
            "-m", "uvicorn", "uvicorn_echo_app:app", "--app-dir", str(HERE), "--host", HOST,
            "--port", "{port}", "--ws", ws, "--loop", loop, "--ws-per-message-deflate",
            "false", "--log-level", "warning", "--no-access-log", "--lifespan", "off",
        ]
    return "{py} " + " ".join(shlex.quote(a) if a != "{port}" else a for a in argv)


def serve_profiled(path: str, ws: str, port: int, loop: str) -> int:
    """Serve the echo app under cProfile; write the profile when uvicorn stops (SIGTERM).

    uvicorn re-raises the signal that stopped it once it is done; a no-op handler
    installed first is what it restores, so the process lives on to write the profile.
    """
    import uvicorn

    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    profile = cProfile.Profile()
    profile.enable()
    try:
        uvicorn.run(
            "uvicorn_echo_app:app", app_dir=str(HERE), host=HOST, port=port, ws=ws, loop=loop,
            ws_per_message_deflate=False, log_level="warning", access_log=False, lifespan="off",
        )
    finally:
        profile.disable()
        profile.dump_stats(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns loadgen's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--sizes", default="32,16384")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    parser.add_argument("--only", action="append", choices=sorted(IMPLEMENTATIONS))
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--cprofile", default=None, metavar="DIR",
                        help="run the servers under cProfile, write DIR/NAME.prof, print the top")
    parser.add_argument("--serve-profiled", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ws", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_profiled:
        return serve_profiled(args.serve_profiled, args.ws, args.port, args.loop)
    names = args.only or list(IMPLEMENTATIONS)
    profile_dir = Path(args.cprofile) if args.cprofile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    specs = []
    for name in names:
        profile = profile_dir / f"{name}.prof" if profile_dir is not None else None
        specs += ["--server", f"{name}={server_command(IMPLEMENTATIONS[name], args.loop, profile)}"]
    loadgen_args = [
        "echo", *specs, "--rounds", str(args.rounds), "--duration", str(args.duration),
        "--warmup", str(args.warmup), "--sizes", args.sizes, "--conns", str(args.conns),
        "--reference", "rfc6455" if "rfc6455" in names else names[0],
    ]
    if args.json:
        loadgen_args += ["--json", args.json]
    status = loadgen.main(loadgen_args)
    if profile_dir is not None:
        for name in names:
            path = profile_dir / f"{name}.prof"
            if path.exists():
                print(f"\n## {name}: top 25 by internal time", file=sys.stderr)
                stats = pstats.Stats(str(path), stream=sys.stderr)
                stats.sort_stats("tottime").print_stats(25)
    return status


if __name__ == "__main__":
    sys.exit(main())
