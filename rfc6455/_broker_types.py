"""The broker interface's types: results, policies, errors and the :class:`Broker` ABC.

Strategy: plain frozen dataclasses and one abstract class, no I/O, so that the app,
the in-process broker and the Redis broker share them without importing each other.
Public through :mod:`rfc6455.broker`, which documents the semantics.
"""

from __future__ import annotations

import fnmatch
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, TypeVar

from ._errors import WebSocketError

__all__ = [
    "DEFAULT_HISTORY_POLICY",
    "Broker",
    "BrokerError",
    "Callback",
    "ClientInfo",
    "HistoryPolicy",
    "HistoryResult",
    "Listener",
    "Position",
    "PresenceChange",
    "PresenceResult",
    "Publication",
]

_T = TypeVar("_T")


class BrokerError(WebSocketError):
    """The broker could not do what was asked (Redis down, broker closed, ...).

    Args:
        message: what went wrong (for logs; the app sends its own public text).
        code: the envelope error code the app should answer with.
    """

    def __init__(self, message: str, *, code: str = "unavailable") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


#: What an operation calls back with: its result, or the error that prevented it.
Callback: TypeAlias = Callable[[_T | BrokerError], None]


@dataclass(frozen=True, slots=True)
class Publication:
    """One message published on a topic.

    Attributes:
        topic: the topic.
        offset: its place in the topic: 1, 2, 3, ... within ``epoch``.
        epoch: the lifetime of the topic's history that ``offset`` belongs to.
        payload_json: the payload as JSON text, exactly as published (the app
            splices it into the wire message without decoding it).
        ts: when it was published, in milliseconds since the Unix epoch.
    """

    topic: str
    offset: int
    epoch: str
    payload_json: str
    ts: int


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A client joined (``kind`` "join") or left ("leave") a topic's presence, told to
    the topic's listeners (in every process sharing the broker) when the join or leave
    was made with ``announce=True``. Not ordered with the publications."""

    topic: str
    kind: str
    info: ClientInfo


#: What a :meth:`Broker.subscribe` listener receives: every publication of the topic,
#: in offset order; a :class:`BrokerError` means publications may have been lost
#: (the stream goes on after it: the app must re-sync, e.g. with :class:`CatchUp`);
#: a :class:`PresenceChange` announces a join or a leave.
Listener: TypeAlias = Callable[[Publication | PresenceChange | BrokerError], None]


class Position(NamedTuple):
    """A point in a topic's stream: the last offset seen, and its epoch."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much history a topic keeps.

    The defaults, 100 publications for 300 seconds, cover a reconnect after a
    network change or a short sleep at chat rates, and cap a topic at 100 payloads.

    Attributes:
        size: keep at most this many publications (0: none, recovery only works
            for a client that missed nothing).
        ttl: drop a publication once it is this many seconds old (None: by count only).
    """

    size: int = 100
    ttl: float | None = 300.0

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be >= 0")
        if self.ttl is not None and not self.ttl > 0:
            raise ValueError("ttl must be > 0 or None")


#: The policy of a topic that matches no pattern.
DEFAULT_HISTORY_POLICY = HistoryPolicy()


@dataclass(frozen=True, slots=True)
class HistoryResult:
    """What :meth:`Broker.history` read.

    Attributes:
        topic: the topic.
        epoch: the topic's epoch (a topic read for the first time gets one).
        offset: the newest offset at the time of the read (0: nothing published).
        publications: in offset order, consecutive.
        recovered: ``since`` was given, is in this epoch, is not beyond ``offset``,
            and every offset after it is still kept: ``publications`` start right
            after it. False: no publications are returned for a ``since``.
        complete: nothing of the requested range was left out by ``limit``: with
            ``since``, ``recovered`` and the publications run up to ``offset``;
            without, every kept publication is included.
    """

    topic: str
    epoch: str
    offset: int
    publications: tuple[Publication, ...]
    recovered: bool
    complete: bool


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """One client present on a topic: its connection id and its user, if any."""

    client: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class PresenceResult:
    """The clients present on a topic, in order of arrival."""

    topic: str
    clients: tuple[ClientInfo, ...]

    @property
    def count(self) -> int:
        """How many clients are present."""
        return len(self.clients)

    @property
    def users(self) -> int:
        """How many distinct users are present (clients without a user not counted)."""
        return len({c.user for c in self.clients if c.user is not None})


class Broker(ABC):
    """Where publications, history and presence live.

    Every method is called on the loop thread. A callback is called exactly once,
    on the loop thread, never before the method returned, with the result or a
    :class:`BrokerError`. Callers must not assume how much later: the in-process
    broker answers on the next loop tick, Redis after a round trip.
    """

    @abstractmethod
    def publish(
        self, topic: str, payload_json: str, callback: Callback[Publication] | None = None
    ) -> None:
        """Append a publication with the topic's next offset; deliver it to the listeners.

        ``payload_json`` is valid JSON text (the broker does not check it). The
        callback gets the :class:`Publication` (its offset and epoch for the ack).
        """

    @abstractmethod
    def subscribe(
        self, topic: str, listener: Listener, callback: Callback[None] | None = None
    ) -> None:
        """Deliver every publication of ``topic`` to ``listener`` from now on.

        The callback gets None once the subscription is active: every publication
        made after that reaches the listener (one made earlier may, too: the app
        drops it by offset). Subscribing the same listener twice is one subscription.
        """

    @abstractmethod
    def unsubscribe(self, topic: str, listener: Listener) -> None:
        """Stop delivering to ``listener`` at once (even what was already on its way)."""

    @abstractmethod
    def history(
        self,
        topic: str,
        since: Position | None,
        limit: int | None,
        callback: Callback[HistoryResult],
    ) -> None:
        """Read the topic's state and kept publications.

        With ``since``: the publications after it, oldest first (see
        :class:`HistoryResult` for ``recovered``). Without: the newest kept ones.
        ``limit`` caps how many (None: no cap; 0: only the epoch and offset).
        """

    @abstractmethod
    def presence_join(
        self,
        topic: str,
        info: ClientInfo,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        """Mark a client present; the callback gets True if it was not already.

        Joining again refreshes the entry (a Redis entry expires unless refreshed).
        With ``announce``, a join that was not a refresh is also told to the topic's
        listeners as a :class:`PresenceChange` (in every process).
        """

    @abstractmethod
    def presence_leave(
        self,
        topic: str,
        client: str,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        """Mark a client gone; the callback gets True if it was present. With
        ``announce``, a leave of a present client is told to the topic's listeners as
        a :class:`PresenceChange` (in every process)."""

    @abstractmethod
    def presence(self, topic: str, callback: Callback[PresenceResult]) -> None:
        """The clients present on ``topic``."""

    @abstractmethod
    def close(self) -> None:
        """Release everything; later calls get a :class:`BrokerError`, listeners nothing."""


class PolicyTable:
    """Which :class:`HistoryPolicy` a topic gets, for both brokers: the policy of the first
    ``(pattern, policy)`` pair whose pattern matches (:func:`fnmatch.fnmatchcase`), else
    ``default``."""

    __slots__ = ("default", "patterns")

    def __init__(
        self, policies: Sequence[tuple[str, HistoryPolicy]], default: HistoryPolicy
    ) -> None:
        self.patterns = [(re.compile(fnmatch.translate(p)), pol) for p, pol in policies]
        self.default = default

    def policy_for(self, topic: str) -> HistoryPolicy:
        """The history policy ``topic`` gets."""
        for pattern, policy in self.patterns:
            if pattern.match(topic):
                return policy
        return self.default


def refuse_closed(
    call_soon: Callable[..., object], callback: Callable[[BrokerError], None] | None
) -> None:
    """A closed broker's answer to a call: ``callback`` gets a :class:`BrokerError` on a
    later tick (``call_soon``), never inside the call."""
    if callback is not None:
        call_soon(callback, BrokerError("the broker is closed"))
