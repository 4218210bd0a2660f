"""Tests for rfc6455._loop: ordering, timers, wakeup, signals, no spinning."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time

import pytest
from fakeclock import EPS, FakeClock, settle

from rfc6455._loop import Loop


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def test_call_soon_runs_in_order(loop: Loop) -> None:
    seen: list[int] = []
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.run_until(lambda: len(seen) == 5, timeout=5)
    assert seen == [0, 1, 2, 3, 4]


def test_tick_runs_only_callbacks_ready_at_its_start(loop: Loop) -> None:
    ticks: list[int] = []

    def again(n: int) -> None:
        ticks.append(loop.ticks)
        if n:
            loop.call_soon(again, n - 1)

    loop.call_soon(again, 3)
    loop.run_until(lambda: len(ticks) == 4, timeout=5)
    # each rescheduled callback ran on a later tick, never in the same one
    assert ticks == sorted(set(ticks))
    assert len(set(ticks)) == 4


def test_self_rescheduling_callback_does_not_starve_io(loop: Loop) -> None:
    a, b = socket.socketpair()
    try:
        got: list[bytes] = []
        loop.add_reader(a.fileno(), lambda: got.append(a.recv(100)))
        stop = False

        def spin() -> None:
            if not stop:
                loop.call_soon(spin)

        loop.call_soon(spin)
        b.send(b"x")
        assert loop.run_until(lambda: bool(got), timeout=5)
        stop = True
        loop.remove_reader(a.fileno())
        assert got == [b"x"]
    finally:
        a.close()
        b.close()


def test_call_later_orders_by_time_and_cancel_drops(loop: Loop) -> None:
    seen: list[str] = []
    loop.call_later(0.06, seen.append, "c")
    loop.call_later(0.02, seen.append, "a")
    t = loop.call_later(0.03, seen.append, "x")
    loop.call_later(0.04, seen.append, "b")
    t.cancel()
    assert t.cancelled
    loop.run_until(lambda: len(seen) == 3, timeout=5)
    assert seen == ["a", "b", "c"]
    assert loop.timer_count == 0


def test_timer_fires_not_before_its_time(loop: Loop) -> None:
    fired: list[float] = []
    start = loop.time()
    loop.call_later(0.05, lambda: fired.append(loop.time()))
    loop.run_until(lambda: bool(fired), timeout=5)
    assert fired[0] - start >= 0.05


def test_cancelled_timers_do_not_leak(loop: Loop) -> None:
    handles = [loop.call_later(100 + i, lambda: None) for i in range(1000)]
    for h in handles[:900]:
        h.cancel()
    # the heap was rebuilt when cancelled entries passed half of it
    assert loop.heap_size <= 1000 - 500
    assert loop.timer_count == 100
    for h in handles[900:]:
        h.cancel()
    assert loop.timer_count == 0
    assert loop.heap_size <= 64 + 1
    # the surfaced cancelled entries are popped by a tick
    loop.call_soon(lambda: None)
    loop.run_until(lambda: loop.heap_size == 0, timeout=5)
    assert loop.heap_size == 0


def test_cancel_after_run_is_harmless(loop: Loop) -> None:
    seen: list[int] = []
    t = loop.call_later(0, seen.append, 1)
    loop.run_until(lambda: bool(seen), timeout=5)
    t.cancel()
    assert loop.timer_count == 0
    assert loop.heap_size == 0


def test_call_soon_threadsafe_wakes_a_blocked_loop(loop: Loop) -> None:
    seen: list[str] = []

    def other() -> None:
        time.sleep(0.1)
        loop.call_soon_threadsafe(seen.append, "hi")

    th = threading.Thread(target=other)
    th.start()
    # no timers: the loop blocks in select until the wakeup byte arrives
    loop.run_until(lambda: bool(seen), timeout=10)
    th.join()
    assert seen == ["hi"]


def test_stop_from_another_thread(loop: Loop) -> None:
    th = threading.Timer(0.1, loop.stop)
    th.start()
    loop.run_forever()  # returns: stop() woke the blocked select
    th.join()
    assert not loop.is_running


def test_idle_loop_does_not_spin(loop: Loop) -> None:
    done: list[bool] = []
    loop.call_later(0.3, done.append, True)
    before = loop.ticks
    loop.run_until(lambda: bool(done), timeout=5)
    # one tick to reach the timer (plus slack for early wakeups), not thousands
    assert loop.ticks - before <= 4


def test_reader_and_writer_callbacks(loop: Loop) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        writable: list[bool] = []
        loop.add_writer(a.fileno(), lambda: writable.append(True))
        loop.run_until(lambda: bool(writable), timeout=5)
        assert loop.remove_writer(a.fileno())
        assert not loop.remove_writer(a.fileno())
        got: list[bytes] = []
        loop.add_reader(a.fileno(), lambda: got.append(a.recv(10)))
        b.send(b"ping")
        loop.run_until(lambda: bool(got), timeout=5)
        assert got == [b"ping"]
        n = loop.fd_count
        assert loop.remove_reader(a.fileno())
        assert loop.fd_count == n - 1
    finally:
        a.close()
        b.close()


def test_exception_in_callback_is_logged_and_loop_goes_on(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    loop.call_soon(boom)
    loop.call_soon(seen.append, 1)
    with caplog.at_level(logging.ERROR, logger="rfc6455.loop"):
        loop.run_until(lambda: bool(seen), timeout=5)
    assert seen == [1]
    assert "boom" in caplog.text


def test_signal_handler_runs_on_the_loop(loop: Loop) -> None:
    seen: list[int] = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, 7)
    try:
        th = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
        th.start()
        loop.run_until(lambda: bool(seen), timeout=10)
        th.join()
        assert seen == [7]
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_run_until_times_out(loop: Loop) -> None:
    assert loop.run_until(lambda: False, timeout=0.05) is False
    assert loop.timer_count == 0


def test_heap_rebuilt_by_an_io_callback_runs_each_timer_once() -> None:
    """An I/O callback that cancels enough timers rebuilds the heap mid-tick; the
    tick must go on with the new heap (stale entries would run twice and make
    ``timer_count`` drift)."""
    loop = Loop(clock=FakeClock())
    ran: list[int] = []
    doomed = [loop.call_later(60, ran.append, -1) for _ in range(200)]
    due = [loop.call_later(0, ran.append, i) for i in range(3)]
    a, b = socket.socketpair()

    def on_readable() -> None:
        a.recv(1)
        for handle in doomed:
            handle.cancel()

    loop.add_reader(a.fileno(), on_readable)
    b.send(b"x")
    loop.run_until(lambda: len(ran) >= 3, timeout=5)
    settle(loop)
    assert sorted(ran) == [0, 1, 2]
    assert loop.timer_count == 0
    assert all(not h.cancelled for h in due)
    loop.remove_reader(a.fileno())
    a.close()
    b.close()
    loop.close()


# --- the injectable clock ------------------------------------------------------------


@pytest.fixture
def fake() -> FakeClock:
    return FakeClock()


@pytest.fixture
def floop(fake: FakeClock):
    lp = Loop(clock=fake)
    yield lp
    lp.close()


def test_now_and_time_follow_the_clock(fake: FakeClock, floop: Loop) -> None:
    assert floop.clock is fake
    assert floop.time() == floop.now == 1000.0
    fake.advance(5.0)
    assert floop.time() == 1005.0
    assert floop.now == 1000.0  # read once per tick, not on every access
    floop.run_once()
    assert floop.now == 1005.0
    fake.advance(0.5)
    floop.call_soon(lambda: None)
    floop.run_until(lambda: floop.now == 1005.5, timeout=5)


def test_call_later_and_call_at_are_on_the_clock(fake: FakeClock, floop: Loop) -> None:
    assert floop.call_later(10.0, lambda: None).when == 1010.0
    assert floop.call_at(1003.0, lambda: None).when == 1003.0
    fake.advance(2.0)
    assert floop.call_later(0.5, lambda: None).when == 1002.5


def test_timers_fire_exactly_when_the_clock_passes_them_in_order(
    fake: FakeClock, floop: Loop
) -> None:
    seen: list[tuple[str, float]] = []

    def fire(name: str) -> None:
        seen.append((name, floop.now))

    floop.call_later(3.0, fire, "c")
    floop.call_later(1.0, fire, "a")
    floop.call_at(1002.0, fire, "b")
    floop.call_later(10.0, fire, "late")
    settle(floop)
    assert seen == []
    fake.advance(1.0 - EPS)
    settle(floop)
    assert seen == []  # just before its time: not yet
    fake.advance(EPS)
    settle(floop)
    assert seen == [("a", 1001.0)]  # at its time exactly
    fake.advance(2.5)  # passes b and c at once: one tick, in time order
    assert floop.run_once() == 2
    assert seen[1:] == [("b", 1003.5), ("c", 1003.5)]
    assert floop.timer_count == 1
    fake.advance(1000.0)
    settle(floop)
    assert seen[-1] == ("late", 2003.5)
    assert floop.timer_count == 0


def test_a_timer_set_by_a_timer_waits_for_the_clock(fake: FakeClock, floop: Loop) -> None:
    seen: list[float] = []

    def periodic() -> None:
        seen.append(floop.now)
        floop.call_later(1.0, periodic)

    floop.call_later(1.0, periodic)
    for _ in range(3):
        fake.advance(1.0)
        settle(floop)
    assert seen == [1001.0, 1002.0, 1003.0]  # once per second of fake time, no catch-up loop
    fake.advance(10.0)
    settle(floop)
    assert seen == [1001.0, 1002.0, 1003.0, 1013.0]  # a jump fires it once, then it reschedules


def test_select_does_not_sleep_for_fake_time(fake: FakeClock, floop: Loop) -> None:
    fired: list[bool] = []
    floop.call_later(0.01, fired.append, True)  # 10 ms of fake time
    started = time.monotonic()
    ticks = floop.ticks
    # Sleeping 10 ms of real time would not make the timer due (the fake clock does
    # not move by itself), so the loop does not wake up for it every 10 ms: it waits
    # for I/O, here until the real bound of run_until.
    assert floop.run_until(lambda: bool(fired), timeout=0.2) is False
    assert floop.ticks - ticks <= 3
    assert time.monotonic() - started >= 0.15
    assert floop.run_once(0.0) == 0
    fake.advance(0.01)
    started = time.monotonic()
    assert floop.run_until(lambda: bool(fired), timeout=30)
    assert floop.ticks - ticks <= 5
    assert time.monotonic() - started < 5  # due: select did not wait


def test_io_wakes_a_loop_on_a_fake_clock(fake: FakeClock, floop: Loop) -> None:
    a, b = socket.socketpair()
    try:
        got: list[tuple[bytes, float]] = []
        floop.add_reader(a.fileno(), lambda: got.append((a.recv(10), floop.now)))
        floop.call_later(60.0, lambda: None)  # a fake-future timer must not delay I/O
        threading.Timer(0.05, b.send, (b"x",)).start()
        assert floop.run_until(lambda: bool(got), timeout=10)
        assert got == [(b"x", 1000.0)]  # real time passed, loop time did not
        floop.remove_reader(a.fileno())
    finally:
        a.close()
        b.close()


def test_advance_from_another_thread_via_call_soon_threadsafe(
    fake: FakeClock, floop: Loop
) -> None:
    fired: list[float] = []
    floop.call_later(30.0, lambda: fired.append(floop.now))
    th = threading.Timer(0.05, floop.call_soon_threadsafe, (fake.advance, 30.0))
    th.start()
    # blocked in select (the timer is fake-future): the wakeup byte ends the wait
    assert floop.run_until(lambda: bool(fired), timeout=10)
    th.join()
    assert fired == [1030.0]


def test_run_once_returns_what_it_ran(floop: Loop) -> None:
    assert floop.run_once() == 0
    floop.call_soon(lambda: None)
    floop.call_soon(lambda: None)
    assert floop.run_once() == 2
    assert floop.run_once() == 0


def test_run_once_waits_real_time_at_most_its_timeout(loop: Loop) -> None:
    started = time.monotonic()
    assert loop.run_once(0.05) == 0
    assert 0.04 <= time.monotonic() - started < 5


def test_a_closed_loop_does_not_run(floop: Loop) -> None:
    floop.close()
    with pytest.raises(RuntimeError):
        floop.run_once()
    with pytest.raises(RuntimeError):
        floop.run_forever()


def test_a_plain_callable_clock_is_taken_as_real_time() -> None:
    """Without ``virtual`` a clock is trusted to move by itself: the loop sleeps
    until the earliest timer, as with the default clock."""
    offset = 5000.0
    with Loop(clock=lambda: time.monotonic() + offset) as lp:
        assert lp.time() - time.monotonic() == pytest.approx(offset, abs=1.0)
        fired: list[bool] = []
        lp.call_later(0.05, fired.append, True)
        ticks = lp.ticks
        assert lp.run_until(lambda: bool(fired), timeout=5)
        assert lp.ticks - ticks <= 4  # slept towards the timer, did not spin


def test_fake_clock_only_goes_forward() -> None:
    with pytest.raises(ValueError):
        FakeClock(0.0)
    fake = FakeClock()
    with pytest.raises(ValueError):
        fake.advance(-1.0)
    fake.advance(0.0)
    assert fake() == 1000.0
