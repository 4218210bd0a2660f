"""Echo / broadcast server for the benchmark harness
(``python3 benchmarks/bench_server.py --port PORT [--mode echo|broadcast]``; loadgen.py starts
it as the built-in ``rfc6455`` server).

Follows the contract of the shared bench harness: listen on 127.0.0.1:PORT,
any path, no extensions, no keepalive pings; ``echo`` sends every data message
back with its opcode; ``broadcast`` frames each message once and writes the
same bytes to every other open connection; exit on SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

# A script in the checkout (never installed): the checkout's rfc6455 first.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rfc6455 import Config, EchoHandler, Handler, Server, WebSocket, broadcast
from rfc6455.app import Message

__all__ = ["BroadcastHandler", "main"]


class BroadcastHandler(Handler):
    """Relays every data message to every other open connection, framed once."""

    __slots__ = ("peers",)

    def __init__(self) -> None:
        self.peers: dict[WebSocket, None] = {}

    def on_open(self, ws: WebSocket) -> None:
        self.peers[ws] = None

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        self.peers.pop(ws, None)

    def on_message(self, ws: WebSocket, message: Message) -> None:
        broadcast(self.peers, message, exclude=ws)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--mode", choices=["echo", "broadcast"], default="echo")
    parser.add_argument("--ping-interval", type=float, default=None)
    parser.add_argument("--keep-request", action="store_true",
                        help="keep each handshake request (ws.request) for the connection's life")
    parser.add_argument("--compression", action="store_true",
                        help="negotiate permessage-deflate (off by default)")
    parser.add_argument("--max-message-size", type=int, default=None,
                        help="bytes (default: rfc6455's default, 1 MiB)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = Config(
        host=args.host,
        port=args.port,
        backlog=4096,
        max_connections=None,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_interval,
        compression=args.compression,
        keep_request=args.keep_request,
        write_buffer_limit=None,
        shutdown_timeout=2.0,
    )
    if args.max_message_size is not None:
        config = dataclasses.replace(config, max_message_size=args.max_message_size)
    handler = EchoHandler() if args.mode == "echo" else BroadcastHandler()
    server = Server(config, handler=handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
