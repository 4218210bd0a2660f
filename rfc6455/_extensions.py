"""The extension interface (RFC 6455 §9) and the Sec-WebSocket-Extensions grammar.

Strategy: negotiation and runtime are split. A *factory* takes part in the
opening handshake (the client's offers, the server's choice); the handshake
turns an agreed offer into an :class:`Extension` object that the connection
calls for every data frame. Extensions claim RSV bits; the frame decoder
rejects any RSV bit that no negotiated extension claimed (§5.2).
"""

from __future__ import annotations

from typing import Protocol, Sequence

__all__ = [
    "Extension",
    "ExtensionParams",
    "ServerExtensionFactory",
    "ClientExtensionFactory",
]

#: Parameters of one extension offer, in order: (name, value or None).
ExtensionParams = list[tuple[str, "str | None"]]


class Extension:
    """A negotiated extension, as the connection uses it.

    Subclasses set :attr:`name` and :attr:`rsv_mask` and override
    :meth:`decode` and :meth:`encode`. Only data frames pass through an
    extension; control frames never do.
    """

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str = ""
    #: RSV bits (as in the first header byte: 0x40, 0x20, 0x10) this extension may set.
    rsv_mask: int = 0

    def decode(self, payload: bytes, *, rsv: int, fin: bool, max_size: int) -> bytes:
        """Transform the payload of one received data frame.

        Args:
            payload: this frame's payload, already unmasked.
            rsv: the RSV bits of the *first* frame of the message (0x70 mask).
            fin: True on the last frame of the message.
            max_size: the most bytes this call may return; produce more and
                raise :class:`~rfc6455.MessageTooBig` instead (a bound, not a
                hint: it protects against compression bombs).

        Raises:
            MessageTooBig: the decoded message would pass the limit.
            ExtensionError: the payload cannot be decoded.
        """
        return payload

    def encode(self, payload: bytes, *, first: bool, fin: bool) -> tuple[int, bytes]:
        """Transform the payload of one data frame to send.

        Returns the RSV bits to set on this frame and the payload to send.
        """
        return 0, payload


class ServerExtensionFactory(Protocol):
    """Server side of an extension's negotiation."""

    name: str

    def accept(self, params: ExtensionParams) -> tuple[str, Extension] | None:
        """Answer one client offer.

        Returns the ``Sec-WebSocket-Extensions`` response element (for example
        ``"permessage-deflate; server_no_context_takeover"``) and the
        extension object, or None to decline this offer (the server then
        tries the client's next offer).
        """
        ...


class ClientExtensionFactory(Protocol):
    """Client side of an extension's negotiation."""

    name: str

    def offer(self) -> str:
        """The ``Sec-WebSocket-Extensions`` element(s) to offer, e.g.
        ``"permessage-deflate; client_max_window_bits"``."""
        ...

    def accept_response(self, params: ExtensionParams) -> Extension:
        """Build the extension from the server's answer.

        Raises:
            HandshakeError: the server chose parameters this client did not allow.
        """
        ...


def rsv_mask_of(extensions: Sequence[Extension]) -> int:
    """The RSV bits claimed by ``extensions`` together."""
    mask = 0
    for extension in extensions:
        mask |= extension.rsv_mask
    return mask
