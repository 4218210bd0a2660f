"""What the ``rfc6455`` subcommands do (argument parsing lives in :mod:`rfc6455.cli`).

Strategy: every command maps its flags onto the public API (``Server`` and
``Config``, ``connect``) and nothing else, so the CLI is an example of using
the library as much as a tool.
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import importlib
import json
import logging
import queue
import resource
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from ._errors import ConnectionClosed
from ._loop import Loop
from ._page import pubsub_page_routes
from ._workers import Supervisor, WorkersFailed, reserve_port
from .app import EchoHandler, HandlerFactory
from .auth import Auth, JWTAuthenticator
from .broker import Broker, BrokerError, HistoryPolicy, InProcessBroker
from .envelope import SUBPROTOCOL
from .permessage_deflate import ClientPerMessageDeflate, ServerPerMessageDeflate
from .pubsub import PubSubApp
from .server import Config, Server
from .sync_client import SyncWebSocket
from .sync_client import connect as ws_connect

__all__ = ["autobahn_client", "autobahn_server", "connect", "serve"]

logger = logging.getLogger("rfc6455.cli")

#: The Autobahn Testsuite sends messages of up to 16 MiB (cases 9.x); 64 MiB
#: leaves room while still bounding what one peer can make us hold.
AUTOBAHN_MAX_MESSAGE_SIZE = 64 << 20


def _seconds(value: float) -> float | None:
    """Flags use 0 for "off"; the API uses None."""
    return value if value > 0 else None


def load_app(spec: str) -> HandlerFactory:
    """The handler factory named by ``--app``: ``echo`` or ``MODULE:ATTR``."""
    if spec == "echo":
        return EchoHandler
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise SystemExit(f"rfc6455: --app must be echo, pubsub or MODULE:ATTR, not {spec!r}")
    factory: HandlerFactory = getattr(importlib.import_module(module_name), attr)
    return factory


def server_config(args: argparse.Namespace) -> Config:
    """A server :class:`Config` from ``serve``'s flags."""
    return Config(
        host=args.host,
        port=args.port,
        max_message_size=args.max_message_size if args.max_message_size > 0 else None,
        max_connections=args.max_connections if args.max_connections > 0 else None,
        max_connections_per_ip=args.max_connections_per_ip or None,
        ping_interval=_seconds(args.ping_interval),
        ping_timeout=_seconds(args.ping_timeout),
        handshake_timeout=_seconds(args.handshake_timeout),
        close_timeout=_seconds(args.close_timeout),
        idle_timeout=_seconds(args.idle_timeout),
        message_timeout=_seconds(args.message_timeout),
        shutdown_timeout=args.shutdown_timeout,
        rate_limit=_seconds(args.rate_limit),
        write_buffer_limit=args.write_buffer_limit if args.write_buffer_limit > 0 else None,
        memory_budget=args.memory_budget if args.memory_budget > 0 else None,
        compression=not args.no_compression,  # permessage-deflate with its defaults
        certfile=args.certfile,
        keyfile=args.keyfile,
        reuse_port=args.workers > 1,
    )


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as Go's runtime does).

    A default soft limit of 1,024 would cap a server at about a thousand
    connections; returns the limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("could not raise the open-file limit above %d", soft)
    return soft


def serve(args: argparse.Namespace) -> int:
    """``rfc6455 serve``: run a server until SIGINT/SIGTERM, then exit 0 (``--workers N``:
    N supervised processes on one port)."""
    _check_serve_args(args)
    if args.workers > 1:
        return _supervise(args)
    return _serve_one(args)


def _check_serve_args(args: argparse.Namespace) -> None:
    """Refuse what cannot work before anything starts (workers would crash-loop on it)."""
    if args.workers < 1:
        raise SystemExit("rfc6455: --workers must be at least 1")
    if args.app != "pubsub" and (args.jwt_secret or args.jwt_public_key or args.jwt_cookie):
        raise SystemExit("rfc6455: --jwt-* flags need --app pubsub")
    if args.app not in ("echo", "pubsub"):
        module_name, _, attr = args.app.partition(":")
        if not module_name or not attr:
            raise SystemExit(
                f"rfc6455: --app must be echo, pubsub or MODULE:ATTR, not {args.app!r}"
            )
    if args.app == "pubsub" and args.workers > 1 and not args.redis:
        raise SystemExit(
            "rfc6455: --app pubsub with --workers > 1 needs a shared broker (--redis); "
            "the in-process broker would split the topics between the workers"
        )
    server_config(args)  # a bad value raises here, once, not in every worker


def _serve_one(args: argparse.Namespace, ready: Callable[[], None] | None = None) -> int:
    """One server process: the whole service, or one worker of ``--workers N``. ``ready``
    is called once the server listens."""
    if args.app == "pubsub":
        return _serve_pubsub(args, ready)
    app = load_app(args.app)
    raise_fd_limit()
    server = Server(server_config(args), handler=app)
    return _run(server, ready)


def _run(server: Server, ready: Callable[[], None] | None) -> int:
    server.start()
    if ready is not None:
        ready()
    # What exists now lives as long as the process: keep the collector off it.
    gc.freeze()
    server.serve_forever()
    return 0


def _serve_worker(options: dict[str, Any], ready: Callable[[], None]) -> int:
    """One worker of ``serve --workers N`` (run by :mod:`rfc6455._workers` in its own
    process, with the supervisor's options and the port it reserved)."""
    return _serve_one(argparse.Namespace(**options), ready)


def _supervise(args: argparse.Namespace) -> int:
    """``serve --workers N``: reserve the port, then supervise N workers sharing it."""
    held: list[socket.socket] = []
    if args.port == 0:
        # Every worker must bind the same port: pick it here, and hold it until we exit.
        args.port, held = reserve_port(args.host)
    options = {k: v for k, v in vars(args).items() if k != "func"}
    scheme = "wss" if args.certfile else "ws"
    host = args.host or "0.0.0.0"
    shown = f"[{host}]" if ":" in host else host
    supervisor = Supervisor(
        _serve_worker,
        options,
        args.workers,
        shutdown_timeout=args.shutdown_timeout,
        address=f"{scheme}://{shown}:{args.port}",
        log_level=args.log_level,
    )
    try:
        return supervisor.run()
    except WorkersFailed as exc:
        raise SystemExit(f"rfc6455: {exc}") from None
    finally:
        for sock in held:
            sock.close()


def _serve_pubsub(args: argparse.Namespace, ready: Callable[[], None] | None = None) -> int:
    """``serve --app pubsub``: the envelope protocol on the in-process broker, or on
    Redis with ``--redis``."""
    if args.redis_cluster and not args.redis:
        raise SystemExit("rfc6455: --redis-cluster needs --redis URL (a seed node)")
    raise_fd_limit()
    config = server_config(args)
    config.subprotocols = (SUBPROTOCOL,)
    loop = Loop()
    broker, broker_metrics = _pubsub_broker(args, loop)
    app = PubSubApp(broker, join_leave=args.join_leave, auth=_jwt_auth(args))
    config.check_request = app.check_request

    def metrics() -> str:
        text = app.metrics_text(server.incidents())
        return text + broker_metrics() if broker_metrics is not None else text

    server = Server(
        config,
        handler=app,
        loop=loop,
        http_routes=pubsub_page_routes(),
        extra_metrics=metrics,
    )
    try:
        return _run(server, ready)
    finally:
        broker.close()


def _pubsub_broker(
    args: argparse.Namespace, loop: Loop
) -> tuple[Broker, Callable[[], str] | None]:
    """``--redis URL`` (repeatable; ``--redis-cluster``): the Redis broker and its metrics;
    else the in-process broker. redis-py is imported only then (the ``redis`` extra)."""
    policy = HistoryPolicy(args.history_size, _seconds(args.history_ttl))
    if not args.redis:
        return InProcessBroker(loop, default_policy=policy), None
    try:
        from .redis_broker import RedisBroker
    except ImportError as exc:
        raise SystemExit(f"rfc6455: --redis needs redis-py (pip install 'rfc6455[redis]'): "
                         f"{exc}") from None
    try:
        broker = RedisBroker(loop, args.redis, cluster=args.redis_cluster,
                             default_policy=policy)
    except (BrokerError, ValueError) as exc:
        raise SystemExit(f"rfc6455: --redis: {exc}") from None
    return broker, broker.metrics_text


def _jwt_auth(args: argparse.Namespace) -> Auth | None:
    """``--jwt-secret``/``--jwt-public-key``: every topic request needs a valid token."""
    try:
        if args.jwt_secret:
            if len(args.jwt_secret.encode()) < 32:
                logger.warning("--jwt-secret is shorter than 32 bytes: easy to brute-force")
            authenticate = JWTAuthenticator(args.jwt_secret, "HS256")
        elif args.jwt_public_key:
            authenticate = JWTAuthenticator.from_public_key_file(args.jwt_public_key)
        elif args.jwt_cookie:
            raise SystemExit("rfc6455: --jwt-cookie needs --jwt-secret or --jwt-public-key")
        else:
            return None
    except (RuntimeError, ValueError, OSError) as exc:
        raise SystemExit(f"rfc6455: {exc}") from None
    return Auth(authenticate, cookie=args.jwt_cookie)


def autobahn_server(args: argparse.Namespace) -> int:
    """``rfc6455 autobahn-server``: the echo testee for the fuzzingclient."""
    raise_fd_limit()
    config = Config(
        host=args.host,
        port=args.port,
        max_message_size=AUTOBAHN_MAX_MESSAGE_SIZE,
        ping_interval=None,
        ping_timeout=None,
        idle_timeout=None,
        write_buffer_limit=None,
        compression=True,
        extensions=(ServerPerMessageDeflate(),),
    )
    Server(config, handler=EchoHandler).serve_forever()
    return 0


def autobahn_client(args: argparse.Namespace) -> int:
    """``rfc6455 autobahn-client``: run every case of a fuzzingserver, then update reports."""
    base = args.url.rstrip("/")
    agent = quote(args.agent)
    with ws_connect(f"{base}/getCaseCount") as ws:
        count = int(ws.recv(timeout=30))
    print(f"{count} cases", flush=True)
    for case in range(1, count + 1):
        if args.cases != "*":
            with ws_connect(f"{base}/getCaseInfo?case={case}") as ws:
                info = json.loads(ws.recv(timeout=30))
            if not fnmatch.fnmatch(str(info.get("id", "")), args.cases):
                continue
        _run_case(f"{base}/runCase?case={case}&agent={agent}")
    with ws_connect(f"{base}/updateReports?agent={agent}") as ws:
        try:
            ws.recv(timeout=60)
        except ConnectionClosed:
            pass
    return 0


def _run_case(url: str) -> None:
    """Echo everything the fuzzingserver sends until it closes."""
    try:
        ws = ws_connect(
            url,
            extensions=(ClientPerMessageDeflate(),),
            max_message_size=AUTOBAHN_MAX_MESSAGE_SIZE,
        )
    except Exception as exc:  # noqa: BLE001 (a case may refuse the handshake on purpose)
        logger.info("case %s: handshake failed: %s", url, exc)
        return
    with ws:
        try:
            while True:
                ws.send(ws.recv(timeout=120))
        except (ConnectionClosed, TimeoutError):
            pass


def connect(args: argparse.Namespace) -> int:
    """``rfc6455 connect``: stdin lines become text messages; messages go to stdout."""
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise SystemExit(f"rfc6455: --header needs K:V, not {header!r}")
        headers.append((name.strip(), value.strip()))
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    with ws_connect(
        args.url,
        extra_headers=headers,
        subprotocols=args.subprotocol,
        compression=not args.no_compression,
    ) as ws:
        threading.Thread(target=read_stdin, daemon=True).start()
        stdin_open = True
        try:
            while True:
                while stdin_open:
                    try:
                        line = lines.get_nowait()
                    except queue.Empty:
                        break
                    if line is None:
                        stdin_open = False
                        _drain(ws)
                        ws.close()
                    else:
                        ws.send(line)
                try:
                    message = ws.recv(timeout=0.05)
                except TimeoutError:
                    continue
                _print_message(message)
        except ConnectionClosed as exc:
            print(f"closed: {exc.code} {exc.reason}".rstrip(), file=sys.stderr)
            return 0 if exc.ok else 1


def _print_message(message: str | bytes) -> None:
    if isinstance(message, bytes):
        message = f"<binary {len(message)} bytes: {message[:32].hex()}>"
    print(message, flush=True)


def _drain(ws: SyncWebSocket, quiet: float = 0.5) -> None:
    """Print what still arrives until the peer is quiet for ``quiet`` seconds."""
    while True:
        try:
            _print_message(ws.recv(timeout=quiet))
        except TimeoutError:
            return
