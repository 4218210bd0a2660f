"""WebSocket server on the selectors loop: listen, accept, limits, handshake, shutdown.

Strategy:

* One :class:`ServerWebSocket` (the endpoint of ``_endpoint.py`` with the
  server's handshake in front) per accepted socket. It is tracked in the
  server's ``_conns`` dict from accept to ``connection_lost`` and nowhere else,
  so when the socket closes nothing keeps it alive.
* No per-connection timers: one periodic sweep, running only while there are
  connections, calls :meth:`~rfc6455.WebSocket.check_deadlines` on each.
* Which handler serves a path is the :class:`~rfc6455.app.Router`'s call;
  plain HTTP requests are answered by :class:`~rfc6455._http.PlainHTTP`.
* Counters are per connection and folded into the server totals when it
  ends; ``/metrics`` adds the live ones at scrape time.
* Graceful shutdown: stop accepting, queue close 1001 behind what each
  connection already has queued (the transport buffer is FIFO, so no message
  accepted before is lost), wait for the closing handshakes up to
  ``shutdown_timeout``, abort the rest, close the listeners.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._connection import Connection
from ._constants import DEFAULT_MAX_MESSAGE_SIZE
from ._endpoint import PhaseTrigger, WebSocket
from ._errors import HandshakeError
from ._extensions import ServerExtensionFactory
from ._handshake import HTTPRequest, ServerHandshake, UpgradeRequest
from ._http import HTTPRoute, PlainHTTP, render_metrics
from ._limits import EndpointSettings, Incident, Incidents
from ._loop import Loop, TimerHandle
from ._transport import Transport
from .app import Handler, HandlerFactory, Router
from .permessage_deflate import ServerPerMessageDeflate

__all__ = ["Config", "Server", "ServerWebSocket", "check_upgrade_request", "serve"]

logger = logging.getLogger("rfc6455.server")

#: Accept at most this many sockets per readiness event, so that a connection
#: storm cannot starve the connections already open.
_ACCEPT_BATCH = 64

#: errno values that mean "out of descriptors or memory": stop accepting for
#: a while instead of spinning on a listener that stays readable.
_ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF = 0.25


@dataclass
class Config:
    """Server settings. ``None`` disables a timeout or a limit.

    Attributes:
        host: address to bind; a name may resolve to IPv4 and IPv6 (both bound).
        port: port to bind; 0 picks a free one (see :attr:`Server.port`).
        backlog: ``listen()`` backlog.
        reuse_port: set ``SO_REUSEPORT`` (several processes on one port).
        max_message_size: largest message accepted (1009 beyond).
        max_connections: open WebSocket connections; more get 503 + Retry-After.
        max_connections_per_ip: sockets per client address, counted from accept
            (so sockets still in the handshake count too): the ones over it get
            503 + Retry-After, and past twice the limit they are closed at once.
        retry_after: seconds announced in ``Retry-After`` with a 503.
        ping_interval: send a ping after this long without hearing from the peer.
        ping_timeout: drop a peer that stays silent this long after the ping
            interval, i.e. ``ping_interval + ping_timeout`` after we last heard
            from it (reported locally as 1006). Checked by a sweep every quarter
            of the shortest timeout (at most every second).
        handshake_timeout: time from accept to a complete handshake (slowloris).
        close_timeout: time the peer has to answer our close frame.
        idle_timeout: close (1000) a connection without data messages this long.
        message_timeout: time a peer has to complete a frame or a fragmented
            message once it started one (1008 "message timeout"): a peer that
            trickles a message cannot hold its buffer for ever.
        shutdown_timeout: time :meth:`Server.shutdown` waits for closing handshakes.
        rate_limit: data messages per second per connection (token bucket; 1008).
        rate_burst: bucket size (default: ``max(1, rate_limit)``).
        write_buffer_limit: bytes queued for a peer above which it is a slow consumer.
        write_buffer_timeout: how long it may stay above before it is closed (1008).
            Reading from that peer pauses while it is above the limit.
        memory_budget: incoming bytes (partial frames and messages) all
            connections may hold together; above it the largest holders are
            failed first (1013) until the total is back under.
        high_water: write buffer above which the handler sees ``writable`` False.
        low_water: write buffer at or below which it is writable again.
        compression: negotiate the extensions in ``extensions`` (False: none).
        extensions: extension factories, in order; None (the default) means
            permessage-deflate with its defaults (``ServerPerMessageDeflate()``),
            which every browser offers.
        subprotocols: subprotocols spoken, most preferred first.
        max_header_size: largest request head (431 beyond).
        certfile: PEM certificate chain: serve ``wss://``.
        keyfile: PEM private key (default: in ``certfile``).
        ssl_context: a ready server-side context (instead of certfile/keyfile).
        keep_request: keep the handshake request (``ws.request``) for the
            connection's life; if False it is dropped after ``on_open``
            (saves memory with many connections).
        allowed_origins: if set, a request whose ``Origin`` header is not in
            it is refused with 403 (requests without ``Origin``, which
            browsers always send, are let through: they are not from a page).
        check_request: called with each valid upgrade request before it is
            accepted; raise ``HandshakeError(reason, 401 or 403, headers)`` to
            refuse it (authentication, for example), with those headers.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    backlog: int = 1024
    reuse_port: bool = False
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    # A guard against descriptor exhaustion, not a tuning knob: well above the
    # 10,000 idle connections one process is budgeted for (docs/contracts.md, "Budgets").
    max_connections: int | None = 100_000
    max_connections_per_ip: int | None = None
    retry_after: int = 5
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    handshake_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    idle_timeout: float | None = None
    # 60 s for a whole message: slow mobile links still send 1 MiB in far less.
    message_timeout: float | None = 60.0
    shutdown_timeout: float = 10.0
    rate_limit: float | None = None
    rate_burst: float | None = None
    # 1 MiB: one maximum-size message may wait for a slow reader; more than that
    # for write_buffer_timeout means the peer cannot keep up.
    write_buffer_limit: int | None = 1 << 20
    write_buffer_timeout: float = 5.0
    # 256 MiB: 256 peers each holding a maximum-size (1 MiB) message at once.
    memory_budget: int | None = 256 << 20
    high_water: int = 64 * 1024
    low_water: int = 16 * 1024
    compression: bool = True
    extensions: Sequence[ServerExtensionFactory] | None = None
    subprotocols: Sequence[str] = field(default_factory=tuple)
    max_header_size: int = 16 * 1024
    certfile: str | None = None
    keyfile: str | None = None
    ssl_context: ssl.SSLContext | None = None
    keep_request: bool = True
    allowed_origins: Sequence[str] | None = None
    check_request: Callable[[UpgradeRequest], None] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0-65535, not {self.port}")
        if not 0 <= self.low_water <= self.high_water:
            raise ValueError("need 0 <= low_water <= high_water")
        for name in (
            "ping_interval",
            "ping_timeout",
            "handshake_timeout",
            "close_timeout",
            "idle_timeout",
            "message_timeout",
            "rate_limit",
            "rate_burst",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, not {value}")
        if self.shutdown_timeout < 0 or self.write_buffer_timeout < 0:
            raise ValueError("timeouts cannot be negative")
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile without certfile")
        if self.memory_budget is not None and self.memory_budget <= 0:
            raise ValueError(f"memory_budget must be positive or None, not {self.memory_budget}")
        if self.max_connections_per_ip is not None and self.max_connections_per_ip <= 0:
            raise ValueError("max_connections_per_ip must be positive or None")

    def endpoint_settings(self) -> EndpointSettings:
        """The per-connection settings every connection of a server shares."""
        return EndpointSettings(
            handshake_timeout=self.handshake_timeout,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            idle_timeout=self.idle_timeout,
            close_timeout=self.close_timeout,
            message_timeout=self.message_timeout,
            rate_limit=self.rate_limit,
            rate_burst=self.rate_burst,
            write_buffer_limit=self.write_buffer_limit,
            write_buffer_timeout=self.write_buffer_timeout,
            high_water=self.high_water,
            low_water=self.low_water,
            memory_budget=self.memory_budget,
            log=logger,
        )


def check_upgrade_request(config: Config, incidents: Incidents, request: UpgradeRequest) -> None:
    """Origin and application checks of ``config``, run by the handshake before it accepts.

    Used by this server and by :func:`rfc6455.asyncio.serve`.

    Raises:
        HandshakeError: 403 for an origin not in ``allowed_origins``, the hook's own
            refusal, or 500 if the ``check_request`` hook failed (logged once per server).
    """
    allowed = config.allowed_origins
    if allowed is not None and request.origin is not None and request.origin not in allowed:
        raise HandshakeError(f"origin {request.origin} is not allowed", 403)
    hook = config.check_request
    if hook is not None:
        try:
            hook(request)
        except HandshakeError:
            raise
        except Exception:  # a broken hook fails this request only
            # The traceback once per server; later failures are counted (metrics).
            if not incidents[Incident.HOOK_ERROR]:
                logger.exception("check_request raised; answering 500")
            incidents.add(Incident.HOOK_ERROR)
            raise HandshakeError("internal server error", 500) from None


class ServerWebSocket(WebSocket):
    """The server's side of one connection (see :class:`~rfc6455.WebSocket`)."""

    __slots__ = ("_hs", "_refusal", "_server")

    def __init__(self, server: Server, remote_address: Any) -> None:
        super().__init__(server.loop, server._settings, remote_address)
        self._server: Server | None = server
        self._hs: ServerHandshake | None = None
        # Set at accept when the client's address is over max_connections_per_ip.
        self._refusal: str | None = None

    def _handshake_data(self, data: bytes) -> None:
        server = self._server
        if server is None or self.state != "handshake":
            return
        hs = self._hs
        if hs is None:
            hs = self._hs = server._new_handshake()
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except HandshakeError as exc:
            self.refuse(hs, exc)
            return
        if isinstance(event, UpgradeRequest):
            server._upgrade(self, hs, event)
        elif isinstance(event, HTTPRequest):
            self.path = event.target.split("?", 1)[0]
            status, headers, body = server._plain_http.respond(event)
            self.respond(hs.respond(status, headers, body))

    def _handshake_eof(self) -> None:
        self._log(logging.DEBUG, "EOF during the handshake")
        self._hs = None
        super()._handshake_eof()

    def refuse(self, hs: ServerHandshake, exc: HandshakeError) -> None:
        """Answer the upgrade request with ``exc``'s HTTP status, then close."""
        self._log(logging.INFO, "handshake refused: %d %s", exc.status_code, exc.reason)
        self.respond(hs.reject_bytes(exc))

    def respond(self, data: bytes) -> None:
        """Write a complete HTTP response (phase HTTP), then close the socket."""
        self._move(PhaseTrigger.RESPOND)
        self._hs = None
        self._write(data)
        if self._transport is not None:
            self._transport.close()

    def accept(self, response: bytes, conn: Connection, handler: Handler) -> None:
        """Write the 101 response and open the connection for ``handler``."""
        self._hs = None
        self._write(response)
        self._open(conn, handler)

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        self._hs = None
        server = self._server
        self._server = None
        if server is not None:
            server._forget(self, was_open)
        if was_open:
            self._log(
                logging.INFO,
                "closed %d %r after %.3fs; in %d msgs/%d B, out %d msgs/%d B",
                self.close_code,
                self.close_reason,
                self._loop.now - self.started_at,
                self.messages_in,
                self.bytes_in,
                self.messages_out,
                self.bytes_out,
            )
        elif exc is not None:
            self._log(logging.DEBUG, "connection lost before open: %r", exc)


class Server:
    """A WebSocket server on a :class:`Loop`.

    Args:
        config: the settings (defaults: :class:`Config`).
        routes: request path → handler factory (a :class:`Handler` subclass,
            a callable returning a handler, or one shared handler instance).
        handler: the handler factory for every path (instead of ``routes``).
        http_routes: path → function(HTTPRequest) returning
            ``(status, headers, body)`` for plain HTTP requests.
        extra_metrics: returns more Prometheus text for ``/metrics`` (an
            application's counters, e.g. ``PubSubApp.metrics_text``), read at scrape time.
        loop: the loop to run on (default: a new one, owned by the server).

    Example::

        server = Server(Config(port=8765), routes={"/": EchoHandler})
        server.serve_forever()          # until SIGINT/SIGTERM or shutdown()
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        routes: Mapping[str, HandlerFactory] | None = None,
        handler: HandlerFactory | None = None,
        http_routes: Mapping[str, HTTPRoute] | None = None,
        extra_metrics: Callable[[], str] | None = None,
        loop: Loop | None = None,
    ) -> None:
        self.config = config = config if config is not None else Config()
        if routes is None and handler is None:
            raise ValueError("give routes or handler")
        self.router = Router(routes, handler)
        self.extra_metrics = extra_metrics
        self._plain_http = PlainHTTP(self.router, http_routes, self.metrics_text)
        self._own_loop = loop is None
        self.loop = loop if loop is not None else Loop()
        self._settings = config.endpoint_settings()
        self._sweep_interval = self._settings.check_interval()
        self._ssl_context = config.ssl_context
        if self._ssl_context is None and config.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(config.certfile, config.keyfile)
            self._ssl_context = ctx
        extensions = config.extensions
        if extensions is None:
            extensions = (ServerPerMessageDeflate(),)
        self._extensions = tuple(extensions) if config.compression else ()
        self._listeners: list[socket.socket] = []
        self._conns: dict[ServerWebSocket, None] = {}
        self._open_count = 0
        # Sockets per client address, from accept to connection_lost.
        self._per_ip: dict[str, int] = {}
        self._sweep_timer: TimerHandle | None = None
        self._accept_timer: TimerHandle | None = None
        self._shutdown_timer: TimerHandle | None = None
        self._accepting = False
        self._shutting_down = False
        self._done = False
        self._started = False
        self.port = 0
        # totals of connections that ended (live ones are added at scrape time)
        self._totals = {"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0}
        self.connections_total = 0

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Bind, listen and start accepting on the loop (does not run the loop)."""
        if self._started:
            return
        self._started = True
        config = self.config
        infos = socket.getaddrinfo(
            config.host or None, config.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        port = config.port
        seen: set[tuple[int, Any]] = set()
        try:
            for family, type_, proto, _, addr in infos:
                if (family, addr[0]) in seen:
                    continue
                seen.add((family, addr[0]))
                sock = socket.socket(family, type_, proto)
                self._listeners.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if config.reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                bind_addr = (addr[0], port, *addr[2:])
                sock.bind(bind_addr)
                port = sock.getsockname()[1]
                sock.listen(config.backlog)
                sock.setblocking(False)
        except OSError:
            for sock in self._listeners:
                sock.close()
            self._listeners.clear()
            raise
        self.port = port
        self._resume_accepting()
        host = config.host or "0.0.0.0"
        shown = f"[{host}]" if ":" in host else host
        scheme = "wss" if self._ssl_context is not None else "ws"
        logger.info("listening on %s://%s:%d", scheme, shown, port)

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return list(self._listeners)

    @property
    def connections(self) -> list[ServerWebSocket]:
        """The connections open or opening now."""
        return list(self._conns)

    def serve_forever(self) -> None:
        """Start if needed and run the loop until the server has shut down.

        In the main thread, SIGINT and SIGTERM start a graceful shutdown.
        """
        self.start()
        signals = threading.current_thread() is threading.main_thread()
        if signals:
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            self.loop.run_until(lambda: self._done)
        finally:
            if signals:
                import signal

                for sig in (signal.SIGINT, signal.SIGTERM):
                    self.loop.remove_signal_handler(sig)
            if self._own_loop:
                self._close_listeners()
                self.loop.close()

    def _on_signal(self, sig: int) -> None:
        if self._shutting_down:
            logger.warning("signal %d again: dropping the remaining connections", sig)
            self._shutdown_expired()
            return
        logger.info("signal %d: shutting down", sig)
        self.shutdown()

    def shutdown(self) -> None:
        """Graceful shutdown (callable from any thread): see the module docstring."""
        if self.loop.is_running and not self.loop.in_loop_thread():
            self.loop.call_soon_threadsafe(self.shutdown)
            return
        if self._shutting_down:
            return
        self._shutting_down = True
        self._pause_accepting()
        if self._accept_timer is not None:
            self._accept_timer.cancel()
            self._accept_timer = None
        logger.info("shutting down: closing %d connections", len(self._conns))
        for ws in list(self._conns):
            if ws.open:
                ws.close(1001, "server shutting down")
            elif ws.state == "handshake" or ws.lingering:
                ws.abort()
        if self._conns:
            self._shutdown_timer = self.loop.call_later(
                self.config.shutdown_timeout, self._shutdown_expired
            )
        else:
            self._finish_shutdown()

    def _shutdown_expired(self) -> None:
        self._shutdown_timer = None
        if self._conns:
            logger.warning("shutdown timeout: dropping %d connections", len(self._conns))
        for ws in list(self._conns):
            ws.abort()
        # connection_lost runs on the next tick; _forget finishes the shutdown

    def _finish_shutdown(self) -> None:
        if self._done:
            return
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        self._close_listeners()
        self._done = True
        logger.info("shutdown complete")

    def _close_listeners(self) -> None:
        self._pause_accepting()
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()

    def close(self) -> None:
        """Abort every connection, close the listeners (and the loop if owned)."""
        for ws in list(self._conns):
            ws.abort()
        self._finish_shutdown()
        if self._own_loop and not self.loop.is_running:
            # let the aborted transports run their connection_lost
            self.loop.run_until(lambda: not self._conns, timeout=1.0)
            self.loop.close()

    # -- accepting -----------------------------------------------------------------

    def _resume_accepting(self) -> None:
        if self._accepting or self._shutting_down:
            return
        self._accepting = True
        for sock in self._listeners:
            self.loop.add_reader(sock.fileno(), _bind_accept(self, sock))

    def _pause_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for sock in self._listeners:
            if sock.fileno() != -1:
                self.loop.remove_reader(sock.fileno())

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_BACKOFF_ERRNOS:
                    logger.warning(
                        "accept failed (%s); pausing accepts for %.2fs",
                        os.strerror(exc.errno or 0),
                        _ACCEPT_BACKOFF,
                    )
                    self._pause_accepting()
                    self._accept_timer = self.loop.call_later(
                        _ACCEPT_BACKOFF, self._accept_backoff_over
                    )
                    return
                raise
            self._new_connection(sock, addr)

    def _accept_backoff_over(self) -> None:
        self._accept_timer = None
        self._resume_accepting()

    def _new_connection(self, sock: socket.socket, addr: Any) -> None:
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # already reset by the peer
            sock.close()
            return
        ip = _ip_of(addr)
        sockets = self._per_ip.get(ip, 0)
        limit = self.config.max_connections_per_ip
        if limit is not None and sockets >= 2 * limit:
            # Twice the limit: no more descriptors for this address, not even for a 503.
            self._settings.incidents.add(Incident.PER_IP_LIMIT)
            logger.debug("%s holds %d sockets: closed at accept", ip, sockets)
            sock.close()
            return
        ws = ServerWebSocket(self, addr)
        if limit is not None and sockets >= limit:
            ws._refusal = "too many connections from this address"
        try:
            transport = Transport(
                self.loop, sock, ws, ssl_context=self._ssl_context, server_side=True
            )
        except (OSError, ssl.SSLError):
            sock.close()
            return
        ws.attach(transport)
        self._per_ip[ip] = sockets + 1
        self._conns[ws] = None
        self.connections_total += 1
        if self._sweep_timer is None:
            self._sweep_timer = self.loop.call_later(self._sweep_interval, self._sweep)
        transport.start()

    def _sweep(self) -> None:
        self._sweep_timer = None
        now = self.loop.now
        for ws in list(self._conns):
            ws.check_deadlines(now)
        if self._conns:
            self._sweep_timer = self.loop.call_later(self._sweep_interval, self._sweep)

    def _forget(self, ws: ServerWebSocket, was_open: bool) -> None:
        self._conns.pop(ws, None)
        totals = self._totals
        totals["messages_in"] += ws.messages_in
        totals["messages_out"] += ws.messages_out
        totals["bytes_in"] += ws.bytes_in
        totals["bytes_out"] += ws.bytes_out
        if was_open:
            self._open_count -= 1
        ip = _ip_of(ws.remote_address)
        n = self._per_ip.get(ip, 0) - 1
        if n > 0:
            self._per_ip[ip] = n
        else:
            self._per_ip.pop(ip, None)
        if not self._conns:
            if self._sweep_timer is not None:
                self._sweep_timer.cancel()
                self._sweep_timer = None
            if self._shutting_down:
                self._finish_shutdown()

    # -- handshake -----------------------------------------------------------------

    def _new_handshake(self) -> ServerHandshake:
        return ServerHandshake(
            subprotocols=self.config.subprotocols,
            extensions=self._extensions,
            check_request=self._check_request,
            max_header_size=self.config.max_header_size,
            max_message_size=self.config.max_message_size,
        )

    def _check_request(self, request: UpgradeRequest) -> None:
        check_upgrade_request(self.config, self._settings.incidents, request)

    def _upgrade(self, ws: ServerWebSocket, hs: ServerHandshake, request: UpgradeRequest) -> None:
        path = request.target.split("?", 1)[0]
        ws.path = path
        factory = self.router.factory_for(path)
        if factory is None:
            ws.respond(hs.reject(404, f"no WebSocket endpoint at {path}"))
            return
        refusal = self._admission(ws)
        if refusal is not None:
            ws.respond(
                hs.reject(503, refusal, [("Retry-After", str(self.config.retry_after))])
            )
            return
        try:
            handler = Router.make_handler(factory)
            response = hs.accept(request)
            conn = hs.connection
        except HandshakeError as exc:
            ws.refuse(hs, exc)
            return
        except Exception:  # noqa: BLE001 - isolate the failure to this connection
            ws.log(logging.ERROR, "handler factory or accept failed", exc_info=True)
            ws.respond(hs.reject(500, "internal server error"))
            return
        ws.subprotocol = hs.subprotocol
        keep_request = self.config.keep_request
        if keep_request:
            ws.request = request
        self._open_count += 1
        ws.accept(response, conn, handler)
        if not keep_request:
            ws.request = None

    def _admission(self, ws: ServerWebSocket) -> str | None:
        """Why a new connection cannot be opened now (a 503), or None."""
        config = self.config
        if self._shutting_down:
            return "server shutting down"
        if config.max_connections is not None and self._open_count >= config.max_connections:
            ws.log(logging.WARNING, "max connections (%d) reached: 503", config.max_connections)
            return "too many connections"
        if ws._refusal is not None:
            ws.log(logging.INFO, "max connections per IP reached: 503")
            self._settings.incidents.add(Incident.PER_IP_LIMIT)
            return ws._refusal
        return None

    # -- metrics -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counters: open connections, accepted sockets, messages and bytes in/out."""
        totals = dict(self._totals)
        for ws in self._conns:
            totals["messages_in"] += ws.messages_in
            totals["messages_out"] += ws.messages_out
            totals["bytes_in"] += ws.bytes_in
            totals["bytes_out"] += ws.bytes_out
        totals["connections_open"] = self._open_count
        totals["connections_total"] = self.connections_total
        budget = self._settings.budget
        totals["incoming_buffered_bytes"] = budget.total if budget is not None else 0
        return totals

    def incidents(self) -> dict[str, int]:
        """How often each limit was hit (rate limit, slow consumer, timeouts, ...)."""
        return {i.value: n for i, n in self._settings.incidents.counts.items()}

    def metrics_text(self) -> str:
        """The counters in the Prometheus text exposition format."""
        text = render_metrics(self.stats(), self.incidents())
        if self.extra_metrics is not None:
            text += self.extra_metrics()
        return text


def _bind_accept(server: Server, sock: socket.socket) -> Callable[[], None]:
    def accept() -> None:
        server._accept(sock)

    return accept


def _ip_of(addr: Any) -> str:
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return str(addr)


def serve(
    handler: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 8765,
    **options: Any,
) -> None:
    """Run a server for ``handler`` until SIGINT/SIGTERM (a shortcut)."""
    Server(Config(host=host, port=port, **options), handler=handler).serve_forever()
