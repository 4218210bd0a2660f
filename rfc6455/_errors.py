"""The one exception tree of rfc6455.

Strategy: every error the library raises derives from :class:`WebSocketError`.
Errors caused by the peer (``RemoteProtocolError`` and its children) carry the
close code to send (or the HTTP status to answer during the handshake); errors
caused by the local program (``LocalProtocolError``) mean the caller misused
the API. After a remote error the connection is terminal.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ExtensionError",
    "HandshakeError",
    "HandshakeRejected",
    "InvalidUTF8",
    "LocalProtocolError",
    "MessageTooBig",
    "PolicyViolation",
    "ProtocolError",
    "RemoteProtocolError",
    "WebSocketError",
    "connection_closed",
]


class WebSocketError(Exception):
    """Base class of every exception rfc6455 raises."""


class LocalProtocolError(WebSocketError):
    """The local program asked for something the protocol forbids.

    For example sending a data message after a close frame, or a close code
    that may not be sent on the wire.
    """


class ConnectionClosed(WebSocketError):
    """An operation needed an open connection, but it is closing or closed.

    The same tree as websockets: catch ``ConnectionClosed`` for both, or one
    of its children, :class:`ConnectionClosedOK` (a normal closure) and
    :class:`ConnectionClosedError` (anything else). Raise it with
    :func:`connection_closed`, which picks the child from the code.

    Attributes:
        code: the peer's close code (1005 if its close frame had none), the
            code we failed the connection with after a protocol error, our own
            close code while our close frame waits for an answer, or 1006 if
            the TCP connection ended without a closing handshake.
        reason: the reason that came with ``code``.
    """

    def __init__(self, code: int = 1006, reason: str = "", message: str | None = None) -> None:
        super().__init__(message or f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason

    @property
    def ok(self) -> bool:
        """True for a normal closure: 1000, 1001, or a close frame without a code (1005)."""
        return self.code in _OK_CODES


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally (1000, 1001 or 1005)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code, or without a closing handshake (1006)."""


_OK_CODES = frozenset({1000, 1001, 1005})


def connection_closed(code: int, reason: str = "", message: str | None = None) -> ConnectionClosed:
    """The :class:`ConnectionClosed` child that ``code`` calls for."""
    cls = ConnectionClosedOK if code in _OK_CODES else ConnectionClosedError
    return cls(code, reason, message)


class RemoteProtocolError(WebSocketError):
    """The peer broke the protocol.

    Attributes:
        close_code: the close code to send the peer (RFC 6455 §7.4.1).
        reason: a short, public explanation, safe to put in a close frame.
    """

    default_close_code = 1002

    def __init__(self, reason: str, close_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = self.default_close_code if close_code is None else close_code


class ProtocolError(RemoteProtocolError):
    """Malformed frame or a broken framing rule: close 1002."""

    default_close_code = 1002


class InvalidUTF8(RemoteProtocolError):
    """Invalid UTF-8 in a text message or a close reason: close 1007."""

    default_close_code = 1007


class MessageTooBig(RemoteProtocolError):
    """A frame or message (after decompression) over the size limit: close 1009."""

    default_close_code = 1009


class PolicyViolation(RemoteProtocolError):
    """A policy of this endpoint was broken (rate limit, slow consumer): close 1008."""

    default_close_code = 1008


class ExtensionError(RemoteProtocolError):
    """An extension could not process a message (for example bad deflate data)."""

    default_close_code = 1002


class HandshakeError(RemoteProtocolError):
    """The opening handshake failed.

    Attributes:
        status_code: the HTTP status to answer with (server side), or the
            status received (client side, 0 if none).
        headers: extra response headers to send with the rejection.
    """

    default_close_code = 1002

    def __init__(
        self,
        reason: str,
        status_code: int = 400,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.headers = list(headers or [])


class HandshakeRejected(HandshakeError):
    """The server answered the upgrade request with something other than 101.

    Attributes:
        body: the body of the response, as far as it was received.
    """

    def __init__(
        self,
        reason: str,
        status_code: int,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(reason, status_code, headers)
        self.body = body
