"""Events: what the connection reports (bytes in) and what it accepts (events in).

Strategy: every event is a frozen, slotted dataclass with a keyword-only
constructor that validates its fields. The frame parser produces thousands of
events per millisecond, so it builds them through :func:`_fast` helpers that
set the slots directly and skip validation it has already done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Self, TypeVar

from ._constants import MAX_CONTROL_PAYLOAD

__all__ = [
    "NEED_DATA",
    "BinaryChunk",
    "BinaryMessage",
    "Close",
    "ConnectionFailed",
    "ConnectionLost",
    "Event",
    "Message",
    "NeedData",
    "Ping",
    "Pong",
    "TextChunk",
    "TextMessage",
]


class NeedData:
    """Sentinel type: the connection needs more bytes before the next event."""

    _instance: NeedData | None = None

    def __new__(cls) -> Self:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance  # type: ignore[return-value]

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


class Event:
    """Base class of connection events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage(Event):
    """A complete text message (opcode 0x1, RFC 6455 §5.6)."""

    data: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError("TextMessage.data must be str")


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryMessage(Event):
    """A complete binary message (opcode 0x2, RFC 6455 §5.6)."""

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise TypeError("BinaryMessage.data must be bytes-like")


@dataclass(frozen=True, slots=True, kw_only=True)
class TextChunk(Event):
    """Part of a text message, for streaming (received with ``stream_messages``).

    Received chunks always hold whole code points: a UTF-8 sequence split
    between frames is carried into the next chunk. ``final`` marks the last
    chunk of the message. Sending chunks fragments a message (§5.4).
    """

    data: str
    final: bool

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError("TextChunk.data must be str")


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryChunk(Event):
    """Part of a binary message, for streaming or for sending fragments."""

    data: bytes
    final: bool

    def __post_init__(self) -> None:
        if not isinstance(self.data, (bytes, bytearray, memoryview)):
            raise TypeError("BinaryChunk.data must be bytes-like")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Event):
    """A ping control frame (§5.5.2). The connection answers it by itself."""

    payload: bytes = b""

    def __post_init__(self) -> None:
        if len(self.payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(
                f"control frame payloads are at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 §5.5)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Event):
    """A pong control frame (§5.5.3)."""

    payload: bytes = b""

    def __post_init__(self) -> None:
        if len(self.payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(
                f"control frame payloads are at most {MAX_CONTROL_PAYLOAD} bytes (RFC 6455 §5.5)"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Close(Event):
    """A close frame (§5.5.1), received from the peer or to send.

    A received close frame without a status code is reported as code 1005
    (§7.1.5). When the peer starts the closing handshake the connection
    queues the answering close frame by itself.
    """

    code: int = 1000
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailed(Event):
    """We failed the connection because the peer broke the protocol (§7.1.7).

    A close frame with ``code`` and ``reason`` is queued in the connection's
    output; send it, then close the transport. ``reason`` is the public text
    sent to the peer.
    """

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost(Event):
    """The transport ended before the closing handshake completed (§7.1.5: 1006)."""

    code: int = 1006
    reason: str = ""


_E = TypeVar("_E", bound=Event)


def _fast1(cls: type[_E], field: str) -> Callable[[Any], _E]:
    """A constructor for a one-field event that skips validation (parser use only)."""
    setter = cls.__dict__[field].__set__
    new = object.__new__

    def make(value: Any) -> _E:
        event = new(cls)
        setter(event, value)
        return event

    return make


def _fast2(cls: type[_E], field1: str, field2: str) -> Callable[[Any, Any], _E]:
    """A constructor for a two-field event that skips validation (parser use only)."""
    setter1 = cls.__dict__[field1].__set__
    setter2 = cls.__dict__[field2].__set__
    new = object.__new__

    def make(value1: Any, value2: Any) -> _E:
        event = new(cls)
        setter1(event, value1)
        setter2(event, value2)
        return event

    return make


make_text = _fast1(TextMessage, "data")
make_binary = _fast1(BinaryMessage, "data")
make_text_chunk = _fast2(TextChunk, "data", "final")
make_binary_chunk = _fast2(BinaryChunk, "data", "final")


#: A whole data message as the I/O layers hand it out and take it: ``str`` is
#: text (opcode 0x1), ``bytes`` is binary (opcode 0x2).
Message = str | bytes
