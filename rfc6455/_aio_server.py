"""The asyncio binding's server: :func:`serve`, :class:`Server`, :class:`ServerConnection`.

Strategy:

* ``loop.create_server`` with one :class:`ServerConnection` (an ``asyncio.BufferedProtocol``)
  per accepted socket, so the server runs on any loop that drives protocols, uvloop
  included. The settings are the selectors server's :class:`~rfc6455.Config`, and so
  are the rules: the handshake, origin and ``check_request`` checks
  (:func:`rfc6455.server.check_upgrade_request`), 503 with ``Retry-After`` above
  ``max_connections`` or ``max_connections_per_ip``, plain HTTP (``/healthz``,
  ``/metrics``, 426) answered by :class:`rfc6455._http.PlainHTTP`.
* No per-connection timers: one periodic sweep, every quarter of the shortest timeout
  (at most every second), calls :meth:`Connection.check_deadlines` on each connection.
* The handler is a coroutine function run as a task per connection once the handshake
  is done. When it returns the connection is closed with 1000; when it raises, with
  1011 (logged; the reason stays empty, internal errors never go on the wire).
* Graceful shutdown (:meth:`Server.close` then :meth:`Server.wait_closed`, or leaving
  ``async with``): stop listening, close every open connection with 1001 behind what it
  already has queued, wait up to ``shutdown_timeout`` for the closing handshakes and the
  handlers, then drop what is left and cancel the handlers still running.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, Self

from ._aio_connection import Connection, Data
from ._endpoint import Phase, PhaseTrigger
from ._errors import ConnectionClosed, HandshakeError
from ._frames import frame_header
from ._handshake import HTTPRequest, ServerHandshake, UpgradeRequest
from ._http import PlainHTTP, render_metrics
from ._limits import Incident
from .app import Handler, Router
from .permessage_deflate import ServerPerMessageDeflate
from .server import Config, check_upgrade_request

__all__ = ["Server", "ServerConnection", "broadcast", "serve"]

logger = logging.getLogger("rfc6455.asyncio")

#: The coroutine function that serves one connection.
HandlerFunction = Callable[["ServerConnection"], Awaitable[Any]]


class ServerConnection(Connection):
    """The server's side of one connection (see :class:`~rfc6455.asyncio.Connection`).

    Attributes:
        request: the handshake request (None if ``Config.keep_request`` is False).
        path: the request path, without the query.
        server: the :class:`Server` this connection belongs to.
    """

    __slots__ = ("_hs", "_over_per_ip", "_task", "path", "request", "server")

    def __init__(self, server: Server) -> None:
        super().__init__(server.settings, max_queue=server.max_queue)
        self.server = server
        self._hs: ServerHandshake | None = None
        self._task: asyncio.Task[None] | None = None
        self._over_per_ip = False
        self.request: UpgradeRequest | None = None
        self.path = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._admit(self)

    def _handshake_data(self, data: bytes) -> None:
        if self._phase is not Phase.HANDSHAKE:
            return
        hs = self._hs
        if hs is None:
            hs = self._hs = self.server._new_handshake()
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except HandshakeError as exc:
            self._log(logging.INFO, "handshake refused: %d %s", exc.status_code, exc.reason)
            self._respond(hs.reject_bytes(exc))
            return
        if isinstance(event, UpgradeRequest):
            self.server._upgrade(self, hs, event)
        elif isinstance(event, HTTPRequest):
            self.path = event.target.split("?", 1)[0]
            status, headers, body = self.server.plain_http.respond(event)
            self._respond(hs.respond(status, headers, body))

    def _respond(self, data: bytes) -> None:
        """Write a complete HTTP response (phase HTTP), then close the socket."""
        self._move(PhaseTrigger.RESPOND)
        self._hs = None
        self._write(data)
        if self._transport is not None:
            self._transport.close()

    def _accept(self, response: bytes, hs: ServerHandshake, handler: HandlerFunction) -> None:
        self._hs = None
        self._write(response)
        self.subprotocol = hs.subprotocol
        self._open(hs.connection)
        self._log(logging.INFO, "open %s (subprotocol %s)", self.path or "/", self.subprotocol)
        self._task = self._loop.create_task(self._run(handler))

    async def _run(self, handler: HandlerFunction) -> None:
        try:
            await handler(self)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - isolate the failure to this connection
            self._incident(
                Incident.HANDLER_ERROR,
                "handler error; closing with 1011",
                level=logging.ERROR,
                exc_info=True,
            )
            if self._phase is Phase.OPEN:
                self._start_close(1011, "")
            return
        if self._phase is Phase.OPEN:
            self._start_close(1000, "")

    def queue_frame(self, frame: bytes) -> bool:
        """Write an already encoded, unmasked data frame (the same bytes for many
        connections, see :func:`broadcast`); False if the connection is not open or is
        sending a fragmented message. Never waits."""
        lock = self._frag_lock
        if self._phase is not Phase.OPEN or (lock is not None and lock.locked()):
            return False
        self.messages_out += 1
        self._write(frame)
        return True

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        self._hs = None
        self.server._forget(self, was_open)
        if was_open:
            self._log(
                logging.INFO,
                "closed %d %r; in %d msgs, out %d msgs",
                self.close_code,
                self.close_reason,
                self.messages_in,
                self.messages_out,
            )


class Server:
    """A WebSocket server on asyncio (made by :func:`serve`).

    Start it with ``await`` or ``async with``; stop it with :meth:`close` and
    :meth:`wait_closed` (``async with`` does both on exit).

    Attributes:
        config: the settings.
        settings: the per-connection settings drawn from ``config``.
        max_queue: messages received and not yet read, per connection, above which
            reading from that peer pauses (None: no limit).
        connections: the open connections (the handshake done, not yet closed).
        connections_total: sockets accepted since the start.
    """

    def __init__(self, handler: HandlerFunction, config: Config, *, max_queue: int | None) -> None:
        self.handler = handler
        self.config = config
        self.max_queue = max_queue
        self.settings = config.endpoint_settings()
        self.settings.logger = logger
        self.plain_http = PlainHTTP(Router(default=Handler), None, self.metrics_text)
        extensions = config.extensions
        if extensions is None:
            extensions = (ServerPerMessageDeflate(),)
        self._extensions = tuple(extensions) if config.compression else ()
        self.connections: set[ServerConnection] = set()
        self._all: set[ServerConnection] = set()
        self._per_ip: dict[Any, int] = {}
        self.connections_total = 0
        self._totals = {"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}
        self._server: asyncio.Server | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed: asyncio.Future[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> Self:
        """Bind and listen (``await server`` does this)."""
        if self._server is not None:
            return self
        config = self.config
        context = config.ssl_context
        if context is None and config.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(config.certfile, config.keyfile)
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._server = await loop.create_server(
            lambda: ServerConnection(self),
            config.host,
            config.port,
            ssl=context,
            backlog=config.backlog,
            reuse_port=config.reuse_port or None,
        )
        self._sweep = loop.call_later(self.settings.check_interval(), self._check)
        logger.info("listening on %s", ", ".join(self._urls(context is not None)))
        return self

    def _urls(self, secure: bool) -> list[str]:
        scheme = "wss" if secure else "ws"
        urls = []
        for sock in self.sockets:
            host, port = sock.getsockname()[:2]
            host = f"[{host}]" if sock.family == socket.AF_INET6 else host
            urls.append(f"{scheme}://{host}:{port}")
        return urls

    def __await__(self) -> Generator[Any, None, Self]:
        return self.start().__await__()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (as ``asyncio.Server.sockets``); empty before the start."""
        server = self._server
        return tuple(server.sockets) if server is not None else ()

    @property
    def port(self) -> int:
        """The port listened on (the one picked when ``port`` was 0)."""
        sockets = self.sockets
        if not sockets:
            raise RuntimeError("the server is not listening")
        port: int = sockets[0].getsockname()[1]
        return port

    def close(self, close_connections: bool = True) -> None:
        """Stop listening; with ``close_connections``, close every connection with 1001
        (handshakes in progress are dropped). Then await :meth:`wait_closed`."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if close_connections:
            for ws in list(self._all):
                if ws.state is Phase.OPEN:
                    ws._start_close(1001, "server shutting down")
                elif ws.state is Phase.HANDSHAKE:
                    ws.abort()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        """Wait, up to ``shutdown_timeout``, for the connections to close and their
        handlers to return; then drop the rest and cancel their handlers."""
        timeout = self.config.shutdown_timeout
        waits = [ws.wait_closed() for ws in list(self._all)]
        tasks = [ws._task for ws in list(self._all) if ws._task is not None]
        pending = [asyncio.ensure_future(w) for w in waits] + tasks
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for ws in list(self._all):
                ws.abort()
            for item in still:
                item.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._server is not None:
            await self._server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until :meth:`close`, or until cancelled (then shut down gracefully)."""
        await self.start()
        assert self._closed is not None
        try:
            await asyncio.shield(self._closed)
        except asyncio.CancelledError:
            self.close()
            await self.wait_closed()
            raise

    # -- metrics -------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters: open connections, accepted sockets, messages and bytes in/out."""
        totals = dict(self._totals)
        for ws in self._all:
            totals["messages_in"] += ws.messages_in
            totals["messages_out"] += ws.messages_out
            totals["bytes_in"] += ws.bytes_in
            totals["bytes_out"] += ws.bytes_out
        totals["connections_open"] = len(self.connections)
        totals["connections_total"] = self.connections_total
        budget = self.settings.budget
        totals["incoming_buffered_bytes"] = budget.total if budget is not None else 0
        return totals

    def metrics_text(self) -> str:
        """``/metrics``: :meth:`stats` and the incidents, in the Prometheus text format."""
        incidents = {i.value: n for i, n in self.settings.incidents.counts.items()}
        return render_metrics(self.stats(), incidents)

    # -- for ServerConnection ------------------------------------------------------------

    def _admit(self, ws: ServerConnection) -> None:
        self.connections_total += 1
        self._all.add(ws)
        limit = self.config.max_connections_per_ip
        if limit is not None:
            host = ws.remote_address[0] if isinstance(ws.remote_address, tuple) else None
            count = self._per_ip.get(host, 0) + 1
            self._per_ip[host] = count
            if count > limit:
                ws._over_per_ip = True
                if count > 2 * limit:
                    self.settings.incidents.add(Incident.PER_IP_LIMIT)
                    ws.abort()

    def _new_handshake(self) -> ServerHandshake:
        config = self.config
        return ServerHandshake(
            subprotocols=config.subprotocols,
            extensions=self._extensions,
            check_request=self._check_request,
            max_header_size=config.max_header_size,
            max_message_size=config.max_message_size,
        )

    def _check_request(self, request: UpgradeRequest) -> None:
        check_upgrade_request(self.config, self.settings.incidents, request)

    def _upgrade(self, ws: ServerConnection, hs: ServerHandshake, request: UpgradeRequest) -> None:
        ws.path = request.target.split("?", 1)[0]
        config = self.config
        refusal = None
        if self._closing:
            refusal = "server shutting down"
        elif config.max_connections is not None and len(self.connections) >= config.max_connections:
            ws._log(logging.WARNING, "max connections (%d) reached: 503", config.max_connections)
            refusal = "too many connections"
        elif ws._over_per_ip:
            self.settings.incidents.add(Incident.PER_IP_LIMIT)
            refusal = "too many connections from this address"
        if refusal is not None:
            ws._respond(hs.reject(503, refusal, [("Retry-After", str(config.retry_after))]))
            return
        try:
            response = hs.accept(request)
        except HandshakeError as exc:
            ws._respond(hs.reject_bytes(exc))
            return
        if config.keep_request:
            ws.request = request
        self.connections.add(ws)
        ws._accept(response, hs, self.handler)

    def _forget(self, ws: ServerConnection, was_open: bool) -> None:
        self._all.discard(ws)
        self.connections.discard(ws)
        for key in self._totals:
            self._totals[key] += getattr(ws, key)
        if self.config.max_connections_per_ip is not None:
            host = ws.remote_address[0] if isinstance(ws.remote_address, tuple) else None
            count = self._per_ip.get(host, 0) - 1
            if count > 0:
                self._per_ip[host] = count
            else:
                self._per_ip.pop(host, None)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for ws in list(self._all):
            ws.check_deadlines(now)
        self._sweep = loop.call_later(self.settings.check_interval(), self._check)


def broadcast(
    connections: Iterable[ServerConnection],
    message: Data,
    *,
    exclude: ServerConnection | None = None,
) -> int:
    """Send one message to many connections, framed once; never waits.

    The same bytes go to every open connection (except ``exclude``); connections that
    are closing, closed or in the middle of a fragmented message are skipped. There is
    no backpressure here (nothing awaits): a connection whose buffer stays over
    ``write_buffer_limit`` for ``write_buffer_timeout`` is closed with 1008, so one slow
    subscriber never delays the others. Frames go uncompressed (RFC 7692 §6 allows it).

    Returns:
        How many connections the frame was written to.
    """
    if isinstance(message, str):
        payload, first = message.encode("utf-8"), 0x81
    else:
        payload, first = bytes(message), 0x82
    frame = frame_header(first, len(payload)) + payload
    return sum(1 for ws in connections if ws is not exclude and ws.queue_frame(frame))


def serve(
    handler: HandlerFunction,
    host: str | None = None,
    port: int | None = None,
    *,
    config: Config | None = None,
    max_queue: int | None = 16,
    **settings: Any,
) -> Server:
    """A WebSocket server that runs ``handler(ws)`` for every connection.

    Start it with ``await serve(...)`` or ``async with serve(...) as server``;
    ``await server.serve_forever()`` then serves until cancelled.

    Args:
        handler: a coroutine function given each :class:`ServerConnection`; the
            connection closes (1000) when it returns, with 1011 if it raises.
        host: the address to bind (default: ``config.host``, 127.0.0.1).
        port: the port (default: ``config.port``, 8765; 0 picks a free one, see
            :attr:`Server.port` and :attr:`Server.sockets`).
        config: every limit and timeout (:class:`~rfc6455.Config`, as the selectors
            server); ``**settings`` override its fields (``ping_interval=5``).
        max_queue: messages received and not read yet above which reading from the
            peer pauses (websockets' ``max_queue``; None: no limit).
    """
    base = config if config is not None else Config()
    if host is not None:
        settings["host"] = host
    if port is not None:
        settings["port"] = port
    return Server(handler, dataclasses.replace(base, **settings), max_queue=max_queue)
