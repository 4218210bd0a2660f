"""A comparison peer for ``benchmarks/bench_compare.py``: a ``picows`` echo server.

Contract (as ``benchmarks/bench_server.py``): listen on 127.0.0.1:PORT, any path, no
extensions, no pings; every data frame goes back with its opcode (the load client never
fragments, so a frame is a message); a close frame is answered and the connection dropped.
SIGTERM/SIGINT stop it. ``--loop asyncio`` (default, as the issue measured) or ``uvloop``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class EchoListener(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
            transport.send(kind, frame.get_payload_as_memoryview())
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())


async def serve(host: str, port: int, max_size: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    server = await ws_create_server(
        lambda _request: EchoListener(), host, port, max_frame_size=max_size, backlog=4096
    )
    print(f"listening on ws://{host}:{port}", flush=True)
    await stop
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="echo", choices=["echo"])
    parser.add_argument("--max-size", type=int, default=1 << 25)
    parser.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(serve(args.host, args.port, args.max_size))


if __name__ == "__main__":
    main()
