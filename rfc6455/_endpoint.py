"""One WebSocket connection on the loop, for both roles: connection <-> transport <-> handler.

Strategy:

* A :class:`WebSocket` is the transport's protocol and the handler's view of
  the connection at once. Its I/O phase moves through the table
  :data:`PHASE_TRANSITIONS` (HANDSHAKE → OPEN → CLOSING → CLOSED, or
  HANDSHAKE → HTTP → CLOSED for a plain request or a refusal); the sans-I/O
  :class:`~rfc6455.Connection` keeps the finer closing-handshake states of
  its own table. The role-specific part (which handshake, what to do once the
  socket is gone) is in the subclasses: ``ServerWebSocket`` (server.py) and
  ``ClientWebSocket`` (client.py); they never import each other.
* No per-connection timers. The endpoint stores a few timestamps taken from
  ``loop.now`` (read once per tick, so the per-message path never reads the
  clock); :meth:`WebSocket.check_deadlines` compares them with the deadlines
  (handshake, ping/pong, idle, close, slow consumer) and is called by the
  server's one periodic sweep, or by a client's own check timer.
* The per-message path is ``data_received`` → ``conn.receive`` →
  :meth:`_dispatch` (handler callbacks) → ``conn.send_*`` → :meth:`_write`,
  the one place that writes to the transport and checks the write-buffer
  limit. Counters are per connection.
* Backpressure: ``writable`` / ``on_writable(cb)``; a peer whose write buffer
  stays over ``write_buffer_limit`` for ``write_buffer_timeout`` seconds is
  closed with 1008 by the deadline check. Nothing ever blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ._conn_common import FAILURE_LINGER, PHASE_TRANSITIONS, ConnCommon, Phase, PhaseTrigger
from ._connection import Connection
from ._constants import MAX_CONTROL_PAYLOAD
from ._errors import ConnectionClosed, LocalProtocolError
from ._events import (
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from ._limits import MESSAGES_PER_TICK, EndpointSettings, Incident
from ._state import ConnectionState
from ._transport import Protocol, Transport
from .permessage_deflate import PerMessageDeflate

if TYPE_CHECKING:
    from ._handshake import UpgradeRequest
    from ._loop import Loop
    from .app import Handler

__all__ = [
    "FAILURE_LINGER",
    "PHASE_TRANSITIONS",
    "Phase",
    "PhaseTrigger",
    "WebSocket",
]


# Messages from this size on are sent as header and payload in one gathering write
# (no copy of the payload to join them); smaller ones are joined, which is cheaper.
_PARTS_MIN = 64 * 1024

_OPEN = Phase.OPEN
_CLOSING = Phase.CLOSING
_CONN_CLOSED = ConnectionState.CLOSED
_CONN_OPEN = ConnectionState.OPEN

# Why reading is paused (a bit each): reading resumes only when no reason is left.
_HOLD_APP = 1  # pause_reading() from the application
_HOLD_WRITE = 2  # our write buffer is over write_buffer_limit: stop taking more work
_HOLD_BACKLOG = 4  # events left over from the last chunk wait for the next tick


class WebSocket(ConnCommon, Protocol):
    """One WebSocket connection on the loop, as handlers see it.

    Use it from the loop's thread only (handler callbacks run there); from
    another thread, hand the call over: ``loop.call_soon_threadsafe(ws.send, msg)``.

    Attributes:
        id: a small integer, unique in this process.
        remote_address: the peer's address tuple.
        path: the request path (without the query).
        request: the handshake request (server side; None if not kept).
        subprotocol: the negotiated subprotocol, or None.
        close_code: set when the connection ends: the peer's close code, the
            code we failed the connection with after a protocol error (1002,
            1007, 1009), or 1006 if the socket ended without a close frame.
        close_reason: the reason that came with ``close_code``.
        messages_in: data messages received.
        messages_out: data messages sent.
        bytes_in: bytes received (the handshake included).
        bytes_out: bytes queued for sending (the handshake included).
        writable: False while the write buffer is above the high-water mark
            (and before and after the connection); see :meth:`on_writable`.
    """

    # The rest of the state is in ConnCommon's slots.
    __slots__ = (
        "_backlog",
        "_handler",
        "_writable_callbacks",
        "path",
        "request",
        "writable",
    )

    _next_id: ClassVar[int] = 0
    _closed_message: ClassVar[str | None] = "the connection is not open"
    #: True for the client role, whose frames must be masked (never shared).
    is_client: ClassVar[bool] = False

    def __init__(self, loop: Loop, settings: EndpointSettings, remote_address: Any) -> None:
        WebSocket._next_id += 1
        self.id = WebSocket._next_id
        self._loop = loop
        self._settings = settings
        self._transport: Transport | None = None
        self._conn: Connection | None = None
        self._handler: Handler | None = None
        self._phase = Phase.HANDSHAKE
        now = loop.time()
        self._t_start = now
        self._t_rx = now
        self._t_msg = now
        # None: no ping outstanding / not over the write-buffer limit.
        self._t_ping: float | None = None
        self._t_close = 0.0
        self._t_over: float | None = None
        # (since when, messages_in then) while a frame or message is seen arriving.
        self._partial: tuple[float, int] | None = None
        self._backlog: Sequence[Event | str | bytes] | None = None
        self._holds = 0
        self._held = 0  # incoming bytes reported to the memory budget
        self._logged: set[Incident] | None = None
        self._tokens = settings.burst
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
        # An attribute, not a property: handlers read it after every send.
        self.writable = False

    # -- public API ----------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return self._phase is _OPEN

    @property
    def state(self) -> str:
        """``"handshake"``, ``"open"``, ``"closing"``, ``"closed"`` or ``"http"``."""
        return self._phase.value

    @property
    def started_at(self) -> float:
        """Loop time at which the connection began (accept or connect)."""
        return self._t_start

    @property
    def lingering(self) -> bool:
        """True while the socket drains the peer's input after a failure."""
        t = self._transport
        return t is not None and t.lingering

    def attach(self, transport: Transport) -> None:
        """The transport that carries this connection, known before ``connection_made``
        (which comes after the TLS handshake), so that deadlines can abort it."""
        self._transport = transport

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``msg % args`` about this connection, prefixed with its id and peer."""
        self._log(level, msg, *args, exc_info=exc_info)

    def send(self, message: Message) -> None:
        """Queue a message: ``str`` is sent as text, bytes-like as binary.

        Never blocks; see :attr:`writable` for backpressure.

        Raises:
            ConnectionClosed: the connection is not open.
        """
        conn = self._conn
        if conn is None or self._phase is not _OPEN:
            raise self._closed_error()
        if len(message) >= _PARTS_MIN:
            self._send_parts(conn, message)
            return
        frame = conn.send_message(message)
        self.messages_out += 1
        settings = self._settings
        if settings.debug:
            self._log(logging.DEBUG, "sending a %d-byte frame", len(frame))
        # _write, inlined: this is the per-message path.
        self.bytes_out += len(frame)
        transport = self._transport
        if transport is not None and transport.write(frame) > settings.write_buffer_limit:
            self._over_limit()

    def _send_parts(self, conn: Connection, message: Message) -> None:
        """``send`` for a large message: header and payload leave as two buffers."""
        head, body = conn.send_data_parts(message)
        self.messages_out += 1
        size = len(head) + len(body)
        if self._settings.debug:
            self._log(logging.DEBUG, "sending a %d-byte frame", size)
        self.bytes_out += size
        transport = self._transport
        if (
            transport is not None
            and transport.write_parts(head, body) > self._settings.write_buffer_limit
        ):
            self._over_limit()

    def send_frame(self, frame: bytes) -> None:
        """Write an already encoded server frame (e.g. the same frame to many peers).

        The caller guarantees ``frame`` is one whole unmasked data frame and no
        fragmented message is in progress on this connection.

        Raises:
            ConnectionClosed: the connection is not open.
            LocalProtocolError: a client connection (its frames must be masked).
        """
        if not self.queue_frame(frame):
            if self.is_client:
                raise LocalProtocolError("a client cannot send a shared unmasked frame")
            raise self._closed_error()

    def queue_frame(self, frame: bytes) -> bool:
        """Like :meth:`send_frame`, but returns False instead of raising.

        The fan-out primitive of :func:`rfc6455.app.broadcast`: one call per
        subscriber, no exception for the ones that closed meanwhile.
        """
        if self._phase is not _OPEN or self.is_client:
            return False
        self.messages_out += 1
        self._write(frame)
        return True

    @property
    def compression_key(self) -> Hashable | None:
        """Connections with equal keys may share one compressed frame (see
        :func:`rfc6455.permessage_deflate.compress_message`); None: send this
        connection uncompressed frames (always valid, RFC 7692 §6)."""
        conn = self._conn
        if conn is None:
            return None
        for extension in conn.extensions:
            if isinstance(extension, PerMessageDeflate):
                return extension.shared_key
        return None

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (at most ``MAX_CONTROL_PAYLOAD``, 125, bytes)."""
        conn = self._conn
        if conn is None or self._phase is not _OPEN:
            raise self._closed_error()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError(f"ping payloads are at most {MAX_CONTROL_PAYLOAD} bytes")
        self._write(conn.send_ping(payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (after the messages already queued).

        The peer has ``close_timeout`` seconds to answer; then the socket is
        dropped. Closing a connection that is not open does nothing (during
        the handshake it drops the socket).
        """
        phase = self._phase
        if phase is _OPEN:
            assert self._conn is not None
            data = self._conn.close(code, reason)  # raises on a code that may not be sent
            self._log(logging.DEBUG, "open -> closing: sending close %d %r", code, reason)
            self._start_closing()
            self._write(data)
            if self._conn.should_close_transport and self._transport is not None:
                self._transport.close()
        elif phase is Phase.HANDSHAKE or phase is Phase.HTTP:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        if self._transport is not None:
            self._transport.abort()

    @property
    def write_buffer_size(self) -> int:
        """Bytes queued for this peer that the kernel has not taken yet."""
        t = self._transport
        return t.write_buffer_size if t is not None else 0

    def on_writable(self, callback: Callable[[], object]) -> None:
        """Call ``callback()`` once the write buffer drains (now, if writable)."""
        if self.writable or self._transport is None or self._phase is Phase.CLOSED:
            self._loop.call_soon(callback)
            return
        if self._writable_callbacks is None:
            self._writable_callbacks = []
        self._writable_callbacks.append(callback)

    def pause_reading(self) -> None:
        """Stop reading from this peer (its sends will block in its kernel)."""
        self._hold(_HOLD_APP)

    def resume_reading(self) -> None:
        """Read from this peer again (unless the server holds reading for its own reasons:
        a full write buffer, or messages of the last chunk not handled yet)."""
        self._release(_HOLD_APP)

    # ConnCommon's, named here so that the API reference lists it; these hooks serve it.
    check_deadlines = ConnCommon.check_deadlines

    def _send_keepalive(self, conn: Connection) -> None:
        self._write(conn.send_ping(b""))

    def _close_with(self, code: int, reason: str) -> None:
        self.close(code, reason)

    def _check_slow_consumer(self, now: float) -> None:
        if self._t_over is not None:
            settings = self._settings
            if self.write_buffer_size <= settings.write_buffer_limit:
                self._t_over = None
                self._release(_HOLD_WRITE)
            elif now - self._t_over >= settings.write_buffer_timeout:
                self._incident(Incident.SLOW_CONSUMER, "slow consumer; closing with 1008")
                self.close(1008, "slow consumer")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self.state} {self._peer_text()}>"

    # -- transport protocol ----------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:
        self._transport = transport
        self.writable = True
        transport.set_write_buffer_limits(self._settings.high_water, self._settings.low_water)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._t_rx = self._loop.now
        self._t_ping = None  # anything from the peer proves it is alive
        conn = self._conn
        if conn is None:
            self._handshake_data(data)
            return
        self._received(conn, conn.receive(data))

    def buffer_received(self, buf: bytearray, nbytes: int) -> None:
        # data_received without the copy: the connection decodes in the loop's buffer.
        self.bytes_in += nbytes
        self._t_rx = now = self._loop.now
        self._t_ping = None  # anything from the peer proves it is alive
        conn = self._conn
        if conn is None:
            self._handshake_data(memoryview(buf)[:nbytes].tobytes())
            return
        data = conn.receive_one(buf, nbytes)
        if data is None:
            events = conn.receive_messages(buf, nbytes)
            first = events[0] if len(events) == 1 else None
            if not isinstance(first, (str, bytes)):
                self._received_many(conn, events)
                return
            data = first
        # One whole message, the usual read: _dispatch for one message, inlined.
        handler = self._handler
        if (
            self._settings.inline_messages
            and self._phase is _OPEN
            and self._backlog is None
            and handler is not None
        ):
            try:
                handler.on_message(self, data)
            except ConnectionClosed:
                pass
            except Exception:  # noqa: BLE001 - isolate the failure to this connection
                self._handler_failed("on_message")
            self.messages_in += 1
            self._t_msg = now
            # While the connection stays open it owes nothing here: a pong owed was sent
            # with the last read's events, and only reading queues a close reply.
            if conn.state is not _CONN_OPEN:
                out = conn.data_to_send()
                if out:
                    self._write(out)
                if conn.state is _CONN_CLOSED:
                    self._close_when_done(conn)
        else:
            self._dispatch(conn, [data])
        if self._held:
            self._account(conn)

    def _received_many(self, conn: Connection, events: list[Event | str | bytes]) -> None:
        """``buffer_received`` for a read that completed no message or several."""
        self._received(conn, events)
        if events:
            return
        # Part of a frame arrived: a large one is read straight into its own buffer.
        target = conn.receive_buffer()
        if target is not None:
            target.release()
            transport = self._transport
            if transport is not None:
                transport.read_direct = True

    def _received(self, conn: Connection, events: Sequence[Event | str | bytes]) -> None:
        """What a read decoded: its events dispatched; or, if it completed none, what the
        connection has to send flushed and the partial frame or message charged to the
        budget (reads that completed events are charged by the deadline check)."""
        if events:
            self._dispatch(conn, events)
            if self._held:
                self._account(conn)
            return
        out = conn.data_to_send()
        if out:
            self._write(out)
        if self._settings.budget is not None:
            self._account(conn)

    def receive_buffer(self) -> memoryview | None:
        conn = self._conn
        return None if conn is None else conn.receive_buffer()

    def receive_filled(self, nbytes: int) -> None:
        self.bytes_in += nbytes
        self._t_rx = self._loop.now
        self._t_ping = None
        conn = self._conn
        assert conn is not None  # receive_buffer() offered a view: the connection is open
        conn.receive_filled(nbytes)
        self._received(conn, list(conn.events()))

    def eof_received(self) -> bool:
        conn = self._conn
        if conn is None:
            self._handshake_eof()
            return False
        conn.receive_data(b"")
        self._dispatch(conn, list(conn.events()))
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        was_open = self._phase is _OPEN or self._phase is _CLOSING
        self._move(PhaseTrigger.LOST)
        if self.close_code is None:
            self.close_code = 1006
        handler = self._handler
        self._handler = None
        self._writable_callbacks = None
        self._backlog = None
        self.writable = False
        self._release_budget()
        if handler is not None and was_open:
            try:
                handler.on_close(self, self.close_code, self.close_reason)
            except Exception:  # noqa: BLE001 - isolate the failure to this connection
                self._incident(
                    Incident.HANDLER_ERROR, "on_close raised", level=logging.ERROR, exc_info=True
                )
        self._lost(exc, was_open)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._t_over = None
        self._release(_HOLD_WRITE)
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

    def _start_closing(self) -> None:
        self._move(PhaseTrigger.CLOSE)
        self._t_close = self._loop.now

    def _write(self, data: bytes) -> None:
        """The way out (``send`` inlines it): count, write, notice a slow consumer."""
        if not data:
            return
        self.bytes_out += len(data)
        transport = self._transport
        if transport is not None and transport.write(data) > self._settings.write_buffer_limit:
            self._over_limit()

    def _over_limit(self) -> None:
        """The write buffer went over ``write_buffer_limit``: start the slow-consumer clock
        and stop reading, so that a peer that does not read cannot make us queue more."""
        if self._t_over is None:
            self._t_over = self._loop.now
            self._incident(
                Incident.WRITE_LIMIT,
                "write buffer over the limit (%d bytes queued); reading paused",
                self.write_buffer_size,
            )
        t = self._transport
        if t is not None and t.writing_paused:  # resume_writing will release it
            self._hold(_HOLD_WRITE)

    def _hold(self, reason: int) -> None:
        if not self._holds and self._transport is not None:
            self._transport.pause_reading()
        self._holds |= reason

    def _release(self, reason: int) -> None:
        if self._holds & reason:
            self._holds &= ~reason
            t = self._transport
            if not self._holds and t is not None and (self._phase is _OPEN or self._phase is _CLOSING):
                t.resume_reading()

    def _account(self, conn: Connection) -> None:
        """Report what this connection holds to the server's memory budget; over it,
        fail the largest holders first."""
        budget = self._settings.budget
        held = conn.buffered_bytes if self._phase is _OPEN else 0
        if budget is None or held == self._held:
            return
        self._held = held
        if budget.update(self, held):
            for ws in budget.offenders():
                ws._over_budget()

    def _over_budget(self) -> None:
        """This connection holds the most of a server over its memory budget: fail it."""
        self._incident(
            Incident.MEMORY_BUDGET,
            "holding %d bytes of a server over its memory budget; 1013",
            self._held,
        )
        self._release_budget()
        self._fail(1013, "server memory budget exceeded")

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame and drop the connection without waiting for the answer."""
        self._backlog = None
        ConnCommon._fail(self, code, reason)

    def _dispatch(self, conn: Connection, events: Sequence[Event | str | bytes]) -> None:
        """Hand events to the handler (at most MESSAGES_PER_TICK per tick), then flush.

        A ``str`` / ``bytes`` item is a whole text / binary message
        (:meth:`Connection.receive_messages`)."""
        if len(events) > MESSAGES_PER_TICK:
            # One peer's flood must not delay the others: the rest waits for the next
            # tick, and reading waits for the rest (so events stay in wire order).
            if self._backlog is None:
                self._hold(_HOLD_BACKLOG)
                # Callbacks scheduled by an I/O callback run in the same tick: hop
                # once more so the rest waits for the next tick, after others' I/O.
                self._loop.call_soon(self._loop.call_soon, self._drain_backlog)
            self._backlog = events[MESSAGES_PER_TICK:]
            events = events[:MESSAGES_PER_TICK]
        handler = self._handler
        settings = self._settings
        rate = settings.rate
        debug = settings.debug
        count = 0
        for event in events:
            cls = type(event)
            if cls is bytes or cls is str:
                data: Message = event  # type: ignore[assignment]
            elif cls is TextMessage or cls is BinaryMessage:
                data = event.data  # type: ignore[union-attr]
            else:
                self._control_event(event, handler)  # type: ignore[arg-type]
                continue
            count += 1
            if self._phase is not _OPEN:
                continue
            if rate is not None and not self._take_token(self._loop.now):
                break
            if debug:
                self._log(
                    logging.DEBUG,
                    "received %s message, %d bytes",
                    "text" if type(data) is str else "binary",
                    len(data),
                )
            if handler is None:
                continue
            try:
                handler.on_message(self, data)
            except ConnectionClosed:
                pass
            except Exception:  # noqa: BLE001 - isolate the failure to this connection
                self._handler_failed("on_message")
                break
        if count:
            self.messages_in += count
            self._t_msg = self._loop.now
        if self._backlog is not None and self._phase is _OPEN:
            return  # our answers (pongs, a close reply) leave after the backlog's
        out = conn.data_to_send()
        if out:
            self._write(out)
        if conn.state is _CONN_CLOSED:
            self._close_when_done(conn)

    def _close_when_done(self, conn: Connection) -> None:
        """The connection is CLOSED: end TCP if it is our turn (§7.1.1)."""
        if conn.should_close_transport:
            transport = self._transport
            if transport is not None:
                # After a protocol error the peer may still be sending: linger so that
                # no reset destroys the close frame that tells it why (1002/1007/1009).
                transport.close(FAILURE_LINGER if conn.failure is not None else 0.0)

    def _drain_backlog(self) -> None:
        backlog = self._backlog
        self._backlog = None
        conn = self._conn
        if backlog is not None and conn is not None and self._phase is not Phase.CLOSED:
            self._dispatch(conn, backlog)
        if self._backlog is None:
            self._release(_HOLD_BACKLOG)

    def _control_event(self, event: Event, handler: Handler | None) -> None:
        if isinstance(event, Ping):
            # Pings count against the rate limit too: a ping flood costs us CPU.
            if self._settings.rate is not None and self._phase is _OPEN and not self._take_token(self._loop.now):
                return
            if handler is not None:
                self._call(handler.on_ping, event.payload)
        elif isinstance(event, Pong):
            if handler is not None:
                self._call(handler.on_pong, event.payload)
        elif isinstance(event, (Close, ConnectionFailed)):
            self.close_code = event.code
            self.close_reason = event.reason
            if self._phase is _OPEN:
                self._start_closing()
            if isinstance(event, Close):
                self._log(
                    logging.DEBUG,
                    "close frame received (%d %r); state %s",
                    event.code,
                    event.reason,
                    self.state,
                )
            else:
                self._log(
                    logging.INFO, "protocol error: %s (closing %d)", event.reason, event.code
                )
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

    def _handler_failed(self, where: str) -> None:
        self._incident(
            Incident.HANDLER_ERROR,
            "handler error in %s; closing with 1011",
            where,
            level=logging.ERROR,
            exc_info=True,
        )
        if self._phase is _OPEN:
            self.close(1011, "")
        else:
            self.abort()

    def _open(self, conn: Connection, handler: Handler) -> None:
        """The handshake is done: from now on frames flow."""
        self._conn = conn
        self._move(PhaseTrigger.ACCEPTED)
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
        if self._phase is _OPEN:
            self._dispatch(conn, list(conn.events()))  # frames that came with the handshake

    def _peer_text(self) -> str:
        addr = self.remote_address
        if isinstance(addr, tuple) and len(addr) >= 2:
            host = addr[0]
            return f"[{host}]:{addr[1]}" if ":" in str(host) else f"{host}:{addr[1]}"
        return str(addr)

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        log = self._settings.logger
        if log.isEnabledFor(level):
            peer = self._peer_text()
            log.log(
                level,
                "[#%d %s] " + msg,
                self.id,
                peer,
                *args,
                exc_info=exc_info,
                extra={"conn_id": self.id, "peer": peer},
            )

    # -- hooks for the roles ---------------------------------------------------------

    # _handshake_data, _handshake_eof: ConnCommon's hooks.

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        """The socket is closed and ``on_close`` has run."""
