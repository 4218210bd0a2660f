"""What both pub/sub clients share: errors, publications, and the cursor rule.

Strategy: the loop client (:mod:`rfc6455.pubsub_client`) and the blocking one
(:mod:`rfc6455.pubsub_sync_client`) keep the same per-topic :class:`Cursor`, the
(epoch, offset) of the last publication delivered, and judge every ``message``
by it (:meth:`Cursor.check`): the next offset is delivered, an offset at or below
it is a duplicate, anything else is a gap to close by resubscribing with
``since``. A subscribe ack that did not recover moves the cursor
(:meth:`Cursor.on_ack`) and the application is told (:class:`ResyncNeeded`).
Import these names from :mod:`rfc6455.pubsub_client`.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ._errors import WebSocketError
from ._events import Message
from .envelope import SUBPROTOCOL

__all__ = [
    "DEFAULT_TIMEOUT",
    "Cursor",
    "Meta",
    "PubSubError",
    "Publication",
    "ResyncNeeded",
    "Verdict",
    "parse_server",
    "request_text",
    "with_token",
]

logger = logging.getLogger("rfc6455.pubsub_client")

#: The default deadline of a request, in seconds.
DEFAULT_TIMEOUT = 5.0


class PubSubError(WebSocketError):
    """The server answered a request with an ``error`` (docs/protocol.md, Errors).

    Attributes:
        code: the protocol's error code (``forbidden``, ``bad_envelope``, ...).
        message: the server's text.
        temporary: True if the same request may succeed later.
        data: the error's whole ``data`` (extra fields such as ``topic``).
    """

    def __init__(
        self, code: str, message: str, temporary: bool, data: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary
        self.data = dict(data or {})

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> PubSubError:
        """The exception for an ``error`` message's ``data``."""
        return cls(
            str(data.get("code", "internal")),
            str(data.get("message", "")),
            bool(data.get("temporary", False)),
            data,
        )


class ResyncNeeded(WebSocketError):
    """A topic's history no longer reaches back to the application's position.

    Publications were missed and cannot be replayed (history trimmed, or a new
    epoch): reload state, e.g. with ``history``. Delivery goes on after ``ack.offset``.

    Attributes:
        topic: the topic.
        ack: the subscribe ``ack`` data (``recovered: false``, the new ``offset``, ``epoch``).
    """

    def __init__(self, topic: str, ack: Mapping[str, Any]) -> None:
        super().__init__(f"{topic}: missed publications cannot be recovered")
        self.topic = topic
        self.ack = dict(ack)


@dataclass(frozen=True, slots=True)
class Meta:
    """Where a publication sits: its topic, offset and epoch, and the server's ``ts`` (ms)."""

    topic: str
    offset: int
    epoch: str
    ts: int | None


@dataclass(frozen=True, slots=True)
class Publication:
    """One publication as :meth:`SyncPubSubClient.recv` returns it."""

    topic: str
    payload: Any
    offset: int
    epoch: str
    ts: int | None

    @property
    def meta(self) -> Meta:
        """The publication without its payload."""
        return Meta(self.topic, self.offset, self.epoch, self.ts)


class Verdict(enum.Enum):
    """What to do with a ``message`` (see :meth:`Cursor.check`)."""

    DELIVER = "deliver"  #: the next offset: hand it to the application
    DUPLICATE = "duplicate"  #: already delivered: drop it
    GAP = "gap"  #: a hole or another epoch: drop it and resubscribe with ``since``


class Cursor:
    """The position of one subscription: the last offset delivered, in its epoch.

    Attributes:
        epoch: None until the first ``ack`` (or a position given by the application).
        offset: the last offset delivered (or, after an ``ack``, skipped past).
    """

    __slots__ = ("epoch", "offset")

    def __init__(self, epoch: str | None = None, offset: int = 0) -> None:
        self.epoch = epoch
        self.offset = offset

    def since(self) -> dict[str, Any] | None:
        """The ``since`` of a resubscription (None before the first ack)."""
        if self.epoch is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}

    def on_ack(self, ack: Mapping[str, Any]) -> bool:
        """Apply a ``subscribe`` ack; True if publications were lost (resync needed)."""
        epoch, offset = ack.get("epoch"), ack.get("offset")
        if not isinstance(epoch, str) or type(offset) is not int:
            raise PubSubError("bad_envelope", "subscribe ack without offset/epoch", False, ack)
        if self.epoch is None:
            self.epoch, self.offset = epoch, offset
            return False
        if ack.get("recovered") is True and epoch == self.epoch:
            return False  # the replay follows: offsets after self.offset
        self.epoch, self.offset = epoch, offset
        return True

    def check(self, epoch: Any, offset: Any) -> Verdict:
        """The verdict on a ``message``; advances the cursor on DELIVER."""
        if self.epoch is None or type(offset) is not int:
            return Verdict.DUPLICATE  # not subscribed yet: cannot be ours
        if epoch != self.epoch:
            return Verdict.GAP
        if offset <= self.offset:
            return Verdict.DUPLICATE
        if offset != self.offset + 1:
            return Verdict.GAP
        self.offset = offset
        return Verdict.DELIVER

    def __repr__(self) -> str:
        return f"Cursor({self.epoch!r}, {self.offset})"


def request_text(kind: str, data: Mapping[str, Any], rid: str | None) -> str:
    """A client envelope as JSON text."""
    obj: dict[str, Any] = {"v": 1, "type": kind}
    if rid is not None:
        obj["id"] = rid
    obj["data"] = dict(data)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def parse_server(text: Message) -> dict[str, Any] | None:
    """A server envelope, or None (logged) if it is not one."""
    try:
        obj = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        logger.warning("ignoring a message that is not JSON")
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        logger.warning("ignoring a message that is not an envelope")
        return None
    if not isinstance(obj.get("data"), dict):
        obj["data"] = {}
    return obj


class ServerMessageHandler(Protocol):
    """What both clients do with the server's messages (see :func:`dispatch`)."""

    def _message(self, data: dict[str, Any], ts: Any) -> None: ...

    def _answer(self, re: str, msg: dict[str, Any]) -> None: ...

    def _topic_error(self, topic: str | None, data: dict[str, Any]) -> None: ...


def dispatch(text: Message, client: ServerMessageHandler) -> None:
    """Route one server message, the same way for both clients: a ``message`` to
    ``_message``; an ``ack``/``error``/``pong`` that answers a request to ``_answer``;
    any other ``error`` (one that names a topic interrupts that subscription) to
    ``_topic_error``. Anything else is ignored."""
    msg = parse_server(text)
    if msg is None:
        return
    kind, data = msg["type"], msg["data"]
    if kind == "message":
        client._message(data, msg.get("ts"))
        return
    re = msg.get("re")
    if kind in ("ack", "error", "pong") and isinstance(re, str):
        client._answer(re, msg)
    elif kind == "error":
        topic = data.get("topic")
        client._topic_error(topic if isinstance(topic, str) else None, data)


def with_token(options: dict[str, Any], token: str | None) -> dict[str, Any]:
    """Connect options with the subprotocol offered and ``Authorization: Bearer token``."""
    options = dict(options)
    headers = list(options.pop("extra_headers", ()))
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    options["extra_headers"] = headers
    options.setdefault("subprotocols", [SUBPROTOCOL])
    return options
