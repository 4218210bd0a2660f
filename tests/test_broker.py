"""Tests for rfc6455.broker: the in-process broker (offsets, epochs, history bounds,
recovery, listeners, presence, memory bounds, callback timing) and CatchUp, the merge
of a history read with the live stream (hypothesis: every interleaving)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fakeclock import FakeClock, settle
from hypothesis import given
from hypothesis import strategies as st

from rfc6455._loop import Loop
from rfc6455.broker import (
    DEFAULT_HISTORY_POLICY,
    Broker,
    BrokerError,
    CatchUp,
    ClientInfo,
    HistoryPolicy,
    HistoryResult,
    InProcessBroker,
    Position,
    PresenceChange,
    PresenceResult,
    Publication,
)

WALL = 1_700_000_000.25


class Results:
    """A callback that records what it got."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.got.append(value)

    @property
    def one(self) -> Any:
        assert len(self.got) == 1, self.got
        return self.got[0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def loop(clock: FakeClock) -> Iterator[Loop]:
    lp = Loop(clock=clock)
    yield lp
    lp.close()


def make(loop: Loop, **kwargs: Any) -> InProcessBroker:
    kwargs.setdefault("wall", lambda: WALL)
    return InProcessBroker(loop, **kwargs)


@pytest.fixture
def broker(loop: Loop) -> Iterator[InProcessBroker]:
    b = make(loop)
    yield b
    b.close()


def publish(broker: Broker, loop: Loop, topic: str, payload: str = '"x"') -> Publication:
    got = Results()
    broker.publish(topic, payload, got)
    settle(loop)
    pub = got.one
    assert isinstance(pub, Publication)
    return pub


def history(
    broker: Broker, loop: Loop, topic: str, since: Position | None = None, limit: int | None = None
) -> HistoryResult:
    got = Results()
    broker.history(topic, since, limit, got)
    settle(loop)
    result = got.one
    assert isinstance(result, HistoryResult)
    return result


def offsets(result: HistoryResult) -> list[int]:
    return [p.offset for p in result.publications]


# -- offsets, epochs, callback timing ---------------------------------------------------


def test_offsets_are_consecutive_per_topic(broker: InProcessBroker, loop: Loop) -> None:
    a = [publish(broker, loop, "a", str(i)) for i in range(5)]
    b = [publish(broker, loop, "b") for _ in range(3)]
    assert [p.offset for p in a] == [1, 2, 3, 4, 5]
    assert [p.offset for p in b] == [1, 2, 3]
    assert [p.payload_json for p in a] == ["0", "1", "2", "3", "4"]
    assert a[0].topic == "a" and a[0].ts == int(WALL * 1000)


def test_epochs_are_distinct_per_topic_and_stable(broker: InProcessBroker, loop: Loop) -> None:
    epochs = {publish(broker, loop, f"t{i}").epoch for i in range(50)}
    assert len(epochs) == 50
    assert all(re.fullmatch(r"[0-9a-f]{16}", e) for e in epochs)
    first = publish(broker, loop, "t0")
    assert first.epoch in epochs
    assert history(broker, loop, "t0").epoch == first.epoch


def test_a_read_fixes_the_epoch_of_a_new_topic(broker: InProcessBroker, loop: Loop) -> None:
    empty = history(broker, loop, "new")
    assert (empty.offset, empty.publications, empty.recovered, empty.complete) == (0, (), False, True)
    assert publish(broker, loop, "new").epoch == empty.epoch
    # A client that subscribed to the empty topic recovers from (0, epoch).
    assert offsets(history(broker, loop, "new", Position(0, empty.epoch))) == [1]


def test_results_never_come_inside_the_call(broker: InProcessBroker, loop: Loop) -> None:
    """The documented timing: every callback on a later tick, in call order."""
    order: list[str] = []
    listener = Results()
    broker.subscribe("t", listener, lambda r: order.append(f"subscribed {r}"))
    broker.publish("t", "1", lambda r: order.append("published"))
    broker.history("t", None, None, lambda r: order.append("history"))
    broker.presence_join("t", ClientInfo("c1"), lambda r: order.append(f"joined {r}"))
    broker.presence("t", lambda r: order.append("presence"))
    broker.presence_leave("t", "c1", lambda r: order.append(f"left {r}"))
    assert order == [] and listener.got == []
    assert loop.run_once() > 0
    assert order == [
        "subscribed None",
        "published",
        "history",
        "joined True",
        "presence",
        "left True",
    ]
    assert [p.offset for p in listener.got] == [1]


def test_callbacks_are_optional(broker: InProcessBroker, loop: Loop) -> None:
    broker.publish("t", "1")
    broker.subscribe("t", Results())
    broker.presence_join("t", ClientInfo("c"))
    broker.presence_leave("t", "c")
    settle(loop)
    assert history(broker, loop, "t").offset == 1


def test_a_closed_broker_answers_with_errors(loop: Loop) -> None:
    broker = make(loop)
    listener = Results()
    broker.subscribe("t", listener)
    broker.publish("t", "1")  # its delivery is pending when the broker closes
    broker.close()
    got = Results()
    broker.publish("t", "2", got)
    broker.history("t", None, None, got)
    broker.subscribe("t", listener, got)
    broker.presence_join("t", ClientInfo("c"), got)
    broker.presence_leave("t", "c", got)
    broker.presence("t", got)
    broker.unsubscribe("t", listener)
    assert got.got == []
    settle(loop)
    assert len(got.got) == 6 and all(isinstance(e, BrokerError) for e in got.got)
    assert got.got[0].code == "unavailable"
    assert listener.got == []
    assert loop.timer_count == 0


# -- history bounds ---------------------------------------------------------------------


def test_default_policy() -> None:
    assert DEFAULT_HISTORY_POLICY == HistoryPolicy(size=100, ttl=300.0)
    with pytest.raises(ValueError):
        HistoryPolicy(size=-1)
    with pytest.raises(ValueError):
        HistoryPolicy(ttl=0)


def test_history_is_bounded_by_count(loop: Loop) -> None:
    broker = make(loop, default_policy=HistoryPolicy(size=3, ttl=None))
    for _ in range(5):
        publish(broker, loop, "t")
    whole = history(broker, loop, "t")
    assert (offsets(whole), whole.offset, whole.complete) == ([3, 4, 5], 5, True)
    newest = history(broker, loop, "t", limit=2)
    assert (offsets(newest), newest.complete) == ([4, 5], False)
    state = history(broker, loop, "t", limit=0)
    assert (offsets(state), state.offset, state.epoch) == ([], 5, whole.epoch)
    with pytest.raises(ValueError):
        broker.history("t", None, -1, Results())


def test_history_is_bounded_by_age(loop: Loop, clock: FakeClock) -> None:
    broker = make(loop, default_policy=HistoryPolicy(size=100, ttl=10.0))
    first = publish(broker, loop, "t")
    clock.advance(5)
    publish(broker, loop, "t")
    clock.advance(4.5)
    assert offsets(history(broker, loop, "t")) == [1, 2]
    clock.advance(0.5)  # the first is 10 s old: gone
    assert offsets(history(broker, loop, "t")) == [2]
    clock.advance(5)
    empty = history(broker, loop, "t")
    assert (offsets(empty), empty.offset, empty.epoch) == ([], 2, first.epoch)
    # The offsets go on in the same epoch.
    assert (publish(broker, loop, "t").offset, empty.epoch) == (3, first.epoch)


def test_size_zero_keeps_offsets_but_no_history(loop: Loop) -> None:
    broker = make(loop, default_policy=HistoryPolicy(size=0, ttl=None))
    epoch = publish(broker, loop, "t").epoch
    publish(broker, loop, "t")
    result = history(broker, loop, "t", Position(2, epoch))
    assert (result.offset, result.recovered, offsets(result)) == (2, True, [])
    assert not history(broker, loop, "t", Position(1, epoch)).recovered


def test_the_first_matching_pattern_chooses_the_policy(loop: Loop) -> None:
    chat = HistoryPolicy(size=2, ttl=60.0)
    none = HistoryPolicy(size=0, ttl=None)
    broker = make(
        loop,
        policies=[("chat:*", chat), ("chat:secret*", none), ("ticks.?", none)],
        default_policy=HistoryPolicy(size=5, ttl=None),
    )
    assert broker.policy_for("chat:room") == chat
    assert broker.policy_for("chat:secret") == chat  # the first match wins
    assert broker.policy_for("ticks.1") == none
    assert broker.policy_for("ticks.10") == broker.policy_for("Chat:x") == HistoryPolicy(5, None)
    for _ in range(4):
        publish(broker, loop, "chat:room")
        publish(broker, loop, "ticks.1")
        publish(broker, loop, "other")
    assert offsets(history(broker, loop, "chat:room")) == [3, 4]
    assert offsets(history(broker, loop, "ticks.1")) == []
    assert offsets(history(broker, loop, "other")) == [1, 2, 3, 4]


def test_expired_history_is_freed_without_reads(loop: Loop, clock: FakeClock) -> None:
    """A loop timer clears whole histories once their newest publication expired."""
    broker = make(
        loop,
        policies=[("short:*", HistoryPolicy(size=10, ttl=5.0))],
        default_policy=HistoryPolicy(size=10, ttl=20.0),
    )
    for i in range(3):
        publish(broker, loop, f"short:{i}")
        publish(broker, loop, f"long:{i}")
    assert broker.stats()["publications"] == 6
    start = clock()
    clock.advance_to(start + 4.75)
    publish(broker, loop, "short:0")  # keeps short:0 alive 4.75 s longer
    clock.advance_to(start + 5)
    settle(loop)
    assert broker.stats()["publications"] == 3 + 2
    clock.advance_to(start + 9.75)
    settle(loop)
    assert broker.stats()["publications"] == 3
    clock.advance_to(start + 19.75)
    settle(loop)
    assert broker.stats()["publications"] == 3
    clock.advance_to(start + 20)
    settle(loop)
    assert broker.stats()["publications"] == 0
    assert broker.stats()["topics"] == 6  # epochs and offsets stay (topic_ttl)


# -- recovery ---------------------------------------------------------------------------


@pytest.fixture
def five(loop: Loop) -> tuple[InProcessBroker, str]:
    """A topic with offsets 1..5 published and 3..5 kept."""
    broker = make(loop, default_policy=HistoryPolicy(size=3, ttl=None))
    for _ in range(5):
        epoch = publish(broker, loop, "t").epoch
    return broker, epoch


@pytest.mark.parametrize(
    ("since", "limit", "recovered", "complete", "expected"),
    [
        (2, None, True, True, [3, 4, 5]),  # the exact boundary: 3 is the oldest kept
        (3, None, True, True, [4, 5]),
        (4, None, True, True, [5]),
        (5, None, True, True, []),  # missed nothing
        (1, None, False, False, []),  # 2 is gone
        (0, None, False, False, []),
        (-1, None, False, False, []),
        (6, None, False, False, []),  # beyond the newest
        (2, 2, True, False, [3, 4]),  # paging forward
        (2, 0, True, False, []),
        (4, 1, True, True, [5]),
        (5, 0, True, True, []),
    ],
)
def test_recovery(
    five: tuple[InProcessBroker, str],
    loop: Loop,
    since: int,
    limit: int | None,
    recovered: bool,
    complete: bool,
    expected: list[int],
) -> None:
    broker, epoch = five
    result = history(broker, loop, "t", Position(since, epoch), limit)
    assert (result.recovered, result.complete, offsets(result)) == (recovered, complete, expected)
    assert (result.offset, result.epoch, result.topic) == (5, epoch, "t")


def test_recovery_needs_the_epoch(five: tuple[InProcessBroker, str], loop: Loop) -> None:
    broker, epoch = five
    result = history(broker, loop, "t", Position(4, "0" * 16))
    assert (result.recovered, result.complete, offsets(result), result.epoch) == (
        False,
        False,
        [],
        epoch,
    )


def test_missed_nothing_recovers_after_the_history_expired(
    loop: Loop, clock: FakeClock
) -> None:
    broker = make(loop, default_policy=HistoryPolicy(size=10, ttl=1.0))
    pub = publish(broker, loop, "t")
    clock.advance(100)
    settle(loop)
    assert history(broker, loop, "t", Position(1, pub.epoch)).recovered
    assert not history(broker, loop, "t", Position(0, pub.epoch)).recovered


# -- listeners --------------------------------------------------------------------------


def test_listeners_get_every_publication_in_order(broker: InProcessBroker, loop: Loop) -> None:
    one, two, other = Results(), Results(), Results()
    broker.subscribe("t", one)
    broker.subscribe("t", one)  # the same listener twice: one subscription
    broker.subscribe("t", two)
    broker.subscribe("u", other)
    for i in range(100):
        broker.publish("t", str(i))
        if i % 7 == 0:
            loop.run_once()
    broker.publish("u", "u")
    settle(loop)
    assert [p.offset for p in one.got] == list(range(1, 101))
    assert [p.payload_json for p in one.got] == [str(i) for i in range(100)]
    assert two.got == one.got
    assert [p.topic for p in other.got] == ["u"]


def test_unsubscribe_stops_even_what_is_on_its_way(broker: InProcessBroker, loop: Loop) -> None:
    listener, stays = Results(), Results()
    broker.subscribe("t", listener)
    broker.subscribe("t", stays)
    publish(broker, loop, "t")
    broker.publish("t", "2")
    broker.unsubscribe("t", listener)
    broker.unsubscribe("t", listener)  # twice: no error
    broker.unsubscribe("nope", listener)
    settle(loop)
    assert [p.offset for p in listener.got] == [1]
    assert [p.offset for p in stays.got] == [1, 2]


def test_a_listener_subscribed_after_a_publish_does_not_get_it(
    broker: InProcessBroker, loop: Loop
) -> None:
    late = Results()
    broker.publish("t", "1")
    broker.subscribe("t", late)
    broker.publish("t", "2")
    settle(loop)
    assert [p.offset for p in late.got] == [2]


def test_a_failing_listener_does_not_stop_the_others(
    broker: InProcessBroker, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(item: Publication | BrokerError) -> None:
        raise RuntimeError("boom")

    after = Results()
    broker.subscribe("t", boom)
    broker.subscribe("t", after)
    with caplog.at_level(logging.ERROR, logger="rfc6455.broker"):
        publish(broker, loop, "t")
    assert len(after.got) == 1
    assert "a listener of 't' raised" in caplog.text


# -- presence ---------------------------------------------------------------------------


def presence(broker: Broker, loop: Loop, topic: str) -> PresenceResult:
    got = Results()
    broker.presence(topic, got)
    settle(loop)
    result = got.one
    assert isinstance(result, PresenceResult)
    return result


def test_announced_presence_changes_go_to_the_listeners(
    broker: InProcessBroker, loop: Loop
) -> None:
    listener = Results()
    broker.subscribe("room", listener)
    alice = ClientInfo("c1", "alice")
    broker.presence_join("room", alice, announce=True)
    assert listener.got == []  # later, never inside the call
    broker.presence_join("room", alice, announce=True)  # a refresh: no change
    broker.presence_join("room", ClientInfo("c2"))  # not announced
    broker.presence_leave("room", "nobody", announce=True)  # not present
    broker.presence_leave("room", "c1", announce=True)
    settle(loop)
    assert listener.got == [
        PresenceChange("room", "join", alice), PresenceChange("room", "leave", alice)
    ]


def test_presence_join_leave_count(broker: InProcessBroker, loop: Loop) -> None:
    changed = Results()
    broker.presence_join("room", ClientInfo("c1", "alice"), changed)
    broker.presence_join("room", ClientInfo("c2", "alice"), changed)
    broker.presence_join("room", ClientInfo("c3"), changed)
    broker.presence_join("room", ClientInfo("c1", "alice"), changed)  # a refresh
    broker.presence_join("other", ClientInfo("c1", "alice"), changed)
    settle(loop)
    assert changed.got == [True, True, True, False, True]
    room = presence(broker, loop, "room")
    assert room.topic == "room"
    assert [c.client for c in room.clients] == ["c1", "c2", "c3"]
    assert (room.count, room.users) == (3, 1)
    changed.got.clear()
    broker.presence_leave("room", "c2", changed)
    broker.presence_leave("room", "c2", changed)
    broker.presence_leave("nowhere", "c2", changed)
    settle(loop)
    assert changed.got == [True, False, False]
    assert [c.client for c in presence(broker, loop, "room").clients] == ["c1", "c3"]
    assert presence(broker, loop, "nowhere").count == 0


# -- memory bounds ----------------------------------------------------------------------


def test_idle_topics_are_bounded(loop: Loop) -> None:
    broker = make(loop, max_idle_topics=100)
    kept = Results()
    broker.subscribe("busy", kept)
    busy = publish(broker, loop, "busy")
    broker.presence_join("present", ClientInfo("c"))
    first = publish(broker, loop, "t0")
    for i in range(1, 5000):
        broker.publish(f"t{i}", "1")
    settle(loop)
    stats = broker.stats()
    assert stats["idle"] == 100 and stats["topics"] == 102
    assert stats["publications"] <= 100 * 1 + 1
    # Topics in use stay; a forgotten one starts a new epoch at offset 1.
    assert publish(broker, loop, "busy") == Publication("busy", 2, busy.epoch, '"x"', busy.ts)
    assert presence(broker, loop, "present").count == 1
    again = publish(broker, loop, "t0")
    assert again.offset == 1 and again.epoch != first.epoch
    # The most recently used idle topics are the ones kept.
    assert history(broker, loop, "t4999").offset == 1


def test_idle_topics_expire(loop: Loop, clock: FakeClock) -> None:
    broker = make(loop, topic_ttl=60.0, default_policy=HistoryPolicy(size=10, ttl=None))
    listener = Results()
    broker.subscribe("subscribed", listener)
    epoch = publish(broker, loop, "subscribed").epoch
    publish(broker, loop, "idle")
    clock.advance(30)
    history(broker, loop, "read")  # a read counts as use
    clock.advance(30)
    settle(loop)
    assert broker.stats() == {"topics": 2, "idle": 1, "publications": 1}
    broker.unsubscribe("subscribed", listener)
    clock.advance(30)
    settle(loop)
    assert broker.stats()["topics"] == 1
    clock.advance(30)
    settle(loop)
    assert broker.stats()["topics"] == 0
    assert loop.timer_count == 0
    assert publish(broker, loop, "subscribed").epoch != epoch


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        InProcessBroker(Loop.__new__(Loop), topic_ttl=0)
    with pytest.raises(ValueError):
        InProcessBroker(Loop.__new__(Loop), max_idle_topics=-1)


# -- CatchUp ----------------------------------------------------------------------------

EPOCH = "e" * 16


def pubs(first: int, last: int, epoch: str = EPOCH) -> list[Publication]:
    return [Publication("t", o, epoch, str(o), 0) for o in range(first, last + 1)]


def result(
    newest: int,
    kept: list[Publication],
    recovered: bool,
    epoch: str = EPOCH,
) -> HistoryResult:
    return HistoryResult("t", epoch, newest, tuple(kept), recovered, recovered)


class Sink:
    def __init__(self, since: Position | None, **kwargs: Any) -> None:
        self.out: list[int] = []
        self.gaps: list[str] = []
        self.catchup = CatchUp(
            since, lambda p: self.out.append(p.offset), self.gaps.append, **kwargs
        )


@given(
    data=st.data(),
    total=st.integers(0, 25),
)
def test_catchup_every_interleaving(data: st.DataObject, total: int) -> None:
    """History k+1..s and live sub+1..total (sub <= s: the subscription was active
    before the read), in any order: each of k+1..total once, in order, no gap."""
    since = data.draw(st.integers(0, total), "since")
    newest = data.draw(st.integers(since, total), "newest")  # when history was read
    sub = data.draw(st.integers(0, newest), "sub")  # when the subscription took effect
    recovered = data.draw(st.booleans(), "recovered")
    live = pubs(sub + 1, total)
    at = data.draw(st.integers(0, len(live)), "history arrives after this many live")
    sink = Sink(Position(since, EPOCH))
    for pub in live[:at]:
        sink.catchup.live(pub)
    assert sink.out == []
    kept = pubs(since + 1, newest) if recovered else []
    sink.catchup.history(result(newest, kept, recovered))
    for pub in live[at:]:
        sink.catchup.live(pub)
    start = since if recovered else newest
    assert sink.out == list(range(start + 1, total + 1))
    assert sink.gaps == [] and sink.catchup.gap is None
    assert sink.catchup.recovered is recovered
    assert sink.catchup.position == Position(max(total, start), EPOCH)


@given(data=st.data(), total=st.integers(1, 25))
def test_catchup_reports_a_lost_publication_and_never_skips(
    data: st.DataObject, total: int
) -> None:
    since = data.draw(st.integers(0, total - 1), "since")
    newest = data.draw(st.integers(since, total), "newest")
    sub = data.draw(st.integers(0, newest), "sub")
    live = pubs(sub + 1, total)
    if not live:
        return
    lost = data.draw(st.sampled_from(live), "lost")
    live.remove(lost)
    at = data.draw(st.integers(0, len(live)), "at")
    sink = Sink(Position(since, EPOCH))
    for pub in live[:at]:
        sink.catchup.live(pub)
    sink.catchup.history(result(newest, pubs(since + 1, newest), True))
    for pub in live[at:]:
        sink.catchup.live(pub)
    if lost.offset <= newest:  # the history had it: no harm
        assert sink.out == list(range(since + 1, total + 1)) and sink.gaps == []
    elif lost.offset == total:  # nothing came after it: not detectable yet
        assert sink.out == list(range(since + 1, total)) and sink.gaps == []
    else:
        assert sink.out == list(range(since + 1, lost.offset))
        assert sink.gaps == [f"offsets {lost.offset}..{lost.offset} are missing"]
        assert sink.catchup.gap == sink.gaps[0]


def test_catchup_without_since_starts_after_the_read() -> None:
    sink = Sink(None)
    for pub in pubs(3, 6):
        sink.catchup.live(pub)
    sink.catchup.history(result(4, pubs(1, 4), False))  # a tail read: not replayed
    sink.catchup.live(pubs(7, 7)[0])
    assert sink.out == [5, 6, 7] and sink.catchup.recovered is False


def test_catchup_gaps() -> None:
    # The history stopped short (a limit).
    sink = Sink(Position(2, EPOCH))
    sink.catchup.history(result(9, pubs(3, 5), True))
    assert sink.out == [3, 4, 5] and sink.gaps == ["the history stopped at 5 of 9"]
    sink.catchup.live(pubs(6, 6)[0])
    assert sink.out == [3, 4, 5]
    # Another epoch in the live stream.
    sink = Sink(None)
    sink.catchup.history(result(2, [], False))
    sink.catchup.live(pubs(3, 3, "f" * 16)[0])
    assert sink.out == [] and sink.gaps[0].startswith("the epoch changed")
    # The broker lost publications: before the history, and after it.
    for before in (True, False):
        sink = Sink(None)
        if not before:
            sink.catchup.history(result(0, [], False))
        sink.catchup.live(BrokerError("redis reconnected"))
        sink.catchup.live(BrokerError("again"))
        if before:
            sink.catchup.history(result(0, [], False))
        sink.catchup.live(pubs(1, 1)[0])
        assert sink.out == []
        assert sink.gaps == ["the broker lost publications: redis reconnected"]
    # Too many live publications before the history.
    sink = Sink(None, max_pending=3)
    for pub in pubs(1, 5):
        sink.catchup.live(pub)
    sink.catchup.history(result(0, [], False))
    assert sink.out == [] and len(sink.gaps) == 1
    with pytest.raises(RuntimeError):
        sink.catchup.history(result(0, [], False))


def test_catchup_position() -> None:
    sink = Sink(Position(1, EPOCH))
    assert sink.catchup.position is None and sink.catchup.recovered is None
    sink.catchup.history(result(3, pubs(2, 3), True))
    assert sink.catchup.position == Position(3, EPOCH)


@given(st.lists(st.sampled_from(["publish", "tick"]), max_size=40), st.integers(0, 10), st.data())
def test_catchup_on_the_broker_while_publishes_race(
    ops: list[str], before: int, data: st.DataObject
) -> None:
    """The app's flow on the real broker: subscribe, then (once active) read history
    since k, with publishes and loop ticks in any order around it."""
    clock = FakeClock()
    loop = Loop(clock=clock)
    try:
        broker = make(loop, default_policy=HistoryPolicy(size=1000, ttl=None))
        for _ in range(before):
            broker.publish("t", "1")
        settle(loop)
        epoch = history(broker, loop, "t", limit=0).epoch
        since = data.draw(st.integers(0, before), "since")
        sink = Sink(Position(since, epoch))
        acks: list[HistoryResult] = []

        def on_history(r: HistoryResult | BrokerError) -> None:
            assert isinstance(r, HistoryResult)
            acks.append(r)
            sink.catchup.history(r)

        def on_subscribed(r: None | BrokerError) -> None:
            assert r is None
            broker.history("t", Position(since, epoch), None, on_history)

        broker.subscribe("t", sink.catchup.live, on_subscribed)
        for op in ops:
            if op == "publish":
                broker.publish("t", "1")
            else:
                loop.run_once()
        settle(loop)
        total = before + ops.count("publish")
        assert acks[0].recovered and sink.gaps == []
        assert sink.out == list(range(since + 1, total + 1))
        broker.close()
    finally:
        loop.close()
