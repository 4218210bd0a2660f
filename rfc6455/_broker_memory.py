"""The in-process broker: topics, history, listeners and presence in this process.

Strategy: per topic, the epoch (random, 8 bytes hex), the newest offset, a ``deque``
of ``(loop time, publication)`` bounded by the topic's :class:`HistoryPolicy` (count
by ``maxlen``, age by popping the front: O(1) amortized per publish), the listeners
and the presence. Every result and every delivery goes through ``loop.call_soon``:
never inside the call, in the order the operations were made. Ages use the loop's
clock (monotonic, injectable); ``Publication.ts`` is wall time. Memory: a topic
without listeners and presence is *idle*; idle topics sit in an LRU ``OrderedDict``
and are forgotten ``topic_ttl`` after their last use or beyond ``max_idle_topics``;
topics with history sit, per ttl, in an ``OrderedDict`` by last publish, so that one
loop timer clears the histories that expired whole, front first. Loop thread only.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from itertools import islice

from ._broker_types import (
    DEFAULT_HISTORY_POLICY,
    Broker,
    BrokerError,
    Callback,
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    Listener,
    PolicyTable,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
    refuse_closed,
)
from ._loop import Loop, TimerHandle

__all__ = ["InProcessBroker"]

logger = logging.getLogger("rfc6455.broker")


class _Topic:
    """One topic of the in-process broker."""

    __slots__ = (
        "epoch",
        "history",
        "listeners",
        "name",
        "offset",
        "presence",
        "published",
        "touched",
        "ttl",
    )

    def __init__(self, name: str, policy: HistoryPolicy, now: float) -> None:
        self.name = name
        self.epoch = secrets.token_hex(8)
        self.offset = 0
        self.ttl = policy.ttl
        # (loop time of the publish, publication); maxlen trims by count in O(1).
        self.history: deque[tuple[float, Publication]] = deque(maxlen=policy.size)
        self.listeners: dict[Listener, None] = {}
        self.presence: dict[str, ClientInfo] = {}
        self.published = now
        self.touched = now

    def trim(self, now: float) -> None:
        """Drop the publications that are ``ttl`` seconds old or older."""
        ttl = self.ttl
        if ttl is not None:
            history = self.history
            while history and history[0][0] + ttl <= now:
                history.popleft()

    @property
    def active(self) -> bool:
        return bool(self.listeners or self.presence)


class InProcessBroker(Broker):
    """The default broker: everything in this process's memory.

    Use it from the loop thread only. Results and deliveries come on a later loop
    tick (``loop.call_soon``), never inside the call, in the order they were made.

    Args:
        loop: the loop that runs the callbacks and whose clock measures ages.
        policies: ``(pattern, policy)`` pairs; a topic takes the policy of the first
            pattern it matches (:func:`fnmatch.fnmatchcase`), else ``default_policy``.
        default_policy: the policy of a topic no pattern matches.
        topic_ttl: forget an idle topic (no listener, no presence) this many seconds
            after it was last used: 24 hours, so that a client that missed nothing
            can still recover after its history expired.
        max_idle_topics: beyond this many idle topics, forget the least recently
            used. Topics in use are bounded by what the app lets clients subscribe to.
        wall: the wall clock for :attr:`Publication.ts` (seconds since the epoch).
    """

    def __init__(
        self,
        loop: Loop,
        *,
        policies: Sequence[tuple[str, HistoryPolicy]] = (),
        default_policy: HistoryPolicy = DEFAULT_HISTORY_POLICY,
        topic_ttl: float = 24 * 3600.0,
        max_idle_topics: int = 10_000,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not topic_ttl > 0:
            raise ValueError("topic_ttl must be > 0")
        if max_idle_topics < 0:
            raise ValueError("max_idle_topics must be >= 0")
        self._loop = loop
        self._policies = PolicyTable(policies, default_policy)
        self._topic_ttl = topic_ttl
        self._max_idle = max_idle_topics
        self._wall = wall
        self._topics: dict[str, _Topic] = {}
        # Idle topics, least recently used first: forgotten from the front.
        self._idle: OrderedDict[str, None] = OrderedDict()
        # Topics with history, per ttl, least recently published first: their whole
        # history is expired once the front's newest publication is ttl old.
        self._aging: dict[float, OrderedDict[str, None]] = {}
        self._timer: TimerHandle | None = None
        self._closed = False

    # -- introspection (tests, metrics) ----------------------------------------------

    def stats(self) -> dict[str, int]:
        """Counts for tests and metrics: ``topics`` remembered, of which ``idle``, and
        ``publications`` kept in all histories (O(topics): not for every request)."""
        return {
            "topics": len(self._topics),
            "idle": len(self._idle),
            "publications": sum(len(t.history) for t in self._topics.values()),
        }

    def policy_for(self, topic: str) -> HistoryPolicy:
        """The history policy ``topic`` gets."""
        return self._policies.policy_for(topic)

    # -- the interface ---------------------------------------------------------------

    def publish(
        self, topic: str, payload_json: str, callback: Callback[Publication] | None = None
    ) -> None:
        if self._refuse(callback):
            return
        now = self._loop.time()
        t = self._topic(topic, now)
        t.offset += 1
        pub = Publication(topic, t.offset, t.epoch, payload_json, int(self._wall() * 1000))
        if t.history.maxlen:
            t.trim(now)
            t.history.append((now, pub))
            t.published = now
            if t.ttl is not None:
                bucket = self._aging.get(t.ttl)
                if bucket is None:
                    bucket = self._aging[t.ttl] = OrderedDict()
                bucket[topic] = None
                bucket.move_to_end(topic)
                self._arm(now + t.ttl)
        self._used(t, now)
        if t.listeners:
            self._loop.call_soon(self._deliver, t, tuple(t.listeners), pub)
        if callback is not None:
            self._loop.call_soon(callback, pub)

    def subscribe(
        self, topic: str, listener: Listener, callback: Callback[None] | None = None
    ) -> None:
        if self._refuse(callback):
            return
        now = self._loop.time()
        t = self._topic(topic, now)
        t.listeners[listener] = None
        self._used(t, now)
        if callback is not None:
            self._loop.call_soon(callback, None)

    def unsubscribe(self, topic: str, listener: Listener) -> None:
        t = self._topics.get(topic)
        if t is not None and listener in t.listeners:
            del t.listeners[listener]
            self._used(t, self._loop.time())

    def history(
        self,
        topic: str,
        since: Position | None,
        limit: int | None,
        callback: Callback[HistoryResult],
    ) -> None:
        if limit is not None and limit < 0:
            raise ValueError("limit must be >= 0 or None")
        if self._refuse(callback):
            return
        now = self._loop.time()
        t = self._topic(topic, now)
        t.trim(now)
        self._used(t, now)
        kept = len(t.history)
        newest = t.offset
        if since is None:
            wanted, recovered = kept, False
        else:
            # Every offset after since.offset is kept: it is at least the offset
            # before the oldest kept one, newest - kept.
            recovered = since.epoch == t.epoch and newest - kept <= since.offset <= newest
            wanted = newest - since.offset if recovered else 0
        n = wanted if limit is None else min(limit, wanted)
        # Since: the first n of the newest `wanted`; else the newest n. O(wanted), not O(kept).
        tail = [pub for _, pub in islice(reversed(t.history), wanted if since is not None else n)]
        tail.reverse()
        pubs = tuple(tail[:n])
        complete = n == wanted and (since is None or recovered)
        result = HistoryResult(topic, t.epoch, newest, pubs, recovered, complete)
        self._loop.call_soon(callback, result)

    def presence_join(
        self,
        topic: str,
        info: ClientInfo,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        if self._refuse(callback):
            return
        now = self._loop.time()
        t = self._topic(topic, now)
        joined = info.client not in t.presence
        t.presence[info.client] = info
        self._used(t, now)
        if joined and announce and t.listeners:
            change = PresenceChange(topic, "join", info)
            self._loop.call_soon(self._deliver, t, tuple(t.listeners), change)
        if callback is not None:
            self._loop.call_soon(callback, joined)

    def presence_leave(
        self,
        topic: str,
        client: str,
        callback: Callback[bool] | None = None,
        *,
        announce: bool = False,
    ) -> None:
        if self._refuse(callback):
            return
        t = self._topics.get(topic)
        info = t.presence.pop(client, None) if t is not None else None
        if t is not None:
            self._used(t, self._loop.time())
            if info is not None and announce and t.listeners:
                change = PresenceChange(topic, "leave", info)
                self._loop.call_soon(self._deliver, t, tuple(t.listeners), change)
        if callback is not None:
            self._loop.call_soon(callback, info is not None)

    def presence(self, topic: str, callback: Callback[PresenceResult]) -> None:
        if self._refuse(callback):
            return
        t = self._topics.get(topic)
        clients = tuple(t.presence.values()) if t is not None else ()
        self._loop.call_soon(callback, PresenceResult(topic, clients))

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for t in self._topics.values():
            t.listeners.clear()
        self._topics.clear()
        self._idle.clear()
        self._aging.clear()

    # -- bookkeeping -----------------------------------------------------------------

    def _refuse(self, callback: Callable[[BrokerError], None] | None) -> bool:
        if not self._closed:
            return False
        refuse_closed(self._loop.call_soon, callback)
        return True

    def _topic(self, name: str, now: float) -> _Topic:
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = _Topic(name, self.policy_for(name), now)
        return t

    def _used(self, t: _Topic, now: float) -> None:
        """``t`` was just used: move it to the back of the idle list, or off it."""
        t.touched = now
        idle = self._idle
        if t.active:
            idle.pop(t.name, None)
            return
        idle[t.name] = None
        idle.move_to_end(t.name)
        while len(idle) > self._max_idle:
            self._forget(idle.popitem(last=False)[0])
        self._arm(now + self._topic_ttl)

    def _forget(self, name: str) -> None:
        t = self._topics.pop(name)
        if t.ttl is not None:
            bucket = self._aging.get(t.ttl)
            if bucket is not None:
                bucket.pop(name, None)

    def _deliver(
        self, t: _Topic, listeners: tuple[Listener, ...], item: Publication | PresenceChange
    ) -> None:
        current = t.listeners
        for listener in listeners:
            if listener in current:  # not unsubscribed since the publish
                try:
                    listener(item)
                except Exception:
                    logger.exception("a listener of %r raised", item.topic)

    def _arm(self, when: float) -> None:
        """Make sure the sweep runs at ``when`` or earlier."""
        timer = self._timer
        if timer is not None:
            if timer.when <= when:
                return
            timer.cancel()
        self._timer = self._loop.call_at(when, self._sweep)

    def _sweep(self) -> None:
        """Drop expired histories and forget expired idle topics; rearm for the next."""
        self._timer = None
        now = self._loop.time()
        topics = self._topics
        earliest: float | None = None
        for ttl, bucket in self._aging.items():
            while bucket:
                name = next(iter(bucket))
                t = topics[name]
                if t.published + ttl > now:
                    earliest = _min(earliest, t.published + ttl)
                    break
                del bucket[name]
                t.history.clear()
        idle = self._idle
        while idle:
            name = next(iter(idle))
            expires = topics[name].touched + self._topic_ttl
            if expires > now:
                earliest = _min(earliest, expires)
                break
            del idle[name]
            self._forget(name)
        if earliest is not None:
            self._arm(earliest)


def _min(a: float | None, b: float) -> float:
    return b if a is None or b < a else a
