"""A WebSocket load generator and a side-by-side server runner.

Run it from a checkout (it starts benchmarks/bench_server.py and the peer servers in
benchmarks/peer_servers by path), on Linux (``epoll``, ``/proc``, CPU affinity)::

    python3 benchmarks/loadgen.py echo|broadcast|connections [options]

``--help`` lists the options; benchmarks/README.md has examples.

Strategy: the load generator is deliberately dumb and cheap. It speaks just enough RFC 6455
itself (a client handshake, unfragmented binary frames) on raw non-blocking sockets driven by
one ``epoll``; every frame it sends is masked once, before the clock starts, and every frame
it expects back is built once too, so its hot loop is ``recv``, one ``bytes`` comparison and
``send``. Anything that does not match the expected bytes exactly (split reads, coalesced or
fragmented frames, pings) drops to a slow path that parses frames properly; a payload that
differs from what was sent, a masked server frame or an unexpected close aborts the run, so a
result also certifies that every echo was byte-identical.

The runner starts each server as a subprocess pinned to CPU 0 (like ``taskset -c 0``), pins
itself to CPU 1, and interleaves the implementations round-robin for R rounds, a fresh server
per round, then reports medians. Server CPU time per message comes from the server process's
``utime + stime`` in ``/proc/PID/stat`` around the measured window: on a shared machine it is
the figure that moves least. ``foreign_cpu_util`` is the machine's busy time not accounted to
the server or the generator (other tenants); runs above ``--noisy`` are flagged.

Everything runs on 127.0.0.1 and every loop is bounded in count and time. Servers are stopped
by PID (SIGTERM, then SIGKILL after a timeout).
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import json
import math
import os
import platform
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Final

# A script in the checkout (never installed): the checkout's rfc6455 first, as the built-in
# servers get it through PYTHONPATH (see ServerProcess).
ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rfc6455 import apply_mask

__all__ = ["main"]

HOST: Final = "127.0.0.1"
_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK")

# Bounds: the generator refuses anything larger, so a typo cannot flood the machine.
MAX_DURATION_S: Final = 120.0
MAX_ECHO_CONNS: Final = 5_000
MAX_SUBSCRIBERS: Final = 20_000
MAX_IDLE_CONNS: Final = 50_000
MAX_ROUNDS: Final = 20
MAX_PUBLISHES: Final = 10_000

OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: The built-in servers started by path: ``--port PORT --mode echo|broadcast [--ping-interval S]``.
_SERVER_SCRIPTS: Final = {
    "rfc6455": ROOT / "benchmarks" / "bench_server.py",
    "websockets": ROOT / "benchmarks" / "peer_servers" / "websockets_server.py",
}


class BenchError(Exception):
    """The run cannot go on: a protocol violation, a stall or a server that died."""


# --------------------------------------------------------------------------------- frames
def _header(first: int, length: int, mask_bit: int) -> bytes:
    if length < 126:
        return bytes((first, mask_bit | length))
    if length < 65536:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def client_frame(payload: bytes, opcode: int = OP_BINARY, key: bytes | None = None) -> bytes:
    """One complete masked client frame (FIN set), masked once with ``key``."""
    key = os.urandom(4) if key is None else key
    return _header(0x80 | opcode, len(payload), 0x80) + key + apply_mask(payload, key)


def server_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """One complete unmasked server frame (FIN set): what an echo must look like."""
    return _header(0x80 | opcode, len(payload), 0) + payload


_CLOSE_1000: Final = struct.pack("!H", 1000)


def parse_server_frames(buf: bytearray) -> tuple[list[tuple[int, bool, bytes]], int]:
    """Split complete server frames off ``buf``: ``([(opcode, fin, payload)], consumed)``.

    Raises:
        BenchError: a masked frame (§5.1: a server MUST NOT mask).
    """
    frames: list[tuple[int, bool, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        if b1 & 0x80:
            raise BenchError("server sent a masked frame")
        length, start = b1 & 0x7F, pos + 2
        if length == 126:
            if end - pos < 4:
                break
            (length,) = struct.unpack_from("!H", buf, pos + 2)
            start = pos + 4
        elif length == 127:
            if end - pos < 10:
                break
            (length,) = struct.unpack_from("!Q", buf, pos + 2)
            start = pos + 10
        if end - start < length:
            break
        frames.append((b0 & 0x0F, bool(b0 & 0x80), bytes(buf[start : start + length])))
        pos = start + length
    return frames, pos


class Client:
    """One generator-side connection: its socket and the state of the slow path."""

    __slots__ = ("closed", "fd", "fragments", "pending", "sent_ns", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: bytearray | None = None
        self.fragments: list[bytes] | None = None
        self.sent_ns = 0
        self.closed = False

    def slow_path(self, data: bytes, expected: bytes | None) -> int:
        """Parse ``data`` (after anything pending) frame by frame; answer pings.

        Returns the number of complete data messages; with ``expected`` set, each must equal
        it byte for byte.
        """
        buf = self.pending if self.pending is not None else bytearray()
        buf += data
        frames, consumed = parse_server_frames(buf)
        del buf[:consumed]
        self.pending = buf if buf else None
        messages = 0
        for opcode, fin, payload in frames:
            if opcode == OP_PING:
                _send_all(self.sock, client_frame(payload, OP_PONG))
            elif opcode == OP_PONG:
                continue
            elif opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                raise BenchError(f"server closed the connection: {code} {payload[2:]!r}")
            else:
                if opcode == 0:
                    if self.fragments is None:
                        raise BenchError("continuation frame without a message")
                    self.fragments.append(payload)
                else:
                    self.fragments = [payload]
                if fin:
                    message = b"".join(self.fragments)
                    self.fragments = None
                    if expected is not None and message != expected:
                        raise BenchError(
                            f"payload mismatch: got {len(message)} B, sent {len(expected)} B"
                        )
                    messages += 1
        return messages


def _send_all(sock: socket.socket, data: bytes) -> None:
    """Send everything; block (bounded) only if the kernel buffer is full."""
    sent = sock.send(data)
    if sent < len(data):
        _send_rest(sock, data, sent)


def _send_rest(sock: socket.socket | Client | None, data: bytes, sent: int) -> None:
    if isinstance(sock, Client):
        sock = sock.sock
    assert sock is not None
    sock.settimeout(10.0)
    try:
        sock.sendall(memoryview(data)[sent:])
    finally:
        sock.setblocking(False)


# ----------------------------------------------------------------------------- handshake
def _handshake_request(port: int, path: str) -> tuple[bytes, bytes]:
    key = base64.b64encode(os.urandom(16))
    request = (
        b"GET " + path.encode() + b" HTTP/1.1\r\n"
        b"Host: " + f"{HOST}:{port}".encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    return request, accept


def _check_response(head: bytes, accept: bytes) -> None:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"101":
        raise BenchError(f"handshake refused: {lines[0][:80]!r}")
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"sec-websocket-accept") != accept:
        raise BenchError("wrong Sec-WebSocket-Accept")
    if b"sec-websocket-extensions" in headers:
        raise BenchError("server negotiated an extension the client did not offer")


def open_connections(
    port: int, count: int, path: str = "/", *, batch: int = 200, timeout: float = 60.0
) -> list[Client]:
    """Open ``count`` WebSocket connections to 127.0.0.1, ``batch`` handshakes at a time.

    Returns non-blocking, TCP_NODELAY clients. Bytes that arrive with the 101 response are
    kept for the slow path.

    Raises:
        BenchError: a refused or malformed handshake, or the timeout.
    """
    clients: list[Client] = []
    # fd -> [socket, unsent request, received bytes, expected accept]
    pending: dict[int, list[Any]] = {}
    deadline = time.monotonic() + timeout
    ep = select.epoll()
    try:
        while len(clients) < count:
            if time.monotonic() > deadline:
                raise BenchError(f"opened only {len(clients)} of {count} connections")
            for _ in range(min(batch, count - len(clients))):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = sock.connect_ex((HOST, port))
                if err not in (0, errno.EINPROGRESS):
                    sock.close()
                    raise BenchError(f"connect failed: {os.strerror(err)}")
                request, accept = _handshake_request(port, path)
                pending[sock.fileno()] = [sock, request, b"", accept]
                ep.register(sock.fileno(), select.EPOLLOUT)
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{len(pending)} handshakes did not finish in time")
                for fd, ev in ep.poll(min(left, 1.0)):
                    state = pending[fd]
                    sock = state[0]
                    if ev & (select.EPOLLERR | select.EPOLLHUP) and not ev & select.EPOLLIN:
                        raise BenchError("connection refused or reset during the handshake")
                    if state[1]:
                        try:
                            state[1] = state[1][sock.send(state[1]) :]
                        except BlockingIOError:
                            continue
                        if not state[1]:
                            ep.modify(fd, select.EPOLLIN)
                        continue
                    try:
                        chunk = sock.recv(4096)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        raise BenchError("server closed the connection during the handshake")
                    state[2] += chunk
                    head, sep, rest = state[2].partition(b"\r\n\r\n")
                    if not sep:
                        if len(state[2]) > 16384:
                            raise BenchError("handshake response too large")
                        continue
                    _check_response(head, state[3])
                    ep.unregister(fd)
                    del pending[fd]
                    client = Client(sock)
                    if rest:
                        client.pending = bytearray(rest)
                    clients.append(client)
    except BaseException:
        for client in clients:
            client.sock.close()
        for state in pending.values():
            state[0].close()
        raise
    finally:
        ep.close()
    return clients


def close_connections(clients: Sequence[Client], linger: float = 0.05) -> None:
    """Send close 1000 on each connection, give the server a moment, close the sockets."""
    frame = client_frame(_CLOSE_1000, OP_CLOSE)
    for client in clients:
        try:
            client.sock.send(frame)
        except OSError:
            pass
    if clients and linger:
        time.sleep(linger)
    for client in clients:
        client.sock.close()


# ------------------------------------------------------------------------- measurements
def proc_cpu_times(pid: int) -> tuple[float, float]:
    """``(utime, stime)`` in seconds of a process (all its threads) and its live direct
    children (``serve --workers N``), from ``/proc/PID/stat``."""
    user = system = 0
    for p in (pid, *_children(pid)):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            if p == pid:
                return math.nan, math.nan
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / _CLK_TCK, system / _CLK_TCK


def proc_minflt(pid: int) -> int:
    """Minor page faults of a process (all its threads) and its live direct children, from
    ``/proc/PID/stat`` (-1 when the process is gone)."""
    total = 0
    for p in (pid, *_children(pid)):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            if p == pid:
                return -1
            continue
        total += int(stat[stat.rindex(b")") + 2 :].split()[7])
    return total


def proc_cpu_seconds(pid: int) -> float:
    """``utime + stime`` of a process (all its threads), from ``/proc/PID/stat``."""
    return sum(proc_cpu_times(pid))


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def rss_kib(pid: int) -> int:
    """Resident set size of a process and its direct children, KiB (``VmRSS``)."""
    total = 0
    for p in (pid, *_children(pid)):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (all but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _CLK_TCK


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """CPU accounting over one measured interval: server, generator and everyone else."""

    def __init__(self, server_pid: int | None) -> None:
        self.pid = server_pid
        self.t0 = time.perf_counter()
        self.server0 = proc_cpu_times(server_pid) if server_pid else (math.nan, math.nan)
        self.minflt0 = proc_minflt(server_pid) if server_pid else -1
        self.self0 = _self_cpu()
        self.busy0 = machine_busy_seconds()

    def close(self) -> dict[str, float]:
        """Wall time and CPU split since construction."""
        wall = time.perf_counter() - self.t0
        user1, system1 = proc_cpu_times(self.pid) if self.pid else (math.nan, math.nan)
        user, system = user1 - self.server0[0], system1 - self.server0[1]
        server = user + system
        minflt1 = proc_minflt(self.pid) if self.pid else -1
        minflt = minflt1 - self.minflt0 if minflt1 >= 0 and self.minflt0 >= 0 else math.nan
        client = _self_cpu() - self.self0
        busy = machine_busy_seconds() - self.busy0
        foreign = busy - client - (0.0 if math.isnan(server) else server)
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            # The split of server_cpu_s (user: our code; sys: the kernel on our behalf).
            "server_user_cpu_s": user,
            "server_sys_cpu_s": system,
            "server_minflt": minflt,
            # Kernel share of the server's CPU: syscalls and loopback TCP, out of Python's reach.
            "server_sys_share": system / server if server > 0 else math.nan,
            "client_cpu_s": client,
            "server_cpu_util": server / wall,
            "client_cpu_util": client / wall,
            "foreign_cpu_util": max(0.0, foreign) / wall,
        }


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(p / 100.0 * len(sorted_values)) - 1
    return float(sorted_values[max(0, min(len(sorted_values) - 1, rank))])


def foreign_load(sample_s: float = 0.5) -> float:
    """Cores' worth of CPU used by the machine over ``sample_s`` outside this process."""
    busy0, self0, t0 = machine_busy_seconds(), _self_cpu(), time.perf_counter()
    time.sleep(sample_s)
    busy = machine_busy_seconds() - busy0 - (_self_cpu() - self0)
    return max(0.0, busy) / (time.perf_counter() - t0)


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) for other tenants to drop under ``threshold`` cores."""
    deadline = time.monotonic() + max_wait
    load = foreign_load()
    while load > threshold and time.monotonic() < deadline:
        load = foreign_load()
    return load


# ------------------------------------------------------------------------------- echo
def run_echo(
    port: int,
    *,
    conns: int = 50,
    size: int = 32,
    warmup: float = 1.0,
    duration: float = 10.0,
    server_pid: int | None = None,
    stall_timeout: float = 5.0,
) -> dict[str, Any]:
    """Echo round trips at depth 1 on ``conns`` connections; measured after ``warmup``.

    Returns msgs/s, RTT percentiles (µs, send to complete echo received) and, with
    ``server_pid``, the server's CPU time per message.

    Raises:
        BenchError: a wrong echo, a close, or no progress for ``stall_timeout`` s.
    """
    if not (0 < duration <= MAX_DURATION_S and 0 <= warmup <= MAX_DURATION_S):
        raise BenchError("duration out of bounds")
    if not 0 < conns <= MAX_ECHO_CONNS:
        raise BenchError(f"--conns must be 1..{MAX_ECHO_CONNS}")
    payload = (os.urandom(64) * (size // 64 + 1))[:size]
    frame = client_frame(payload)
    expected = server_frame(payload)
    expected_len = len(expected)
    t_connect = time.perf_counter()
    clients = open_connections(port, conns)
    connect_s = time.perf_counter() - t_connect
    # Per-fd tables of bound methods: the hot loop does no dict or attribute lookups.
    size_fd = max(c.fd for c in clients) + 1
    client_of: list[Client | None] = [None] * size_fd
    recv_of: list[Callable[[int], bytes]] = [bytes] * size_fd
    send_of: list[Callable[[bytes], int]] = [len] * size_fd
    sent_ns = [0] * size_fd
    unsettled: set[int] = set()  # fds whose slow path holds a partial frame
    ep = select.epoll()
    for c in clients:
        ep.register(c.fd, select.EPOLLIN)
        client_of[c.fd], recv_of[c.fd], send_of[c.fd] = c, c.sock.recv, c.sock.send
    latencies = array("q")
    record = latencies.append
    clock = time.perf_counter_ns
    t_start = clock()
    t_measure = t_start + int(warmup * 1e9)
    t_end = t_measure + int(duration * 1e9)
    t_record = t_end  # no latency is recorded before the window opens
    hard_end = t_end + int(30e9)
    window: Window | None = None
    measured = total = slow_hits = 0
    bufsize = max(65536, expected_len + 1024)
    frame_len = len(frame)
    last_progress = t_start
    try:
        for c in clients:
            if c.pending is not None:  # frames that came with the 101 response
                c.slow_path(b"", None)
                if c.pending is not None:
                    unsettled.add(c.fd)
            sent_ns[c.fd] = clock()
            _send_all(c.sock, frame)
        poll = ep.poll
        while True:
            events = poll(1.0)
            now = clock()
            if window is None and now >= t_measure:
                window = Window(server_pid)
                t_record = now
            if now >= t_end:
                break
            if not events:
                if now - last_progress > stall_timeout * 1e9 or now > hard_end:
                    raise BenchError(f"stalled: no echo for {stall_timeout} s ({total} done)")
                continue
            last_progress = now
            for fd, _ in events:
                data = recv_of[fd](bufsize)
                if data != expected or fd in unsettled:
                    # Slow path: a split, coalesced or unexpected read.
                    cl = client_of[fd]
                    assert cl is not None
                    if not data:
                        raise BenchError("server closed a connection")
                    pend = cl.pending
                    if pend is None and len(data) < expected_len:
                        cl.pending = bytearray(data)
                        unsettled.add(fd)
                        continue
                    if pend is not None:
                        pend += data
                        if len(pend) < expected_len:
                            continue
                        if pend == expected:
                            cl.pending = None
                            unsettled.discard(fd)
                            data = expected
                    if data != expected:
                        slow_hits += 1
                        got = cl.slow_path(data if pend is None else b"", payload)
                        if cl.pending is None:
                            unsettled.discard(fd)
                        else:
                            unsettled.add(fd)
                        if not got:
                            continue
                        if got > 1:
                            raise BenchError(f"{got} echoes for one message at depth 1")
                t = clock()
                if t >= t_record:
                    record(t - sent_ns[fd])
                    measured += 1
                total += 1
                sent_ns[fd] = t
                sent = send_of[fd](frame)
                if sent != frame_len:
                    _send_rest(client_of[fd], frame, sent)
        cpu = window.close() if window is not None else {}
    finally:
        ep.close()
        close_connections(clients)
    lat = sorted(latencies)
    wall = cpu.get("wall_s", float("nan"))
    server_cpu = cpu.get("server_cpu_s", float("nan"))
    return {
        "mode": "echo",
        "conns": conns,
        "size": size,
        "warmup_s": warmup,
        "duration_s": wall,
        "connect_s": connect_s,
        "msgs": measured,
        "msgs_per_s": measured / wall if measured else 0.0,
        "rtt_us": {
            "p50": percentile(lat, 50) / 1e3,
            "p90": percentile(lat, 90) / 1e3,
            "p99": percentile(lat, 99) / 1e3,
            "max": lat[-1] / 1e3 if lat else float("nan"),
        },
        "server_us_per_msg": server_cpu / measured * 1e6 if measured else float("nan"),
        "client_us_per_msg": cpu.get("client_cpu_s", float("nan")) / measured * 1e6
        if measured
        else float("nan"),
        **{k: v for k, v in cpu.items() if k.endswith(("_util", "cpu_s", "_share", "minflt"))},
        "slow_path_hits": slow_hits,
    }


# -------------------------------------------------------------------------- broadcast
def run_broadcast(
    port: int,
    *,
    subscribers: int = 1000,
    size: int = 64,
    publishes: int = 100,
    warmup_publishes: int = 10,
    gap: float = 0.02,
    publish_timeout: float = 10.0,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """A publisher sends ``size``-byte messages; the server must relay each to every other
    connection. Measures publish → first and → last subscriber receipt.

    Raises:
        BenchError: a wrong delivery, a close, or a run over its time bound.
    """
    if not 0 < subscribers <= MAX_SUBSCRIBERS:
        raise BenchError(f"--subs must be 1..{MAX_SUBSCRIBERS}")
    if not 0 < publishes <= MAX_PUBLISHES or size < 8:
        raise BenchError("--publishes out of bounds or --size under 8")
    t_connect = time.perf_counter()
    subs = open_connections(port, subscribers, "/sub")
    try:
        publisher = open_connections(port, 1, "/pub")[0]
    except BaseException:
        close_connections(subs, 0)
        raise
    connect_s = time.perf_counter() - t_connect
    time.sleep(0.3)  # let the server register the last subscribers
    by_fd = {c.fd: c for c in subs}
    ep = select.epoll()
    for c in subs:
        ep.register(c.fd, select.EPOLLIN)
    ep.register(publisher.fd, select.EPOLLIN)
    plan = []
    for i in range(warmup_publishes + publishes):
        payload = struct.pack("!Q", i) + bytes(size - 8)
        plan.append((client_frame(payload), server_frame(payload), payload))
    first_ms: list[float] = []
    last_ms: list[float] = []
    busy_ms: list[float] = []
    timeouts = publisher_junk = 0
    clock = time.perf_counter_ns
    hard_deadline = time.monotonic() + (publishes + warmup_publishes) * (gap + 1.0) + 60
    window: Window | None = None
    try:
        for i, (frame, expected, payload) in enumerate(plan):
            if time.monotonic() > hard_deadline:
                raise BenchError("broadcast run over its time bound")
            if i == warmup_publishes:
                window = Window(server_pid)
            remaining = subscribers
            t_first = t_last = busy = 0
            t0 = clock()
            _send_all(publisher.sock, frame)
            limit = t0 + int(publish_timeout * 1e9)
            while remaining:
                if clock() > limit:
                    timeouts += 1
                    break
                events = ep.poll(0.5, 4096)
                t_events = clock()
                for fd, _ in events:
                    sub = by_fd.get(fd)
                    if sub is None:
                        data = publisher.sock.recv(65536)
                        publisher_junk += 1
                        if not data:
                            raise BenchError("server closed the publisher")
                        continue
                    data = sub.sock.recv(65536)
                    if not data:
                        raise BenchError("server closed a subscriber")
                    if sub.pending is None and data == expected:
                        got = 1
                    else:
                        got = sub.slow_path(data, payload)
                    if got:
                        remaining -= got
                        t_last = clock()
                        if not t_first:
                            t_first = t_last
                busy += clock() - t_events
            if not remaining and i >= warmup_publishes:
                first_ms.append((t_first - t0) / 1e6)
                last_ms.append((t_last - t0) / 1e6)
                busy_ms.append(busy / 1e6)
            elif remaining:
                time.sleep(0.2)  # drain the stragglers so the next publish starts clean
                for fd, _ in ep.poll(0, 4096):
                    straggler = by_fd.get(fd, publisher)
                    straggler.sock.recv(1 << 20)
                    straggler.pending = None
            time.sleep(gap)
        cpu = window.close() if window is not None else {}
    finally:
        ep.close()
        close_connections([*subs, publisher], 0.1)
    delivered = len(last_ms) * subscribers
    first, last = sorted(first_ms), sorted(last_ms)
    return {
        "mode": "broadcast",
        "subscribers": subscribers,
        "size": size,
        "publishes": len(last),
        "timeouts": timeouts,
        "publisher_junk": publisher_junk,
        "connect_s": connect_s,
        "last_ms": {
            "p50": percentile(last, 50),
            "p99": percentile(last, 99),
            "max": last[-1] if last else float("nan"),
        },
        "first_ms": {"p50": percentile(first, 50), "p99": percentile(first, 99)},
        # The generator's own time spent reading one publish's deliveries: when it is close
        # to last_ms, the generator, not the server, is the bottleneck.
        "client_busy_ms": {"p50": percentile(sorted(busy_ms), 50)},
        "server_us_per_delivery": cpu.get("server_cpu_s", float("nan")) / delivered * 1e6
        if delivered
        else float("nan"),
        **{k: v for k, v in cpu.items() if k.endswith(("_util", "cpu_s", "_share"))},
    }


# ------------------------------------------------------------------------ connections
def run_connections(
    port: int, *, conns: int = 10_000, hold: float = 5.0, server_pid: int | None = None
) -> dict[str, Any]:
    """Open ``conns`` idle connections, hold them ``hold`` s (answering pings), and measure
    the server's RSS before and after: KiB per open connection.

    Raises:
        BenchError: a refused handshake, or the server closed connections while idle.
    """
    if not 0 < conns <= MAX_IDLE_CONNS or not 0 <= hold <= MAX_DURATION_S:
        raise BenchError(f"--conns must be 1..{MAX_IDLE_CONNS}, --hold 0..{MAX_DURATION_S}")
    time.sleep(0.5)
    before = rss_kib(server_pid) if server_pid else 0
    t0 = time.perf_counter()
    clients = open_connections(port, conns, batch=500, timeout=120.0)
    connect_s = time.perf_counter() - t0
    by_fd = {c.fd: c for c in clients}
    ep = select.epoll()
    dropped = pings = 0
    try:
        for c in clients:
            ep.register(c.fd, select.EPOLLIN)
        window = Window(server_pid)
        deadline = time.monotonic() + hold
        while (left := deadline - time.monotonic()) > 0:
            for fd, _ in ep.poll(min(left, 0.5), 4096):
                c = by_fd[fd]
                data = c.sock.recv(4096)
                if not data:
                    dropped += 1
                    ep.unregister(fd)
                    continue
                pings += 1
                c.slow_path(data, None)
        after = rss_kib(server_pid) if server_pid else 0
        idle = window.close()
    finally:
        ep.close()
        close_connections(clients, 0.5)
    if dropped:
        raise BenchError(f"the server closed {dropped} idle connections")
    return {
        "mode": "connections",
        "conns": conns,
        "hold_s": hold,
        "connect_s": connect_s,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_conn": (after - before) / conns if server_pid else float("nan"),
        "server_frames_while_idle": pings,
        # Heartbeats and timers only: an idle server should stay near zero.
        "server_cpu_util_while_idle": idle["server_cpu_util"],
    }


# ----------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _raise_nofile(need: int = 0) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, need, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def builtin_command(name: str, mode: str, conns: int) -> str | None:
    """The command template of a built-in server name, or None if ``name`` is not one."""
    py = shlex.quote(sys.executable)
    ping = " --ping-interval 20" if mode == "connections" else ""
    if name == "rfc6455-serve":
        if mode == "broadcast":
            raise BenchError("the broadcast benchmark needs bench_server.py: --server rfc6455")
        return (
            f"{py} -m rfc6455 serve --port {{port}} --app echo --no-compression"
            f" --ping-interval {20 if ping else 0} --max-connections {max(conns, 1000) * 2}"
            " --log-level WARNING"
        )
    script = _SERVER_SCRIPTS.get(name)
    if script is None:
        return None
    if not script.exists():
        raise BenchError(f"server script not found: {script}; use --server NAME=CMD")
    return f"{py} {shlex.quote(str(script))} --port {{port}} --mode {{mode}}{ping}"


def parse_server_spec(spec: str, mode: str, conns: int) -> tuple[str, str]:
    """``NAME=COMMAND`` or a built-in ``NAME`` → ``(name, command template)``."""
    name, sep, command = spec.partition("=")
    name = name.strip()
    if not sep:
        builtin = builtin_command(name, mode, conns)
        if builtin is None:
            raise BenchError(
                f"unknown server {name!r}: built-ins are rfc6455, rfc6455-serve, websockets"
            )
        return name, builtin
    return name, command.strip()


class ServerProcess:
    """A server subprocess pinned to one CPU, started from a command template."""

    def __init__(self, name: str, template: str, mode: str, cpu: int | None, log_dir: str):
        self.name = name
        self.port = _free_port()
        # Idle connections are held by an echo server: {mode} is echo for them.
        mode = "echo" if mode == "connections" else mode
        command = template.format(port=self.port, mode=mode, py=sys.executable)
        self.log_path = os.path.join(log_dir, f"{name.replace('/', '_')}-{self.port}.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()

        def setup() -> None:
            _raise_nofile()
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})

        # Servers import rfc6455 (``-m rfc6455 serve``, bench_server.py): this checkout's.
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            shlex.split(command),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=setup,  # noqa: PLW1509 - the runner starts no threads
        )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the port accepts TCP connections.

        Raises:
            BenchError: the server exited or did not listen in time.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not listen on {self.port} within {timeout} s")

    def tail(self, n: int = 400) -> str:
        """The last ``n`` characters of the server's output."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` s; returns the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
            return self.proc.returncode
        finally:
            self._log.close()


@contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Pin this process to ``cpu`` for the duration (no-op for None)."""
    if cpu is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


# ------------------------------------------------------------------------------ runner
def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else float("nan")


def _dig(run: dict[str, Any], key: str) -> float:
    value: Any = run
    for part in key.split("."):
        value = value.get(part, float("nan")) if isinstance(value, dict) else float("nan")
    return float(value)


_SUMMARY_KEYS: Final = {
    "echo": [
        "msgs_per_s",
        "rtt_us.p50",
        "rtt_us.p90",
        "rtt_us.p99",
        "server_us_per_msg",
        "server_cpu_util",
        "server_sys_share",
        "client_cpu_util",
        "foreign_cpu_util",
    ],
    "broadcast": [
        "last_ms.p50",
        "last_ms.p99",
        "first_ms.p50",
        "first_ms.p99",
        "server_us_per_delivery",
        "client_busy_ms.p50",
        "server_cpu_util",
        "foreign_cpu_util",
    ],
    "connections": [
        "kib_per_conn",
        "rss_before_kib",
        "rss_after_kib",
        "connect_s",
        "server_cpu_util_while_idle",
    ],
}


def summarize(mode: str, runs: list[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Medians per (implementation, size) over rounds, with ratios against ``reference``."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for run in runs:
        if "error" not in run:
            groups.setdefault((run["impl"], run.get("size", 0)), []).append(run)
    rows = []
    for (impl, size), group in groups.items():
        row: dict[str, Any] = {"impl": impl, "size": size, "rounds": len(group)}
        if mode == "connections":
            row["conns"] = group[0]["conns"]
        for key in _SUMMARY_KEYS[mode]:
            row[key] = _median([_dig(r, key) for r in group])
        rows.append(row)
    primary = {"echo": "msgs_per_s", "broadcast": "last_ms.p99", "connections": "kib_per_conn"}
    cost = {
        "echo": "server_us_per_msg",
        "broadcast": "server_us_per_delivery",
        "connections": "kib_per_conn",
    }
    for row in rows:
        ref = next((r for r in rows if r["impl"] == reference and r["size"] == row["size"]), None)
        if ref is not None:
            row["ratio_primary"] = row[primary[mode]] / ref[primary[mode]]
            row["ratio_cost"] = row[cost[mode]] / ref[cost[mode]]
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:,.{digits}f}"
    return str(value)


#: The table columns per mode: (heading, summary row key, decimals, divisor). ``{ref}`` in a
#: heading is the reference implementation; a missing value (no reference) prints as "–".
_COLUMNS: Final[dict[str, list[tuple[str, str, int, int]]]] = {
    "echo": [
        ("msgs/s", "msgs_per_s", 0, 1),
        ("p50 µs", "rtt_us.p50", 1, 1),
        ("p99 µs", "rtt_us.p99", 1, 1),
        ("server µs/msg", "server_us_per_msg", 2, 1),
        ("server CPU", "server_cpu_util", 2, 1),
        ("server sys share", "server_sys_share", 2, 1),
        ("foreign CPU", "foreign_cpu_util", 2, 1),
        ("msgs/s × {ref}", "ratio_primary", 2, 1),
        ("µs/msg × {ref}", "ratio_cost", 2, 1),
    ],
    "broadcast": [
        ("last p50 ms", "last_ms.p50", 2, 1),
        ("last p99 ms", "last_ms.p99", 2, 1),
        ("first p50 ms", "first_ms.p50", 3, 1),
        ("client busy ms", "client_busy_ms.p50", 2, 1),
        ("server µs/delivery", "server_us_per_delivery", 2, 1),
        ("foreign CPU", "foreign_cpu_util", 2, 1),
        ("last p99 × {ref}", "ratio_primary", 2, 1),
        ("µs/delivery × {ref}", "ratio_cost", 2, 1),
    ],
    "connections": [
        ("RSS before MiB", "rss_before_kib", 1, 1024),
        ("RSS after MiB", "rss_after_kib", 1, 1024),
        ("KiB/conn", "kib_per_conn", 2, 1),
        ("× {ref}", "ratio_cost", 2, 1),
        ("server CPU while idle", "server_cpu_util_while_idle", 3, 1),
    ],
}


def markdown_table(mode: str, rows: list[dict[str, Any]], reference: str) -> str:
    """The summary rows as a markdown table."""
    second = ("conns", "conns") if mode == "connections" else ("size B", "size")
    columns = _COLUMNS[mode]
    head = ["implementation", second[0], *(c[0].format(ref=reference) for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["impl"]), str(r[second[1]])]
        cells += [_fmt(r.get(key, math.nan) / div, digits) for _, key, digits, div in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _environment() -> dict[str, Any]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("rfc6455", "websockets"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "packages": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def build_parser() -> argparse.ArgumentParser:
    """The load generator's argument parser."""
    parser = argparse.ArgumentParser(
        description="WebSocket load generator: echo round trips, broadcast fan-out, memory per "
        "idle connection; servers side by side, pinned, interleaved, medians.",
    )
    parser.add_argument("mode", choices=["echo", "broadcast", "connections"])
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="SPEC",
        help="built-in NAME (rfc6455 = benchmarks/bench_server.py, rfc6455-serve = the "
        "'rfc6455 serve' CLI, websockets = the peer script) or 'NAME=COMMAND' with {port}, {mode}, "
        "{py} placeholders; repeatable (default: rfc6455 and websockets)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="drive an already running server on 127.0.0.1:PORT instead",
    )
    parser.add_argument(
        "--pid",
        type=int,
        default=None,
        help="with --port: the server's PID, for CPU and RSS figures",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds, implementations interleaved (default 3; connections 1)",
    )
    parser.add_argument(
        "--conns",
        type=int,
        default=None,
        help="echo connections (default 50) / idle connections (default 10000)",
    )
    parser.add_argument("--sizes", default="32,16384", help="echo message sizes, bytes")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run")
    parser.add_argument("--subs", type=int, default=1000, help="broadcast subscribers")
    parser.add_argument("--size", type=int, default=64, help="broadcast message size")
    parser.add_argument("--publishes", type=int, default=100)
    parser.add_argument("--warmup-publishes", type=int, default=10)
    parser.add_argument(
        "--hold",
        type=float,
        default=5.0,
        help="connections: seconds to hold the idle connections before RSS",
    )
    parser.add_argument("--reference", default="websockets", help="the ratio column's base")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each run, wait up to S s for other tenants to calm down",
    )
    parser.add_argument(
        "--noisy",
        type=float,
        default=0.25,
        help="foreign CPU (cores) above which a run is flagged noisy",
    )
    parser.add_argument(
        "--retry-noisy",
        type=int,
        default=1,
        help="repeat a noisy run up to N times and keep the quietest attempt",
    )
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="sample each server with py-spy during its runs (py-spy must be on PATH); raw "
        "files go to DIR, the top lines by self time into the JSON and onto stderr",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="write all runs as JSON")
    parser.add_argument("--log-dir", default=None, help="keep server output here")
    return parser


def profile_top(raw_path: str, top: int = 15) -> list[tuple[float, str]]:
    """Self time per source line from a ``py-spy record -f raw`` file: ``[(share, line)]``."""
    counts: dict[str, int] = {}
    total = 0
    with open(raw_path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            total += int(n)
            leaf = stack.rsplit(";", 1)[-1]
            counts[leaf] = counts.get(leaf, 0) + int(n)
    ranked = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return [(n / total, leaf) for leaf, n in ranked] if total else []


def _run_one(args: argparse.Namespace, port: int, pid: int | None, size: int) -> dict[str, Any]:
    if args.profile and pid is not None:
        return _profiled(args, port, pid, size)
    if args.mode == "echo":
        return run_echo(
            port,
            conns=args.conns,
            size=size,
            warmup=args.warmup,
            duration=args.duration,
            server_pid=pid,
        )
    if args.mode == "broadcast":
        return run_broadcast(
            port,
            subscribers=args.subs,
            size=args.size,
            publishes=args.publishes,
            warmup_publishes=args.warmup_publishes,
            server_pid=pid,
        )
    return run_connections(port, conns=args.conns, hold=args.hold, server_pid=pid)


def _profiled(args: argparse.Namespace, port: int, pid: int, size: int) -> dict[str, Any]:
    """Run once with ``py-spy`` sampling the server (non-blocking, so it barely slows it)."""
    os.makedirs(args.profile, exist_ok=True)
    raw = os.path.join(args.profile, f"{args.mode}-{pid}-{size}.raw")
    seconds = args.warmup + args.duration + 2 if args.mode == "echo" else 60
    spy = subprocess.Popen(
        ["py-spy", "record", "--nonblocking", "-r", "200", "-f", "raw", "-o", raw,
         "-d", str(int(seconds)), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # let py-spy attach
        args_copy = argparse.Namespace(**{**vars(args), "profile": None})
        result = _run_one(args_copy, port, pid, size)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            spy.wait(15)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
    if os.path.exists(raw):
        result["profile_raw"] = raw
        result["profile_top"] = [[round(share, 4), line] for share, line in profile_top(raw)]
    result["profiled"] = True
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``loadgen.py MODE [options]``; returns the exit status."""
    args = build_parser().parse_args(argv)
    if not hasattr(select, "epoll") or not os.path.exists("/proc/stat"):
        print("loadgen: needs Linux (epoll, /proc)", file=sys.stderr)
        return 2
    if args.conns is None:
        args.conns = 10_000 if args.mode == "connections" else 50
    if args.rounds is None:
        args.rounds = 1 if args.mode == "connections" else 3
    sizes = [int(s) for s in args.sizes.split(",")] if args.mode == "echo" else [args.size]
    if not 1 <= args.rounds <= MAX_ROUNDS or any(not 0 <= s <= 1 << 24 for s in sizes):
        print(f"--rounds must be 1..{MAX_ROUNDS}, sizes 0..16 MiB", file=sys.stderr)
        return 2
    _raise_nofile()
    cpu_ok = not args.no_pin and (os.cpu_count() or 1) >= 2
    server_cpu = args.server_cpu if cpu_ok else None
    client_cpu = args.client_cpu if cpu_ok else None
    runs: list[dict[str, Any]] = []
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="rfc6455-bench-")
    status = 0

    def record(impl: str, round_no: int, size: int, work: Callable[[], dict[str, Any]]) -> None:
        nonlocal status
        best: dict[str, Any] | None = None
        for attempt in range(1 + max(0, args.retry_noisy)):
            quiet = wait_quiet(args.noisy, args.quiet_wait) if args.quiet_wait > 0 else math.nan
            try:
                result = work()
            except (BenchError, OSError) as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result.update(
                impl=impl,
                round=round_no,
                size=result.get("size", size),
                attempt=attempt + 1,
                foreign_load_before=quiet,
            )
            foreign = result.get("foreign_cpu_util", 0.0)
            result["noisy"] = foreign > args.noisy
            print(_progress_line(args.mode, result), file=sys.stderr, flush=True)
            for share, line in result.get("profile_top", [])[:10]:
                print(f"    {100 * share:5.1f}%  {line}", file=sys.stderr)
            if best is None or "error" in best or foreign < best.get("foreign_cpu_util", 0.0):
                best = result
            if "error" in result or not result["noisy"]:
                break
        assert best is not None
        if "error" in best:
            status = 1
        runs.append(best)

    if args.profile and shutil.which("py-spy") is None:
        print("loadgen: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 2
    servers: list[tuple[str, str]] = []
    if args.port is None:
        try:
            servers = [
                parse_server_spec(s, args.mode, args.conns)
                for s in (args.server or ["rfc6455", "websockets"])
            ]
        except BenchError as exc:
            print(f"loadgen: {exc}", file=sys.stderr)
            return 2
    try:
        with pinned(client_cpu):
            if args.port is not None:
                for round_no in range(1, args.rounds + 1):
                    for size in sizes:
                        record(
                            "external",
                            round_no,
                            size,
                            partial(_run_one, args, args.port, args.pid, size),
                        )
            else:
                for round_no in range(1, args.rounds + 1):
                    for name, template in servers:
                        server = ServerProcess(name, template, args.mode, server_cpu, log_dir)
                        try:
                            server.wait_ready()
                            time.sleep(0.5)  # let imports and the first GC settle
                            for size in sizes:
                                record(
                                    name,
                                    round_no,
                                    size,
                                    partial(_run_one, args, server.port, server.pid, size),
                                )
                                if not server.alive():
                                    raise BenchError(f"{name} died: {server.tail()}")
                        except BenchError as exc:
                            runs.append({"impl": name, "round": round_no, "error": str(exc)})
                            print(f"{name}: {exc}", file=sys.stderr)
                            status = 1
                        finally:
                            server.stop()
    except KeyboardInterrupt:
        status = 130
    rows = summarize(args.mode, runs, args.reference)
    print(markdown_table(args.mode, rows, args.reference))
    if args.json:
        report = {
            "mode": args.mode,
            "config": vars(args),
            "environment": _environment(),
            "pinned": {"server_cpu": server_cpu, "client_cpu": client_cpu},
            "server_logs": log_dir,
            "runs": runs,
            "summary": rows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    return status


def _progress_line(mode: str, r: dict[str, Any]) -> str:
    noisy = " (noisy)" if r.get("noisy") else ""
    tag = f"[{r.get('impl')} round {r.get('round')}.{r.get('attempt', 1)}{noisy}]"
    if "error" in r:
        return f"{tag} ERROR {r['error']}"
    if mode == "echo":
        return (
            f"{tag} {r['size']} B: {r['msgs_per_s']:,.0f} msgs/s, p50 "
            f"{r['rtt_us']['p50']:.0f} µs, p99 {r['rtt_us']['p99']:.0f} µs, server "
            f"{r['server_us_per_msg']:.2f} µs/msg, foreign {r['foreign_cpu_util']:.2f}"
        )
    if mode == "broadcast":
        return (
            f"{tag} last p50/p99 {r['last_ms']['p50']:.2f}/{r['last_ms']['p99']:.2f} ms, "
            f"server {r['server_us_per_delivery']:.2f} µs/delivery, "
            f"timeouts {r['timeouts']}"
        )
    return (
        f"{tag} {r['conns']} conns: {r['rss_before_kib'] / 1024:.1f} → "
        f"{r['rss_after_kib'] / 1024:.1f} MiB, {r['kib_per_conn']:.2f} KiB/conn"
    )


if __name__ == "__main__":
    sys.exit(main())
