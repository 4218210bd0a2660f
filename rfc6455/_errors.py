"""The one exception tree of rfc6455.

Strategy: every error the library raises derives from :class:`WebSocketError`.
Errors caused by the peer (``RemoteProtocolError`` and its children) carry the
close code to send (or the HTTP status to answer during the handshake); errors
caused by the local program (``LocalProtocolError``) mean the caller misused
the API. After a remote error the connection is terminal.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosedError",
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
]


class WebSocketError(Exception):
    """Base class of every exception rfc6455 raises."""


class LocalProtocolError(WebSocketError):
    """The local program asked for something the protocol forbids.

    For example sending a data message after a close frame, or a close code
    that may not be sent on the wire.
    """


class ConnectionClosedError(LocalProtocolError):
    """An operation needed an open connection, but it is closing or closed."""


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
