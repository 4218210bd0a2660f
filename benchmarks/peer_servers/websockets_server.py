"""The comparison peer for ``benchmarks/loadgen.py``: a ``websockets`` asyncio server.

Modes (same contract as ``benchmarks/bench_server.py``):

* ``echo``: every data message goes back on the connection it came from, with its type;
* ``broadcast``: every data message goes to every *other* open connection, framed once by
  ``websockets.asyncio.server.broadcast`` (paths are ignored);
* ``idle`` / ``connections``: like echo; used to hold idle connections with heartbeats on.

Compression is off; keepalive pings are off unless ``--ping-interval`` is given. SIGTERM and
SIGINT stop the server and exit 0. Listens on 127.0.0.1 only by default.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--mode", default="echo", choices=["echo", "broadcast", "idle", "connections"]
    )
    parser.add_argument(
        "--ping-interval", type=float, default=0.0, help="seconds; 0 turns heartbeats off"
    )
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--compression", action="store_true", help="permessage-deflate on")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    peers: set[ServerConnection] = set()

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    async def fan_out(ws: ServerConnection) -> None:
        peers.add(ws)
        try:
            async for message in ws:
                broadcast([p for p in peers if p is not ws], message)
        except ConnectionClosed:
            pass
        finally:
            peers.discard(ws)

    handler = fan_out if args.mode == "broadcast" else echo
    ping = args.ping_interval if args.ping_interval > 0 else None
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        args.host,
        args.port,
        compression="deflate" if args.compression else None,
        ping_interval=ping,
        ping_timeout=args.ping_timeout if ping else None,
        max_size=1 << 24,
        backlog=args.backlog,
    ):
        print(f"listening on ws://{args.host}:{args.port}", flush=True)
        await stop


def main() -> None:
    asyncio.run(run(parse_args()))


if __name__ == "__main__":
    main()
