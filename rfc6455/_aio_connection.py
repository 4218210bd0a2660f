"""The asyncio binding's connection, both roles: the sans-I/O core behind a BufferedProtocol.

Strategy:

* A :class:`Connection` is the transport's protocol (an ``asyncio.BufferedProtocol``:
  ``get_buffer``/``buffer_updated``, ``pause_writing``, ...) and the application's
  coroutine API (``send``, ``recv``, ``ping``, ``close``) at once. It runs on any asyncio
  loop that drives protocols, uvloop included: no streams, no ``sock_*`` calls. Reads go
  into one buffer per thread (:func:`_read_buffer`), not a new bytes object each. The
  role-specific part (which handshake, what happens once it is done) is in
  ``ServerConnection`` (``_aio_server.py``) and ``ClientConnection``
  (``_aio_client.py``), which never import each other.
* The I/O phase follows the endpoint's table (:data:`rfc6455._conn_common.PHASE_TRANSITIONS`:
  HANDSHAKE → OPEN → CLOSING → CLOSED, or HANDSHAKE → HTTP → CLOSED); the core keeps
  the finer closing-handshake states of its own.
* The per-message path never reads the clock and never starts a timer:
  ``data_received`` sets a flag and counts messages; :meth:`Connection.check_deadlines`,
  called by the server's one periodic sweep (or a client's own timer), turns those into
  the timestamps the deadlines need (heartbeat, idle, message, close, slow consumer), with
  the same rules and the same :class:`~rfc6455.Config` settings as the selectors server.
* Receiving: complete messages wait in a deque for ``recv``. A ``recv`` takes a message
  off the deque only in the step that returns it, so cancelling a ``recv`` never loses
  one. Above ``max_queue`` messages, reading from the transport pauses (the peer's sends
  then block in its kernel); it resumes at a quarter of that.
* Sending: ``send`` waits, before writing, while the transport's buffer is above
  ``high_water`` (``pause_writing`` until ``resume_writing`` at ``low_water``). A
  sender that waits there for ``write_buffer_timeout`` marks a slow consumer: the
  connection is closed with 1008, and the waiting sends raise ``ConnectionClosed``
  (their messages were not written). Nothing is ever both written and reported failed.
* Waiters are per call (one future per waiting ``recv`` or ``send``), so cancelling
  one caller never cancels another's wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from time import monotonic as _monotonic
from typing import Any, ClassVar, Self, cast

from ._conn_common import FAILURE_LINGER, PHASE_TRANSITIONS, ConnCommon, Phase, PhaseTrigger
from ._connection import Connection as CoreConnection
from ._constants import MAX_CONTROL_PAYLOAD
from ._errors import ConnectionClosedOK, LocalProtocolError
from ._events import BinaryMessage, Close, ConnectionFailed, ConnectionLost, Ping, Pong, TextMessage
from ._kernels import PinnedBuffer
from ._limits import UNLIMITED_BUFFER, EndpointSettings, Incident

__all__ = ["Connection", "Data", "Phase"]

logger = logging.getLogger("rfc6455.asyncio")

#: A message: ``str`` for text, ``bytes`` for binary.
Data = str | bytes

_OPEN = Phase.OPEN
_CLOSING = Phase.CLOSING
_CLOSED = Phase.CLOSED
_HANDSHAKE = Phase.HANDSHAKE
_BYTES_LIKE = (bytes, bytearray, memoryview)
# Round trips are timed with the monotonic clock: uvloop's loop.time() counts whole
# milliseconds, too coarse for a pong on loopback.
# Why reading is paused (a bit each); reading resumes only when no reason is left.
_HOLD_QUEUE = 1  # max_queue messages wait for recv()
_HOLD_WRITE = 2  # our write buffer is over write_buffer_limit


#: Bytes read from the socket per call: asyncio's own default for ``recv``.
READ_SIZE = 256 * 1024
_threads = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer, shared by every connection of its loop.

    A transport fills it (``get_buffer`` then ``recv_into``) and hands it back
    (``buffer_updated``) in one step, and the core copies what it keeps, so one buffer
    per thread serves every connection. Without it the standard loop's ``sock.recv``
    allocates 256 KiB per read, which glibc maps and unmaps: three system calls a
    message.
    """
    view: memoryview | None = getattr(_threads, "view", None)
    if view is None:
        # Pinned for the native kernels while the thread lives.
        _threads.holder = holder = PinnedBuffer(READ_SIZE)
        view = _threads.view = memoryview(holder.buf)
    return view


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


class Connection(ConnCommon, asyncio.BufferedProtocol):
    """One WebSocket connection on asyncio (use ``serve`` or ``connect`` to get one).

    Coroutine methods: :meth:`send`, :meth:`recv`, :meth:`ping`, :meth:`pong`,
    :meth:`close`, :meth:`wait_closed`; ``async for message in ws`` receives until a
    normal closure; ``async with ws`` closes on exit. Use it from its loop's thread.

    Attributes:
        id: a small integer, unique in this process.
        remote_address: the peer's address, as the transport gives it.
        local_address: our address.
        subprotocol: the negotiated subprotocol, or None.
        close_code: set once the connection is closed: the peer's close code, the code
            we failed the connection with (1002, 1007, 1008, 1009, ...), or 1006 if the
            socket ended without a closing handshake.
        close_reason: the reason that came with ``close_code``.
        latency: seconds between the last ping and its pong (0 before any).
        messages_in: data messages received.
        messages_out: data messages sent.
        bytes_in: bytes received (the handshake included).
        bytes_out: bytes written (the handshake included).
    """

    # The rest of the state is in ConnCommon's slots.
    __slots__ = (
        "_closed",
        "_drain_waiters",
        "_frag_lock",
        "_heard",
        "_keepalive_sent",
        "_max_queue",
        "_messages",
        "_msgs_seen",
        "_pings",
        "_rbuf",
        "_recv_waiters",
        "_writing_paused",
        "latency",
        "local_address",
    )

    _next_id: ClassVar[int] = 0

    def __init__(self, settings: EndpointSettings, *, max_queue: int | None = 16) -> None:
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be at least 1 or None, not {max_queue}")
        Connection._next_id += 1
        self.id = Connection._next_id
        self._loop = loop = asyncio.get_running_loop()
        self._settings = settings
        self._max_queue = max_queue
        self._transport: asyncio.Transport | None = None
        self._rbuf = _read_buffer()
        self._conn: CoreConnection | None = None
        self._phase = _HANDSHAKE
        self._messages: deque[Data] = deque()
        self._recv_waiters: list[asyncio.Future[None]] = []
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._frag_lock: asyncio.Lock | None = None
        self._writing_paused = False
        self._holds = 0  # why reading is paused: _HOLD_QUEUE | _HOLD_WRITE
        self._closed: asyncio.Future[None] = loop.create_future()
        # payload -> (pong waiter, loop time the ping left), in the order sent.
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        now = loop.time()
        self._t_start = now
        self._t_rx = now
        self._t_msg = now
        self._heard = False  # set per chunk; the deadline check turns it into _t_rx
        self._msgs_seen = 0  # messages_in when the deadline check last looked
        self._t_ping: float | None = None
        self._keepalive_sent = 0.0
        self._t_close = 0.0
        self._t_over: float | None = None
        self._partial: tuple[float, int] | None = None
        self._tokens = settings.burst
        self._t_tokens = now
        self._held = 0
        self._logged: set[Incident] | None = None
        self.remote_address: Any = None
        self.local_address: Any = None
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.latency = 0.0
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> Phase:
        """Where the connection stands: ``Phase.HANDSHAKE``, ``OPEN``, ``CLOSING``, ``CLOSED``
        (or ``HTTP`` while a server answers a plain request or refuses a handshake)."""
        return self._phase

    @property
    def open(self) -> bool:
        """True while messages can be sent."""
        return self._phase is _OPEN

    @property
    def write_buffer_size(self) -> int:
        """Bytes written to the transport that it has not sent yet."""
        t = self._transport
        return t.get_write_buffer_size() if t is not None else 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.id} {self._phase.value} {self.remote_address}>"

    # -- sending -------------------------------------------------------------------------

    async def send(
        self,
        message: Data | bytearray | memoryview | Iterable[Data] | AsyncIterable[Data],
    ) -> None:
        """Send a message: ``str`` as text, bytes-like as binary.

        An iterable or async iterable of ``str`` (or of bytes-like) is sent as one
        fragmented message, a frame per item as it comes, then an empty final frame.
        Waits first while the write buffer is above ``high_water`` (backpressure).

        Raises:
            ConnectionClosed: the connection is not open (the message was not sent), or
                it closed while this call waited.
            TypeError: ``message`` is none of the above, or its fragments mix types.
        """
        while True:
            lock = self._frag_lock
            if lock is not None and lock.locked():
                async with lock:  # a fragmented message is being sent: wait for its end
                    pass
            elif self._writing_paused and self._phase is _OPEN:
                await self._drain()
            else:
                break  # nothing awaited from here to the write: no one can slip in
        conn = self._conn
        if conn is None or self._phase is not _OPEN:
            raise self._closed_error()
        cls = type(message)
        if cls is str:
            frame = conn.send_text(message)  # type: ignore[arg-type]
        elif cls is bytes or cls is bytearray or cls is memoryview:
            frame = conn.send_binary(message)  # type: ignore[arg-type]
        elif isinstance(message, (str, *_BYTES_LIKE)):
            frame = (
                conn.send_text(str(message))
                if isinstance(message, str)
                else conn.send_binary(message)
            )
        elif isinstance(message, Mapping):
            raise TypeError("cannot send a mapping: encode it first (json.dumps, ...)")
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(aiter(message), True)
            return
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message), False)
            return
        else:
            raise TypeError(f"cannot send {type(message).__name__}: str, bytes or an iterable")
        self.messages_out += 1
        self.bytes_out += len(frame)
        transport = self._transport
        if transport is not None:
            transport.write(frame)
            if self._writing_paused:
                self._check_buffer()

    async def _send_fragments(self, fragments: Any, is_async: bool) -> None:
        if self._frag_lock is None:
            self._frag_lock = asyncio.Lock()
        async with self._frag_lock:
            kind: type | None = None
            try:
                while True:
                    try:
                        item = await anext(fragments) if is_async else next(fragments)
                    except (StopIteration, StopAsyncIteration):
                        break
                    if isinstance(item, str):
                        this: type = str
                    elif isinstance(item, _BYTES_LIKE):
                        this, item = bytes, bytes(item)
                    else:
                        raise TypeError(f"fragments must be str or bytes-like, not {type(item)}")
                    if kind is None:
                        kind = this
                    elif this is not kind:
                        raise TypeError("fragments of one message must all be str or all bytes")
                    if self._writing_paused:
                        await self._drain()
                    conn = self._conn
                    if conn is None or self._phase is not _OPEN:
                        raise self._closed_error()
                    self._write(conn.send_fragment(item, final=False))
            except BaseException:
                if kind is not None and self._phase is _OPEN:
                    # Half a message is on the wire and cannot be finished: close (1011).
                    self._start_close(1011, "")
                raise
            if kind is None:
                return  # an empty iterable: nothing to send
            conn = self._conn
            if conn is None or self._phase is not _OPEN:
                raise self._closed_error()
            self._write(conn.send_fragment("" if kind is str else b"", final=True))
            self.messages_out += 1

    async def _drain(self) -> None:
        """Wait until the write buffer is at or below ``low_water``, or the connection ends."""
        while self._writing_paused and self._phase is _OPEN:
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._drain_waiters:
                    self._drain_waiters.remove(waiter)

    async def ping(self, data: Data | None = None) -> asyncio.Future[float]:
        """Send a ping; returns a future that resolves, with the round trip in seconds,
        when the matching pong arrives (a pong also answers every earlier ping).

        Args:
            data: the payload (at most 125 bytes; ``str`` is encoded as UTF-8); None for
                four random bytes.

        Raises:
            ConnectionClosed: the connection is not open. Awaiting the returned future
                raises it too if the connection closes before the pong.
            LocalProtocolError: a payload over 125 bytes, or one already in flight.
        """
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)
        else:
            payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            if payload in self._pings:
                raise LocalProtocolError("a ping with this payload is already in flight")
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise LocalProtocolError(f"ping payloads are at most {MAX_CONTROL_PAYLOAD} bytes")
        conn = self._conn
        if conn is None or self._phase is not _OPEN:
            raise self._closed_error()
        waiter: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (waiter, _monotonic())
        self._write(conn.send_ping(payload))
        return waiter

    async def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, RFC 6455 §5.5.3).

        Raises:
            ConnectionClosed: the connection is not open.
        """
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        conn = self._conn
        if conn is None or self._phase is not _OPEN:
            raise self._closed_error()
        self._write(conn.send_pong(payload))

    # -- receiving -----------------------------------------------------------------------

    async def recv(self) -> Data:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Messages received before the connection closed are returned first. Cancelling
        a waiting ``recv`` loses no message.

        Raises:
            ConnectionClosed: the connection closed (``ConnectionClosedOK`` for a normal
                closure) and no message is left.
        """
        while True:
            messages = self._messages
            if messages:
                message = messages.popleft()
                if self._holds & _HOLD_QUEUE and len(messages) <= self._resume_at():
                    self._release(_HOLD_QUEUE)
                return message
            if self._phase is _CLOSED:
                raise self._closed_error()
            # Woken by messages, by the peer's close frame and by the end of the socket.
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._recv_waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._recv_waiters:
                    self._recv_waiters.remove(waiter)

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        """Messages until a normal closure; ``ConnectionClosedError`` propagates."""
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    def _resume_at(self) -> int:
        return 0 if self._max_queue is None else self._max_queue // 4

    # -- closing -------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake, then wait until the connection is closed.

        The peer has ``close_timeout`` to answer; then the socket is dropped. Closing a
        connection that is already closing or closed only waits.

        Raises:
            LocalProtocolError: a code that may not be sent, or a reason over 123 bytes.
        """
        self._start_close(code, reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed (cancelling this wait cancels nothing else)."""
        await asyncio.shield(self._closed)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake (1006)."""
        if self._transport is not None:
            self._transport.abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _start_close(self, code: int, reason: str) -> None:
        phase = self._phase
        if phase is _OPEN:
            conn = self._conn
            assert conn is not None
            data = conn.close(code, reason)  # raises on a code that may not be sent
            self._start_closing()
            self._write(data)
            if conn.should_close_transport and self._transport is not None:
                self._transport.close()
        elif phase is _HANDSHAKE or phase is Phase.HTTP:
            self.abort()

    _close_with = _start_close  # ConnCommon's hook: a deadline starts the closing handshake

    # -- deadlines -----------------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        """Enforce the deadlines at loop time ``now`` (the server's sweep calls this).

        Heartbeat, idle, message and slow-consumer deadlines while open, the close
        timeout while closing, the handshake timeout before; the same rules as the
        selectors server (docs/limits.md), and the same code (``ConnCommon``).
        """
        if self._heard:
            self._heard = False
            self._t_rx = now
            self._t_ping = None  # anything from the peer proves it is alive
        if self._phase is _OPEN and self.messages_in != self._msgs_seen:
            self._msgs_seen = self.messages_in
            self._t_msg = now
        ConnCommon.check_deadlines(self, now)

    def _send_keepalive(self, conn: CoreConnection) -> None:
        self._keepalive_sent = _monotonic()
        self._write(conn.send_ping(b""))

    def _check_slow_consumer(self, now: float) -> None:
        settings = self._settings
        if self._writing_paused and (
            self._drain_waiters or self.write_buffer_size > settings.write_buffer_limit
        ):
            if self._t_over is None:
                self._t_over = now
            elif now - self._t_over >= settings.write_buffer_timeout:
                self._incident(Incident.SLOW_CONSUMER, "slow consumer; closing with 1008")
                self._start_close(1008, "slow consumer")
        else:
            self._t_over = None

    def _account(self, conn: CoreConnection) -> None:
        """Report what this connection holds to the memory budget; over it, fail the
        largest holders first (1013)."""
        budget = self._settings.budget
        held = conn.buffered_bytes if self._phase is _OPEN else 0
        if budget is None or held == self._held:
            return
        self._held = held
        if budget.update(self, held):
            for holder in budget.offenders():
                if isinstance(holder, Connection):
                    holder._over_budget()

    def _over_budget(self) -> None:
        self._incident(
            Incident.MEMORY_BUDGET, "holding %d bytes of a memory budget; 1013", self._held
        )
        self._release_budget()
        self._fail(1013, "server memory budget exceeded")

    # -- asyncio.BufferedProtocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        settings = self._settings
        transport.set_write_buffer_limits(settings.high_water, settings.low_water)
        self.remote_address = transport.get_extra_info("peername")
        self.local_address = transport.get_extra_info("sockname")

    def get_buffer(self, sizehint: int) -> memoryview:
        """The buffer the loop reads into: one per thread, shared by the connections."""
        return self._rbuf

    def buffer_updated(self, nbytes: int) -> None:
        """``nbytes`` were read into the shared buffer: feed them to the connection."""
        # The core and the handshake copy what they keep: the shared buffer is free
        # again when this returns. The core decodes in it, in place.
        conn = self._conn
        if conn is None:
            self.data_received(cast(bytes, self._rbuf[:nbytes]))
            return
        self._heard = True
        self.bytes_in += nbytes
        buf = cast(bytearray, self._rbuf.obj)
        message = conn.receive_one(buf, nbytes)
        if message is not None:
            self._dispatch(conn, [message])
        else:
            self._dispatch(conn, conn.receive_messages(buf, nbytes))

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer (``buffer_updated`` passes a view of the read buffer)."""
        self._heard = True
        self.bytes_in += len(data)
        conn = self._conn
        if conn is None:
            self._handshake_data(data)
            return
        self._dispatch(conn, conn.receive(data))

    def eof_received(self) -> bool:
        conn = self._conn
        if conn is None:
            self._handshake_eof()
            return False
        self._dispatch(conn, conn.receive(b""))
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        was_open = self._phase is _OPEN or self._phase is _CLOSING
        try:
            self._phase = PHASE_TRANSITIONS[(self._phase, PhaseTrigger.LOST)]
        except KeyError:  # pragma: no cover - lost twice
            return
        if self.close_code is None:
            self.close_code = 1006
        self._release_budget()
        self._writing_paused = False
        _wake(self._recv_waiters)
        _wake(self._drain_waiters)
        pings = self._pings
        if pings:
            error = self._closed_error()
            for waiter, _ in pings.values():
                if not waiter.done():
                    waiter.set_exception(error)
                    waiter.exception()  # retrieved: nobody has to await it
            pings.clear()
        if not self._closed.done():
            self._closed.set_result(None)
        self._lost(exc, was_open)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._t_over = None
        if self._holds & _HOLD_WRITE:
            self._release(_HOLD_WRITE)
        _wake(self._drain_waiters)

    # -- internals -----------------------------------------------------------------------

    def _dispatch(self, conn: CoreConnection, events: list[Any]) -> None:
        """Queue the messages, handle the control events, then flush the core's replies."""
        count = 0
        rate = self._settings.rate
        for event in events:
            cls = type(event)
            # A message: its data alone (receive_one / receive_messages) or an event.
            if cls is str or cls is bytes or cls is TextMessage or cls is BinaryMessage:
                if rate is not None and not self._take_token(self._loop.time()):
                    break
                self._messages.append(event if cls is str or cls is bytes else event.data)
                count += 1
            elif cls is Ping:
                if rate is not None and self._phase is _OPEN and not self._take_token(self._loop.time()):
                    break
            elif cls is Pong:
                self._pong(event.payload)
            elif cls is Close or cls is ConnectionFailed:
                self.close_code = event.code
                self.close_reason = event.reason
                if self._phase is _OPEN:
                    self._start_closing()
                if cls is ConnectionFailed:
                    self._log(
                        logging.INFO, "protocol error: %s (closing %d)", event.reason, event.code
                    )
                _wake(self._drain_waiters)
                _wake(self._recv_waiters)
            elif cls is ConnectionLost and self._transport is not None:
                self._transport.close()
        if count:
            self.messages_in += count
            _wake(self._recv_waiters)
            max_queue = self._max_queue
            if max_queue is not None and len(self._messages) >= max_queue:
                self._hold(_HOLD_QUEUE)
        elif self._settings.budget is not None:
            self._account(conn)
        out = conn.data_to_send()
        if out:
            self._write(out)
        if conn.should_close_transport:
            transport = self._transport
            if transport is not None and not transport.is_closing():
                if conn.failure is not None:
                    # The peer may still be sending: half-close so that our close frame
                    # (1002/1007/1009) arrives before any reset, and linger a little.
                    if transport.can_write_eof():
                        transport.write_eof()
                    self._loop.call_later(FAILURE_LINGER, transport.close)
                else:
                    transport.close()

    def _pong(self, payload: bytes) -> None:
        pings = self._pings
        if payload in pings:
            now = _monotonic()
            while pings:
                key = next(iter(pings))
                waiter, sent = pings.pop(key)
                if not waiter.done():
                    waiter.set_result(now - sent)
                if key == payload:
                    self.latency = now - sent
                    break
        elif not payload and self._keepalive_sent:
            self.latency = _monotonic() - self._keepalive_sent
            self._keepalive_sent = 0.0

    def _write(self, data: bytes) -> None:
        transport = self._transport
        if data and transport is not None:
            self.bytes_out += len(data)
            transport.write(data)
            if self._writing_paused:
                self._check_buffer()

    def _check_buffer(self) -> None:
        """Over ``write_buffer_limit`` (one huge message): stop reading from the peer
        until the buffer drains, like the selectors server."""
        limit = self._settings.write_buffer_limit
        if limit < UNLIMITED_BUFFER and self.write_buffer_size > limit:
            if not self._holds & _HOLD_WRITE:
                self._incident(Incident.WRITE_LIMIT, "write buffer over the limit; reading paused")
            self._hold(_HOLD_WRITE)

    def _hold(self, reason: int) -> None:
        if not self._holds and self._transport is not None and self._phase is not _CLOSED:
            self._transport.pause_reading()
        self._holds |= reason

    def _release(self, reason: int) -> None:
        if self._holds & reason:
            self._holds &= ~reason
            t = self._transport
            if not self._holds and t is not None and not t.is_closing():
                t.resume_reading()

    def _start_closing(self) -> None:
        self._move(PhaseTrigger.CLOSE)
        self._t_close = self._loop.time()
        _wake(self._drain_waiters)  # waiting sends raise: their messages were not written

    def _open(self, conn: CoreConnection) -> None:
        """The handshake is done: frames flow from now on (the ones that came with it too)."""
        self._conn = conn
        self._move(PhaseTrigger.ACCEPTED)
        self._t_msg = self._loop.time()
        self._dispatch(conn, list(conn.events()))

    def _log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        log = self._settings.logger
        if log.isEnabledFor(level):
            log.log(
                level, "[#%d %s] " + msg, self.id, self.remote_address, *args, exc_info=exc_info
            )

    # -- hooks for the roles -------------------------------------------------------------

    # _handshake_data, _handshake_eof: ConnCommon's hooks.

    def _lost(self, exc: BaseException | None, was_open: bool) -> None:
        """The socket is closed and every waiter was woken."""
