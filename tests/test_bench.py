"""Tests for the load generator ``benchmarks/loadgen.py`` and the benchmark server
``benchmarks/bench_server.py`` (scripts in the checkout, imported here by path): the frame
helpers, the slow path, and short smoke runs of the echo, broadcast and idle-connection
benchmarks against real server subprocesses on 127.0.0.1.

The smoke runs are bounded (a few connections, about a second each) and assert the shape and
sanity of the result, never a speed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import json
import math
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest
from helpers import xor_mask
from test_server import running_server, url

import rfc6455
from rfc6455 import connect

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> ModuleType:
    """Import ``benchmarks/NAME.py`` by path (the benchmarks folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load("loadgen")
bench_server = _load("bench_server")


def test_client_frame_is_masked_and_decodes_to_the_payload() -> None:
    payload = bytes(range(200))
    key = b"\x01\x02\x03\x04"
    frame = bench.client_frame(payload, key=key)
    assert frame[:4] == bytes((0x82, 0x80 | 126)) + struct.pack("!H", 200)
    assert frame[4:8] == key
    assert xor_mask(frame[8:], key) == payload


@pytest.mark.parametrize(("size", "header_len"), [(0, 2), (125, 2), (126, 4), (65536, 10)])
def test_server_frame_lengths(size: int, header_len: int) -> None:
    frame = bench.server_frame(b"x" * size)
    assert len(frame) == header_len + size
    frames, consumed = bench.parse_server_frames(bytearray(frame))
    assert frames == [(0x2, True, b"x" * size)]
    assert consumed == len(frame)


def test_parse_server_frames_keeps_an_incomplete_tail() -> None:
    whole = bench.server_frame(b"abc") + bench.server_frame(b"d" * 300)
    frames, consumed = bench.parse_server_frames(bytearray(whole[:-1]))
    assert frames == [(0x2, True, b"abc")]
    assert consumed == 5


def test_parse_server_frames_rejects_a_masked_frame() -> None:
    with pytest.raises(bench.BenchError, match="masked"):
        bench.parse_server_frames(bytearray(bench.client_frame(b"hi")))


def test_slow_path_answers_ping_joins_fragments_and_checks_payload() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        client = bench.Client(ours)
        ping = bytes((0x89, 2)) + b"hb"
        first = bytes((0x02, 3)) + b"abc"  # FIN clear: first fragment
        last = bytes((0x80, 2)) + b"de"  # FIN set: continuation
        data = ping + first + last
        assert client.slow_path(data[:5], b"abcde") == 0
        assert client.slow_path(data[5:], b"abcde") == 1
        assert client.pending is None
        pong = theirs.recv(64)
        assert pong[0] == 0x8A and pong[1] == 0x82
        assert xor_mask(pong[6:], pong[2:6]) == b"hb"
        with pytest.raises(bench.BenchError, match="mismatch"):
            client.slow_path(bench.server_frame(b"zzzzz"), b"abcde")
        with pytest.raises(bench.BenchError, match="closed"):
            client.slow_path(bytes((0x88, 2)) + struct.pack("!H", 1001), None)


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))
    assert bench.percentile(values, 50) == 50
    assert bench.percentile(values, 99) == 99
    assert bench.percentile(values, 100) == 100
    assert math.isnan(bench.percentile([], 50))


def test_server_specs() -> None:
    name, command = bench.parse_server_spec("mine=prog --port {port} --mode {mode}", "echo", 1)
    assert (name, command) == ("mine", "prog --port {port} --mode {mode}")
    name, command = bench.parse_server_spec("websockets", "connections", 10)
    assert name == "websockets" and "--ping-interval 20" in command
    with pytest.raises(bench.BenchError, match="unknown server"):
        bench.parse_server_spec("nosuch", "echo", 1)
    assert bench.main(["echo", "--server", "nosuch", "--no-pin"]) == 2


def test_summary_ratios_against_the_reference() -> None:
    runs = [
        {"impl": "a", "size": 32, "msgs_per_s": 300.0, "server_us_per_msg": 5.0},
        {"impl": "a", "size": 32, "msgs_per_s": 100.0, "server_us_per_msg": 7.0},
        {"impl": "b", "size": 32, "msgs_per_s": 100.0, "server_us_per_msg": 12.0},
        {"impl": "b", "size": 32, "error": "ignored"},
    ]
    rows = {r["impl"]: r for r in bench.summarize("echo", runs, "b")}
    assert rows["a"]["msgs_per_s"] == 200.0 and rows["a"]["rounds"] == 2
    assert rows["a"]["ratio_primary"] == 2.0
    assert rows["a"]["ratio_cost"] == 0.5
    assert rows["b"]["rounds"] == 1


def _run(tmp_path: Path, *argv: str) -> dict[str, object]:
    out = tmp_path / "result.json"
    status = bench.main(
        [
            *argv,
            "--no-pin",
            "--rounds",
            "1",
            "--quiet-wait",
            "0",
            "--retry-noisy",
            "0",
            "--json",
            str(out),
        ]
    )
    report: dict[str, object] = json.loads(out.read_text())
    assert status == 0, report["runs"]
    return report


@pytest.mark.parametrize("server", ["rfc6455", "websockets"])
def test_echo_smoke(tmp_path: Path, server: str) -> None:
    report = _run(
        tmp_path, "echo", "--server", server, "--conns", "2", "--sizes", "32,3000",
        "--duration", "1", "--warmup", "0.2",
    )  # fmt: skip
    runs = report["runs"]
    assert isinstance(runs, list) and len(runs) == 2
    for run, size in zip(runs, (32, 3000), strict=True):
        assert run["impl"] == server and run["size"] == size and run["conns"] == 2
        assert run["msgs"] > 0 and run["msgs_per_s"] > 0
        assert 0 < run["rtt_us"]["p50"] <= run["rtt_us"]["p99"] <= run["rtt_us"]["max"]
        assert run["server_cpu_s"] >= 0 and run["server_us_per_msg"] >= 0
        for key in ("server_cpu_util", "client_cpu_util", "foreign_cpu_util", "duration_s"):
            assert key in run
    summary = report["summary"]
    assert isinstance(summary, list) and {row["size"] for row in summary} == {32, 3000}


def test_broadcast_smoke(tmp_path: Path) -> None:
    report = _run(
        tmp_path, "broadcast", "--server", "rfc6455", "--subs", "5", "--publishes", "5",
        "--warmup-publishes", "1",
    )  # fmt: skip
    (run,) = report["runs"]  # type: ignore[misc]
    assert run["publishes"] == 5 and run["timeouts"] == 0 and run["publisher_junk"] == 0
    assert 0 < run["first_ms"]["p50"] <= run["last_ms"]["p50"]
    assert run["server_us_per_delivery"] >= 0


def test_connections_smoke(tmp_path: Path) -> None:
    report = _run(tmp_path, "connections", "--server", "rfc6455", "--conns", "50", "--hold", "0.5")
    (run,) = report["runs"]  # type: ignore[misc]
    assert run["conns"] == 50
    assert run["rss_before_kib"] > 0 and run["rss_after_kib"] > 0
    assert not math.isnan(run["kib_per_conn"])


class _OddEchoServer:
    """A deliberately awkward echo server on 127.0.0.1 (one thread per connection): it sends
    a ping before every echo, splits each echo across two writes, or fragments it, or corrupts
    it, so that the generator's slow path is what gets tested."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.pongs = 0
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self.threads.append(thread)
                thread.start()

    def _recv_exact(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError, ConnectionError):
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(
                hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
            )
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            while True:
                b0, b1 = self._recv_exact(conn, 2)
                length = b1 & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", self._recv_exact(conn, 2))
                mask = self._recv_exact(conn, 4)
                payload = xor_mask(self._recv_exact(conn, length), mask)
                opcode = b0 & 0x0F
                if opcode == 0xA:
                    self.pongs += 1
                    continue
                if opcode == 0x8:
                    return
                self._echo(conn, payload)

    def _echo(self, conn: socket.socket, payload: bytes) -> None:
        if self.style == "ping-split":
            frame = bytes((0x89, 1)) + b"p" + bench.server_frame(payload)
            conn.sendall(frame[:4])
            time.sleep(0.001)
            conn.sendall(frame[4:])
        elif self.style == "fragmented":
            half = len(payload) // 2
            conn.sendall(
                bytes((0x02, half)) + payload[:half] + bytes((0x80, len(payload) - half))
                + payload[half:]
            )  # fmt: skip
        else:  # corrupt
            conn.sendall(bench.server_frame(payload[::-1]))

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("style", ["ping-split", "fragmented"])
def test_echo_slow_path_against_an_awkward_server(style: str) -> None:
    server = _OddEchoServer(style)
    try:
        result = bench.run_echo(server.port, conns=2, size=40, warmup=0.1, duration=0.5)
    finally:
        server.close()
    assert result["msgs"] > 0
    assert result["slow_path_hits"] > 0
    if style == "ping-split":
        assert server.pongs > 0


def test_echo_detects_a_corrupted_echo() -> None:
    server = _OddEchoServer("corrupt")
    try:
        with pytest.raises(bench.BenchError, match="mismatch"):
            bench.run_echo(server.port, conns=1, size=40, warmup=0.1, duration=0.5)
    finally:
        server.close()


def test_profile_top_ranks_leaf_lines_by_self_time(tmp_path: Path) -> None:
    raw = tmp_path / "p.raw"
    raw.write_text(
        "main (a.py:1);send (b.py:2) 6\nmain (a.py:1);recv (b.py:3) 3\nmain (a.py:1) 1\n"
    )
    top = bench.profile_top(str(raw), top=2)
    assert top == [(0.6, "send (b.py:2)"), (0.3, "recv (b.py:3)")]


def test_the_package_holds_no_benchmark_modules() -> None:
    # Files, not find_spec: an editable install of another checkout would answer for it.
    package = Path(rfc6455.__file__).parent
    assert package == BENCHMARKS.parent / "rfc6455"
    assert not [p.name for p in package.glob("bench*")]


def test_script_help_lists_the_modes() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCHMARKS / "loadgen.py"), "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "{echo,broadcast,connections}" in out and "--server SPEC" in out


def test_shared_handler_instance_broadcasts_one_frame_to_others() -> None:
    hub = bench_server.BroadcastHandler()
    with (
        running_server(handler=hub) as server,
        connect(url(server)) as a,
        connect(url(server)) as b,
        connect(url(server)) as c,
    ):
        a.send("news")
        assert b.recv(timeout=5) == "news"
        assert c.recv(timeout=5) == "news"
        c.send(b"\x00bin")
        assert a.recv(timeout=5) == b"\x00bin"
        assert b.recv(timeout=5) == b"\x00bin"
        with pytest.raises(TimeoutError):
            a.recv(timeout=0.1)  # the publisher does not get its own message
