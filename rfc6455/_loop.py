"""A single-threaded event loop on :mod:`selectors`.

Strategy: one thread owns the loop. A tick is

1. compute the select timeout: 0 if callbacks are ready, else the time to the
   earliest timer, else block forever (an idle loop uses no CPU);
2. ``select`` and call the reader/writer callbacks of the ready file
   descriptors directly (I/O callbacks are the hot path: no queueing);
3. read the clock once into ``loop.now`` and move the timers that are due
   into the ready queue;
4. run exactly the callbacks that were ready when step 4 began; whatever they
   schedule runs on the next tick, so a callback that reschedules itself can
   never starve I/O.

Other threads (and signal handlers) only append to a deque and write one byte
to a socketpair that the loop watches: ``deque.append`` is atomic, so there is
no lock. Cancelled timers stay in the heap until popped; when they are more
than half of it the heap is rebuilt so that churn cannot leak memory.

Time: one injectable clock, ``Loop(clock=...)`` (default
:func:`time.monotonic`), is the only source of loop time: ``loop.time()``,
``call_later``, when timers are due and ``loop.now``. ``loop.now`` is the
clock read once per tick, right after ``select`` returns: the server stamps
activity with it so that the per-message path never calls the clock.

Waiting is the one thing the clock cannot fake: ``select`` sleeps in real
time. With a real clock the loop sleeps until the earliest timer. A *virtual*
clock (one with a true ``virtual`` attribute, like the tests' ``FakeClock``)
moves only when it is told to, so sleeping cannot bring a timer closer and the
loop never sleeps for one: a due timer makes the select timeout 0, a timer in
the future does not count, and the loop waits only for I/O, for another thread
(``call_soon_threadsafe``, ``stop``) or for the real-time bound of
:meth:`Loop.run_once` / :meth:`Loop.run_until`. Those bounds are always real
seconds (:func:`time.monotonic`), whatever the clock: they limit how long a
call may block, they are not loop deadlines, and under a fake clock a test
that fails must fail, not hang. A test thus runs real socket I/O on a
``Loop(clock=fake)``, calls ``fake.advance(10.0)``, and runs a tick or a few
(``run_once()``, ``run_until(predicate, timeout=5)``) to see the deadline
fire exactly when the fake clock passes it.
"""

from __future__ import annotations

import heapq
import logging
import math
import select
import selectors
import signal
import socket
import threading
import weakref
from collections import deque
from collections.abc import Callable
from time import monotonic
from typing import Any, Self

from ._kernels import pin_buffer, unpin_buffer

__all__ = ["Handle", "Loop", "TimerHandle"]

logger = logging.getLogger("rfc6455.loop")

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE

#: Size of the read buffer shared by every transport of a loop. 256 KiB lets a
#: busy connection drain a full default socket receive buffer in one call,
#: while costing the process a single allocation however many peers it has.
READ_BUFFER_SIZE = 256 * 1024

#: Rebuild the timer heap only above this size: below it, popping the
#: cancelled entries as they surface is cheaper than rebuilding.
_MIN_HEAP_REBUILD = 64


class Handle:
    """A callback scheduled with :meth:`Loop.call_soon`; ``cancel()`` drops it."""

    __slots__ = ("_args", "_callback", "_cancelled")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self._callback = callback
        self._args = args
        self._cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (no effect once it ran)."""
        if not self._cancelled:
            self._cancelled = True
            self._callback = _noop
            self._args = ()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled

    def _run(self) -> None:
        self._callback(*self._args)


class TimerHandle(Handle):
    """A callback scheduled for a loop time; ``cancel()`` drops it."""

    __slots__ = ("_loop", "_scheduled", "when")

    def __init__(
        self,
        when: float,
        callback: Callable[..., object],
        args: tuple[Any, ...],
        loop: Loop,
    ) -> None:
        super().__init__(callback, args)
        self.when = when
        self._loop: Loop | None = loop
        self._scheduled = True

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when

    def cancel(self) -> None:
        """Do not run the callback; the heap entry is reclaimed lazily."""
        if not self._cancelled:
            super().cancel()
            loop = self._loop
            self._loop = None
            if loop is not None and self._scheduled:
                loop._timer_cancelled()


def _noop(*args: object) -> None:
    pass


class _FdCallbacks:
    """What the selector stores for one file descriptor (with epoll: also its mask)."""

    __slots__ = ("events", "reader", "writer")

    def __init__(self) -> None:
        self.reader: Callable[[], object] | None = None
        self.writer: Callable[[], object] | None = None
        self.events = 0


# With epoll (Linux) the loop polls it directly: one dict lookup per ready descriptor,
# where selectors builds a key tuple and a result list. Readers run on input and on
# error or hangup, writers on output and on error or hangup, as with selectors.
_HAVE_EPOLL = hasattr(select, "epoll")
_EP_IN = getattr(select, "EPOLLIN", 0)
_EP_OUT = getattr(select, "EPOLLOUT", 0)
_EP_READ = ~_EP_OUT  # anything but "writable" wakes the reader
_EP_WRITE = ~_EP_IN  # anything but "readable" wakes the writer


class Loop:
    """A selectors event loop: readers, writers, timers, signals, thread wakeup.

    Not thread-safe except for :meth:`call_soon_threadsafe` and :meth:`stop`.

    Args:
        clock: the loop's time source, seconds as a float that never goes
            back; every timer, :meth:`time` and :attr:`now` read it.
            :func:`time.monotonic` by default. A clock object with a true
            ``virtual`` attribute only moves when told to (a fake clock for
            tests): the loop then never sleeps waiting for a timer, since
            sleeping cannot make one due; it runs the timers the clock has
            passed on the next tick. Advance such a clock from the loop's
            thread (between ``run_*`` calls or in a callback), or from another
            thread with ``loop.call_soon_threadsafe(clock.advance, dt)`` so
            that a blocked loop wakes up. Whatever the clock, the ``timeout``
            of :meth:`run_once` and :meth:`run_until` is real time.

    Attributes:
        now: the clock as read once per tick, right after ``select`` returns
            (what the I/O callbacks and timers of that tick should use).
    """

    def __init__(self, *, clock: Callable[[], float] = monotonic) -> None:
        self._clock = clock
        self._virtual = bool(getattr(clock, "virtual", False))
        # epoll and the callbacks per descriptor, or (elsewhere) a selectors selector.
        self._epoll = select.epoll() if _HAVE_EPOLL else None
        self._fds: dict[int, _FdCallbacks] = {}
        self._selector = None if _HAVE_EPOLL else selectors.DefaultSelector()
        self._ready: deque[Handle] = deque()
        self._timers: list[TimerHandle] = []
        self._cancelled_timers = 0
        self._running = False
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._signal_handlers: dict[int, Handle] = {}
        self._old_wakeup_fd: int | None = None
        self.now = clock()
        #: Number of completed ticks (for tests and diagnostics).
        self.ticks = 0
        #: Read buffer shared by the transports of this loop (see READ_BUFFER_SIZE).
        self.read_buffer = bytearray(READ_BUFFER_SIZE)
        self.read_view = memoryview(self.read_buffer)
        # Every read lands here: let the native kernels keep its address (one ffi call
        # less per read), until close() or until the loop is collected.
        pin_buffer(self.read_buffer)
        self._unpin = weakref.finalize(self, unpin_buffer, self.read_buffer)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.add_reader(self._wake_r.fileno(), self._drain_wakeup)

    # -- time ---------------------------------------------------------------

    def time(self) -> float:
        """The loop's clock, read now (:func:`time.monotonic` unless injected)."""
        return self._clock()

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the loop was created with."""
        return self._clock

    # -- callbacks and timers -----------------------------------------------

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` on the next tick."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Like :meth:`call_soon`, callable from any thread; wakes the loop."""
        handle = Handle(callback, args)
        self._ready.append(handle)
        self._wakeup()
        return handle

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` once the clock reads ``delay`` seconds more than now."""
        return self.call_at(self._clock() + delay, callback, *args)

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` on the first tick whose :attr:`now` is at least ``when``."""
        timer = TimerHandle(when, callback, args, self)
        heapq.heappush(self._timers, timer)
        return timer

    @property
    def timer_count(self) -> int:
        """Live (not cancelled) scheduled timers."""
        return len(self._timers) - self._cancelled_timers

    @property
    def heap_size(self) -> int:
        """Entries in the timer heap, cancelled ones included."""
        return len(self._timers)

    def _timer_cancelled(self) -> None:
        self._cancelled_timers += 1
        timers = self._timers
        if len(timers) > _MIN_HEAP_REBUILD and self._cancelled_timers * 2 > len(timers):
            live = [t for t in timers if not t._cancelled]
            for t in timers:
                if t._cancelled:
                    t._scheduled = False
            heapq.heapify(live)
            self._timers = live
            self._cancelled_timers = 0

    # -- file descriptors -----------------------------------------------------

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (replaces any reader)."""
        self._set(fd, callback, True)

    def add_writer(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is writable (replaces any writer)."""
        self._set(fd, callback, False)

    def remove_reader(self, fd: int) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        return self._unset(fd, True)

    def remove_writer(self, fd: int) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        return self._unset(fd, False)

    def _set(self, fd: int, callback: Callable[[], object], read: bool) -> None:
        epoll = self._epoll
        if epoll is not None:
            if fd < 0:
                raise ValueError(f"invalid file descriptor {fd}")
            cbs = self._fds.get(fd)
            flag = _EP_IN if read else _EP_OUT
            if cbs is None:
                cbs = _FdCallbacks()
                epoll.register(fd, flag)
                self._fds[fd] = cbs
            elif not cbs.events & flag:
                epoll.modify(fd, cbs.events | flag)
            cbs.events |= flag
            if read:
                cbs.reader = callback
            else:
                cbs.writer = callback
            return
        selector = self._selector
        assert selector is not None
        try:
            key = selector.get_key(fd)
        except KeyError:
            cbs = _FdCallbacks()
            if read:
                cbs.reader = callback
            else:
                cbs.writer = callback
            selector.register(fd, _READ if read else _WRITE, cbs)
            return
        cbs = key.data
        if read:
            cbs.reader = callback
            events = key.events | _READ
        else:
            cbs.writer = callback
            events = key.events | _WRITE
        if events != key.events:
            selector.modify(fd, events, cbs)

    def _unset(self, fd: int, read: bool) -> bool:
        epoll = self._epoll
        if epoll is not None:
            cbs = self._fds.get(fd)
            if cbs is None:
                return False
            if read:
                had = cbs.reader is not None
                cbs.reader = None
                events = cbs.events & ~_EP_IN
            else:
                had = cbs.writer is not None
                cbs.writer = None
                events = cbs.events & ~_EP_OUT
            if not events:
                del self._fds[fd]
                try:
                    epoll.unregister(fd)
                except OSError:  # closed already: the kernel dropped it
                    pass
            elif events != cbs.events:
                cbs.events = events
                try:
                    epoll.modify(fd, events)
                except OSError:
                    pass
            return had
        selector = self._selector
        assert selector is not None
        try:
            key = selector.get_key(fd)
        except (KeyError, ValueError):
            return False
        cbs = key.data
        if read:
            had = cbs.reader is not None
            cbs.reader = None
            events = key.events & ~_READ
        else:
            had = cbs.writer is not None
            cbs.writer = None
            events = key.events & ~_WRITE
        if not events:
            selector.unregister(fd)
        elif events != key.events:
            selector.modify(fd, events, cbs)
        return had

    @property
    def fd_count(self) -> int:
        """File descriptors registered with the selector (the wakeup socket included)."""
        if self._selector is None:
            return len(self._fds)
        return len(self._selector.get_map())

    # -- signals and wakeup ---------------------------------------------------

    def add_signal_handler(self, sig: int, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop when signal ``sig`` arrives.

        Only from the main thread. The C-level wakeup fd makes a blocked
        ``select`` return at once; the Python-level handler queues the callback.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self._signal_handlers[sig] = Handle(callback, args)
        signal.signal(sig, self._on_signal)

    def remove_signal_handler(self, sig: int) -> bool:
        """Restore the default disposition of ``sig``; True if we had a handler."""
        if self._signal_handlers.pop(sig, None) is None:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        signal.signal(sig, default)
        if not self._signal_handlers and self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        return True

    def _on_signal(self, sig: int, frame: object) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is not None:
            self._ready.append(Handle(handle._callback, handle._args))

    def _wakeup(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # full (the loop will wake anyway) or closed

    def _drain_wakeup(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # -- running ----------------------------------------------------------------

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current tick (thread-safe)."""
        self._stopping = True
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            self._wakeup()

    def in_loop_thread(self) -> bool:
        """True when called from the thread that runs the loop now."""
        return self._thread_id == threading.get_ident()

    @property
    def is_running(self) -> bool:
        """True while :meth:`run_forever` runs."""
        return self._running

    def run_forever(self) -> None:
        """Run ticks until :meth:`stop` is called."""
        if self._running:
            raise RuntimeError("the loop is already running")
        if self._closed:
            raise RuntimeError("the loop is closed")
        self._enter()
        try:
            while not self._stopping:
                self._tick()
        finally:
            self._leave()

    def run_until(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run ticks until ``predicate()`` is true or ``timeout`` passes; return it.

        ``timeout`` is in real seconds (:func:`time.monotonic`) whatever the
        loop's clock: it bounds how long the call may block. None: no bound.
        """
        deadline = None if timeout is None else monotonic() + timeout
        self._enter()
        try:
            while not predicate():
                if deadline is not None and monotonic() >= deadline:
                    return False
                if self._stopping:
                    return False
                self._tick(deadline)
            return True
        finally:
            self._leave()

    def run_once(self, timeout: float | None = 0.0) -> int:
        """Run one tick, waiting at most ``timeout`` real seconds for I/O.

        The tick runs what is ready: I/O callbacks, callbacks queued before it,
        timers due by the clock. With the default ``timeout=0`` it never
        blocks; None waits as long as :meth:`run_forever` would.

        Returns:
            how many I/O callbacks and callbacks ran (0: there was nothing to do).
        """
        if self._closed:
            raise RuntimeError("the loop is closed")
        deadline = None if timeout is None else monotonic() + timeout
        self._enter()
        try:
            return self._tick(deadline)
        finally:
            self._leave()

    def _enter(self) -> None:
        self._running = True
        self._thread_id = threading.get_ident()

    def _leave(self) -> None:
        self._stopping = False
        self._running = False
        self._thread_id = None

    def _tick(self, deadline: float | None = None) -> int:
        ready = self._ready
        timers = self._timers
        if ready or self._stopping:
            timeout: float | None = 0.0
        elif timers:
            # The earliest entry may be a cancelled one: at worst an early wakeup.
            timeout = timers[0].when - self._clock()
            if timeout <= 0.0:
                timeout = 0.0
            elif self._virtual:
                timeout = None  # sleeping does not move a virtual clock
        else:
            timeout = None
        if deadline is not None:
            limit = max(deadline - monotonic(), 0.0)  # real time, whatever the clock
            if timeout is None or timeout > limit:
                timeout = limit
        epoll = self._epoll
        if epoll is not None:
            # selectors' rounding: up to the next millisecond, so a timer is never early.
            ready_fds = epoll.poll(
                -1 if timeout is None else math.ceil(timeout * 1e3) * 1e-3,
                len(self._fds) or 1,
            )
            self.now = now = self._clock()
            fds = self._fds
            for fd, mask in ready_fds:
                fd_cbs = fds.get(fd)
                if fd_cbs is None:
                    continue
                try:
                    if mask & _EP_READ:
                        reader = fd_cbs.reader
                        if reader is not None:
                            reader()
                    if mask & _EP_WRITE:
                        writer = fd_cbs.writer
                        if writer is not None:
                            writer()
                except Exception:
                    logger.exception("unhandled error in an I/O callback")
            return self._run_ready(ready, now, len(ready_fds))
        assert self._selector is not None
        events = self._selector.select(timeout)
        self.now = now = self._clock()
        for key, mask in events:
            cbs = key.data
            try:
                if mask & _READ:
                    reader = cbs.reader
                    if reader is not None:
                        reader()
                if mask & _WRITE:
                    writer = cbs.writer
                    if writer is not None:
                        writer()
            except Exception:
                logger.exception("unhandled error in an I/O callback")
        return self._run_ready(ready, now, len(events))

    def _run_ready(self, ready: deque[Handle], now: float, io_count: int) -> int:
        """The second half of a tick: timers due by ``now``, then the callbacks queued."""
        # I/O callbacks may have cancelled timers and so rebuilt the heap: use the
        # current list, or stale entries run twice and the cancelled count drifts.
        timers = self._timers
        while timers:
            top = timers[0]
            if top._cancelled:
                heapq.heappop(timers)
                top._scheduled = False
                self._cancelled_timers -= 1
                continue
            if top.when > now:
                break
            heapq.heappop(timers)
            top._scheduled = False
            top._loop = None
            ready.append(top)
        n = len(ready)
        for _ in range(n):
            handle = ready.popleft()
            if not handle._cancelled:
                try:
                    handle._run()
                except Exception:
                    logger.exception("unhandled error in callback %r", handle._callback)
        self.ticks += 1
        return io_count + n

    def close(self) -> None:
        """Release the selector and the wakeup socketpair. The loop must be stopped."""
        if self._running:
            raise RuntimeError("cannot close a running loop")
        if self._closed:
            return
        self._closed = True
        for sig in list(self._signal_handlers):
            self.remove_signal_handler(sig)
        self._ready.clear()
        self._timers.clear()
        self._cancelled_timers = 0
        if self._epoll is not None:
            self._epoll.close()
        if self._selector is not None:
            self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        self._unpin()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
