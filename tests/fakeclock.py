"""A fake clock for deadline tests, and helpers to drive a loop by hand.

Put a loop on it, ``Loop(clock=FakeClock())``, run real socket I/O on the
loop from the test's own thread, then move time with :meth:`FakeClock.advance`
and run the loop with :func:`settle`: a deadline fires exactly when the clock
passes it, never early and never because the machine was slow. The loop never
sleeps waiting for a timer on a fake clock (it is ``virtual``), so a test
waits only for real I/O.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from test_server import handshake_request

from rfc6455 import Config, EchoHandler, Loop, Server

#: A step small enough to stand for "just before", exact in binary floating
#: point (so that ``t - EPS + EPS == t``).
EPS = 2.0**-10


class FakeClock:
    """A monotonic clock that moves only when told to.

    It starts at 1000.0, not 0.0: the server takes a 0.0 timestamp for "never"
    (no ping outstanding, write buffer not over its limit), which a real
    monotonic clock never reads.
    """

    #: Tells :class:`~rfc6455.Loop` not to sleep waiting for timers.
    virtual = True

    def __init__(self, start: float = 1000.0) -> None:
        if start <= 0.0:
            raise ValueError("start must be positive (0.0 means 'never' to the server)")
        self._now = start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self._now += seconds

    def advance_to(self, when: float) -> None:
        """Set the clock to ``when`` exactly (not before the current time)."""
        if when < self._now:
            raise ValueError("a monotonic clock does not go back")
        self._now = when

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"


def settle(loop: Loop, max_ticks: int = 1000) -> int:
    """Run ticks that do not block until one finds nothing to do; the ticks run.

    What a tick sets off on 127.0.0.1 (a write, a FIN) has reached the peer's
    socket when this returns, so the test can look there at once.
    """
    for n in range(1, max_ticks + 1):
        if not loop.run_once(0.0):
            return n
    raise AssertionError(f"the loop is still busy after {max_ticks} ticks")


def advance(loop: Loop, clock: FakeClock, seconds: float, step: float | None = None) -> None:
    """Move ``clock`` forward by ``seconds`` and let ``loop`` settle.

    With ``step``, move in increments of ``step`` and settle after each, so that
    a periodic timer (the server's sweep) fires at every one of its times, as it
    would in real time, instead of once at the end of a jump.
    """
    if step is None:
        clock.advance(seconds)
        settle(loop)
        return
    left = seconds
    while left > step:
        clock.advance(step)
        settle(loop)
        left -= step
    clock.advance(left)
    settle(loop)


# --- a server on a fake clock, driven from the test's thread ------------------------


@contextmanager
def fake_server(config: Config | None = None, **kwargs: Any) -> Iterator[tuple[Server, FakeClock]]:
    """A started server on a ``Loop(clock=FakeClock())`` that nobody runs.

    The test runs the loop itself (:func:`settle`, :func:`advance`) between the
    steps of its peers, so peers must not block waiting for the server: use
    :func:`connect_raw` and :func:`handshake`, which only need the kernel.
    """
    clock = FakeClock()
    loop = Loop(clock=clock)
    if config is None:
        config = Config()
    config.port = 0
    if "routes" not in kwargs and "handler" not in kwargs:
        kwargs["handler"] = EchoHandler
    server = Server(config, loop=loop, **kwargs)
    try:
        server.start()
        yield server, clock
    finally:
        server.close()  # aborts what is left; the loop is ours to run and close
        loop.run_until(lambda: not server.connections, timeout=5)
        loop.close()


def connect_raw(server: Server, data: bytes = b"") -> socket.socket:
    """A TCP connection to ``server`` that sent ``data``, accepted and read by it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if data:
        sock.sendall(data)
    before = server.connections_total
    assert server.loop.run_until(lambda: server.connections_total > before, timeout=5)
    settle(server.loop)
    return sock


def handshake(server: Server, path: str = "/") -> socket.socket:
    """A raw socket that completed the opening handshake (101 read, frames left)."""
    sock = connect_raw(server, handshake_request(server.port, path))
    data = b""
    while not data.endswith(b"\r\n\r\n"):  # byte by byte: leave the frames after it
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return sock


def read_available(sock: socket.socket) -> tuple[bytes, bool]:
    """What the peer can read without waiting, and whether the server closed (EOF)."""
    old = sock.gettimeout()
    sock.settimeout(0.0)
    out = b""
    try:
        while True:
            try:
                chunk = sock.recv(1 << 20)
            except BlockingIOError:
                return out, False
            except ConnectionResetError:
                return out, True
            if not chunk:
                return out, True
            out += chunk
    finally:
        sock.settimeout(old)
