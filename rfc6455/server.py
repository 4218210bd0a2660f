"""WebSocket server on the selectors loop: accept, handshake, limits, timeouts, shutdown.

Strategy:

* One :class:`WebSocket` object per accepted socket is both the transport's
  protocol and the handler's view of the connection. It goes through phases
  HANDSHAKE → OPEN → CLOSING → CLOSED (or HTTP for a plain request). It is
  tracked in the server's ``_conns`` dict from accept to ``connection_lost``
  and nowhere else, so when the socket closes nothing keeps it alive.
* No per-connection timers. Every connection stores a few timestamps taken
  from ``loop.now`` (read once per tick, so the per-message path never calls
  the clock); one periodic sweep, running only while there are connections,
  compares them with the deadlines: handshake, ping/pong, idle, close, slow
  consumer. A message costs stores, never a timer cancel + create.
* The per-message path is: ``recv_into`` → ``conn.receive`` → handler →
  ``conn.send_*`` → ``send``. Counters are per connection and folded into the
  server totals when it ends; ``/metrics`` adds the live ones at scrape time.
* Backpressure: ``ws.writable`` / ``ws.on_writable(cb)``; the echo handler
  stops reading from a peer that does not read its answers. A peer whose
  write buffer stays over ``write_buffer_limit`` for ``write_buffer_timeout``
  seconds is closed with 1008; nothing ever blocks, so others are not delayed.
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any, ClassVar

from ._connection import Connection
from ._constants import DEFAULT_MAX_MESSAGE_SIZE
from ._errors import ConnectionClosed, HandshakeError, connection_closed
from ._events import (
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from ._extensions import ServerExtensionFactory
from ._frames import frame_header
from ._handshake import HTTPRequest, ServerHandshake, UpgradeRequest
from ._loop import Loop, TimerHandle
from ._state import ConnectionState
from ._transport import Protocol, Transport
from .permessage_deflate import ServerPerMessageDeflate

__all__ = [
    "Config",
    "EchoHandler",
    "Handler",
    "HandlerFactory",
    "Server",
    "ServerWebSocket",
    "WebSocket",
    "broadcast",
    "serve",
]

logger = logging.getLogger("rfc6455.server")

_HANDSHAKE, _OPEN, _CLOSING, _CLOSED, _HTTP = range(5)
_CONN_CLOSED = ConnectionState.CLOSED
_PHASE_NAMES = ("handshake", "open", "closing", "closed", "http")

#: Accept at most this many sockets per readiness event, so that a connection
#: storm cannot starve the connections already open.
_ACCEPT_BATCH = 64

#: errno values that mean "out of descriptors or memory": stop accepting for
#: a while instead of spinning on a listener that stays readable.
_ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BACKOFF = 0.25

#: After failing a connection, how long to keep reading (and discarding) what the
#: peer still sends before closing, so that the kernel does not answer it with a
#: reset that could destroy our close frame. Bounded: the peer may never stop.
_FAILURE_LINGER = 2.0


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
        max_connections_per_ip: open connections per client address (503).
        retry_after: seconds announced in ``Retry-After`` with a 503.
        ping_interval: send a ping after this long without hearing from the peer.
        ping_timeout: drop a peer that stays silent this long after the ping
            interval, i.e. ``ping_interval + ping_timeout`` after we last heard
            from it (reported locally as 1006). Checked by a sweep every quarter
            of the shortest timeout (at most every second).
        handshake_timeout: time from accept to a complete handshake (slowloris).
        close_timeout: time the peer has to answer our close frame.
        idle_timeout: close (1000) a connection without data messages this long.
        shutdown_timeout: time :meth:`Server.shutdown` waits for closing handshakes.
        rate_limit: data messages per second per connection (token bucket; 1008).
        rate_burst: bucket size (default: ``max(1, rate_limit)``).
        write_buffer_limit: bytes queued for a peer above which it is a slow consumer.
        write_buffer_timeout: how long it may stay above before it is closed (1008).
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
    # 10,000 idle connections one process is budgeted for (DESIGN.md).
    max_connections: int | None = 100_000
    max_connections_per_ip: int | None = None
    retry_after: int = 5
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    handshake_timeout: float | None = 10.0
    close_timeout: float | None = 10.0
    idle_timeout: float | None = None
    shutdown_timeout: float = 10.0
    rate_limit: float | None = None
    rate_burst: float | None = None
    # 1 MiB: one maximum-size message may wait for a slow reader; more than that
    # for write_buffer_timeout means the peer cannot keep up.
    write_buffer_limit: int | None = 1 << 20
    write_buffer_timeout: float = 5.0
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


class _Options:
    """The settings each connection consults, shared by all (one object)."""

    __slots__ = (
        "burst",
        "close_timeout",
        "debug",
        "handshake_timeout",
        "high_water",
        "idle_timeout",
        "low_water",
        "ping_interval",
        "ping_timeout",
        "rate",
        "write_buffer_limit",
        "write_buffer_timeout",
    )

    def __init__(self, config: Config) -> None:
        self.handshake_timeout = config.handshake_timeout
        self.ping_interval = config.ping_interval
        self.ping_timeout = config.ping_timeout
        self.idle_timeout = config.idle_timeout
        self.close_timeout = config.close_timeout
        self.rate = config.rate_limit
        self.burst = (
            config.rate_burst
            if config.rate_burst is not None
            else max(1.0, config.rate_limit or 0.0)
        )
        self.write_buffer_limit = (
            config.write_buffer_limit if config.write_buffer_limit is not None else 1 << 62
        )
        self.write_buffer_timeout = config.write_buffer_timeout
        self.high_water = config.high_water
        self.low_water = config.low_water
        # Read once: per-message DEBUG records cost one attribute test when off.
        self.debug = logger.isEnabledFor(logging.DEBUG)

    def sweep_interval(self) -> float:
        """How often deadlines are checked: a quarter of the shortest, in [0.05, 1]."""
        spans = [
            t
            for t in (
                self.handshake_timeout,
                self.ping_interval,
                self.ping_timeout,
                self.idle_timeout,
                self.close_timeout,
                self.write_buffer_timeout if self.write_buffer_limit < 1 << 62 else None,
            )
            if t is not None
        ]
        if not spans:
            return 1.0
        return min(1.0, max(0.05, min(spans) / 4))


Message = str | bytes


class Handler:
    """Callbacks for one connection. Subclass it; all methods are optional.

    Callbacks run on the loop thread and must not block. An exception from a
    callback closes that connection with 1011 and is logged; nothing else is
    affected. Give the server the class (one instance per connection) or one
    instance (shared by all connections).

    Example::

        class Chat(Handler):
            def on_open(self, ws):
                ws.send(f"hello {ws.remote_address[0]}")

            def on_message(self, ws, message):
                if not ws.writable:          # the peer is not reading fast enough
                    ws.close(1008, "slow down")
                    return
                ws.send(message.upper() if isinstance(message, str) else message)

        Server(Config(port=8765), routes={"/chat": Chat}).serve_forever()
    """

    __slots__ = ()

    def on_open(self, ws: WebSocket) -> None:
        """The handshake completed; ``ws`` can send."""

    def on_message(self, ws: WebSocket, message: Message) -> None:
        """A whole data message: ``str`` for text, ``bytes`` for binary."""

    def on_ping(self, ws: WebSocket, payload: bytes) -> None:
        """A ping arrived (the pong was already queued)."""

    def on_pong(self, ws: WebSocket, payload: bytes) -> None:
        """A pong arrived."""

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """The connection ended. ``code`` is the peer's close code, 1006 if none."""


class EchoHandler(Handler):
    """Sends every data message back with its type; stops reading from a peer
    that does not read its answers (backpressure) until it catches up."""

    __slots__ = ()

    def on_message(self, ws: WebSocket, message: Message) -> None:
        ws.send(message)
        transport = ws._transport
        if transport is not None and transport._write_paused:
            ws.pause_reading()
            ws.on_writable(ws.resume_reading)


#: A handler class, a callable returning a fresh handler, or one shared instance.
HandlerFactory = Handler | Callable[[], Handler]


class WebSocket(Protocol):
    """One WebSocket connection on the loop, as handlers see it.

    Use it from the loop's thread only (handler callbacks run there); from
    another thread, hand the call over: ``loop.call_soon_threadsafe(ws.send, msg)``.

    Attributes:
        id: a small integer, unique in this process.
        remote_address: the peer's address tuple.
        path: the request path (without the query).
        request: the handshake request (server side; None if not kept).
        subprotocol: the negotiated subprotocol, or None.
        close_code: set when the connection ends (1006 if the peer sent no close).
        close_reason: the peer's close reason.
        messages_in / messages_out / bytes_in / bytes_out: counters.
    """

    __slots__ = (
        "_conn",
        "_handler",
        "_loop",
        "_opts",
        "_phase",
        "_t_close",
        "_t_msg",
        "_t_over",
        "_t_ping",
        "_t_rx",
        "_t_start",
        "_t_tokens",
        "_tokens",
        "_transport",
        "_writable_callbacks",
        "bytes_in",
        "bytes_out",
        "close_code",
        "close_reason",
        "id",
        "messages_in",
        "messages_out",
        "path",
        "remote_address",
        "request",
        "subprotocol",
    )

    _next_id: ClassVar[int] = 0
    _role: ClassVar[str] = "server"

    def __init__(self, loop: Loop, opts: _Options, remote_address: Any) -> None:
        WebSocket._next_id += 1
        self.id = WebSocket._next_id
        self._loop = loop
        self._opts = opts
        self._transport: Transport | None = None
        self._conn: Connection | None = None
        self._handler: Handler | None = None
        self._phase = _HANDSHAKE
        now = loop.now
        self._t_start = now
        self._t_rx = now
        self._t_msg = now
        self._t_ping = 0.0
        self._t_close = 0.0
        self._t_over = 0.0
        self._tokens = opts.burst
        self._t_tokens = now
        self._writable_callbacks: list[Callable[[], object]] | None = None
        self.remote_address = remote_address
        self.path = ""
        self.request: UpgradeRequest | None = None
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # -- public API ----------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return self._phase == _OPEN

    @property
    def state(self) -> str:
        """``"handshake"``, ``"open"``, ``"closing"``, ``"closed"`` or ``"http"``."""
        return _PHASE_NAMES[self._phase]

    def send(self, message: Message) -> None:
        """Queue a message: ``str`` is sent as text, bytes-like as binary.

        Never blocks; see :attr:`writable` for backpressure.

        Raises:
            ConnectionClosedError: the connection is not open.
        """
        conn = self._conn
        if conn is None or self._phase != _OPEN:
            raise self._closed_error()
        if type(message) is str:
            frame = conn.send_text(message)
        else:
            frame = conn.send_binary(message)  # type: ignore[arg-type]
        self.messages_out += 1
        opts = self._opts
        if opts.debug:
            self._log(logging.DEBUG, "sending a %d-byte frame", len(frame))
        self.bytes_out += len(frame)
        transport = self._transport
        if transport is not None:
            transport.write(frame)
            if transport._buffer_size > opts.write_buffer_limit and not self._t_over:
                self._over_limit(transport)

    def send_frame(self, frame: bytes) -> None:
        """Write an already encoded server frame (e.g. the same frame to many peers).

        The caller guarantees ``frame`` is one whole unmasked data frame and no
        fragmented message is in progress on this connection.
        """
        if self._phase != _OPEN:
            raise self._closed_error()
        self.messages_out += 1
        self.bytes_out += len(frame)
        transport = self._transport
        if transport is not None:
            transport.write(frame)
            if transport._buffer_size > self._opts.write_buffer_limit and not self._t_over:
                self._over_limit(transport)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (at most 125 bytes)."""
        conn = self._conn
        if conn is None or self._phase != _OPEN:
            raise self._closed_error()
        self._write(conn.send_ping(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (after the messages already queued).

        The peer has ``close_timeout`` seconds to answer; then the socket is
        dropped. Closing a connection that is not open does nothing.
        """
        phase = self._phase
        if phase == _OPEN:
            assert self._conn is not None
            data = self._conn.close(code, reason)  # raises on a code that may not be sent
            self._log(logging.DEBUG, "open -> closing: sending close %d %r", code, reason)
            self._phase = _CLOSING
            self._t_close = self._loop.now
            self._write(data)
            if self._conn.should_close_transport and self._transport is not None:
                self._transport.close()
        elif phase in (_HANDSHAKE, _HTTP) and self._transport is not None:
            self._transport.abort()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def write_buffer_size(self) -> int:
        """Bytes queued for this peer that the kernel has not taken yet."""
        t = self._transport
        return t.write_buffer_size if t is not None else 0

    @property
    def writable(self) -> bool:
        """False while the write buffer is above the high-water mark."""
        t = self._transport
        return t is not None and not t._write_paused

    def on_writable(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the write buffer drains (now, if writable)."""
        if self.writable or self._transport is None:
            self._loop.call_soon(callback)
            return
        if self._writable_callbacks is None:
            self._writable_callbacks = []
        self._writable_callbacks.append(callback)

    def pause_reading(self) -> None:
        """Stop reading from this peer (its sends will block in its kernel)."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from this peer again."""
        if self._transport is not None and self._phase in (_OPEN, _CLOSING):
            self._transport.resume_reading()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.state} {self._peer_text()}>"

    # -- transport protocol ----------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self._transport = transport
        transport.high_water = self._opts.high_water
        transport.low_water = self._opts.low_water

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        now = self._loop.now
        self._t_rx = now
        self._t_ping = 0.0  # anything from the peer proves it is alive
        conn = self._conn
        if conn is None:
            self._handshake_data(data)
            return
        events = conn.receive(data)
        if not events:
            out = conn.data_to_send()
            if out:
                self._write(out)
            return
        opts = self._opts
        handler = self._handler
        if opts.rate is not None or opts.debug or handler is None:
            self._dispatch(conn, events)
            return
        # The common case, inlined: no rate limit, no DEBUG records.
        count = 0
        for event in events:
            cls = type(event)
            if cls is TextMessage or cls is BinaryMessage:
                count += 1
                if self._phase != _OPEN:
                    continue
                try:
                    handler.on_message(self, event.data)  # type: ignore[attr-defined]
                except ConnectionClosed:
                    pass
                except Exception:  # noqa: BLE001 - isolate the failure to this connection
                    self._handler_failed("on_message")
                    break
            else:
                self._control_event(event, handler)
        if count:
            self.messages_in += count
            self._t_msg = now
        out = conn.data_to_send()
        if out:
            self._write(out)
        if conn.state is _CONN_CLOSED and conn.should_close_transport:
            transport = self._transport
            if transport is not None:
                transport.close(_FAILURE_LINGER if conn.failure is not None else 0.0)

    def eof_received(self) -> bool:
        conn = self._conn
        if conn is None:
            self._handshake_eof()
            return False
        conn.receive_data(b"")
        self._dispatch(conn, list(conn.events()))
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        was_open = self._phase in (_OPEN, _CLOSING)
        self._phase = _CLOSED
        if self.close_code is None:
            self.close_code = 1006
        handler = self._handler
        self._handler = None
        self._writable_callbacks = None
        if handler is not None and was_open:
            try:
                handler.on_close(self, self.close_code, self.close_reason)
            except Exception:  # noqa: BLE001 - isolate the failure to this connection
                self._log(logging.ERROR, "on_close raised", exc_info=True)
        self._lost(exc, was_open)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        self._t_over = 0.0
        callbacks = self._writable_callbacks
        if callbacks:
            self._writable_callbacks = None
            for callback in callbacks:
                try:
                    callback()
                except Exception:  # noqa: BLE001 - isolate the failure to this connection
                    self._handler_failed("on_writable callback")
                    return

    # -- internals -----------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosed:
        if self._conn is not None and self.close_code is None:
            return self._conn.closed_error("the connection is not open")
        return connection_closed(self.close_code or 1006, self.close_reason, "the connection is not open")

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_out += len(data)
        transport = self._transport
        if transport is None:
            return
        transport.write(data)
        if transport._buffer_size > self._opts.write_buffer_limit and not self._t_over:
            self._over_limit(transport)

    def _over_limit(self, transport: Transport) -> None:
        self._t_over = self._loop.now or monotonic()
        self._log(
            logging.WARNING,
            "write buffer over the limit (%d bytes queued)",
            transport._buffer_size,
        )

    def _dispatch(self, conn: Connection, events: list[Event]) -> None:
        handler = self._handler
        opts = self._opts
        for event in events:
            cls = type(event)
            if cls is TextMessage or cls is BinaryMessage:
                self.messages_in += 1
                if opts.rate is not None and not self._take_token():
                    break
                self._t_msg = self._loop.now
                if opts.debug:
                    self._log(
                        logging.DEBUG,
                        "received %s message, %d bytes",
                        "text" if cls is TextMessage else "binary",
                        len(event.data),  # type: ignore[attr-defined]
                    )
                if handler is None or self._phase != _OPEN:
                    continue
                try:
                    handler.on_message(self, event.data)  # type: ignore[attr-defined]
                except ConnectionClosed:
                    pass
                except Exception:  # noqa: BLE001 - isolate the failure to this connection
                    self._handler_failed("on_message")
                    break
            else:
                self._control_event(event, handler)
        out = conn.data_to_send()
        if out:
            self._write(out)
        if conn.should_close_transport and self._transport is not None:
            # After a protocol error the peer may still be sending: linger so that
            # no reset destroys the close frame that tells it why (1002/1007/1009).
            self._transport.close(_FAILURE_LINGER if conn.failure is not None else 0.0)

    def _control_event(self, event: Event, handler: Handler | None) -> None:
        if isinstance(event, Ping):
            if handler is not None:
                self._call(handler.on_ping, event.payload)
        elif isinstance(event, Pong):
            if handler is not None:
                self._call(handler.on_pong, event.payload)
        elif isinstance(event, Close):
            self.close_code = event.code
            self.close_reason = event.reason
            if self._phase == _OPEN:
                self._phase = _CLOSING
                self._t_close = self._loop.now
            self._log(
                logging.DEBUG,
                "close frame received (%d %r); state %s",
                event.code,
                event.reason,
                self.state,
            )
        elif isinstance(event, ConnectionFailed):
            self.close_code = event.code
            self.close_reason = event.reason
            if self._phase == _OPEN:
                self._phase = _CLOSING
                self._t_close = self._loop.now
            self._log(logging.INFO, "protocol error: %s (closing %d)", event.reason, event.code)
        elif isinstance(event, ConnectionLost):
            self._log(logging.DEBUG, "peer closed the TCP connection")
            if self._transport is not None:
                self._transport.close()

    def _call(self, method: Callable[[WebSocket, bytes], None], payload: bytes) -> None:
        try:
            method(self, payload)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - isolate the failure to this connection
            self._handler_failed(method.__name__)

    def _take_token(self) -> bool:
        opts = self._opts
        now = self._loop.now
        assert opts.rate is not None
        tokens = self._tokens + (now - self._t_tokens) * opts.rate
        tokens = min(tokens, opts.burst)
        self._t_tokens = now
        if tokens < 1.0:
            self._tokens = tokens
            self._log(logging.WARNING, "rate limit exceeded; closing with 1008")
            self.close(1008, "rate limit exceeded")
            return False
        self._tokens = tokens - 1.0
        return True

    def _handler_failed(self, where: str) -> None:
        self._log(logging.ERROR, "handler error in %s; closing with 1011", where, exc_info=True)
        if self._phase == _OPEN:
            self.close(1011, "")
        elif self._transport is not None:
            self._transport.abort()

    def _open(self, conn: Connection, handler: Handler) -> None:
        """The handshake is done: from now on frames flow."""
        self._conn = conn
        self._phase = _OPEN
        self._handler = handler
        self._t_msg = self._loop.now
        self._log(logging.INFO, "open %s (subprotocol %s)", self.path or "/", self.subprotocol)
        try:
            handler.on_open(self)
        except ConnectionClosed:
            pass
        except Exception:  # noqa: BLE001 - isolate the failure to this connection
            self._handler_failed("on_open")
            return
        if self._phase == _OPEN:
            self._dispatch(conn, list(conn.events()))  # frames that came with the handshake

    def _check(self, now: float) -> None:
        """Enforce the deadlines (called by the periodic sweep)."""
        opts = self._opts
        phase = self._phase
        if phase == _OPEN:
            if opts.ping_interval is not None:
                if self._t_ping:
                    # Silent for interval + timeout since we last heard from it (not
                    # since the ping went out): the sweep's lag does not add up.
                    if (
                        opts.ping_timeout is not None
                        and now - self._t_rx >= opts.ping_interval + opts.ping_timeout
                    ):
                        self._log(logging.WARNING, "no answer to ping; dropping (1006)")
                        self.close_code = 1006
                        self.abort()
                        return
                elif now - self._t_rx >= opts.ping_interval:
                    assert self._conn is not None
                    self._t_ping = now
                    self._write(self._conn.send_ping(b""))
            if opts.idle_timeout is not None and now - self._t_msg >= opts.idle_timeout:
                self._log(logging.INFO, "idle timeout; closing")
                self.close(1000, "idle timeout")
                return
            if self._t_over:
                t = self._transport
                if t is None or t._buffer_size <= opts.write_buffer_limit:
                    self._t_over = 0.0
                elif now - self._t_over >= opts.write_buffer_timeout:
                    self._log(logging.WARNING, "slow consumer; closing with 1008")
                    self.close(1008, "slow consumer")
        elif phase == _CLOSING:
            if opts.close_timeout is not None and now - self._t_close >= opts.close_timeout:
                self._log(logging.INFO, "no answer to our close; dropping")
                self.abort()
        elif (
            phase in (_HANDSHAKE, _HTTP)
            and opts.handshake_timeout is not None
            and now - self._t_start >= opts.handshake_timeout
        ):
            self._log(logging.WARNING, "handshake timeout; dropping")
            self.abort()

    def _peer_text(self) -> str:
        addr = self.remote_address
        if isinstance(addr, tuple) and len(addr) >= 2:
            host = addr[0]
            return f"[{host}]:{addr[1]}" if ":" in str(host) else f"{host}:{addr[1]}"
        return str(addr)

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        if logger.isEnabledFor(level):
            peer = self._peer_text()
            logger.log(
                level,
                "[#%d %s] " + msg,
                self.id,
                peer,
                *args,
                exc_info=exc_info,
                extra={"conn_id": self.id, "peer": peer},
            )

    # Hooks for the subclasses (server and client).
    def _handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def _handshake_eof(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        pass


class ServerWebSocket(WebSocket):
    """The server's side of one connection (see :class:`WebSocket`)."""

    __slots__ = ("_hs", "_server")

    def __init__(self, server: Server, remote_address: Any) -> None:
        super().__init__(server.loop, server._opts, remote_address)
        self._server: Server | None = server
        self._hs: ServerHandshake | None = None

    def _handshake_data(self, data: bytes) -> None:
        server = self._server
        if server is None or self._phase != _HANDSHAKE:
            return
        hs = self._hs
        if hs is None:
            hs = self._hs = server._new_handshake()
        try:
            hs.receive_data(data)
            event = hs.next_event()
        except HandshakeError as exc:
            self._refuse(hs, exc)
            return
        if isinstance(event, UpgradeRequest):
            server._upgrade(self, hs, event)
        elif isinstance(event, HTTPRequest):
            server._http(self, hs, event)

    def _handshake_eof(self) -> None:
        self._log(logging.DEBUG, "EOF during the handshake")
        self._hs = None
        super()._handshake_eof()

    def _refuse(self, hs: ServerHandshake, exc: HandshakeError) -> None:
        self._log(logging.INFO, "handshake refused: %d %s", exc.status_code, exc.reason)
        self._reply_and_close(hs.reject_bytes(exc))

    def _reply_and_close(self, data: bytes) -> None:
        self._phase = _HTTP
        self._hs = None
        self._write(data)
        if self._transport is not None:
            self._transport.close()

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
                self._loop.now - self._t_start,
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
        http_routes: Mapping[
            str, Callable[[HTTPRequest], tuple[int, Sequence[tuple[str, str]], bytes]]
        ]
        | None = None,
        loop: Loop | None = None,
    ) -> None:
        self.config = config = config if config is not None else Config()
        if routes is None and handler is None:
            raise ValueError("give routes or handler")
        self._routes = dict(routes or {})
        self._default_handler = handler
        self._http_routes = dict(http_routes or {})
        self._own_loop = loop is None
        self.loop = loop if loop is not None else Loop()
        self._opts = _Options(config)
        self._sweep_interval = self._opts.sweep_interval()
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
        if self.loop.is_running and threading.get_ident() != self.loop._thread_id:
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
            if ws._phase == _OPEN:
                ws.close(1001, "server shutting down")
            elif ws._phase == _HANDSHAKE or (ws._transport is not None and ws._transport.lingering):
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
        ws = ServerWebSocket(self, addr)
        ws._t_start = ws._t_rx = self.loop.now
        try:
            transport = Transport(
                self.loop, sock, ws, ssl_context=self._ssl_context, server_side=True
            )
        except (OSError, ssl.SSLError):
            sock.close()
            return
        ws._transport = transport
        self._conns[ws] = None
        self.connections_total += 1
        if self._sweep_timer is None:
            self._sweep_timer = self.loop.call_later(self._sweep_interval, self._sweep)
        transport.start()

    def _sweep(self) -> None:
        self._sweep_timer = None
        now = self.loop.now
        for ws in list(self._conns):
            ws._check(now)
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
        """Origin and application checks, run by the handshake before it accepts."""
        allowed = self.config.allowed_origins
        if allowed is not None and request.origin is not None and request.origin not in allowed:
            raise HandshakeError(f"origin {request.origin} is not allowed", 403)
        if self.config.check_request is not None:
            self.config.check_request(request)

    def _factory_for(self, path: str) -> HandlerFactory | None:
        factory = self._routes.get(path)
        if factory is None:
            factory = self._default_handler
        return factory

    def _upgrade(self, ws: ServerWebSocket, hs: ServerHandshake, request: UpgradeRequest) -> None:
        path = request.target.split("?", 1)[0]
        ws.path = path
        factory = self._factory_for(path)
        if factory is None:
            ws._reply_and_close(hs.reject(404, f"no WebSocket endpoint at {path}"))
            return
        config = self.config
        if self._shutting_down:
            ws._reply_and_close(
                hs.reject(503, "server shutting down", [("Retry-After", str(config.retry_after))])
            )
            return
        if config.max_connections is not None and self._open_count >= config.max_connections:
            ws._log(logging.WARNING, "max connections (%d) reached: 503", config.max_connections)
            ws._reply_and_close(
                hs.reject(503, "too many connections", [("Retry-After", str(config.retry_after))])
            )
            return
        ip = _ip_of(ws.remote_address)
        if (
            config.max_connections_per_ip is not None
            and self._per_ip.get(ip, 0) >= config.max_connections_per_ip
        ):
            ws._log(logging.WARNING, "max connections per IP reached: 503")
            ws._reply_and_close(
                hs.reject(
                    503,
                    "too many connections from this address",
                    [("Retry-After", str(config.retry_after))],
                )
            )
            return
        try:
            handler = factory if isinstance(factory, Handler) else factory()
            response = hs.accept(request)
            conn = hs.connection
        except HandshakeError as exc:
            ws._refuse(hs, exc)
            return
        except Exception:  # noqa: BLE001 - isolate the failure to this connection
            ws._log(logging.ERROR, "handler factory or accept failed", exc_info=True)
            ws._reply_and_close(hs.reject(500, "internal server error"))
            return
        ws._hs = None
        ws.subprotocol = hs.subprotocol
        if config.keep_request:
            ws.request = request
        self._open_count += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        ws._write(response)
        ws._open(conn, handler)
        if not config.keep_request:
            ws.request = None

    def _http(self, ws: ServerWebSocket, hs: ServerHandshake, request: HTTPRequest) -> None:
        path = request.target.split("?", 1)[0]
        ws.path = path
        custom = self._http_routes.get(path)
        if custom is not None:
            try:
                status, headers, body = custom(request)
            except Exception:  # noqa: BLE001 - isolate the failure to this connection
                ws._log(logging.ERROR, "HTTP route %s failed", path, exc_info=True)
                status, headers, body = 500, [], b"internal server error\n"
            ws._reply_and_close(hs.respond(status, headers, body))
        elif path == "/healthz":
            ws._reply_and_close(hs.respond(200, [("Content-Type", "text/plain")], b"ok\n"))
        elif path == "/metrics":
            body = self.metrics_text().encode()
            ws._reply_and_close(
                hs.respond(200, [("Content-Type", "text/plain; version=0.0.4")], body)
            )
        elif path in self._routes or (self._default_handler is not None and not self._routes):
            ws._reply_and_close(
                hs.respond(
                    426,
                    [
                        ("Upgrade", "websocket"),
                        ("Sec-WebSocket-Version", "13"),
                        ("Content-Type", "text/plain"),
                    ],
                    b"this is a WebSocket endpoint: send an upgrade request\n",
                )
            )
        else:
            ws._reply_and_close(hs.respond(404, [("Content-Type", "text/plain")], b"not found\n"))

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
        return totals

    def metrics_text(self) -> str:
        """The counters in the Prometheus text exposition format."""
        s = self.stats()
        lines = []
        for name, key, kind, help_ in (
            (
                "rfc6455_connections_open",
                "connections_open",
                "gauge",
                "Open WebSocket connections.",
            ),
            (
                "rfc6455_connections_accepted_total",
                "connections_total",
                "counter",
                "TCP connections accepted.",
            ),
            (
                "rfc6455_messages_received_total",
                "messages_in",
                "counter",
                "Data messages received.",
            ),
            ("rfc6455_messages_sent_total", "messages_out", "counter", "Data messages sent."),
            ("rfc6455_bytes_received_total", "bytes_in", "counter", "Bytes received."),
            ("rfc6455_bytes_sent_total", "bytes_out", "counter", "Bytes sent."),
        ):
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name} {s[key]}")
        return "\n".join(lines) + "\n"


def _bind_accept(server: Server, sock: socket.socket) -> Callable[[], None]:
    def accept() -> None:
        server._accept(sock)

    return accept


def _ip_of(addr: Any) -> str:
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return str(addr)


def broadcast(
    peers: Iterable[WebSocket], message: Message, *, exclude: WebSocket | None = None
) -> int:
    """Send one message to many server-side connections, framed once.

    The frame is built once and the same bytes are written to every peer that
    is open (except ``exclude``, e.g. the publisher); peers that are not open
    are skipped, and a peer whose write fails does not stop the others.
    Nothing blocks: a peer that cannot keep up is buffered and, once its
    buffer stays over ``write_buffer_limit`` for ``write_buffer_timeout``,
    closed with 1008 (the slow-consumer rule), so one slow subscriber never
    delays the rest.

    Frames are sent uncompressed (valid with permessage-deflate: RFC 7692 §6
    lets any message go uncompressed). Do not use it on a connection that is in
    the middle of sending a fragmented message; client connections (whose
    frames must be masked) are skipped.

    Returns:
        The number of peers the frame was written to.
    """
    if isinstance(message, str):
        payload = message.encode("utf-8")
        first = 0x81
    else:
        payload = bytes(message)
        first = 0x82
    frame = frame_header(first, len(payload)) + payload
    size = len(frame)
    sent = 0
    for peer in peers:
        # The body of send_frame, inlined: this loop runs once per subscriber.
        if peer._phase != _OPEN or peer is exclude or peer._role != "server":
            continue
        transport = peer._transport
        if transport is None:
            continue
        peer.messages_out += 1
        peer.bytes_out += size
        transport.write(frame)
        if transport._buffer_size > peer._opts.write_buffer_limit and not peer._t_over:
            peer._over_limit(transport)
        sent += 1
    return sent


def serve(
    handler: HandlerFactory,
    host: str = "127.0.0.1",
    port: int = 8765,
    **options: Any,
) -> None:
    """Run a server for ``handler`` until SIGINT/SIGTERM (a shortcut)."""
    Server(Config(host=host, port=port, **options), handler=handler).serve_forever()
