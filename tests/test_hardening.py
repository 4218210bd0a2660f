"""Hostile peers (issue "Hardening"): one test or a few per finding of the campaign, each
asserting the bound the fix promises, over real sockets on 127.0.0.1.

The peers are raw sockets that speak the protocol by hand (``helpers.frame`` builds the
masked frames). Most servers run on a fake clock (``tests/fakeclock.py``) and the test drives
their loop, so a deadline is checked at its boundary and "how much does the server hold"
is read between two steps, with no real-time wait. What cannot be checked that way is
measured relative to a baseline taken in the same test: memory with ``tracemalloc`` (the
server's loop runs in this process), the canary's latency against the time the same
server takes to echo a batch when idle.

``benchmarks/attacks.py`` runs the same campaign against a server subprocess and prints the
before/after table (docs/security.md).

Findings, in the issue's numbering: 1 empty continuations, 2 ping flood from a peer that
does not read, 3 tiny fragments, 4 fairness, 5 message deadline, 6 sockets before the
handshake per IP, 7 log flood after a 1008, 8 a check_request hook that raises, 10 bytes
after a final deflate block; and the server-wide memory budget.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import statistics
import struct
import sys
import time
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest
from fakeclock import (
    EPS,
    FakeClock,
    advance,
    connect_raw,
    fake_server,
    read_available,
    settle,
)
from fakeclock import handshake as fakeclock_handshake
from helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    frame,
    parse_frames,
)
from test_server import handshake_request

from rfc6455 import Config, Handler, Server, WebSocket
from rfc6455._limits import MESSAGES_PER_TICK

ROOT = Path(__file__).resolve().parent.parent

#: Deadlines of 4 s make the sweep run once a (fake) second, from one second after the
#: first accept: stepping the clock by 1.0 lands on every sweep (as in test_timeouts).
SWEEP = 1.0

#: The loop reads at most this much per readiness event (``Loop.read_buffer``).
READ_CHUNK = 256 * 1024


# --- helpers --------------------------------------------------------------------------------


def handshake(server: Server, path: str = "/") -> socket.socket:
    """``fakeclock.handshake`` with Nagle off: what a test sends reaches the server at once,
    not after the delayed ACK of its previous segment (40 real milliseconds, while the
    test's loop runs ahead on its fake clock)."""
    sock = fakeclock_handshake(server, path)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_some(sock: socket.socket, data: bytes | memoryview) -> int:
    """Send what the kernel takes now, without blocking; 0 if it takes nothing (or the
    server is gone: an attacker does not care)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        return sock.send(data)
    except (BlockingIOError, BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        sock.settimeout(timeout)


def handshake_not_reading(server: Server) -> socket.socket:
    """Like ``fakeclock.handshake``, from a peer with a small receive buffer: set before the
    connect, so that the window it advertises is small from the start (shrinking it later
    makes the kernel drop segments that carry the ACKs of our own data, and both directions
    stall)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", server.port))
    before = server.connections_total
    sock.sendall(handshake_request(server.port))
    assert server.loop.run_until(lambda: server.connections_total > before, timeout=5)
    settle(server.loop)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


class Cycle:
    """Sends a blob of whole frames over and over without blocking, keeping the stream
    aligned on frame boundaries whatever the kernel takes."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0
        self.sent = 0

    def push(self, sock: socket.socket) -> int:
        """Send what the kernel takes now; the bytes sent (0: nothing fits)."""
        n = send_some(sock, memoryview(self.blob)[self.pos :])
        self.pos = (self.pos + n) % len(self.blob)
        self.sent += n
        return n


def frames_until_closed(sock: socket.socket, server: Server, max_ticks: int = 200) -> list[Frame]:
    """Everything the server sends until it closes the socket (running its loop)."""
    data = b""
    for _ in range(max_ticks):
        chunk, closed = read_available(sock)
        data += chunk
        if closed:
            return parse_frames(data, masked=False)
        server.loop.run_once(0.01)
    raise AssertionError(f"still open after {max_ticks} ticks; got {data[-60:]!r}")


def close_of(frames: list[Frame]) -> tuple[int, bytes]:
    """The (code, reason) of the close frame that ends ``frames``."""
    assert frames and frames[-1].opcode == OP_CLOSE, frames[-3:]
    payload = frames[-1].payload
    return struct.unpack("!H", payload[:2])[0], payload[2:]


def traced_now() -> int:
    return tracemalloc.get_traced_memory()[0]


def incidents(server: Server) -> Counter[str]:
    return Counter({kind: n for kind, n in server.incidents().items() if n})


def metric_lines(server: Server) -> set[str]:
    return set(server.metrics_text().splitlines())


def _load(name: str) -> ModuleType:
    """Import ``benchmarks/NAME.py`` by path (as test_bench does)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class NaiveEcho(Handler):
    """Echoes without looking at ``writable``: the server's own bounds must hold anyway."""

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        ws.send(message)


class Recorder(Handler):
    """Echoes, and records which connection each message came from, in order."""

    order: list[int] = []  # noqa: RUF012 - reset by each test

    def on_message(self, ws: WebSocket, message: str | bytes) -> None:
        Recorder.order.append(ws.id)
        ws.send(message)


# --- 1: empty continuation frames -----------------------------------------------------------


@pytest.mark.parametrize("max_size", [4096, 64 * 1024])
def test_1_endless_empty_continuations_end_in_1009(max_size: int) -> None:
    """Each fragment costs something against max_message_size, so a message of empty
    fragments ends in 1009 after a bounded number of frames (at most max_size)."""
    with fake_server(Config(max_message_size=max_size)) as (server, _clock):
        sock = handshake(server)
        sock.sendall(frame(OP_TEXT, b"a", fin=False, mask=True))  # 01 81 <mask> 61
        batch = frame(OP_CONT, b"", fin=False, mask=True) * 512  # 00 80 <mask>, for ever
        sent = 0
        out = b""
        closed = False
        while not closed and sent <= max_size + 512:
            view = memoryview(batch)
            while view and not closed:
                n = send_some(sock, view)
                view = view[n:]
                server.loop.run_once(0.0)
                chunk, closed = read_available(sock)
                out += chunk
            sent += 512
        assert closed, f"{sent} empty fragments and still open"
        code, _reason = close_of(parse_frames(out, masked=False))
        assert code == 1009
        assert sent <= max_size + 512
        sock.close()


# --- 2: ping flood from a peer that never reads ---------------------------------------------


def test_2_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    """The pongs a non-reading peer provokes stay within write_buffer_limit plus one read's
    worth: reading pauses as soon as the buffer is over the limit (and with one pending pong
    per connection the flood provokes almost nothing). If it went over: 1008, then dropped."""
    limit = 64 * 1024
    config = Config(write_buffer_limit=limit, write_buffer_timeout=4.0, close_timeout=4.0)
    with fake_server(config) as (server, clock):
        sock = handshake_not_reading(server)
        ws = server.connections[0]
        pings = Cycle(frame(OP_PING, b"p" * 125, mask=True) * 512)
        most = 0
        stalled = 0
        while pings.sent < 16 << 20:  # 16 MiB of pings: far more than the kernel buffers hold
            n = pings.push(sock)
            settle(server.loop)
            most = max(most, ws.write_buffer_size)
            stalled = stalled + 1 if n == 0 else 0
            if stalled >= 3:
                break  # the server stopped reading us
        # one read of pings is at most READ_CHUNK bytes: its pongs are no bigger
        assert most <= limit + READ_CHUNK, most
        went_over = server.incidents()["write_buffer_limit"] > 0
        if went_over:
            assert stalled >= 3, "over the limit, but the server kept reading"
        advance(server.loop, clock, 8.0, step=SWEEP)  # write_buffer_timeout + close_timeout
        if went_over:
            assert server.connections == []
            assert incidents(server)["slow_consumer"] == 1
        else:
            assert ws.write_buffer_size <= limit
        sock.close()


def test_2_a_non_reading_peer_of_a_naive_handler_stops_being_read_then_gets_1008() -> None:
    """A handler that echoes without backpressure: the server itself stops reading once the
    write buffer is over write_buffer_limit, and sends 1008 "slow consumer" when it stayed
    over for write_buffer_timeout."""
    limit = 64 * 1024
    config = Config(write_buffer_limit=limit, write_buffer_timeout=4.0, close_timeout=4.0)
    with fake_server(config, handler=NaiveEcho) as (server, clock):
        sock = handshake_not_reading(server)
        ws = server.connections[0]
        batch = Cycle(frame(OP_BINARY, b"e" * 1000, mask=True) * 64)
        stalled = 0
        while batch.sent < 64 << 20:
            n = batch.push(sock)
            settle(server.loop)
            stalled = stalled + 1 if n == 0 else 0
            if stalled >= 3:
                break
        assert stalled >= 3, "the server kept reading from a peer that reads nothing"
        assert limit < ws.write_buffer_size <= limit + READ_CHUNK + 64 * 1024
        taken = ws.bytes_in
        for _ in range(3):
            batch.push(sock)
            settle(server.loop)
        assert ws.bytes_in == taken  # paused: nothing more is read
        advance(server.loop, clock, 4.0 - EPS, step=SWEEP)
        assert ws.state == "open"
        advance(server.loop, clock, EPS)
        assert ws.state == "closing"
        assert incidents(server)["slow_consumer"] == 1
        # now read (with a window that lets it through fast): the echoes, then the close
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        close_frame = b"\x88\x0f\x03\xf0slow consumer"
        data = bytearray()
        for _ in range(20_000):
            data += read_available(sock)[0]
            if data.endswith(close_frame):
                break
            server.loop.run_once(0.01)
        assert close_of(parse_frames(bytes(data), masked=False)) == (1008, b"slow consumer")
        sock.close()


def test_2_one_pending_pong_the_latest_pings() -> None:
    """§5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s) in
    response to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for only
    the most recently processed Ping frame." Fifty pings in one read get one pong."""
    with fake_server() as (server, _clock):
        sock = handshake(server)
        sock.sendall(b"".join(frame(OP_PING, b"ping %d" % i, mask=True) for i in range(50)))
        settle(server.loop)
        frames = parse_frames(read_available(sock)[0], masked=False)
        assert frames == [Frame(True, 0, OP_PONG, b"ping 49", None)]
        sock.sendall(frame(OP_TEXT, b"still open", mask=True))
        settle(server.loop)
        assert parse_frames(read_available(sock)[0]) == [
            Frame(True, 0, OP_TEXT, b"still open", None)
        ]
        sock.close()


# --- 3: tiny fragments ---------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT])
def test_3_a_message_in_two_byte_fragments_costs_about_its_payload(opcode: int) -> None:
    """One buffer per message: a message held open in 2-byte fragments costs a small
    constant times its payload (it cost ~28x), and the memory budget sees at least that."""
    fragments = 16_000
    payload = 2 * fragments
    wire = frame(opcode, b"ab", fin=False, mask=True) + b"".join(
        frame(OP_CONT, b"ab", fin=False, mask=True) for _ in range(fragments - 1)
    )
    with fake_server(Config()) as (server, _clock):
        sock = handshake(server)
        ws = server.connections[0]
        taken = ws.bytes_in
        tracemalloc.start()
        try:
            settle(server.loop)
            before = traced_now()
            for i in range(0, len(wire), 8192):
                sock.sendall(wire[i : i + 8192])
                settle(server.loop)
            held = traced_now() - before
        finally:
            tracemalloc.stop()
        assert ws.bytes_in - taken == len(wire)  # all of it is in the server
        assert read_available(sock) == (b"", False)  # the message is still open
        assert held <= 4 * payload + 64 * 1024, f"{held} bytes for {payload} bytes of payload"
        assert server.stats()["incoming_buffered_bytes"] >= payload
        sock.sendall(frame(OP_CONT, b"!", mask=True))
        settle(server.loop)
        echoed = parse_frames(read_available(sock)[0], masked=False)
        assert echoed == [Frame(True, 0, opcode, b"ab" * fragments + b"!", None)]
        assert server.stats()["incoming_buffered_bytes"] == 0
        sock.close()


# --- 4: fairness ---------------------------------------------------------------------------


def test_4_a_flooder_is_handled_at_most_a_tick_budget_at_a_time() -> None:
    """20,000 messages in one read: the flooder's handler sees a bounded number per loop
    tick (the rest waits, reading paused), the other connection is served within the first
    ticks, and the flood is still answered whole and in order."""
    Recorder.order = []
    with fake_server(handler=Recorder) as (server, _clock):
        flooder = handshake(server)
        canary = handshake(server)
        count = 20_000
        flooder.sendall(
            b"".join(frame(OP_BINARY, struct.pack("!I", i), mask=True) for i in range(count))
        )
        canary.sendall(frame(OP_TEXT, b"canary", mask=True))
        flooder_id = server.connections[0].id
        per_tick: Counter[int] = Counter()
        for _ in range(2000):
            before = len(Recorder.order)
            server.loop.run_once(0.0)
            per_tick[server.loop.ticks] = sum(i == flooder_id for i in Recorder.order[before:])
            if len(Recorder.order) == count + 1:
                break
        ids = Recorder.order
        assert len(ids) == count + 1
        served_before_canary = ids.index(next(i for i in ids if i != flooder_id))
        # one readiness callback, plus the backlog callback it scheduled in the same tick
        assert served_before_canary <= 2 * MESSAGES_PER_TICK, served_before_canary
        assert max(per_tick.values()) <= 2 * MESSAGES_PER_TICK, per_tick.most_common(3)
        settle(server.loop)
        data = b""
        deadline = time.monotonic() + 10
        while len(data) < count * 6 and time.monotonic() < deadline:
            data += read_available(flooder)[0]
            server.loop.run_once(0.01)
        echoes = parse_frames(data, masked=False)
        assert [struct.unpack("!I", f.payload)[0] for f in echoes] == list(range(count))
        assert parse_frames(read_available(canary)[0]) == [Frame(True, 0, OP_TEXT, b"canary", None)]
        flooder.close()
        canary.close()


def test_4_at_most_messages_per_tick_events_per_connection_per_tick() -> None:
    """The documented bound (_limits.MESSAGES_PER_TICK): at most that many events per
    connection per loop tick."""
    Recorder.order = []
    with fake_server(handler=Recorder) as (server, _clock):
        flooder = handshake(server)
        flooder.sendall(b"".join(frame(OP_BINARY, b"%6d" % i, mask=True) for i in range(5000)))
        most = 0
        for _ in range(200):
            before = len(Recorder.order)
            server.loop.run_once(0.0)
            most = max(most, len(Recorder.order) - before)
            if len(Recorder.order) == 5000:
                break
        assert most <= MESSAGES_PER_TICK, most
        flooder.close()


def test_4_four_flooders_leave_a_canary_its_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real time, `rfc6455 serve` in a subprocess: four flooders of 1-byte messages that read
    their echoes; a canary's round trip stays within a generous multiple of the time the
    idle server takes to echo one round of the flooders' tick budgets (it was 100-300x)."""
    attacks = _load("attacks")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    port = attacks.free_port()
    argv = [sys.executable, "-m", "rfc6455", "serve", "--port", str(port), "--log-level", "ERROR"]
    server = attacks.ServerProcess(argv, port)
    helpers = []
    try:
        # the unit: the idle server echoing 4 x MESSAGES_PER_TICK messages sent at once
        sock = attacks.handshake(port)
        batch = attacks.client_frame(OP_TEXT, b"x", key=b"abcd") * (4 * MESSAGES_PER_TICK)
        expected = 3 * 4 * MESSAGES_PER_TICK
        units = []
        for _ in range(5):
            start = time.monotonic()
            sock.sendall(batch)
            got = 0
            while got < expected:
                chunk = sock.recv(1 << 20)
                assert chunk
                got += len(chunk)
            units.append(time.monotonic() - start)
        sock.close()
        unit = statistics.median(units)
        helpers = [
            attacks.Helper("_flood", "--port", str(port), "--seconds", "6") for _ in range(4)
        ]
        canary = attacks.canary_result(attacks.run_canary(port, 3.0), 3.0)
    finally:
        for helper in helpers:
            helper.stop()
        server.close()
    rtts = canary.rtts
    assert canary.errors == 0 and canary.close is None
    assert len(rtts) >= 20, f"{len(rtts)} round trips in 3 s"
    p50 = statistics.median(rtts)
    p90 = attacks.percentile(rtts, 0.9)
    assert p50 <= max(15 * unit, 0.02), (p50, p90, unit)
    assert p90 <= max(40 * unit, 0.05), (p50, p90, unit)


# --- 5: frame and message deadline ---------------------------------------------------------


def _trickle_until_closed(
    server: Server, clock: FakeClock, sock: socket.socket, timeout: float, piece: bytes
) -> None:
    """Send ``piece`` every fake second. The message began at the current time: it is not
    closed before ``timeout`` has passed (at ``timeout - EPS`` it is open), and it is closed
    with 1008 "message timeout" within one check interval (``SWEEP``) after that: the
    deadline is checked by the sweep, which starts the clock when it first sees the message.
    """
    loop = server.loop
    for _ in range(int(timeout) - 1):
        advance(loop, clock, SWEEP)
        sock.sendall(piece)
        settle(loop)
    advance(loop, clock, SWEEP - EPS)
    assert read_available(sock) == (b"", False)
    assert incidents(server)["message_timeout"] == 0
    advance(loop, clock, EPS)
    send_some(sock, piece)  # still trickling: it must not matter
    advance(loop, clock, SWEEP)
    frames = frames_until_closed(sock, server)
    assert close_of(frames) == (1008, b"message timeout")
    assert incidents(server)["message_timeout"] == 1


def test_5_a_frame_trickled_one_byte_a_second_is_closed_at_message_timeout() -> None:
    with fake_server(Config(message_timeout=4.0)) as (server, clock):
        sock = handshake(server)
        sock.sendall(frame(OP_BINARY, b"x" * 1000, mask=True)[:9])  # header, key, 1 byte
        settle(server.loop)
        _trickle_until_closed(server, clock, sock, 4.0, b"x")
        sock.close()


def test_5_a_fragmented_message_of_complete_fragments_is_closed_at_message_timeout() -> None:
    with fake_server(Config(message_timeout=4.0)) as (server, clock):
        sock = handshake(server)
        sock.sendall(frame(OP_TEXT, b"a", fin=False, mask=True))
        settle(server.loop)
        _trickle_until_closed(server, clock, sock, 4.0, frame(OP_CONT, b"b", fin=False, mask=True))
        sock.close()


def test_5_the_default_message_timeout_is_60_seconds() -> None:
    """On the defaults the trickle that stayed open for ever is closed after 60 s (every
    byte counts as life, so the ping deadlines never fire)."""
    assert Config().message_timeout == 60.0
    with fake_server(Config()) as (server, clock):
        sock = handshake(server)
        sock.sendall(frame(OP_BINARY, b"x" * 1000, mask=True)[:9])
        settle(server.loop)
        _trickle_until_closed(server, clock, sock, 60.0, b"x")
        sock.close()


def test_5_messages_that_complete_are_not_timed_out_even_if_every_read_ends_mid_frame() -> None:
    """A legitimate peer streams 1000-byte messages; TCP cuts its stream so that every read
    completes the previous message and starts the next. No message takes more than a second,
    so no message deadline may fire (it did, on the first version of the deadline: the clock
    ran from the first read that ended mid-frame until a read ended on a frame boundary)."""
    with fake_server(Config(message_timeout=4.0)) as (server, clock):
        sock = handshake(server)
        stream = b"".join(frame(OP_BINARY, bytes([i]) * 1000, mask=True) for i in range(12))
        cut = len(stream) // 12 + 3  # each piece ends 3 bytes into the next frame
        echoed = 0
        pos = 0
        for _ in range(10):
            sock.sendall(stream[pos : pos + cut])
            pos += cut
            settle(server.loop)
            data, closed = read_available(sock)
            frames = parse_frames(data, masked=False)
            assert not closed and all(f.opcode == OP_BINARY for f in frames), frames[-1:]
            echoed += len(frames)
            advance(server.loop, clock, SWEEP)
        assert echoed >= 9
        sock.close()


# --- 6: sockets before the handshake, per IP ------------------------------------------------


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_6_one_ip_holds_at_most_twice_the_per_ip_limit_even_before_the_handshake() -> None:
    limit = 10
    config = Config(max_connections_per_ip=limit, handshake_timeout=4.0)
    with fake_server(config) as (server, _clock):
        loop = server.loop
        fds_before = _fds()
        socks = []
        for _ in range(200):
            socks.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        closed_at_accept = len(socks) - 2 * limit
        assert loop.run_until(
            lambda: server.incidents()["per_ip_limit"] >= closed_at_accept, timeout=10
        )
        settle(loop)
        # the server holds 2 x limit sockets of this address; the others were closed at accept
        assert len(server.connections) == 2 * limit
        assert _fds() - fds_before - len(socks) <= 2 * limit + 2
        gone = [s for s in socks if read_available(s)[1]]
        assert len(gone) == closed_at_accept
        held = [s for s in socks if s not in gone]
        # the first `limit` of them may open; the next `limit` get 503 with Retry-After
        for s in held:
            s.sendall(handshake_request(server.port))
        settle(loop)
        answers = Counter()
        for s in held:
            data, _ = read_available(s)
            status = data[9:12].decode()
            answers[status] += 1
            if status == "503":
                assert b"\r\nretry-after: 5\r\n" in data.lower(), data
        assert answers == {"101": limit, "503": limit}
        assert incidents(server)["per_ip_limit"] == len(gone) + limit
        for s in socks:
            s.close()
        for _ in range(20):
            if not server.connections:
                break
            loop.run_once(0.01)
        assert server.connections == []
        # every slot is free again
        again = handshake(server)
        again.close()


def test_6_sockets_that_never_send_a_request_free_their_slots_at_handshake_timeout() -> None:
    limit = 3
    config = Config(max_connections_per_ip=limit, handshake_timeout=4.0)
    with fake_server(config) as (server, clock):
        idle = [connect_raw(server) for _ in range(2 * limit)]
        late = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        assert server.loop.run_until(lambda: server.incidents()["per_ip_limit"] == 1, timeout=5)
        settle(server.loop)
        assert read_available(late)[1]  # closed at accept
        advance(server.loop, clock, 4.0, step=SWEEP)
        assert all(read_available(s)[1] for s in idle)  # dropped at the handshake deadline
        assert server.connections == []
        handshake(server).close()  # the address may connect again
        for s in [*idle, late]:
            s.close()


# --- 7: log flood after the rate limit ------------------------------------------------------


def test_7_a_flood_after_the_rate_limit_1008_logs_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rfc6455")
    with fake_server(Config(rate_limit=10.0, close_timeout=4.0)) as (server, clock):
        sock = handshake(server)
        burst = frame(OP_TEXT, b"spam", mask=True) * 1000
        for _ in range(50):  # 50,000 messages over many reads, never answering the close
            sock.sendall(burst)
            settle(server.loop)
        frames = parse_frames(read_available(sock)[0], masked=False)
        assert [f.payload for f in frames[:-1]] == [b"spam"] * 10  # the burst
        assert close_of(frames) == (1008, b"rate limit exceeded")
        advance(server.loop, clock, 4.0, step=SWEEP)
        assert server.connections == []  # dropped at close_timeout
        sock.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split("] ", 1)[1] for r in warnings] == [
        "rate limit exceeded; closing with 1008"
    ]
    assert len(caplog.records) <= 6, [r.getMessage() for r in caplog.records]
    assert incidents(server) == {"rate_limit": 1, "close_timeout": 1}
    lines = metric_lines(server)
    assert 'rfc6455_incidents_total{kind="rate_limit"} 1' in lines
    assert 'rfc6455_incidents_total{kind="slow_consumer"} 0' in lines


# --- 8: a check_request hook that raises -----------------------------------------------------


def test_8_a_check_request_hook_that_raises_gets_500_and_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def check(request: object) -> None:
        if getattr(request, "target", "").startswith("/boom"):
            raise RuntimeError("the hook is broken")

    caplog.set_level(logging.INFO, logger="rfc6455")
    with fake_server(Config(check_request=check)) as (server, _clock):
        for _ in range(3):
            sock = connect_raw(server, handshake_request(server.port, "/boom"))
            data = frames_until_closed_raw(sock, server)
            assert data.startswith(b"HTTP/1.1 500 "), data[:60]
            sock.close()
        handshake(server).close()  # other requests still pass the hook
    assert "unhandled error" not in caplog.text
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert "check_request raised" in tracebacks[0].getMessage()
    assert "the hook is broken" in caplog.text
    assert incidents(server) == {"check_request_error": 3}
    assert 'rfc6455_incidents_total{kind="check_request_error"} 3' in metric_lines(server)


def frames_until_closed_raw(sock: socket.socket, server: Server) -> bytes:
    data = b""
    for _ in range(200):
        chunk, closed = read_available(sock)
        data += chunk
        if closed:
            return data
        server.loop.run_once(0.01)
    raise AssertionError(f"still open: {data[:80]!r}")


# --- 10: bytes after a final deflate block ---------------------------------------------------

DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def deflate_handshake(server: Server) -> socket.socket:
    request = handshake_request(server.port).replace(b"\r\n\r\n", b"\r\n" + DEFLATE_OFFER + b"\r\n")
    sock = connect_raw(server, request)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        chunk = sock.recv(1)
        assert chunk
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"permessage-deflate" in head.lower()
    return sock


def final_block(data: bytes) -> bytes:
    """``data`` as a complete DEFLATE stream, ending in a BFINAL block (RFC 7692 §7.2.3.4)."""
    c = zlib.compressobj(wbits=-15)
    return c.compress(data) + c.flush(zlib.Z_FINISH)


def inflate_replies(frames: list[Frame]) -> list[bytes]:
    """The server's compressed messages (unfragmented, context takeover), inflated."""
    d = zlib.decompressobj(wbits=-15)
    out = []
    for f in frames:
        assert f.fin and f.rsv == 4, f
        out.append(d.decompress(f.payload + b"\x00\x00\xff\xff"))
    return out


def test_10_messages_that_end_in_a_final_block_are_accepted() -> None:
    """RFC 7692 §7.2.3.4 lets a sender flush with a BFINAL block: such messages, one after the
    other, fragmented or not, are valid and come through whole."""
    with fake_server() as (server, _clock):
        sock = deflate_handshake(server)
        one = final_block(b"first " * 20)
        two = final_block(b"second " * 20)
        three = final_block(b"third " * 20)
        sock.sendall(
            frame(OP_TEXT, one, rsv=4, mask=True)
            + frame(OP_TEXT, two, rsv=4, mask=True)
            + frame(OP_TEXT, three, rsv=4, fin=False, mask=True)
            + frame(OP_CONT, b"", mask=True)
        )
        settle(server.loop)
        data, closed = read_available(sock)
        assert not closed
        replies = inflate_replies(parse_frames(data, masked=False))
        assert replies == [b"first " * 20, b"second " * 20, b"third " * 20]
        sock.close()


def test_10_the_rfc_example_with_its_trailing_octet_is_accepted() -> None:
    """RFC 7692 §7.2.3.4's own example: "Hello" in a BFINAL block, then one 0x00 octet (the
    header bits of an empty stored block, which the receiver's appended 00 00 ff ff
    completes). That one octet is not "data after the final block"."""
    with fake_server() as (server, _clock):
        sock = deflate_handshake(server)
        payload = bytes.fromhex("f3 48 cd c9 c9 07 00 00")
        sock.sendall(frame(OP_TEXT, payload, rsv=4, mask=True))
        settle(server.loop)
        data, closed = read_available(sock)
        assert not closed
        assert inflate_replies(parse_frames(data, masked=False)) == [b"Hello"]
        sock.close()


@pytest.mark.parametrize("where", ["same frame", "next fragment"])
def test_10_bytes_after_a_final_deflate_block_fail_the_connection(where: str) -> None:
    with fake_server() as (server, _clock):
        sock = deflate_handshake(server)
        stream = final_block(b"hello " * 20)
        if where == "same frame":
            wire = frame(OP_TEXT, stream + b"\x00smuggled", rsv=4, mask=True)
        else:
            wire = frame(OP_TEXT, stream, rsv=4, fin=False, mask=True) + frame(
                OP_CONT, b"\x00smuggled", mask=True
            )
        sock.sendall(wire)
        frames = frames_until_closed(sock, server)
        assert [f.opcode for f in frames] == [OP_CLOSE], "the message must not be delivered"
        code, _reason = close_of(frames)
        assert code in (1002, 1007)
        sock.close()


# --- the memory budget ------------------------------------------------------------------------


def test_budget_the_largest_holder_is_failed_first_with_1013() -> None:
    budget = 64 * 1024
    with fake_server(Config(memory_budget=budget)) as (server, _clock):
        big, small, third = (handshake(server) for _ in range(3))
        declared = frame(OP_BINARY, b"\0" * 50_000, mask=True)
        header = len(declared) - 50_000
        big.sendall(declared[: header + 40_000])
        settle(server.loop)
        small.sendall(declared[: header + 10_000])
        settle(server.loop)
        held = server.stats()["incoming_buffered_bytes"]
        assert 50_000 <= held <= 50_100
        assert read_available(big) == (b"", False)
        third.sendall(declared[: header + 20_000])  # 70,000 > 65,536: someone must go
        settle(server.loop)
        frames = frames_until_closed(big, server)
        assert close_of(frames) == (1013, b"server memory budget exceeded")
        assert 30_000 <= server.stats()["incoming_buffered_bytes"] <= 30_100
        assert incidents(server) == {"memory_budget": 1}
        # the others go on: their messages complete and come back
        small.sendall(declared[header + 10_000 :])
        third.sendall(declared[header + 20_000 :])
        settle(server.loop)
        for sock in (small, third):
            assert parse_frames(read_available(sock)[0]) == [
                Frame(True, 0, OP_BINARY, b"\0" * 50_000, None)
            ]
        assert server.stats()["incoming_buffered_bytes"] == 0
        # the gauge and the counter, as a scrape of /metrics sees them
        scrape = connect_raw(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = frames_until_closed_raw(scrape, server).decode()
        assert "\nrfc6455_incoming_buffered_bytes 0\n" in body
        assert '\nrfc6455_incidents_total{kind="memory_budget"} 1\n' in body
        for sock in (big, small, third, scrape):
            sock.close()


def test_budget_one_connection_alone_over_the_budget_is_failed() -> None:
    budget = 64 * 1024
    with fake_server(Config(memory_budget=budget)) as (server, _clock):
        sock = handshake(server)
        other = handshake(server)
        data = frame(OP_BINARY, b"\1" * 200_000, mask=True)
        for i in range(0, 100_000, 8192):
            if send_some(sock, data[i : i + 8192]) == 0:
                break
            settle(server.loop)
        frames = frames_until_closed(sock, server)
        assert close_of(frames) == (1013, b"server memory budget exceeded")
        assert server.stats()["incoming_buffered_bytes"] == 0
        other.sendall(frame(OP_TEXT, b"fine", mask=True))
        settle(server.loop)
        assert parse_frames(read_available(other)[0]) == [Frame(True, 0, OP_TEXT, b"fine", None)]
        sock.close()
        other.close()


def test_budget_counts_partial_messages_of_complete_fragments() -> None:
    with fake_server(Config(memory_budget=64 * 1024)) as (server, _clock):
        sock = handshake(server)
        sock.sendall(frame(OP_BINARY, b"a" * 30_000, fin=False, mask=True))
        settle(server.loop)
        assert server.stats()["incoming_buffered_bytes"] >= 30_000
        sock.sendall(frame(OP_CONT, b"b" * 40_000, fin=False, mask=True))
        frames = frames_until_closed(sock, server)
        assert close_of(frames) == (1013, b"server memory budget exceeded")
        sock.close()
