"""rfc6455.asyncio against websockets' asyncio server, in one load-generator run.

Two jobs:

* ``python3 benchmarks/bench_asyncio.py serve --port P [--loop asyncio|uvloop]``: an echo
  server on :func:`rfc6455.asyncio.serve`, with the contract of
  ``benchmarks/bench_server.py`` (127.0.0.1, any path, no compression, no keepalive pings
  unless ``--ping-interval``; SIGTERM/SIGINT stop it and exit 0).
* ``python3 benchmarks/bench_asyncio.py [loadgen options]``: runs ``loadgen.py echo``
  with that server on the standard loop and on uvloop, and websockets' asyncio server
  (``peer_servers/websockets_server.py``) as the reference; extra options go to loadgen
  (``--sizes 32 --duration 5 --rounds 3 --json /tmp/aio.json``). websockets runs on
  uvloop too (``websockets-uvloop``), so each loop has its own comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

# A script in the checkout (never installed): the checkout's rfc6455 first.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent


async def serve_echo(args: argparse.Namespace) -> None:
    from rfc6455.asyncio import ConnectionClosed, ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    ping = args.ping_interval if args.ping_interval > 0 else None
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        args.host,
        args.port,
        compression=False,
        ping_interval=ping,
        max_message_size=1 << 24,
        backlog=args.backlog,
        max_connections=None,
        message_timeout=None,
    ):
        print(f"listening on ws://{args.host}:{args.port}", flush=True)
        await stop


def serve_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench_asyncio.py serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="echo", choices=["echo", "idle", "connections"])
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    parser.add_argument("--ping-interval", type=float, default=0.0, help="0: no heartbeats")
    parser.add_argument("--backlog", type=int, default=4096)
    parser.add_argument("--profile", default=None, help="cProfile the server into this file")
    args = parser.parse_args(argv)
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(serve_echo(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.profile)
    elif args.loop == "uvloop":
        import uvloop

        uvloop.run(serve_echo(args))
    else:
        asyncio.run(serve_echo(args))


def websockets_main(argv: list[str]) -> None:
    """``peer_servers/websockets_server.py`` on uvloop (``websockets-uvloop``)."""
    import runpy

    import uvloop

    uvloop.install()  # asyncio.run() in the script then runs on uvloop
    script = HERE / "peer_servers" / "websockets_server.py"
    sys.argv = [str(script), *argv]
    runpy.run_path(str(script), run_name="__main__")


def run_main(argv: list[str]) -> int:
    me = f"{{py}} {Path(__file__).resolve()} serve --port {{port}} --mode {{mode}}"
    command = [
        sys.executable,
        str(HERE / "loadgen.py"),
        "echo",
        "--server",
        f"rfc6455-asyncio={me} --loop asyncio",
        "--server",
        f"rfc6455-uvloop={me} --loop uvloop",
        "--server",
        "websockets",
        "--server",
        (
            f"websockets-uvloop={{py}} {Path(__file__).resolve()} websockets"
            " --port {port} --mode {mode}"
        ),
        *argv,
    ]
    return subprocess.call(command, env={**os.environ, "PYTHONPATH": str(ROOT)})


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        serve_main(argv[1:])
    elif argv[:1] == ["websockets"]:
        websockets_main(argv[1:])
    else:
        sys.exit(run_main(argv))


if __name__ == "__main__":
    main()
