"""A comparison peer for ``benchmarks/bench_compare.py``: an ``aiohttp`` echo server.

Contract (as ``benchmarks/bench_server.py``): listen on 127.0.0.1:PORT, any path, no
compression, no heartbeats; every data message goes back with its type. SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=False, max_msg_size=request.app["max_size"])
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def serve(host: str, port: int, max_size: int) -> None:
    app = web.Application()
    app["max_size"] = max_size
    app.router.add_get("/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096)
    await site.start()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    print(f"listening on ws://{host}:{port}", flush=True)
    await stop
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="echo", choices=["echo"])
    parser.add_argument("--max-size", type=int, default=1 << 25)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.max_size))


if __name__ == "__main__":
    main()
