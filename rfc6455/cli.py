"""The ``rfc6455`` command line (contract in docs/contracts.md: info, serve, connect,
autobahn-server, autobahn-client). The load generator is a script in the checkout:
``python3 benchmarks/loadgen.py``."""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from collections.abc import Callable, Sequence

from . import __version__
from ._kernels import IMPLEMENTATION as MASK_IMPLEMENTATION

__all__ = ["build_parser", "main"]


def _info(args: argparse.Namespace) -> int:
    print(f"rfc6455 {__version__}")
    print(f"python {platform.python_version()} ({platform.python_implementation()})")
    print(f"masking: {MASK_IMPLEMENTATION}")
    print(f"frame scanning: {MASK_IMPLEMENTATION}")
    try:
        from . import permessage_deflate  # noqa: F401

        print("permessage-deflate: zlib")
    except ImportError:
        print("permessage-deflate: unavailable")
    return 0


def _add_server_options(parser: argparse.ArgumentParser, *, default_port: int) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="INFO")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rfc6455", description="WebSocket (RFC 6455) tools")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version and active accelerators")
    info.set_defaults(func=_info)

    serve = sub.add_parser("serve", help="run a WebSocket server")
    _add_server_options(serve, default_port=8765)
    serve.add_argument("--app", default="echo", help="echo | pubsub | MODULE:ATTR")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--redis", default=None, metavar="URL")
    serve.add_argument("--history-size", type=int, default=100, metavar="N",
                       help="pubsub: publications kept per topic for recovery (default 100)")
    serve.add_argument("--history-ttl", type=float, default=300.0, metavar="S",
                       help="pubsub: and for at most this long; 0 keeps them by count only "
                            "(default 300)")
    serve.add_argument("--join-leave", action="append", default=[], metavar="PATTERN",
                       help="pubsub: topics (fnmatch pattern) that announce join/leave")
    serve.add_argument("--max-message-size", type=int, default=1 << 20, metavar="BYTES")
    serve.add_argument("--max-connections", type=int, default=100_000, metavar="N")
    serve.add_argument("--max-connections-per-ip", type=int, default=0, metavar="N")
    serve.add_argument("--ping-interval", type=float, default=20.0, metavar="S")
    serve.add_argument("--ping-timeout", type=float, default=20.0, metavar="S")
    serve.add_argument("--handshake-timeout", type=float, default=10.0, metavar="S")
    serve.add_argument("--close-timeout", type=float, default=10.0, metavar="S")
    serve.add_argument("--idle-timeout", type=float, default=0.0, metavar="S")
    serve.add_argument("--message-timeout", type=float, default=60.0, metavar="S")
    serve.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S")
    serve.add_argument("--rate-limit", type=float, default=0.0, metavar="MSGS_PER_S")
    serve.add_argument("--write-buffer-limit", type=int, default=1 << 20, metavar="BYTES")
    serve.add_argument("--memory-budget", type=int, default=256 << 20, metavar="BYTES")
    serve.add_argument("--no-compression", action="store_true")
    serve.add_argument("--certfile", default=None)
    serve.add_argument("--keyfile", default=None)
    serve.set_defaults(func=_command("serve"))

    connect = sub.add_parser("connect", help="interactive client: stdin lines to text messages")
    connect.add_argument("url")
    connect.add_argument("--header", action="append", default=[], metavar="K:V")
    connect.add_argument("--subprotocol", action="append", default=[])
    connect.add_argument("--no-compression", action="store_true")
    connect.add_argument("--log-level", default="WARNING")
    connect.set_defaults(func=_command("connect"))

    autobahn_server = sub.add_parser("autobahn-server", help="echo testee for the fuzzingclient")
    _add_server_options(autobahn_server, default_port=9001)
    autobahn_server.set_defaults(func=_command("autobahn_server"))

    autobahn_client = sub.add_parser("autobahn-client", help="testee client for the fuzzingserver")
    autobahn_client.add_argument("--url", default="ws://127.0.0.1:9001")
    autobahn_client.add_argument("--agent", default="rfc6455")
    autobahn_client.add_argument("--cases", default="*", metavar="GLOB")
    autobahn_client.add_argument("--log-level", default="WARNING")
    autobahn_client.set_defaults(func=_command("autobahn_client"))

    return parser


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    """The subcommand ``name`` of :mod:`rfc6455.cli_commands`, imported only when it runs
    (``info`` must not pay for the server and client imports)."""

    def run(args: argparse.Namespace) -> int:
        from . import cli_commands

        _setup_logging(args.log_level)
        result: int = getattr(cli_commands, name)(args)
        return result

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rfc6455`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
