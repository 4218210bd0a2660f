"""The extension interface (RFC 6455 §9) and the Sec-WebSocket-Extensions grammar.

Strategy: negotiation and runtime are split. A *factory* takes part in the
opening handshake (the client's offers, the server's choice); the handshake
turns an agreed offer into an :class:`Extension` object that the connection
calls for every data frame. Extensions claim RSV bits; the frame decoder
rejects any RSV bit that no negotiated extension claimed (§5.2).

The header grammar (§9.1) is parsed by a small hand-written scanner: one
pass over each header value, one position index, no regular expressions, so
its cost is linear and its error messages name the offending position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rfc6455._errors import HandshakeError, LocalProtocolError

__all__ = [
    "ClientExtensionFactory",
    "Extension",
    "ExtensionParams",
    "ServerExtensionFactory",
    "parse_extensions",
    "serialize_extension",
]

#: Parameters of one extension offer, in order: (name, value or None).
ExtensionParams = list[tuple[str, "str | None"]]


class Extension:
    """A negotiated extension, as the connection uses it.

    Subclasses set :attr:`name` and :attr:`rsv_mask` and override
    :meth:`decode` and :meth:`encode`. Only data frames pass through an
    extension; control frames never do.
    """

    __slots__ = ()

    #: The extension token, e.g. ``"permessage-deflate"``.
    name: str = ""
    #: RSV bits (as in the first header byte: 0x40, 0x20, 0x10) this extension may set.
    rsv_mask: int = 0

    def decode(self, payload: bytes, *, rsv: int, fin: bool, max_size: int) -> bytes:
        """Transform the payload of one received data frame.

        Called for every frame of a message whose first frame has one of
        :attr:`rsv_mask`'s bits set; other messages do not reach the extension.

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


# RFC 7230 §3.2.6: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
#                          "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"


def is_token(text: str) -> bool:
    """True if ``text`` is an RFC 7230 token (one or more tchar)."""
    return bool(text) and all(char in _TCHAR for char in text)


class _Scanner:
    """A cursor over one header value; every method skips trailing whitespace."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.skip_ows()

    def skip_ows(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _OWS:
            pos += 1
        self.pos = pos

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def error(self, what: str) -> HandshakeError:
        # The reason goes back to the peer in a 400 body: keep it one short line.
        text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        return HandshakeError(
            f"invalid Sec-WebSocket-Extensions header: {what} at position {self.pos} in {text!r}"
        )

    def token(self, what: str) -> str:
        text, start = self.text, self.pos
        pos = start
        while pos < len(text) and text[pos] in _TCHAR:
            pos += 1
        if pos == start:
            raise self.error(f"expected {what}")
        self.pos = pos
        self.skip_ows()
        return text[start:pos]

    def quoted_string(self) -> str:
        # RFC 7230 §3.2.6: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
        text = self.text
        pos = self.pos + 1
        chars: list[str] = []
        while True:
            if pos >= len(text):
                raise self.error("unterminated quoted-string")
            char = text[pos]
            if char == '"':
                break
            if char == "\\":
                pos += 1
                if pos >= len(text):
                    raise self.error("unterminated quoted-pair")
                char = text[pos]
            chars.append(char)
            pos += 1
        self.pos = pos + 1
        self.skip_ows()
        return "".join(chars)


def parse_extensions(values: Sequence[str]) -> list[tuple[str, ExtensionParams]]:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1).

    Each value may hold several comma-separated offers, and the header may be
    repeated; offers are returned in order. Empty list elements (``"a, , b"``)
    are ignored as RFC 7230 §7 asks, but a value with no element at all is
    malformed (the grammar is ``1#extension``). A parameter value may be a
    token or a quoted-string that, unescaped, is a token (§9.1, RFC 7692 §7.1).

    Args:
        values: the header values, one per header line.

    Returns:
        A list of ``(extension name, [(param name, value or None), ...])``.

    Raises:
        HandshakeError: (status 400) the header does not follow the grammar.
    """
    offers: list[tuple[str, ExtensionParams]] = []
    for value in values:
        scanner = _Scanner(value)
        elements = 0
        while True:
            # Ignore empty list elements: ``*( "," OWS )``.
            while scanner.peek() == ",":
                scanner.pos += 1
                scanner.skip_ows()
            if not scanner.peek():
                break
            name = scanner.token("an extension name")
            params: ExtensionParams = []
            while scanner.peek() == ";":
                scanner.pos += 1
                scanner.skip_ows()
                param = scanner.token("a parameter name")
                param_value: str | None = None
                if scanner.peek() == "=":
                    scanner.pos += 1
                    scanner.skip_ows()
                    if scanner.peek() == '"':
                        start = scanner.pos
                        param_value = scanner.quoted_string()
                        # §9.1: "the value after quoted-string unescaping MUST
                        # conform to the 'token' ABNF."
                        if not is_token(param_value):
                            scanner.pos = start
                            raise scanner.error("quoted parameter value is not a token")
                    else:
                        param_value = scanner.token("a parameter value")
                params.append((param, param_value))
            offers.append((name, params))
            elements += 1
            if scanner.peek() not in (",", ""):
                raise scanner.error("expected ',' or ';'")
        if elements == 0:
            raise scanner.error("no extension in header value")
    return offers


def serialize_extension(name: str, params: Sequence[tuple[str, str | None]] = ()) -> str:
    """Format one ``Sec-WebSocket-Extensions`` element (RFC 6455 §9.1).

    Values are written as bare tokens: the grammar allows nothing else after
    unquoting, so quoting would add bytes and no meaning.

    Raises:
        LocalProtocolError: a name or value is not a token.
    """
    if not is_token(name):
        raise LocalProtocolError(f"extension name {name!r} is not a token")
    parts = [name]
    for param, value in params:
        if not is_token(param):
            raise LocalProtocolError(f"extension parameter {param!r} is not a token")
        if value is None:
            parts.append(param)
        elif is_token(value):
            parts.append(f"{param}={value}")
        else:
            raise LocalProtocolError(f"extension parameter value {value!r} is not a token")
    return "; ".join(parts)
