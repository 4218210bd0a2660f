"""The pub/sub broker: the interface the app talks to, the in-process broker, catch-up.

Strategy: :class:`Broker` is asynchronous by callback, because the Redis broker's
results come back later, from its I/O thread via ``call_soon_threadsafe``. Every
callback gets either its result or a :class:`BrokerError`, always on the loop thread
and **never inside the call that asked**: :class:`InProcessBroker` defers every
result and every delivery with ``loop.call_soon``, so the app runs the same code
paths on both brokers and is never re-entered from its own call (no "sometimes
synchronous" callbacks). A process subscribes one :data:`Listener` per topic and
fans out to its WebSocket subscribers itself. Offsets are consecutive per topic and
epoch; :class:`CatchUp` merges one history read with the live stream so that a
recovering subscriber gets each offset once, in order, or is told of the gap.

The types and the ABC are in ``_broker_types``, the in-process broker (memory
bounds, expiry) in ``_broker_memory``; this module is where to import them from.
docs/broker.md has the semantics and the Redis mapping.
"""

from __future__ import annotations

from collections.abc import Callable

from ._broker_memory import InProcessBroker
from ._broker_types import (
    DEFAULT_HISTORY_POLICY,
    Broker,
    BrokerError,
    Callback,
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    Listener,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
)

__all__ = [
    "DEFAULT_HISTORY_POLICY",
    "Broker",
    "BrokerError",
    "Callback",
    "CatchUp",
    "ClientInfo",
    "HistoryPolicy",
    "HistoryResult",
    "InProcessBroker",
    "Listener",
    "Position",
    "PresenceChange",
    "PresenceResult",
    "Publication",
]


class CatchUp:
    """Merge one history read with the live stream: each offset once, in order.

    For a subscription with recovery, the app (1) subscribes (or already is) and
    feeds :meth:`live` with every publication of the topic from then on, (2) once
    the subscription is active, reads ``history(topic, since, None)``, (3) sends the
    ack from the result and passes it to :meth:`history`. Results and publications
    may arrive in any order. ``emit`` gets, in order and once each: the history's
    publications after ``since`` if it ``recovered``, then the live ones after the
    newest read (the live stream starts after the result's ``offset`` when not
    recovered, or without ``since``). Live publications arriving before the history
    are buffered (at most ``max_pending``). A missing offset, another epoch, a
    :class:`BrokerError` from the broker, a history cut by ``limit`` or an overflow
    of the buffer is a gap: ``on_gap`` is called once with the reason and nothing is
    emitted after it (never a silent skip).

    Args:
        since: the client's position, or None for a plain subscription.
        emit: called with each publication to send.
        on_gap: called once when the stream cannot go on without a gap.
        max_pending: most live publications buffered before the history comes.
    """

    __slots__ = ("_emit", "_epoch", "_gap", "_max_pending", "_offset", "_on_gap", "_pending",
                 "_since", "recovered")

    def __init__(
        self,
        since: Position | None,
        emit: Callable[[Publication], None],
        on_gap: Callable[[str], None],
        *,
        max_pending: int = 10_000,
    ) -> None:
        self._since = since
        self._emit = emit
        self._on_gap = on_gap
        self._max_pending = max_pending
        self._pending: list[Publication] | None = []
        self._epoch = ""
        self._offset = 0
        self._gap: str | None = None
        #: Whether the history recovered ``since`` (None until it came).
        self.recovered: bool | None = None

    @property
    def position(self) -> Position | None:
        """The last offset emitted or skipped as already seen (None before the history)."""
        return None if self._pending is not None else Position(self._offset, self._epoch)

    @property
    def gap(self) -> str | None:
        """Why the stream stopped, or None while it goes on."""
        return self._gap

    def live(self, item: Publication | BrokerError) -> None:
        """A live publication (or a broker error): emit it, buffer it, or drop it."""
        if self._gap is not None:
            return
        if isinstance(item, BrokerError):
            self._fail(f"the broker lost publications: {item.message}")
        elif self._pending is None:
            self._accept(item)
        elif len(self._pending) >= self._max_pending:
            self._fail("too many live publications before the history came")
        else:
            self._pending.append(item)

    def history(self, result: HistoryResult) -> None:
        """The history read: emit the recovered part, then what was buffered."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("CatchUp.history() was already called")
        self._pending = None
        self._epoch = result.epoch
        self.recovered = self._since is not None and result.recovered
        if self._gap is not None:
            return
        if self._since is not None and result.recovered:
            self._offset = self._since.offset
            for pub in result.publications:
                self._accept(pub)
            if self._gap is None and self._offset < result.offset:
                self._fail(f"the history stopped at {self._offset} of {result.offset}")
        else:
            self._offset = result.offset
        for pub in pending:
            self._accept(pub)

    def _accept(self, pub: Publication) -> None:
        if self._gap is not None:
            return
        if pub.epoch != self._epoch:
            self._fail(f"the epoch changed from {self._epoch} to {pub.epoch}")
        elif pub.offset == self._offset + 1:
            self._offset = pub.offset
            self._emit(pub)
        elif pub.offset > self._offset:
            self._fail(f"offsets {self._offset + 1}..{pub.offset - 1} are missing")
        # else: at or before the position, already emitted or not wanted

    def _fail(self, reason: str) -> None:
        self._gap = reason
        self._pending = None if self._pending is None else []
        self._on_gap(reason)
