"""The hostile-input campaign (issue "Hardening"), as a script: attacks against a server
command, each bounded in time, with an independent canary client measuring echo round trips
during every attack, and a markdown table at the end.

Run it from a checkout, on Linux (``/proc`` for the server's RSS and descriptors)::

    python3 benchmarks/attacks.py                                  # this checkout's server
    PYTHONPATH=/tmp/attacks-before python3 benchmarks/attacks.py --label 0.1.0
    python3 benchmarks/attacks.py --only ping-flood --only trickle --duration 6
    python3 benchmarks/attacks.py --server-cmd "python3 my_server.py --port {port}"

The server command (default ``python3 -m rfc6455 serve --app echo --port {port}``) is
started fresh for every attack, with the attack's flags appended when its ``--help`` lists
them (an older checkout without ``--message-timeout`` runs the attack without it, and the
table says so). It inherits ``PYTHONPATH``; when that is unset, this checkout is put there
(an editable install elsewhere must not be what gets measured); it runs in the directory of
the first ``PYTHONPATH`` entry, since ``python3 -m`` imports from the working directory
first. The check_request attack
cannot use the command line (no flag sets a hook): it runs ``attacks.py _hook-server``, a
tiny server whose ``check_request`` raises for ``/boom``, with the same ``PYTHONPATH``.

Attacks (each reproduces one finding; the columns are described in docs/security.md):

=================== =====================================================================
empty-continuation  ``01 81 <mask> 61`` then ``00 80 <mask>`` for ever, on one connection
ping-flood          125-byte pings as fast as the server takes them; the peer never reads
tiny-fragments      20 connections, each a binary message held open in 2-byte fragments
fairness            4 flooders of 1-byte messages (they read their echoes); the canary
trickle             one frame started, then 1 byte per second (``--message-timeout 5``)
pre-handshake       2,000 sockets from one IP that send nothing (``--max-connections-per-ip
                    10``), then an upgrade request on each socket still open
rate-limit-logs     1,000-message bursts for the whole window after the 1008
                    (``--rate-limit 10``): server log lines written meanwhile
check-request-hook  upgrade requests to a server whose check_request hook raises
memory-budget       40 connections each hold 1 MiB - 100 bytes of a 1 MiB frame
                    (``--memory-budget 16777216``)
=================== =====================================================================

Every attack runs for ``--duration`` seconds (default 8) at most, plus a few seconds to
start the server and read what it answered; the whole run takes about two minutes. The
canary is a separate process (so the attacker's work does not delay it) doing
round trips of a 16-byte text message 10 ms apart, each bounded by 2 s; its idle baseline is measured
first, on a fresh server. Everything runs on 127.0.0.1; servers and helper processes are
stopped by PID (SIGTERM, then SIGKILL); a server whose RSS passes ``--max-rss`` (2 GiB) is
stopped early and the row says so.
"""

from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import resource
import select
import shlex
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

HOST: Final = "127.0.0.1"
ROOT: Final = Path(__file__).resolve().parent.parent
SCRIPT: Final = Path(__file__).resolve()
DEFAULT_SERVER: Final = "python3 -m rfc6455 serve --app echo --port {port}"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

#: Bounds on what a typo can ask for.
MAX_DURATION_S: Final = 30.0
#: A round trip of the canary waits at most this long.
CANARY_TIMEOUT_S: Final = 2.0
#: The canary's pause between round trips: it measures, it must not compete for the CPU.
CANARY_PAUSE_S: Final = 0.01


# --- frames, by hand (RFC 6455 §5.2) ------------------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, key: bytes = b"") -> bytes:
    """One masked frame (a client's), with a random key unless ``key`` is given."""
    key = key or os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    if not payload:
        return head + key
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


def frame_header(opcode: int, length: int, *, fin: bool = True, key: bytes = b"\0\0\0\0") -> bytes:
    """The header of a masked frame declaring ``length`` bytes (a zero key: the payload
    that follows is sent as is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return struct.pack("!BB", first, 0x80 | length) + key
    if length < 65536:
        return struct.pack("!BBH", first, 0x80 | 126, length) + key
    return struct.pack("!BBQ", first, 0x80 | 127, length) + key


def terminate(proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 5 s: stop a process we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class ServerFrames:
    """Parses what a server sends (unmasked frames); remembers the close frame."""

    buffer: bytearray = field(default_factory=bytearray)
    frames: int = 0
    data_frames: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed_at: float | None = None  # when the close frame was parsed (monotonic)

    def feed(self, data: bytes) -> None:
        self.buffer += data
        buf = self.buffer
        pos = 0
        while len(buf) - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if len(buf) - pos < 4:
                    break
                n, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif n == 127:
                if len(buf) - pos < 10:
                    break
                n, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if len(buf) - pos < head + n:
                break
            opcode = b0 & 0x0F
            self.frames += 1
            if opcode == OP_CLOSE and self.close_code is None:
                payload = bytes(buf[pos + head : pos + head + n])
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode("utf-8", "replace")
                self.closed_at = time.monotonic()
            elif opcode < 8:
                self.data_frames += 1
            pos += head + n
        del buf[:pos]


# --- raw client sockets -----------------------------------------------------------------


def upgrade_request(port: int, path: str = "/", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def read_response_head(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """The HTTP response head, read byte by byte (the frames after it stay in the socket);
    what came before EOF if the server closed first."""
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(b"\r\n\r\n") and len(data) < 65536:
        try:
            chunk = sock.recv(1)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def handshake(
    port: int, path: str = "/", *, rcvbuf: int | None = None, timeout: float = 5.0
) -> socket.socket:
    """A raw client connection that completed the opening handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so that the window is small from the start
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect((HOST, port))
    sock.sendall(upgrade_request(port, path))
    head = read_response_head(sock, timeout)
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(f"handshake refused: {head[:40]!r}")
    sock.settimeout(None)
    return sock


@dataclass
class Pump:
    """What one connection of an attack saw: bytes sent, the server's close frame, EOF."""

    sock: socket.socket
    blob: bytes = b""
    pos: int = 0
    sent: int = 0
    frames: ServerFrames = field(default_factory=ServerFrames)
    eof_at: float | None = None
    error: str = ""
    last_send: float = 0.0  # when the kernel last took some of our bytes (monotonic)

    @property
    def done(self) -> bool:
        return self.eof_at is not None or bool(self.error)

    def on_readable(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = type(exc).__name__
            self.eof_at = time.monotonic()
            return
        if not data:
            self.eof_at = time.monotonic()
            return
        self.frames.feed(data)

    def on_writable(self) -> None:
        if not self.blob:
            return
        try:
            n = self.sock.send(memoryview(self.blob)[self.pos :])
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.error = type(exc).__name__
            self.eof_at = self.eof_at or time.monotonic()
            return
        if n:
            self.sent += n
            self.last_send = time.monotonic()
        # The blob is a whole number of frames: starting over keeps the stream aligned.
        self.pos = (self.pos + n) % len(self.blob)


def pump(
    pumps: Sequence[Pump],
    seconds: float,
    *,
    read: bool = True,
    stop_when_closed: bool = True,
    every: Callable[[], object] | None = None,
) -> None:
    """Send each pump's blob over and over and (if ``read``) read what comes back, until
    ``seconds`` pass or (with ``stop_when_closed``) every pump saw a close frame or EOF."""
    for p in pumps:
        p.sock.setblocking(False)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = [p for p in pumps if not p.done]
        if stop_when_closed:
            live = [p for p in live if p.frames.close_code is None]
        if not live:
            return
        readers = [p.sock for p in live] if read else []
        writers = [p.sock for p in live if p.blob]
        r, w, _ = select.select(readers, writers, [], 0.05)
        by_sock = {p.sock: p for p in live}
        for s in r:
            by_sock[s].on_readable()
        for s in w:
            by_sock[s].on_writable()
        if every is not None:
            every()


def drain(sock: socket.socket, seconds: float, frames: ServerFrames) -> float | None:
    """Read for at most ``seconds``; the time of EOF if it came."""
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([sock], [], [], 0.05)
        if not r:
            continue
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            return time.monotonic()
        if not data:
            return time.monotonic()
        frames.feed(data)
    return None


# --- the server under attack ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONPATH", str(ROOT))
    return env


def server_cwd() -> str:
    """Where server commands run: the first ``PYTHONPATH`` entry, the checkout under test
    (``python3 -m`` puts the working directory first on ``sys.path``, so running in
    another checkout would measure that one)."""
    first = server_env()["PYTHONPATH"].split(os.pathsep)[0]
    return first if os.path.isdir(first) else tempfile.gettempdir()


_HELP_CACHE: dict[str, set[str]] = {}


def supported_flags(template: str) -> set[str]:
    """The ``--flags`` the server command's ``--help`` mentions."""
    if template not in _HELP_CACHE:
        argv = shlex.split(template.format(port=0)) + ["--help"]
        try:
            out = subprocess.run(
                argv,
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
                env=server_env(),
                cwd=server_cwd(),
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        _HELP_CACHE[template] = set(re.findall(r"--[a-z][a-z0-9-]*", out))
    return _HELP_CACHE[template]


class ServerProcess:
    """A server subprocess on a free port: its PID, RSS and descriptors, its stderr lines."""

    def __init__(self, argv: list[str], port: int) -> None:
        self.port = port
        self.argv = argv
        # Closed by close(): it outlives this call, so no with-block.
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env=server_env(),
            cwd=server_cwd(),
        )
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited ({self.proc.returncode}): {self.stderr()[-500:]}"
                )
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"server did not listen on {port}: {argv}") from None
                time.sleep(0.05)
        time.sleep(0.2)  # let it log the probe connection before the attack's line count

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return 0

    def stderr(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def stop(self) -> None:
        terminate(self.proc)

    def close(self) -> None:
        self.stop()
        self._stderr.close()


class Sampler(threading.Thread):
    """Samples a server's RSS and descriptor count every 50 ms; stops it over ``max_rss``."""

    def __init__(self, server: ServerProcess, max_rss_kib: int) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.max_rss_kib = max_rss_kib
        self.rss_before = server.rss_kib()
        self.fds_before = server.fds()
        self.rss_peak = self.rss_before
        self.fds_peak = self.fds_before
        self.killed = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            rss = self.server.rss_kib()
            self.rss_peak = max(self.rss_peak, rss)
            self.fds_peak = max(self.fds_peak, self.server.fds())
            if rss > self.max_rss_kib and not self.killed:
                self.killed = True
                self.server.stop()

    def finish(self) -> None:
        self._stop_event.set()
        self.join(5)


# --- helper processes: canary, flooder, hook server -------------------------------------


def helper_argv(*args: str) -> list[str]:
    return [sys.executable, str(SCRIPT), *args]


class Helper:
    """A helper subprocess (canary or flooder) that prints ``ready`` once connected."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            helper_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"helper {args[0]} did not start: {line!r}")

    def result(self, timeout: float) -> str:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return ""
        return out

    def stop(self) -> None:
        terminate(self.proc)


def canary_main(port: int, seconds: float, path: str, pause: float) -> int:
    """Echo round trips ``pause`` apart for ``seconds``; prints JSON latencies (seconds)."""
    sock = handshake(port, path)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    print("ready", flush=True)
    rtts: list[float] = []
    errors = 0
    frames = ServerFrames()
    deadline = time.monotonic() + seconds
    sock.settimeout(CANARY_TIMEOUT_S)
    i = 0
    while time.monotonic() < deadline and errors < 5:
        i += 1
        payload = f"canary-{i:08d}".encode()
        start = time.monotonic()
        try:
            sock.sendall(client_frame(OP_TEXT, payload))
            before = frames.data_frames
            while frames.data_frames == before and frames.close_code is None:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("EOF")
                frames.feed(data)
        except (OSError, ConnectionError):
            errors += 1
            if frames.close_code is not None:
                break
            continue
        if frames.close_code is not None:
            break
        rtts.append(time.monotonic() - start)
        time.sleep(pause)
    print(json.dumps({"rtts": rtts, "errors": errors, "close": frames.close_code}), flush=True)
    return 0


def flood_main(port: int, seconds: float) -> int:
    """One flooder: 1-byte text messages as fast as the server takes them, echoes read."""
    sock = handshake(port)
    print("ready", flush=True)
    p = Pump(sock, blob=client_frame(OP_TEXT, b"x", key=b"abcd") * 37_000)
    pump([p], seconds, stop_when_closed=True)
    sock.close()
    return 0


def hook_server_main(port: int) -> int:
    """A server whose check_request raises for ``/boom`` (the CLI cannot set the hook)."""
    import logging

    import rfc6455

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    def check(request: Any) -> None:
        if request.target.startswith("/boom"):
            raise RuntimeError("the hook is broken")

    config = rfc6455.Config(port=port, check_request=check)
    rfc6455.Server(config, handler=rfc6455.EchoHandler).serve_forever()
    return 0


# --- attacks ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What an attack reports besides RSS, descriptors and the canary."""

    close: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    server: ServerProcess
    seconds: float
    ignored_flags: list[str]


def _close_text(frames: ServerFrames, start: float, eof_at: float | None, error: str = "") -> str:
    if frames.close_code is not None and frames.closed_at is not None:
        reason = f" {frames.close_reason}" if frames.close_reason else ""
        return f"{frames.close_code}{reason} after {frames.closed_at - start:.1f} s"
    if eof_at is not None:
        return f"dropped ({error or 'EOF'}) after {eof_at - start:.1f} s, no close frame"
    return "not closed"


def attack_empty_continuation(ctx: Context) -> Outcome:
    sock = handshake(ctx.server.port)
    start = time.monotonic()
    sock.sendall(client_frame(OP_TEXT, b"a", fin=False))
    p = Pump(sock, blob=client_frame(OP_CONT, b"", fin=False, key=b"abcd") * 10_000)
    pump([p], ctx.seconds)
    frames_sent = p.sent // 6
    closed = p.frames.close_code is not None
    sock.close()
    return Outcome(
        _close_text(p.frames, start, p.eof_at, p.error),
        [
            f"{frames_sent:,} empty frames taken by the kernels{' until the close' if closed else ''}"
        ],
    )


def attack_ping_flood(ctx: Context) -> Outcome:
    sock = handshake(ctx.server.port, rcvbuf=4096)
    start = time.monotonic()
    p = Pump(sock, blob=client_frame(OP_PING, b"p" * 125, key=b"abcd") * 500)
    pump([p], ctx.seconds, read=False)
    end = time.monotonic()
    notes = [f"{p.sent / 1e6:.1f} MB of pings taken"]
    if p.last_send and end - p.last_send > 1.0:
        notes.append(f"the server stopped reading after {p.last_send - start:.1f} s")
    if p.error:
        sock.close()
        return Outcome(f"dropped ({p.error}) after {(p.eof_at or end) - start:.1f} s", notes)
    # Only now read what the server queued for us: its close frame is behind the pongs.
    eof = drain(sock, 4.0, p.frames)
    pongs = p.frames.frames - (p.frames.close_code is not None)
    sock.close()
    if p.frames.close_code is not None:
        close = f"{p.frames.close_code} {p.frames.close_reason} (read after {pongs:,} pongs)"
    elif eof is not None:
        close = f"dropped without a close frame ({pongs:,} pongs read first)"
    else:
        close = f"not closed ({pongs:,} pongs in all)"
    return Outcome(close, notes)


def attack_tiny_fragments(ctx: Context, conns: int = 20) -> Outcome:
    start = time.monotonic()
    pumps = []
    for _ in range(conns):
        sock = handshake(ctx.server.port)
        sock.sendall(client_frame(OP_BINARY, b"ab", fin=False))
        pumps.append(Pump(sock, blob=client_frame(OP_CONT, b"ab", fin=False, key=b"abcd") * 4096))
    pump(pumps, ctx.seconds)
    codes = collections.Counter(p.frames.close_code for p in pumps)
    times = [p.frames.closed_at - start for p in pumps if p.frames.closed_at is not None]
    for p in pumps:
        p.sock.close()
    payload = sum(p.sent for p in pumps) // 8 * 2
    if times:
        close = ", ".join(f"{c} ×{n}" for c, n in codes.items() if c is not None)
        close += f" after {statistics.median(times):.1f} s (median)"
        if codes[None]:
            close += f"; {codes[None]} open"
    else:
        close = f"none of {conns} closed"
    return Outcome(close, [f"{payload / 1e6:.1f} MB of payload in 2-byte fragments sent"])


def attack_fairness(ctx: Context, flooders: int = 4) -> Outcome:
    helpers = [
        Helper("_flood", "--port", str(ctx.server.port), "--seconds", str(ctx.seconds))
        for _ in range(flooders)
    ]
    for h in helpers:
        h.result(ctx.seconds + 10)
    return Outcome("— (flooders read their echoes)", [f"{flooders} flooders"])


def attack_trickle(ctx: Context) -> Outcome:
    sock = handshake(ctx.server.port)
    start = time.monotonic()
    sock.sendall(frame_header(OP_BINARY, 1000))  # then the payload, 1 byte a second
    p = Pump(sock)
    sent = 0
    deadline = start + ctx.seconds
    while time.monotonic() < deadline and not p.done and p.frames.close_code is None:
        try:
            sock.send(b"x")
            sent += 1
        except OSError as exc:
            p.error = type(exc).__name__
            p.eof_at = time.monotonic()
            break
        pump([p], min(1.0, deadline - time.monotonic()))
    sock.close()
    notes = [f"{sent} payload bytes trickled"]
    return Outcome(_close_text(p.frames, start, p.eof_at, p.error), notes)


def attack_pre_handshake(ctx: Context, sockets: int = 2000) -> Outcome:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = sockets + 256
    if soft < want and (hard == resource.RLIM_INFINITY or hard >= want):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks: list[socket.socket] = []
    try:
        for _ in range(sockets):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect((HOST, ctx.server.port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        opened = len(socks)
        time.sleep(1.0)
        alive = []
        for s in socks:
            s.setblocking(False)
            try:
                gone = s.recv(1) == b""
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if not gone:
                alive.append(s)
        statuses: collections.Counter[str] = collections.Counter()
        for s in alive:
            s.setblocking(True)
            try:
                s.sendall(upgrade_request(ctx.server.port))
            except OSError:
                statuses["send failed"] += 1
                continue
            head = read_response_head(s, 2.0)
            statuses[head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "no answer"] += 1
    finally:
        for s in socks:
            s.close()
    close = f"{opened - len(alive):,} of {opened:,} closed at once; {len(alive):,} held"
    answers = ", ".join(f"{k} ×{v}" for k, v in sorted(statuses.items()))
    return Outcome(close, [f"requests on the held ones: {answers}"])


def attack_rate_limit_logs(ctx: Context) -> Outcome:
    lines_before = ctx.server.stderr().count("\n")
    sock = handshake(ctx.server.port)
    start = time.monotonic()
    p = Pump(sock, blob=client_frame(OP_TEXT, b"spam", key=b"abcd") * 1000)
    pump([p], ctx.seconds, stop_when_closed=False)
    sock.close()
    time.sleep(0.3)
    text = ctx.server.stderr()
    new = text.count("\n") - lines_before
    warnings = sum("WARNING" in line for line in text.splitlines()[lines_before:])
    return Outcome(
        _close_text(p.frames, start, p.eof_at, p.error),
        [f"{new:,} server log lines ({warnings:,} WARNING) in {ctx.seconds:.0f} s"],
    )


def attack_check_request_hook(ctx: Context, requests: int = 20) -> Outcome:
    lines_before = ctx.server.stderr().count("\n")
    statuses: collections.Counter[str] = collections.Counter()
    for _ in range(requests):
        with socket.create_connection((HOST, ctx.server.port), timeout=5) as s:
            s.sendall(upgrade_request(ctx.server.port, "/boom"))
            head = read_response_head(s, 3.0)
        statuses[head[9:12].decode() if head.startswith(b"HTTP/1.1 ") else "no response"] += 1
    time.sleep(0.3)
    text = ctx.server.stderr()
    new = text.splitlines()[lines_before:]
    tracebacks = sum(line.startswith("Traceback") for line in new)
    unhandled = sum("unhandled error" in line for line in new)
    answers = ", ".join(f"{k} ×{v}" for k, v in sorted(statuses.items()))
    return Outcome(
        answers,
        [f"{len(new)} log lines, {tracebacks} tracebacks, {unhandled} 'unhandled error'"],
    )


def attack_memory_budget(ctx: Context, conns: int = 40) -> Outcome:
    size = (1 << 20) - 1
    start = time.monotonic()
    pumps = []
    for _ in range(conns):
        sock = handshake(ctx.server.port)
        sock.sendall(frame_header(OP_BINARY, size))
        pumps.append(Pump(sock, blob=b""))
    chunk = b"z" * 65536
    left = {id(p): size - 100 for p in pumps}
    deadline = start + ctx.seconds
    while time.monotonic() < deadline and any(left.values()):
        for p in pumps:
            n = min(left[id(p)], len(chunk))
            if not n or p.done or p.frames.close_code is not None:
                left[id(p)] = 0
                continue
            try:
                p.sock.sendall(chunk[:n])
            except OSError:
                left[id(p)] = 0
                continue
            left[id(p)] -= n
    pump(pumps, max(0.5, min(2.0, deadline - time.monotonic())))
    codes = collections.Counter(p.frames.close_code for p in pumps)
    for p in pumps:
        p.sock.close()
    close = ", ".join(f"{c} ×{n}" for c, n in codes.items() if c is not None) or "none closed"
    if codes[None] and len(codes) > 1:
        close += f"; {codes[None]} open"
    return Outcome(close, [f"{conns} × {(size - 100) / 1e6:.1f} MB held"])


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[Context], Outcome]
    flags: tuple[str, ...] = ()
    hook_server: bool = False
    canary_pause: float = CANARY_PAUSE_S


ATTACKS: Final = (
    Attack("empty-continuation", attack_empty_continuation),
    Attack("ping-flood", attack_ping_flood),
    Attack("tiny-fragments", attack_tiny_fragments),
    Attack("fairness", attack_fairness),
    Attack("trickle", attack_trickle, ("--message-timeout", "5")),
    Attack("pre-handshake", attack_pre_handshake, ("--max-connections-per-ip", "10")),
    # The canary stays under the rate limit (10 messages/s per connection) itself.
    Attack("rate-limit-logs", attack_rate_limit_logs, ("--rate-limit", "10"), canary_pause=0.25),
    Attack("check-request-hook", attack_check_request_hook, hook_server=True),
    Attack("memory-budget", attack_memory_budget, ("--memory-budget", str(16 << 20))),
)


# --- running and reporting ----------------------------------------------------------------


def _pairs(flags: Sequence[str]) -> list[tuple[str, str]]:
    return [(flags[i], flags[i + 1]) for i in range(0, len(flags), 2)]


def start_server(template: str, attack: Attack) -> tuple[ServerProcess, list[str], list[str]]:
    """The server for ``attack``: its process, the flags given, the flags it lacks."""
    port = free_port()
    if attack.hook_server:
        return ServerProcess(helper_argv("_hook-server", "--port", str(port)), port), [], []
    argv = shlex.split(template.format(port=port))
    known = supported_flags(template)
    given: list[str] = []
    ignored: list[str] = []
    for flag, value in _pairs(attack.flags):
        if flag in known:
            given += [flag, value]
        else:
            ignored.append(flag)
    return ServerProcess(argv + given, port), given, ignored


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class CanaryResult:
    rtts: list[float]
    errors: int
    close: int | None

    def text(self) -> str:
        if not self.rtts:
            return f"no round trip ({self.errors} timeouts)"
        text = (
            f"{_ms(percentile(self.rtts, 0.5))} / {_ms(percentile(self.rtts, 0.99))} ms"
            f" (n={len(self.rtts):,})"
        )
        if self.errors:
            text += f", {self.errors} timeouts"
        if self.close is not None:
            text += f", closed {self.close}"
        return text


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def run_canary(port: int, seconds: float, path: str = "/", pause: float = CANARY_PAUSE_S) -> Helper:
    return Helper(
        "_canary",
        "--port",
        str(port),
        "--seconds",
        str(seconds),
        "--path",
        path,
        "--pause",
        str(pause),
    )


def canary_result(helper: Helper, seconds: float) -> CanaryResult:
    out = helper.result(seconds + CANARY_TIMEOUT_S * 6 + 5)
    try:
        data = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return CanaryResult([], 0, None)
    return CanaryResult(data["rtts"], data["errors"], data["close"])


def run_one(template: str, attack: Attack, seconds: float, max_rss_kib: int) -> list[str]:
    server, given, ignored = start_server(template, attack)
    sampler = Sampler(server, max_rss_kib)
    try:
        canary = run_canary(server.port, seconds + 1, pause=attack.canary_pause)
        sampler.start()
        ctx = Context(server, seconds, ignored)
        try:
            outcome = attack.run(ctx)
        except (OSError, RuntimeError) as exc:
            outcome = Outcome(f"attack failed: {exc}")
        canary_res = canary_result(canary, seconds + 1)
        time.sleep(0.1)
    finally:
        sampler.finish()
        server.close()
    notes = list(outcome.notes)
    if given:
        notes.insert(0, " ".join(given))
    if ignored:
        notes.append("not supported: " + " ".join(ignored))
    if sampler.killed:
        notes.append(f"server stopped at RSS > {max_rss_kib // 1024} MiB")
    return [
        attack.name,
        f"{sampler.rss_before / 1024:.0f} → {sampler.rss_peak / 1024:.0f} MiB",
        f"{sampler.fds_before} → {sampler.fds_peak}",
        outcome.close,
        canary_res.text(),
        "; ".join(notes),
    ]


def describe_server(template: str) -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-c", "import rfc6455; print(rfc6455.__version__, rfc6455.__file__)"],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
            env=server_env(),
            cwd=server_cwd(),
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = "?"
    return f"`{template}` with PYTHONPATH={server_env().get('PYTHONPATH')} (rfc6455 {out})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-cmd", default=DEFAULT_SERVER, help="with {port}")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per attack")
    parser.add_argument("--only", action="append", choices=[a.name for a in ATTACKS])
    parser.add_argument("--label", default="", help="a title for the table")
    parser.add_argument("--max-rss", type=int, default=2048, metavar="MIB")
    sub = parser.add_subparsers(dest="helper")
    canary = sub.add_parser("_canary")
    canary.add_argument("--port", type=int, required=True)
    canary.add_argument("--seconds", type=float, required=True)
    canary.add_argument("--path", default="/")
    canary.add_argument("--pause", type=float, default=CANARY_PAUSE_S)
    flood = sub.add_parser("_flood")
    flood.add_argument("--port", type=int, required=True)
    flood.add_argument("--seconds", type=float, required=True)
    hook = sub.add_parser("_hook-server")
    hook.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    if args.helper == "_canary":
        return canary_main(args.port, min(args.seconds, MAX_DURATION_S + 5), args.path, args.pause)
    if args.helper == "_flood":
        return flood_main(args.port, min(args.seconds, MAX_DURATION_S))
    if args.helper == "_hook-server":
        return hook_server_main(args.port)
    if not sys.platform.startswith("linux"):
        print("attacks.py needs Linux (/proc)", file=sys.stderr)
        return 2
    seconds = max(1.0, min(args.duration, MAX_DURATION_S))
    attacks = [a for a in ATTACKS if not args.only or a.name in args.only]
    max_rss_kib = args.max_rss * 1024

    started = time.monotonic()
    print(f"## Attacks{': ' + args.label if args.label else ''}\n")
    print(f"Server: {describe_server(args.server_cmd)}; {seconds:.0f} s per attack.\n")
    idle_server = ServerProcess(shlex.split(args.server_cmd.format(port=(p := free_port()))), p)
    try:
        idle = canary_result(run_canary(idle_server.port, 3.0), 3.0)
    finally:
        idle_server.close()
    print(f"Canary idle baseline, p50 / p99: {idle.text()}.\n")
    print(
        "| attack | server RSS before → peak | fds before → peak | close code / time to close"
        " | canary p50 / p99 | notes |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for attack in attacks:
        row = run_one(args.server_cmd, attack, seconds, max_rss_kib)
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |", flush=True)
    print(f"\n({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
