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
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=default_port,
                        help="port to bind; 0 picks a free one (default %(default)s)")
    parser.add_argument("--log-level", default="INFO",
                        help="DEBUG, INFO, WARNING or ERROR (default %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rfc6455", description="WebSocket (RFC 6455) tools")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="version and active accelerators")
    info.set_defaults(func=_info)

    serve = sub.add_parser(
        "serve",
        help="run a WebSocket server",
        description="Run a WebSocket server until SIGINT/SIGTERM. A limit or timeout of 0 "
                    "is off (docs/limits.md).",
    )
    _add_server_options(serve, default_port=8765)
    serve.add_argument("--app", default="echo",
                       help="echo | pubsub | MODULE:ATTR (default %(default)s)")
    serve.add_argument("--workers", type=int, default=1,
                       help="processes sharing the port with SO_REUSEPORT (default %(default)s)")
    serve.add_argument("--redis", action="append", default=[], metavar="URL",
                       help="pubsub: a Redis broker shared by workers and hosts, "
                            "redis://HOST:PORT/DB or rediss:// (TLS); repeatable: topics "
                            "are spread over the servers (default none: in-process broker)")
    serve.add_argument("--redis-cluster", action="store_true",
                       help="pubsub: the --redis URLs are seed nodes of a Redis Cluster "
                            "(default %(default)s)")
    serve.add_argument("--history-size", type=int, default=100, metavar="N",
                       help="pubsub: publications kept per topic for recovery "
                            "(default %(default)s)")
    serve.add_argument("--history-ttl", type=float, default=300.0, metavar="S",
                       help="pubsub: and for at most this long; 0 keeps them by count only "
                            "(default %(default)s)")
    serve.add_argument("--join-leave", action="append", default=[], metavar="PATTERN",
                       help="pubsub: topics (fnmatch pattern) that announce join/leave; "
                            "repeatable (default none)")
    jwt = serve.add_mutually_exclusive_group()
    jwt.add_argument("--jwt-secret", default=None, metavar="SECRET",
                     help="pubsub: require JWTs signed with HS256 and this secret "
                          "(default %(default)s: no authentication)")
    jwt.add_argument("--jwt-public-key", default=None, metavar="PEMFILE",
                     help="pubsub: require JWTs signed with RS256, verified with this PEM "
                          "public key (default %(default)s)")
    serve.add_argument("--jwt-cookie", default=None, metavar="NAME",
                       help="pubsub: also read the token from this cookie; restrict origins "
                            "then (default %(default)s: header, ?token= and connect only)")
    serve.add_argument("--max-message-size", type=int, default=1 << 20, metavar="BYTES",
                       help="largest message, 1009 beyond (default %(default)s)")
    serve.add_argument("--max-connections", type=int, default=100_000, metavar="N",
                       help="open connections; more get 503 (default %(default)s)")
    serve.add_argument("--max-connections-per-ip", type=int, default=0, metavar="N",
                       help="sockets per client address; more get 503 (default %(default)s)")
    serve.add_argument("--ping-interval", type=float, default=20.0, metavar="S",
                       help="ping a peer silent this long (default %(default)s)")
    serve.add_argument("--ping-timeout", type=float, default=20.0, metavar="S",
                       help="then drop it if still silent this long (default %(default)s)")
    serve.add_argument("--handshake-timeout", type=float, default=10.0, metavar="S",
                       help="time to complete the opening handshake (default %(default)s)")
    serve.add_argument("--close-timeout", type=float, default=10.0, metavar="S",
                       help="time to answer our close frame (default %(default)s)")
    serve.add_argument("--idle-timeout", type=float, default=0.0, metavar="S",
                       help="close a connection without data messages this long "
                            "(default %(default)s)")
    serve.add_argument("--message-timeout", type=float, default=60.0, metavar="S",
                       help="time to complete a started frame or message, 1008 beyond "
                            "(default %(default)s)")
    serve.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="S",
                       help="time SIGTERM waits for closing handshakes (default %(default)s)")
    serve.add_argument("--rate-limit", type=float, default=0.0, metavar="MSGS_PER_S",
                       help="data messages per second per connection, 1008 beyond "
                            "(default %(default)s)")
    serve.add_argument("--write-buffer-limit", type=int, default=1 << 20, metavar="BYTES",
                       help="bytes queued for a peer above which it is a slow consumer "
                            "(default %(default)s)")
    serve.add_argument("--memory-budget", type=int, default=256 << 20, metavar="BYTES",
                       help="incoming bytes all connections may buffer together "
                            "(default %(default)s)")
    serve.add_argument("--no-compression", action="store_true",
                       help="do not negotiate permessage-deflate (default %(default)s)")
    serve.add_argument("--certfile", default=None, metavar="PEMFILE",
                       help="certificate chain: serve wss:// (default %(default)s)")
    serve.add_argument("--keyfile", default=None, metavar="PEMFILE",
                       help="private key (default %(default)s: in --certfile)")
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
