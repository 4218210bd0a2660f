"""The blocking WebSocket client, for scripts and tests.

Strategy: it drives the sans-I/O :class:`~rfc6455.ClientHandshake` and
:class:`~rfc6455.ClientConnection` over a plain blocking socket
(``settimeout`` per call) and no thread: ``recv`` reads until a message is
complete, answering pings on the way, so it is as simple as it looks.
"""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator, Sequence
from time import monotonic as _now
from typing import Self, Unpack

from ._client_options import ClientOptions, prepare
from ._connection import ClientConnection
from ._errors import ConnectionClosed, connection_closed
from ._events import (
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Message,
    Pong,
    TextMessage,
)
from ._handshake import HandshakeAccepted
from ._state import ConnectionState

__all__ = ["SyncWebSocket", "connect"]


_REPLYING = ConnectionState.REPLYING


class SyncWebSocket:
    """A blocking WebSocket client connection (use :func:`connect`).

    Not thread-safe: use it from one thread. Pings from the server are
    answered whenever the connection reads (inside :meth:`recv`).

    Attributes:
        subprotocol: the subprotocol the server chose, or None.
        response_headers: the headers of the 101 response.
        close_code: set once the connection is closed.
        close_reason: the reason that came with ``close_code``.
    """

    def __init__(
        self,
        sock: socket.socket,
        conn: ClientConnection,
        accepted: HandshakeAccepted,
        close_timeout: float | None,
    ) -> None:
        self._sock = sock
        self._conn = conn
        self._messages: deque[Message] = deque()
        self._close_timeout = close_timeout
        self.subprotocol = accepted.subprotocol
        self.response_headers = accepted.headers
        self.close_code: int | None = None
        self.close_reason = ""
        self.pongs: list[bytes] = []
        self._closed = False
        self._process()  # frames that arrived with the 101 response

    # -- sending ---------------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (bytes-like) message.

        Raises:
            ConnectionClosed: the connection is closed or closing.
        """
        conn = self._conn
        if conn.state is not ConnectionState.OPEN and conn.state is not _REPLYING:
            raise self._closed_error()
        if isinstance(message, str):
            data = conn.send_text(message)
        else:
            data = conn.send_binary(message)
        self._sendall(data)

    def send_fragments(self, fragments: Sequence[Message]) -> None:
        """Send one message as several frames (all ``str`` or all bytes)."""
        if not fragments:
            raise ValueError("no fragments")
        conn = self._conn
        if conn.state is not ConnectionState.OPEN and conn.state is not _REPLYING:
            raise self._closed_error()
        last = len(fragments) - 1
        for i, fragment in enumerate(fragments):
            self._sendall(conn.send_fragment(fragment, final=i == last))

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping; the pong's payload lands in :attr:`pongs` during ``recv``."""
        if self._conn.state is not ConnectionState.OPEN:
            raise self._closed_error()
        self._sendall(self._conn.send_ping(payload))

    def _sendall(self, data: bytes) -> None:
        try:
            self._sock.settimeout(None)
            self._sock.sendall(data)
        except OSError:
            self._lost()
            raise self._closed_error() from None

    # -- receiving -------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: seconds to wait; None waits forever.

        Raises:
            TimeoutError: no message within ``timeout``.
            ConnectionClosed: the connection closed (``code``, ``reason``).
        """
        messages = self._messages
        if messages:
            return messages.popleft()
        if self._conn.state is _REPLYING:
            # Every message that came before the server's close has been handed
            # out (and perhaps answered): now our close frame goes.
            self._flush()
        deadline = None if timeout is None else _now() + timeout
        while True:
            if self._closed:
                raise self._closed_error()
            remaining = None if deadline is None else max(0.0, deadline - _now())
            if remaining == 0.0 and deadline is not None:
                raise TimeoutError("no message received in time")
            self._read(remaining)
            if messages:
                return messages.popleft()

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes normally."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed as exc:
                if exc.ok:
                    return
                raise

    def _read(self, timeout: float | None) -> None:
        sock = self._sock
        closing = self._conn.state is ConnectionState.CLOSED
        if closing and self._close_timeout is not None:
            # Closing handshake done: the server should close TCP now (§7.1.1);
            # do not wait for it longer than the close timeout.
            timeout = self._close_timeout if timeout is None else min(timeout, self._close_timeout)
        try:
            sock.settimeout(timeout)
            data = sock.recv(65536)
        except TimeoutError:
            if closing:
                self._lost()
                return
            raise TimeoutError("no message received in time") from None
        except OSError:
            data = b""
        self._conn.receive_data(data)
        self._process()
        if not data:
            self._lost()

    def _process(self) -> None:
        conn = self._conn
        for event in conn.events():
            cls = type(event)
            if cls is TextMessage or cls is BinaryMessage:
                self._messages.append(event.data)  # type: ignore[attr-defined]
            elif isinstance(event, Pong):
                self.pongs.append(event.payload)
            elif isinstance(event, (Close, ConnectionFailed)):
                if self.close_code is None:
                    self.close_code = event.code
                    self.close_reason = event.reason
            elif isinstance(event, ConnectionLost) and self.close_code is None:
                self.close_code = 1006
        if conn.state is _REPLYING and self._messages:
            # The server's close (or a failure) came with messages: the application
            # may answer them first (Autobahn 7.1.1); recv() or close() sends our close.
            return
        self._flush()

    def _flush(self) -> None:
        conn = self._conn
        out = conn.data_to_send()
        if out:
            try:
                self._sock.settimeout(self._close_timeout)
                self._sock.sendall(out)
            except OSError:
                pass
        if conn.state is ConnectionState.CLOSED and conn.should_close_transport:
            self._lost()

    def _lost(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.close_code is None:
            self.close_code = 1006
        self._sock.close()

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code if self.close_code is not None else 1006
        return connection_closed(code, self.close_reason)

    # -- closing ---------------------------------------------------------------------

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (bounded by the close timeout), then close.

        Messages that arrive meanwhile are discarded.
        """
        if self._closed:
            return
        conn = self._conn
        if conn.state is _REPLYING:
            self._flush()  # the answer to the server's close
        elif conn.state is ConnectionState.OPEN:
            try:
                self._sock.settimeout(self._close_timeout)
                self._sock.sendall(conn.close(code, reason))
            except OSError:
                self._lost()
                return
        deadline = None if self._close_timeout is None else _now() + self._close_timeout
        # Wait for the server's close frame and for it to close TCP (§7.1.1).
        while not self._closed:
            remaining = None if deadline is None else deadline - _now()
            if remaining is not None and remaining <= 0:
                break
            try:
                self._read(remaining)
            except TimeoutError:
                break
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


def connect(
    url: str,
    *,
    timeout: float | None = 10.0,
    sock: socket.socket | None = None,
    **options: Unpack[ClientOptions],
) -> SyncWebSocket:
    """Open a blocking WebSocket connection.

    Args:
        url: ``ws://host[:port]/path`` or ``wss://...``.
        timeout: the open timeout: TCP connect, TLS and the handshake together.
        sock: an already connected socket to use instead of connecting.
        **options: the handshake options of :class:`~rfc6455._client_options.ClientOptions`:
            ``close_timeout``, ``extra_headers``, ``subprotocols``, ``origin``,
            ``compression``, ``extensions``, ``ssl_context``, ``server_hostname``,
            ``max_message_size``.

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
    deadline = None if timeout is None else _now() + timeout
    if sock is None:
        sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if prepared.ssl_context is not None:
            sock.settimeout(timeout)
            sock = prepared.ssl_context.wrap_socket(
                sock, server_hostname=prepared.server_hostname
            )
        hs = prepared.handshake
        sock.settimeout(timeout)
        sock.sendall(hs.request_bytes())
        while True:
            event = hs.next_event()
            if isinstance(event, HandshakeAccepted):
                break
            remaining = None if deadline is None else deadline - _now()
            if remaining is not None and remaining <= 0:
                raise TimeoutError("opening handshake timed out")
            sock.settimeout(remaining)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError("opening handshake timed out") from None
            hs.receive_data(data)
        return SyncWebSocket(sock, hs.connection, event, prepared.close_timeout)
    except BaseException:
        sock.close()
        raise
