"""Non-blocking socket transport (plain TCP or TLS) for :class:`~rfc6455._loop.Loop`.

Strategy:

* Reads go into the loop's one shared buffer (``recv_into``); the protocol gets
  ``bytes`` of exactly what was read. A connection owns no read buffer.
* Writes try ``send`` at once and buffer only what the kernel did not take, in
  a deque created on first need and dropped when empty. The writer callback is
  registered only while something is pending; it flushes with ``sendmsg`` so
  that many queued frames cost one system call.
* Water marks: above ``high_water`` buffered bytes the protocol gets
  ``pause_writing()``, back at or below ``low_water`` it gets ``resume_writing()``.
* ``close()`` stops reading, flushes, then closes; ``abort()`` drops the buffer
  and closes now. Either way ``connection_lost`` is called exactly once, on a
  later tick, after which the transport holds no socket, no selector key and
  no reference to the protocol.
* TLS: the socket is wrapped with ``do_handshake_on_connect=False`` and the
  handshake is driven by readiness events. OpenSSL requires a write that
  failed with ``SSLWantWriteError`` to be retried with the same bytes, so the
  TLS flush coalesces the head of the buffer into one chunk and keeps that
  chunk at the head until it is written. After each read the TLS object may
  still hold decrypted bytes the kernel knows nothing about (``pending()``);
  they are read before returning to ``select``.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._loop import Loop, TimerHandle

__all__ = ["Protocol", "Transport"]

#: Buffered bytes above which ``pause_writing`` is called (asyncio's default).
DEFAULT_HIGH_WATER = 64 * 1024
#: Buffered bytes at or below which ``resume_writing`` is called.
DEFAULT_LOW_WATER = 16 * 1024

#: Most buffers handed to one ``sendmsg`` call (Linux IOV_MAX is 1024).
_IOV_MAX = 1024
#: Most bytes coalesced into one TLS write (4 TLS records).
_TLS_CHUNK = 64 * 1024

_TRY_AGAIN = (BlockingIOError, InterruptedError)

# Transport states (module constants: cheaper than class attributes on the hot path).
_HANDSHAKING = 0
_OPEN = 1
_CLOSED = 2


class Protocol:
    """What a transport drives. Subclass and override what you need."""

    __slots__ = ()

    def connection_made(self, transport: Transport) -> None:
        """The connection is ready (after the TLS handshake, if any)."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived."""

    def buffer_received(self, buf: bytearray, nbytes: int) -> None:
        """``buf[:nbytes]`` arrived, in the loop's shared read buffer: use (or modify) it
        now, keep no reference. By default, ``data_received`` with a copy."""
        self.data_received(memoryview(buf)[:nbytes].tobytes())

    def receive_buffer(self) -> memoryview | None:
        """Where the next read should go instead of the loop's shared buffer, or None.

        Asked before each read while the transport's ``read_direct`` is true (a protocol
        sets it when it has such a buffer; the transport clears it on None). A protocol that returns a writable view (e.g. the rest of
        a large frame, in a buffer sized for it) gets :meth:`receive_filled` with the
        count read into it instead of :meth:`data_received`: no copy of the bytes.
        """
        return None

    def receive_filled(self, nbytes: int) -> None:
        """``nbytes`` (> 0) were read into the start of :meth:`receive_buffer`'s view."""

    def eof_received(self) -> bool:
        """The peer closed its side. Return True to keep writing (half-close)."""
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket is closed; ``exc`` is the error that closed it, if any."""

    def pause_writing(self) -> None:
        """The write buffer went above the high-water mark."""

    def resume_writing(self) -> None:
        """The write buffer drained to the low-water mark."""


class _Detached(Protocol):
    __slots__ = ()


_DETACHED = _Detached()


class Transport:
    """A non-blocking stream socket driven by a :class:`Loop`.

    Args:
        loop: the loop that owns the socket.
        sock: a connected stream socket; it is made non-blocking.
        protocol: receives the data and the state changes.
        ssl_context: wrap the socket in TLS with this context.
        server_side: TLS role.
        server_hostname: TLS SNI and certificate host name (client side).
    """

    __slots__ = (
        "_buffer",
        "_buffer_size",
        "_closing",
        "_direct",
        "_fd",
        "_linger",
        "_linger_timer",
        "_loop",
        "_protocol",
        "_reading",
        "_sock",
        "_state",
        "high_water",
        "low_water",
        "read_direct",
        "writing_paused",
    )


    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        protocol: Protocol,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_side: bool = True,
        server_hostname: str | None = None,
    ) -> None:
        sock.setblocking(False)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(
                sock,
                server_side=server_side,
                server_hostname=server_hostname,
                do_handshake_on_connect=False,
            )
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._buffer: deque[bytes | memoryview] | None = None
        self._buffer_size = 0
        self._closing = False
        self._linger = 0.0
        self._linger_timer: TimerHandle | None = None
        self._reading = False
        self._state = _HANDSHAKING if ssl_context is not None else _OPEN
        # The socket while a write may go straight to it (open, not closing, nothing
        # buffered), else None: write's one test on the per-message path.
        self._direct: socket.socket | None = sock if self._state == _OPEN else None
        #: Ask the protocol for a read buffer (:meth:`Protocol.receive_buffer`) first.
        self.read_direct = False
        #: True between ``pause_writing`` and ``resume_writing`` (read-only).
        self.writing_paused = False
        self.high_water = DEFAULT_HIGH_WATER
        self.low_water = DEFAULT_LOW_WATER

    def start(self) -> None:
        """Begin: run the TLS handshake if any, then ``connection_made`` and reading."""
        if self._state == _HANDSHAKING:
            self._loop.add_reader(self._fd, self._tls_handshake)
            self._tls_handshake()
            return
        self._protocol.connection_made(self)
        if not self._closing and self._state == _OPEN:
            self.resume_reading()

    # -- introspection -----------------------------------------------------------

    @property
    def socket(self) -> socket.socket:
        """The underlying socket (an :class:`ssl.SSLSocket` with TLS)."""
        return self._sock

    @property
    def is_tls(self) -> bool:
        """True if the transport speaks TLS."""
        return isinstance(self._sock, ssl.SSLSocket)

    @property
    def lingering(self) -> bool:
        """True while a ``close(linger=...)`` drains the peer's input."""
        return self._linger_timer is not None

    @property
    def is_closing(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the peer went away."""
        return self._closing or self._state == _CLOSED

    @property
    def write_buffer_size(self) -> int:
        """Bytes accepted by :meth:`write` and not yet taken by the kernel."""
        return self._buffer_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (low defaults to a quarter of high)."""
        if high is None:
            high = DEFAULT_HIGH_WATER
        if low is None:
            low = high // 4
        if not 0 <= low <= high:
            raise ValueError("need 0 <= low <= high")
        self.high_water = high
        self.low_water = low
        self._maybe_pause()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"``, ``"socket"``, ``"ssl_object"``, ``"cipher"``."""
        sock = self._sock
        try:
            if name == "peername":
                return sock.getpeername()
            if name == "sockname":
                return sock.getsockname()
        except OSError:
            return default
        if name == "socket":
            return sock
        if isinstance(sock, ssl.SSLSocket):
            if name == "ssl_object":
                return sock
            if name == "cipher":
                return sock.cipher()
        return default

    # -- reading ---------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading (flow control toward the peer: its kernel buffer fills)."""
        if self._reading and self._state != _CLOSED:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if not self._reading and not self._closing and self._state == _OPEN:
            self._reading = True
            sock = self._sock
            if isinstance(sock, ssl.SSLSocket):
                self._loop.add_reader(self._fd, self._on_read_tls)
                if sock.pending():
                    # decrypted bytes the kernel does not know about: no event will come
                    self._loop.call_soon(self._on_read_tls)
            else:
                self._loop.add_reader(self._fd, self._on_read)

    def _on_read(self) -> None:
        protocol = self._protocol
        if self.read_direct:
            target = protocol.receive_buffer()
            if target is not None:
                self._read_into(target)
                return
            self.read_direct = False
        buf = self._loop.read_buffer
        try:
            n = self._sock.recv_into(buf)
        except _TRY_AGAIN:
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if n:
            protocol.buffer_received(buf, n)
        else:
            self._on_eof()

    def _read_into(self, target: memoryview) -> None:
        """One read straight into the protocol's buffer (plain or TLS)."""
        try:
            with target:
                n = self._sock.recv_into(target)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, *_TRY_AGAIN):
            return
        except ssl.SSLZeroReturnError:
            n = 0
        except (ssl.SSLError, OSError) as exc:
            self._fatal(exc)
            return
        if n:
            self._protocol.receive_filled(n)
        else:
            self._on_eof()

    def _on_read_tls(self) -> None:
        if not self._reading:
            return
        loop = self._loop
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket)
        while True:
            if self.read_direct:
                target = self._protocol.receive_buffer()
                if target is not None:
                    self._read_into(target)
                    if self._reading and sock.pending():
                        continue
                    return
                self.read_direct = False
            try:
                n = sock.recv_into(loop.read_buffer)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, *_TRY_AGAIN):
                return
            except ssl.SSLZeroReturnError:
                n = 0
            except (ssl.SSLError, OSError) as exc:
                self._fatal(exc)
                return
            if not n:
                self._on_eof()
                return
            self._protocol.buffer_received(loop.read_buffer, n)
            if not self._reading or not sock.pending():
                return

    def _on_eof(self) -> None:
        self.pause_reading()
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    # -- writing ---------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Send ``data``: now if the kernel takes it, else buffered in order.

        Writes after :meth:`close` or :meth:`abort` are ignored.

        Returns:
            The bytes buffered after this write (:attr:`write_buffer_size`), so
            that a caller can enforce a limit without asking again.
        """
        sock = self._direct
        if sock is None:  # closing, closed, still in the TLS handshake or buffering
            return self._write_later(data)
        try:
            n = sock.send(data)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, *_TRY_AGAIN):
            n = 0
        except OSError as exc:
            self._fatal(exc)
            return 0
        if n == len(data):
            return 0
        if type(data) is not bytes and isinstance(data, bytearray):
            return self._buffer_rest(bytes(memoryview(data)[n:]))  # the caller may reuse it
        return self._buffer_rest(memoryview(data)[n:] if n else data)

    def _write_later(self, data: bytes | bytearray | memoryview) -> int:
        """``write`` when the socket may not be written now."""
        if self._closing or self._state == _CLOSED or not data:
            return self._buffer_size
        if type(data) is not bytes and isinstance(data, bytearray):
            data = bytes(data)  # the caller may reuse its buffer
        buffer = self._buffer
        if buffer is None:
            return self._buffer_rest(data)  # TLS handshake: written once it is done
        buffer.append(data)
        self._buffer_size += len(data)
        if self._buffer_size > self.high_water and not self.writing_paused:
            self._pause()
        return self._buffer_size

    def _buffer_rest(self, data: bytes | memoryview) -> int:
        """Start the write buffer with ``data`` (the kernel took none of it, or only its
        start): written when the socket is writable."""
        self._direct = None
        self._buffer = deque((data,))
        self._buffer_size = len(data)
        if self._state == _OPEN:
            self._loop.add_writer(self._fd, self._on_write)
        self._maybe_pause()
        return self._buffer_size

    def write_parts(self, head: bytes, body: bytes) -> int:
        """Send ``head`` then ``body`` (e.g. a frame header and its payload) without joining
        them: one ``sendmsg`` on a plain socket, two writes with TLS. Like :meth:`write`,
        returns the bytes buffered after it."""
        if not body:
            return self.write(head)
        if (
            self._buffer is not None
            or self._state != _OPEN
            or self._closing
            or isinstance(self._sock, ssl.SSLSocket)
        ):
            self.write(head)
            return self.write(body)
        try:
            n = self._sock.sendmsg((head, body))
        except _TRY_AGAIN:
            n = 0
        except OSError as exc:
            self._fatal(exc)
            return 0
        size = len(head)
        total = size + len(body)
        if n == total:
            return 0
        if n < size:
            rest: deque[bytes | memoryview] = deque((memoryview(head)[n:], body))
        else:
            rest = deque((memoryview(body)[n - size :],))
        self._direct = None
        self._buffer = rest
        self._buffer_size = total - n
        self._loop.add_writer(self._fd, self._on_write)
        self._maybe_pause()
        return self._buffer_size

    def writelines(self, chunks: list[bytes]) -> None:
        """Write several chunks; cheaper than joining them first."""
        for chunk in chunks:
            self.write(chunk)

    def _maybe_pause(self) -> None:
        if self._buffer_size > self.high_water and not self.writing_paused:
            self._pause()

    def _pause(self) -> None:
        self.writing_paused = True
        self._protocol.pause_writing()

    def _on_write(self) -> None:
        buffer = self._buffer
        if buffer is None:
            self._loop.remove_writer(self._fd)
            return
        sock = self._sock
        try:
            if isinstance(sock, ssl.SSLSocket):
                if len(buffer) > 1 and len(buffer[0]) < _TLS_CHUNK:
                    self._coalesce_head(buffer)
                n = sock.send(buffer[0])
            elif len(buffer) == 1:
                n = sock.send(buffer[0])
            else:
                n = sock.sendmsg(list(islice(buffer, _IOV_MAX)))
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, *_TRY_AGAIN):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self._buffer_size -= n
        while n:
            head = buffer[0]
            size = len(head)
            if size <= n:
                buffer.popleft()
                n -= size
            else:
                buffer[0] = memoryview(head)[n:]
                break
        if not buffer:
            self._buffer = None
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._loop.call_soon(self._finish, None)
            else:
                self._direct = sock
        if self.writing_paused and self._buffer_size <= self.low_water:
            self.writing_paused = False
            self._protocol.resume_writing()

    @staticmethod
    def _coalesce_head(buffer: deque[bytes | memoryview]) -> None:
        parts = []
        size = 0
        while buffer and size < _TLS_CHUNK:
            part = buffer.popleft()
            parts.append(part)
            size += len(part)
        buffer.appendleft(b"".join(parts))

    # -- TLS handshake -----------------------------------------------------------

    def _tls_handshake(self) -> None:
        sock = self._sock
        assert isinstance(sock, ssl.SSLSocket)
        loop = self._loop
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            loop.remove_writer(self._fd)
            return
        except ssl.SSLWantWriteError:
            loop.add_writer(self._fd, self._tls_handshake)
            return
        except (ssl.SSLError, OSError) as exc:
            self._fatal(exc)
            return
        loop.remove_writer(self._fd)
        loop.remove_reader(self._fd)
        self._state = _OPEN
        if self._buffer is not None:
            loop.add_writer(self._fd, self._on_write)
        elif not self._closing:
            self._direct = sock
        self._protocol.connection_made(self)
        if not self._closing and self._state == _OPEN:
            self.resume_reading()

    # -- closing -----------------------------------------------------------------

    def close(self, linger: float = 0.0) -> None:
        """Stop reading, flush what is buffered, then close the socket.

        Args:
            linger: if positive (plain TCP only), after the flush shut down the
                sending side and read and discard until the peer's EOF or for
                at most this many seconds before closing. Closing a socket
                with unread data makes the kernel send a reset, and a reset
                can destroy what the peer has not read yet, such as the close
                frame that explains why we are leaving.
        """
        if self._closing or self._state == _CLOSED:
            return
        self._closing = True
        self._direct = None
        self._linger = linger
        self.pause_reading()
        if self._state == _HANDSHAKING:
            self._buffer = None
            self._buffer_size = 0
            self._loop.call_soon(self._finish, None)
        elif self._buffer is None:
            self._loop.call_soon(self._finish, None)

    def _begin_linger(self) -> bool:
        """Half-close and start discarding input; False if that is not possible."""
        linger = self._linger
        self._linger = 0.0
        if self._state != _OPEN or isinstance(self._sock, ssl.SSLSocket):
            return False
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            return False
        self._loop.add_reader(self._fd, self._drain)
        self._linger_timer = self._loop.call_later(linger, self._finish, None)
        return True

    def _drain(self) -> None:
        try:
            data = self._sock.recv(65536)
        except _TRY_AGAIN:
            return
        except OSError:
            data = b""
        if not data:
            self._finish(None)

    def abort(self) -> None:
        """Close now, dropping whatever is buffered."""
        self._fatal(None)

    def _fatal(self, exc: BaseException | None) -> None:
        if self._state == _CLOSED:
            return
        if self._linger_timer is not None:
            self._finish(exc)  # abort() ends a linger at once
            return
        if self._closing and self._buffer is None:
            return  # _finish already scheduled
        self._closing = True
        self._direct = None
        self._buffer = None
        self._buffer_size = 0
        loop = self._loop
        loop.remove_reader(self._fd)
        loop.remove_writer(self._fd)
        self._reading = False
        loop.call_soon(self._finish, exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self._state == _CLOSED:
            return
        if self._linger > 0 and exc is None and self._begin_linger():
            return
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._state = _CLOSED
        self._direct = None
        loop = self._loop
        loop.remove_reader(self._fd)
        loop.remove_writer(self._fd)
        self._reading = False
        self._buffer = None
        self._buffer_size = 0
        try:
            self._sock.close()
        except OSError:  # pragma: no cover - close() only fails on EBADF
            pass
        protocol = self._protocol
        self._protocol = _DETACHED
        if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
            exc = ConnectionResetError(exc.errno, exc.strerror)
        protocol.connection_lost(exc)
