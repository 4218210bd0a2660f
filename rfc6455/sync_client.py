"""The blocking WebSocket client, for scripts and tests.

Strategy: it drives the sans-I/O :class:`~rfc6455.ClientHandshake` and
:class:`~rfc6455.ClientConnection` over one socket and no thread. After the
opening handshake every operation is non-blocking (a plain socket stays in
blocking mode and each call passes ``MSG_DONTWAIT``; a TLS socket is made
non-blocking) and every wait is a ``poll`` against the deadline of the call
that waits, so no call blocks past its deadline. The one exception has no
deadline to keep: ``recv()`` without a timeout on a plain socket, with nothing
owed to the server, is a single blocking read (three system calls per round
trip instead of four). Reads go into one buffer per thread, decoded in place:
the usual read, one whole message, in one native call (``receive_one``).

- :func:`connect`: ``timeout`` covers TCP, TLS and the handshake together;
- ``send``, ``send_fragments``, ``ping``: ``write_timeout`` (per call: ``timeout=``);
- ``recv(timeout=)``: the whole call, pongs and close replies written on the way
  included (each of those writes is also bounded by ``write_timeout``);
  ``recv()`` waits for ever, as documented;
- ``close()``: ``close_timeout`` for writing our close frame and waiting for the
  server's close frame and for it to end TCP, together.

Writes: :meth:`SyncWebSocket._write` is the one path every byte takes. It
waits for the socket to be writable before the first byte goes; if the
deadline passes first, nothing was sent and the connection is intact. Once a
byte has left (with TLS: once OpenSSL was handed the data) the rest must
follow by the deadline, else the connection is aborted: the socket is closed
at once with a reset (``close_code`` 1006) and ``TimeoutError`` is raised. So
the peer never sees half a frame followed by anything else, and between calls
the wire never holds half a frame.

Pongs: the connection queues a pong for every ping; the client keeps one
owed pong, for the most recent ping (RFC 6455 §5.5.3 allows answering only
that one), and writes it whenever the socket is writable while it reads: a
peer that floods pings and never reads costs ``recv`` no time, and a pong that
cannot leave stays owed (whole) until it can.
"""

from __future__ import annotations

import math
import select
import socket
import ssl
import struct
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from enum import Enum
from time import monotonic as _now
from typing import Self, Unpack

from ._client_options import ClientOptions, prepare
from ._connection import ClientConnection
from ._errors import ConnectionClosed, LocalProtocolError, connection_closed
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
from ._handshake import HandshakeAccepted
from ._kernels import PinnedBuffer
from ._state import ConnectionState

__all__ = ["SyncWebSocket", "connect"]


_OPEN = ConnectionState.OPEN
_REPLYING = ConnectionState.REPLYING
_READ_SIZE = 65536
# TLS writes go in pieces of one record, so a retry after SSLWantWriteError
# repeats the same (small) buffer, as OpenSSL requires.
_TLS_CHUNK = 16384
_HAVE_POLL = hasattr(select, "poll")
# Where the platform has it, a plain socket is left blocking and made non-blocking per
# call (see SyncWebSocket.__init__).
_MSG_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_POLLOUT = select.POLLOUT if _HAVE_POLL else 0
_POLL_FAILED = (select.POLLERR | select.POLLHUP | select.POLLNVAL) if _HAVE_POLL else 0


_buffers = threading.local()


def _read_buffer() -> bytearray:
    """This thread's read buffer: reads are decoded in place and nothing in it is kept
    (messages are copied out), so the connections of a thread share one. Pinned for the
    native kernels while the thread lives."""
    try:
        buf: bytearray = _buffers.buf
    except AttributeError:
        _buffers.holder = holder = PinnedBuffer(_READ_SIZE)
        buf = _buffers.buf = holder.buf
    return buf


class _Default(Enum):
    """The default of a per-call ``timeout=``: the connection's ``write_timeout``."""

    WRITE_TIMEOUT = "write_timeout"


_WRITE_TIMEOUT = _Default.WRITE_TIMEOUT


class _Unsent(Exception):
    """A write's deadline passed before any byte of it left: the connection is intact."""


class _Broken(Exception):
    """The socket refused a write (reset, broken pipe): nothing more can be written."""


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else _now() + timeout


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _passed(deadline: float | None) -> bool:
    return deadline is not None and _now() >= deadline


class SyncWebSocket:
    """A blocking WebSocket client connection (use :func:`connect`).

    Not thread-safe: use it from one thread. Pings from the server are
    answered whenever the connection reads (inside :meth:`recv` and
    :meth:`close`); when several arrive before the answer can leave, only
    the most recent one is answered (RFC 6455 §5.5.3).

    Deadlines: no call blocks longer than its deadline (plus scheduling
    noise): ``send``/``send_fragments``/``ping`` the ``write_timeout`` of
    :func:`connect` or their own ``timeout=``; ``recv`` its ``timeout`` (None
    waits for a message forever), everything it writes on the way included;
    ``close`` the ``close_timeout``.

    A write that times out before any byte of it left raises ``TimeoutError``
    and leaves the connection open (except a data message when an extension
    such as permessage-deflate was negotiated: its compressor already counted
    the message, so the connection is aborted). A write that times out after
    part of it left would leave half a frame on the wire: the connection is
    aborted (socket closed at once, :attr:`closed` True, :attr:`close_code`
    1006) and ``TimeoutError`` is raised; later calls raise
    :class:`ConnectionClosed`.

    Attributes:
        subprotocol: the subprotocol the server chose, or None.
        response_headers: the headers of the 101 response.
        close_code: set once the connection is closed.
        close_reason: the reason that came with ``close_code``.
        pongs: the payloads of the pongs received, in order.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        accepted: HandshakeAccepted,
        close_timeout: float | None,
        write_timeout: float | None = 10.0,
    ) -> None:
        self._sock = sock
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._conn = conn
        self._messages: deque[Message] = deque()
        self._close_timeout = close_timeout
        self._write_timeout = write_timeout
        # A compressor with context takeover has counted a message once it is
        # encoded: such a message cannot be dropped unsent.
        self._stateful_encoder = bool(accepted.extensions)
        # Whole frames owed to the server (a pong, our closing frame), not one
        # byte of which has left yet.
        self._owed = b""
        # Set once our closing frame is out or owed: the server should end TCP
        # by then (§7.1.1).
        self._close_deadline: float | None = None
        self._read_wants_write = False  # TLS: a read must wait for writability
        # A write failed (the server reset the connection): what it sent before
        # may still be read, but nothing more is written.
        self._broken = False
        self.subprotocol = accepted.subprotocol
        self.response_headers = accepted.headers
        self.close_code: int | None = None
        self.close_reason = ""
        self.pongs: list[bytes] = []
        self._closed = False
        # A plain socket stays in blocking mode so that recv() without a deadline is one
        # blocking read (no poll first); every other operation passes MSG_DONTWAIT. TLS
        # sockets take no flags: non-blocking, with a poll before each read.
        self._dontwait = 0 if self._tls else _MSG_DONTWAIT
        sock.setblocking(self._dontwait != 0)
        # One poll object for the connection's life (its mask changed only when it must),
        # rather than one built and registered per wait.
        self._poller = select.poll() if _HAVE_POLL else None
        self._poll_mask = -1
        self._process()  # frames that arrived with the 101 response
        if self._owed:
            try:
                self._send_owed(_deadline(write_timeout), start_now=True)
            except TimeoutError:
                pass  # the connection was aborted; recv() says so

    # -- sending ---------------------------------------------------------------------

    def send(
        self, message: Message, *, timeout: float | None | _Default = _WRITE_TIMEOUT
    ) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        Args:
            timeout: seconds the write may take (default: the connection's
                ``write_timeout``; None waits forever).

        Raises:
            TimeoutError: the message could not be written in time. If none of
                it had left, the connection stays open (unless an extension is
                in use); otherwise it was aborted (:attr:`closed`, code 1006).
            ConnectionClosed: the connection is closed or closing.
        """
        # _deadline_of and _check_can_send, inlined: this is the per-message path.
        if timeout is _WRITE_TIMEOUT:
            timeout = self._write_timeout
        deadline = None if timeout is None else _now() + timeout
        conn = self._conn
        state = conn.state
        if self._closed or (state is not _OPEN and state is not _REPLYING):
            raise self._closed_error()
        self._send_frames(conn.send_message(message), deadline, "message", data_frames=True)

    def send_fragments(
        self,
        fragments: Sequence[Message],
        *,
        timeout: float | None | _Default = _WRITE_TIMEOUT,
    ) -> None:
        """Send one message as several frames (all ``str`` or all bytes).

        The fragments are encoded first and written together, under one
        deadline, with the same rules as :meth:`send`.
        """
        if not fragments:
            raise ValueError("no fragments")
        if len({isinstance(fragment, str) for fragment in fragments}) != 1:
            raise LocalProtocolError("fragments of one message must all be text or all binary")
        deadline = self._deadline_of(timeout)
        self._check_can_send()
        conn = self._conn
        last = len(fragments) - 1
        data = b"".join(
            conn.send_fragment(fragment, final=i == last) for i, fragment in enumerate(fragments)
        )
        self._send_frames(data, deadline, "message", data_frames=True)

    def ping(
        self, payload: bytes = b"", *, timeout: float | None | _Default = _WRITE_TIMEOUT
    ) -> None:
        """Send a ping; the pong's payload lands in :attr:`pongs` during ``recv``.

        ``timeout`` and the timeout rules are those of :meth:`send`; a ping
        that times out before any byte of it left keeps the connection open.
        """
        deadline = self._deadline_of(timeout)
        if self._closed or self._conn.state is not _OPEN:
            raise self._closed_error()
        self._send_frames(self._conn.send_ping(payload), deadline, "ping", data_frames=False)

    def _deadline_of(self, timeout: float | None | _Default) -> float | None:
        if isinstance(timeout, _Default):
            timeout = self._write_timeout
        return _deadline(timeout)

    def _check_can_send(self) -> None:
        state = self._conn.state
        if self._closed or (state is not _OPEN and state is not _REPLYING):
            raise self._closed_error()

    def _send_frames(
        self, data: bytes, deadline: float | None, what: str, *, data_frames: bool
    ) -> None:
        """Write ``data`` after the owed frames, which keep their place if nothing left."""
        owed = self._owed
        self._owed = b""
        try:
            self._write(owed + data if owed else data, deadline)
        except _Broken:
            self._lost()
            raise self._closed_error() from None
        except _Unsent:
            if data_frames and self._stateful_encoder:
                self._abort()
                raise TimeoutError(
                    f"{what} not written in time; an extension had already encoded it, "
                    "so the connection was aborted"
                ) from None
            self._owed = owed
            raise TimeoutError(
                f"{what} not written in time (none of it was sent; the connection is open)"
            ) from None

    def _write(self, data: bytes, deadline: float | None, *, start_now: bool = False) -> None:
        """Write all of ``data`` (whole frames) by ``deadline``: every write comes here.

        Before the first byte, wait until the socket is writable, until
        ``deadline`` (with ``start_now``: not at all). If it does not become
        writable, nothing was sent: raise :class:`_Unsent`, the connection is
        intact. Once a byte has left (with TLS, once OpenSSL took the data),
        the rest must follow by ``deadline``, else the connection is aborted
        and ``TimeoutError`` raised: half a frame is never left on the wire.

        Raises:
            _Unsent: nothing was written in time.
            TimeoutError: part was written, then time ran out; connection aborted.
            _Broken: the socket failed (the caller decides whether to read on).
        """
        if not self._tls:
            self._write_plain(data, deadline, start_now)
            return
        sock = self._sock
        total = len(data)
        chunk = _TLS_CHUNK
        view = memoryview(data)
        sent = 0
        started = False
        want_read = False  # TLS: the write waits for the socket to be readable
        limit = _now() if start_now else deadline
        while sent < total:
            # Always wait for writability first, even on a plain socket where a
            # refused send sends nothing: the kernel reports writable only with
            # ample room (Linux: a third of the send buffer free), so a small frame (a pong,
            # a close) goes whole, whereas a blind send into a nearly full buffer
            # takes what fits, half a frame. With TLS, a refused write may have
            # sent part of a record.
            readable, writable = self._poll(limit, want_read, not want_read)
            if not (readable or writable):
                break
            try:
                sent += sock.send(view[sent : sent + chunk], self._dontwait)
                started = True
            except (BlockingIOError, InterruptedError):
                pass  # a plain socket: nothing was sent
            except ssl.SSLWantWriteError:
                started = True  # OpenSSL may have written part of the record
                want_read = False
            except ssl.SSLWantReadError:
                started = True
                want_read = True
            except OSError:
                self._broken = True
                raise _Broken from None
            if started:
                limit = deadline  # bytes left: from now on, finish or abort
            if sent < total and _passed(limit):
                break
        else:
            return
        if started:
            self._abort()
            raise TimeoutError(
                "write timed out after part of a frame had been sent: connection aborted"
            )
        raise _Unsent

    def _write_plain(self, data: bytes, deadline: float | None, start_now: bool) -> None:
        """:meth:`_write` on a plain socket (no TLS), where a refused send sends nothing."""
        total = len(data)
        if not total:
            return
        sock = self._sock
        limit = _now() if start_now else deadline
        sent = 0
        # Always wait for writability first, even though a refused send sends nothing:
        # the kernel reports writable only with ample room (Linux: a third of the send
        # buffer free), so a small frame (a pong, a close) goes whole, whereas a blind
        # send into a nearly full buffer takes what fits, half a frame.
        while self._writable(limit):
            try:
                sent += sock.send(memoryview(data)[sent:] if sent else data, self._dontwait)
            except (BlockingIOError, InterruptedError):
                pass  # nothing was sent
            except OSError:
                self._broken = True
                raise _Broken from None
            else:
                if sent == total:
                    return
                limit = deadline  # bytes left: from now on, finish or abort
            if _passed(limit):
                break
        if sent:
            self._abort()
            raise TimeoutError(
                "write timed out after part of a frame had been sent: connection aborted"
            )
        raise _Unsent

    def _writable(self, deadline: float | None) -> bool:
        """:meth:`_poll` for writability alone (a failed socket counts: the send says)."""
        poller = self._poller
        if poller is None:
            return self._poll(deadline, False, True)[1]
        if self._poll_mask != _POLLOUT:
            poller.register(self._sock, _POLLOUT)  # registers or modifies
            self._poll_mask = _POLLOUT
        if deadline is None:
            return bool(poller.poll())
        timeout = deadline - _now()
        return bool(poller.poll(math.ceil(timeout * 1000) if timeout > 0 else 0))

    def _abort(self) -> None:
        """Close the socket at once, with a reset (the peer must not wait for the rest)."""
        if not self._closed:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self._lost()

    def _send_owed(self, deadline: float | None, *, start_now: bool) -> None:
        """Write the owed frames; if none of them can start in time, they stay owed.

        If the socket refuses the write, the owed frames are dropped and reading
        goes on: what the server sent before it went away can still be read.
        """
        owed = self._owed
        if not owed or self._closed or self._broken:
            return
        self._owed = b""
        try:
            self._write(owed, deadline, start_now=start_now)
        except _Unsent:
            self._owed = owed
            return
        except _Broken:
            return
        if self._conn.should_close_transport:
            self._lost()  # our close after a failure is out

    # -- receiving -------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Pongs (and our answer to the server's close) are written on the way,
        within the same deadline: a pong that cannot leave yet stays owed.

        Args:
            timeout: seconds the whole call may take; None waits forever for a
                message (its writes still take at most ``write_timeout`` each).

        Raises:
            TimeoutError: no message within ``timeout`` (the connection stays
                open), or a pong or close frame timed out half-written (the
                connection was aborted: :attr:`closed`, code 1006 unless the
                server's close had arrived).
            ConnectionClosed: the connection closed (``code``, ``reason``).
        """
        messages = self._messages
        if (
            timeout is None
            and not messages
            and self._dontwait
            and not self._owed
            and self._close_deadline is None
            and not self._closed
            and self._conn.state is _OPEN
        ):
            # The usual call (what the loop below does first in this state, inlined): one
            # blocking read, and the message it brings, if whole, straight back.
            message = self._read_one(True)
            if message is not None:
                return message
        deadline = _deadline(timeout)
        if not messages and not self._closed and self._conn.state is _REPLYING:
            # Every message that came before the server's close has been handed
            # out (and perhaps answered): now our close frame goes.
            self._queue_close_reply()
        while True:
            if messages:
                if self._owed:
                    self._send_owed(self._write_deadline(deadline), start_now=True)
                return messages.popleft()
            if self._close_deadline is not None and _passed(self._close_deadline):
                self._lost()  # the server did not end TCP after the closing handshake
            if self._closed:
                raise self._closed_error()
            limit = _earliest(deadline, self._close_deadline)
            owed = bool(self._owed) and not self._broken
            if limit is None and not owed and self._dontwait:
                self._read(block=True)  # nothing to wait for but the next bytes
                continue
            readable, writable = self._poll(limit, True, owed or self._read_wants_write)
            if writable and owed:
                self._send_owed(self._write_deadline(deadline), start_now=True)
            if (readable or (writable and self._read_wants_write)) and not self._closed:
                self._read()
            if not messages and _passed(deadline):
                raise TimeoutError("no message received in time")

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes normally.

        Each step is ``recv()``: it waits for the next message without a
        deadline (use ``recv(timeout=)`` for one); its writes are bounded by
        ``write_timeout``.
        """
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.ok:
                    return
                raise

    def _write_deadline(self, deadline: float | None) -> float | None:
        """A write inside a call with ``deadline``: bounded by both that and the write timeout."""
        return _earliest(deadline, _deadline(self._write_timeout))

    def _poll(self, deadline: float | None, read: bool, write: bool) -> tuple[bool, bool]:
        """Wait until the socket is readable (``read``) or writable (``write``).

        Returns (readable, writable), both False once ``deadline`` passed
        (None: no deadline; a deadline already passed polls without waiting).
        """
        sock = self._sock
        if read and isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True, False  # decrypted bytes already buffered
        timeout = None if deadline is None else max(0.0, deadline - _now())
        poller = self._poller
        if poller is not None:
            mask = (select.POLLIN if read else 0) | (select.POLLOUT if write else 0)
            if mask != self._poll_mask:
                poller.register(sock, mask)  # registers or modifies
                self._poll_mask = mask
            events = poller.poll(None if timeout is None else math.ceil(timeout * 1000))
            if not events:
                return False, False
            mask = events[0][1]
            failed = bool(mask & _POLL_FAILED)  # the next operation reports it
            return (
                read and (failed or bool(mask & select.POLLIN)),
                write and (failed or bool(mask & select.POLLOUT)),
            )
        readers, writers, _ = select.select([sock] if read else [], [sock] if write else [], [],
                                            timeout)
        return bool(readers), bool(writers)

    def _read(self, *, block: bool = False) -> None:
        """One read, its events processed: non-blocking, unless ``block`` (plain sockets)."""
        message = self._read_one(block)
        if message is not None:
            self._messages.append(message)

    def _read_one(self, block: bool) -> Message | None:
        """:meth:`_read`, but a read that was one whole message returns it (not queued);
        anything else returns None, its events processed."""
        self._read_wants_write = False
        buf = _read_buffer()
        try:
            n = self._sock.recv_into(buf, _READ_SIZE, 0 if block else self._dontwait)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return None
        except ssl.SSLWantWriteError:
            self._read_wants_write = True
            return None
        except OSError:
            n = 0
        conn = self._conn
        if n:
            message = conn.receive_one(buf, n)
            if message is not None:
                return message
        self._process(conn.receive_messages(buf, n))
        if not n:
            self._lost()
        return None

    def _process(self, events: Iterable[Event | str | bytes] | None = None) -> None:
        """The events given (``receive_messages``' raw messages among them), or those
        waiting in the connection; then whatever the connection has to send."""
        conn = self._conn
        ping: bytes | None = None
        for event in conn.events() if events is None else events:
            cls = type(event)
            if cls is str or cls is bytes:
                self._messages.append(event)  # type: ignore[arg-type]
            elif cls is TextMessage or cls is BinaryMessage:
                self._messages.append(event.data)  # type: ignore[union-attr]
            elif isinstance(event, Ping):
                ping = event.payload
            elif isinstance(event, Pong):
                self.pongs.append(event.payload)
            elif isinstance(event, (Close, ConnectionFailed)):
                if self.close_code is None:
                    self.close_code = event.code
                    self.close_reason = event.reason
            elif isinstance(event, ConnectionLost) and self.close_code is None:
                self.close_code = 1006
        state = conn.state
        if state is _OPEN:
            # While OPEN the connection's own output is one pong per ping.
            out = conn.data_to_send()
            if out:
                # §5.5.3: answering the most recent ping is enough; its pong
                # replaces any pong still owed.
                self._owed = conn.send_pong(ping) if ping is not None else self._owed + out
        elif state is _REPLYING:
            if not self._messages:
                self._queue_close_reply()
            # else the server's close (or a failure) came with messages: the
            # application may answer them first (Autobahn 7.1.1); recv() or
            # close() sends our close.
        else:
            self._owed += conn.data_to_send()

    def _queue_close_reply(self) -> None:
        """REPLYING: our closing frame (after any pongs still queued) is owed now."""
        self._owed += self._conn.data_to_send()
        self._close_deadline = _deadline(self._close_timeout)

    def _lost(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owed = b""
        if self.close_code is None:
            self.close_code = 1006
        self._sock.close()

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code if self.close_code is not None else 1006
        return connection_closed(code, self.close_reason)

    # -- closing ---------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake, then close; never takes longer than ``close_timeout``.

        Writing our close frame, waiting for the server's, and waiting for the
        server to close TCP (§7.1.1) share that one deadline. If the close
        frame cannot be written in time the connection is aborted (code
        1006); ``close`` does not raise for a timeout. Messages that arrive
        meanwhile are discarded.
        """
        if self._closed:
            return
        deadline = _deadline(self._close_timeout)
        conn = self._conn
        if conn.state is _REPLYING:
            self._queue_close_reply()  # the answer to the server's close
        elif conn.state is _OPEN:
            self._owed += conn.close(code, reason)
        try:
            if self._owed:
                owed, self._owed = self._owed, b""
                self._write(owed, deadline)
            # Wait for the server's close frame and for it to close TCP (§7.1.1).
            while not self._closed:
                readable, writable = self._poll(deadline, True, self._read_wants_write)
                if readable or writable:
                    self._read()
                if _passed(deadline):
                    break
        except (_Unsent, _Broken, TimeoutError):
            pass  # nothing of the close frame left, or the connection was aborted or lost
        if self.close_code is None and conn.close_received is None and conn.close_sent:
            self.close_code = 1006
        self._lost()

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` for a blocking handshake step."""
    if deadline is None:
        return None
    left = deadline - _now()
    if left <= 0:
        raise TimeoutError("opening handshake timed out")
    return left


def connect(
    url: str,
    *,
    timeout: float | None = 10.0,
    sock: socket.socket | None = None,
    write_timeout: float | None = 10.0,
    **options: Unpack[ClientOptions],
) -> SyncWebSocket:
    """Open a blocking WebSocket connection.

    Args:
        url: ``ws://host[:port]/path`` or ``wss://...``.
        timeout: the open timeout: TCP connect, TLS and the handshake together.
        sock: an already connected socket to use instead of connecting (the
            connection owns it from then on and makes it non-blocking).
        write_timeout: how long ``send``, ``send_fragments`` and ``ping`` may
            take to write (each call may pass its own ``timeout=``), and the
            bound of each pong or close reply written inside ``recv``. None
            waits forever. A write that times out after part of a frame left
            aborts the connection (code 1006) and raises ``TimeoutError``.
        **options: the handshake options of :class:`~rfc6455._client_options.ClientOptions`:
            ``close_timeout`` (the bound of ``close()``), ``extra_headers``,
            ``subprotocols``, ``origin``, ``compression``, ``extensions``,
            ``ssl_context``, ``server_hostname``, ``max_message_size``.

    Raises:
        HandshakeRejected: the server answered with an HTTP status (``status_code``).
        HandshakeError: the server's answer was not a valid handshake.
        TimeoutError: the connection did not open within ``timeout``.
        OSError: the TCP connection or TLS failed.

    Example::

        with connect("ws://127.0.0.1:8765/") as ws:
            ws.send("hello")
            print(ws.recv(timeout=5))
    """
    prepared = prepare(url, options)
    parsed = prepared.url
    deadline = _deadline(timeout)
    if sock is None:
        sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if prepared.ssl_context is not None:
            sock.settimeout(_remaining(deadline))
            sock = prepared.ssl_context.wrap_socket(
                sock, server_hostname=prepared.server_hostname
            )
        hs = prepared.handshake
        sock.settimeout(_remaining(deadline))
        sock.sendall(hs.request_bytes())
        while True:
            event = hs.next_event()
            if isinstance(event, HandshakeAccepted):
                break
            sock.settimeout(_remaining(deadline))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("opening handshake timed out") from None
            hs.receive_data(data)
        return SyncWebSocket(sock, hs.connection, event, prepared.close_timeout, write_timeout)
    except BaseException:
        sock.close()
        raise
