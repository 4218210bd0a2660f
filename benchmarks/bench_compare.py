"""Echo servers side by side, one table: rfc6455 vs picows vs websockets vs aiohttp (vs gorilla).

Run from a checkout, on Linux::

    python3 benchmarks/bench_compare.py                           # 32 B, 50 conns, 5 s x 2 rounds
    python3 benchmarks/bench_compare.py --sizes 1048576,16777216 --conns 4
    python3 benchmarks/bench_compare.py --baseline /tmp/perf-base  # + main's rfc6455, same run
    python3 benchmarks/bench_compare.py --python-kernels           # + RFC6455_NO_EXTENSIONS=1

Every server is a subprocess pinned to CPU 0 (``--server-cpu``), this script and its load
client (``loadgen.py``'s raw-socket epoll client: pre-masked frames, every echo checked byte
for byte) are pinned to CPU 1. Implementations are interleaved, in a rotated order each round,
a fresh server per (round, size). Per run: the server's ``utime`` and ``stime`` from
``/proc/PID/stat`` over the measured window, divided by the messages echoed (user, sys, total
µs per message; minor page faults per message), msgs/s, round-trip p50/p99, and the growth of
the server's peak RSS (``VmHWM``) over its idle RSS, per connection. The table shows the median
of the rounds with the range (min–max) when there are several, and the ratios of the medians
against ``--reference`` (default picows). On a shared machine CPU per message is the figure to
trust; throughput and latency move with other tenants (the ``foreign`` column: cores used by
other processes during the run).

Servers (all stand alone, in ``benchmarks/``): ``rfc6455`` (``bench_server.py``, echo handler:
a Python ``on_message`` calling ``ws.send``), ``picows``, ``websockets``, ``aiohttp``
(``peer_servers/``; asyncio loop for all) and ``gorilla`` (Go) only when a server binary is
given (``--gorilla PATH`` or ``$GORILLA_SERVER``; a command taking ``--port P --mode echo``):
skipped otherwise. Peers not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import loadgen  # the load client and process helpers of this folder

__all__ = ["main"]

DEFAULT_SERVERS: Final = ("rfc6455", "picows", "websockets", "aiohttp", "gorilla")
MAX_SIZE: Final = 1 << 25


def _peak_rss_kib(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a process, KiB; 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_commands(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """``{name: command template}`` for the servers asked for, and notes on those skipped."""
    py = shlex.quote(sys.executable)
    peers = HERE / "peer_servers"
    ours = f"{py} {shlex.quote(str(HERE / 'bench_server.py'))} --port {{port}} --mode echo"
    ours += f" --max-message-size {MAX_SIZE}"
    commands: dict[str, str] = {}
    notes: list[str] = []
    for name in args.servers.split(","):
        name = name.strip()
        if name == "rfc6455":
            commands[name] = ours
            if args.python_kernels:
                commands["rfc6455-python"] = "env RFC6455_NO_EXTENSIONS=1 " + ours
        elif name in ("picows", "websockets", "aiohttp"):
            if importlib.util.find_spec(name) is None:
                notes.append(f"{name}: not installed, skipped")
                continue
            script = peers / f"{name}_server.py"
            extra = f" --max-size {MAX_SIZE}" if name != "websockets" else ""
            commands[name] = f"{py} {shlex.quote(str(script))} --port {{port}} --mode echo{extra}"
        elif name == "gorilla":
            binary = args.gorilla or os.environ.get("GORILLA_SERVER")
            if not binary or not os.access(binary, os.X_OK):
                notes.append("gorilla: no server binary (--gorilla PATH), skipped")
                continue
            commands[name] = f"{shlex.quote(binary)} --port {{port}} --mode echo"
        elif name:
            raise SystemExit(f"unknown server {name!r}; known: {', '.join(DEFAULT_SERVERS)}")
    if args.baseline:
        base = Path(args.baseline).resolve() / "benchmarks" / "bench_server.py"
        if not base.exists():
            raise SystemExit(f"--baseline: {base} not found")
        commands["rfc6455@base"] = f"{py} {shlex.quote(str(base))} --port {{port}} --mode echo"
        if "--max-message-size" in base.read_text():
            commands["rfc6455@base"] += f" --max-message-size {MAX_SIZE}"
        if args.python_kernels:
            commands["rfc6455@base-python"] = (
                "env RFC6455_NO_EXTENSIONS=1 " + commands["rfc6455@base"]
            )
    return commands, notes


def one_run(
    name: str, template: str, size: int, args: argparse.Namespace, log_dir: str
) -> dict[str, Any]:
    """Start the server, drive one echo run, stop it; the run's figures (or ``error``)."""
    if name.startswith("rfc6455@base") and size > (1 << 20) and "--max-message-size" not in template:
        return {"impl": name, "size": size, "error": "baseline limited to 1 MiB messages"}
    server = loadgen.ServerProcess(name, template, "echo", args.server_cpu, log_dir)
    try:
        server.wait_ready()
        foreign_before = loadgen.wait_quiet(args.noisy, args.quiet_wait)
        rss0 = loadgen.rss_kib(server.pid)
        with loadgen.pinned(args.client_cpu):
            result = loadgen.run_echo(
                server.port,
                conns=args.conns,
                size=size,
                warmup=args.warmup,
                duration=args.duration,
                server_pid=server.pid,
            )
        peak = _peak_rss_kib(server.pid)
        msgs = result["msgs"] or math.nan
        result.update(
            impl=name,
            foreign_before=foreign_before,
            user_us=result["server_user_cpu_s"] / msgs * 1e6,
            sys_us=result["server_sys_cpu_s"] / msgs * 1e6,
            total_us=result["server_cpu_s"] / msgs * 1e6,
            minflt_per_msg=result["server_minflt"] / msgs,
            rss_idle_kib=rss0,
            rss_peak_kib=peak,
            rss_growth_per_conn_kib=(peak - rss0) / args.conns if peak else math.nan,
        )
        return result
    except loadgen.BenchError as exc:
        return {"impl": name, "size": size, "error": f"{exc} | {server.tail()}"}
    finally:
        server.stop()


def handshake_run(
    name: str, template: str, args: argparse.Namespace, log_dir: str
) -> dict[str, Any]:
    """Open ``--conns`` connections (200 handshakes in flight at a time) and close them;
    the server's CPU per handshake and the handshakes per second (wall)."""
    server = loadgen.ServerProcess(name, template, "echo", args.server_cpu, log_dir)
    try:
        server.wait_ready()
        foreign_before = loadgen.wait_quiet(args.noisy, args.quiet_wait)
        with loadgen.pinned(args.client_cpu):
            user0, sys0 = loadgen.proc_cpu_times(server.pid)
            t0 = time.perf_counter()
            clients = loadgen.open_connections(server.port, args.conns)
            wall = time.perf_counter() - t0
            user1, sys1 = loadgen.proc_cpu_times(server.pid)
            loadgen.close_connections(clients)
        n = len(clients)
        return {
            "impl": name,
            "size": 0,
            "foreign_before": foreign_before,
            "user_us": (user1 - user0) / n * 1e6,
            "sys_us": (sys1 - sys0) / n * 1e6,
            "total_us": (user1 - user0 + sys1 - sys0) / n * 1e6,
            "msgs_per_s": n / wall,
        }
    except loadgen.BenchError as exc:
        return {"impl": name, "size": 0, "error": f"{exc} | {server.tail()}"}
    finally:
        server.stop()


#: A compressible text message for the deflate mode (~1 KiB of JSON-like text).
DEFLATE_TEXT: Final = "".join(
    f'{{"id": {i}, "name": "user{i % 7}", "tags": ["a", "b"], "score": {i * 37 % 1000}}}\n'
    for i in range(16)
)


def deflate_run(
    name: str, template: str, args: argparse.Namespace, log_dir: str
) -> dict[str, Any]:
    """Compressed echo: rfc6455's blocking client (permessage-deflate offered, context
    takeover) sends ``DEFLATE_TEXT`` round trips on one connection; the server's CPU per
    message (both servers run with compression on)."""
    from rfc6455 import connect

    server = loadgen.ServerProcess(name, template + " --compression", "echo",
                                   args.server_cpu, log_dir)
    count = max(1, args.client_messages)
    try:
        server.wait_ready()
        foreign_before = loadgen.wait_quiet(args.noisy, args.quiet_wait)
        with loadgen.pinned(args.client_cpu):
            ws = connect(f"ws://127.0.0.1:{server.port}/")
            try:
                for _ in range(100):
                    ws.send(DEFLATE_TEXT)
                    ws.recv()
                window = loadgen.Window(server.pid)
                for _ in range(count):
                    ws.send(DEFLATE_TEXT)
                    if ws.recv() != DEFLATE_TEXT:
                        raise loadgen.BenchError("wrong echo")
                cpu = window.close()
            finally:
                ws.close()
        return {
            "impl": name,
            "size": len(DEFLATE_TEXT),
            "foreign_before": foreign_before,
            "foreign_cpu_util": cpu["foreign_cpu_util"],
            "user_us": cpu["server_user_cpu_s"] / count * 1e6,
            "sys_us": cpu["server_sys_cpu_s"] / count * 1e6,
            "total_us": cpu["server_cpu_s"] / count * 1e6,
            "minflt_per_msg": cpu["server_minflt"] / count,
            "msgs_per_s": count / cpu["wall_s"],
        }
    except loadgen.BenchError as exc:
        return {"impl": name, "size": len(DEFLATE_TEXT), "error": f"{exc} | {server.tail()}"}
    finally:
        server.stop()


def client_run(name: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Blocking-client round trips (32 B binary, depth 1) against an echo server: this
    process's CPU per round trip (the client's cost) and round trips per second."""
    payload = os.urandom(32)
    count = max(1, args.client_messages)
    if name == "raw socket":
        return raw_client_run(port, args)
    if name == "rfc6455":
        from rfc6455 import connect

        ws: Any = connect(f"ws://127.0.0.1:{port}/")
        send, recv = ws.send, ws.recv
    else:
        from websockets.sync.client import connect as ws_connect

        ws = ws_connect(f"ws://127.0.0.1:{port}/", compression=None)
        send, recv = ws.send, ws.recv
    try:
        for _ in range(100):  # warm-up
            send(payload)
            recv()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            send(payload)
            if recv() != payload:
                raise loadgen.BenchError("wrong echo")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        ws.close()
    return {
        "impl": name,
        "size": 32,
        "total_us": cpu / count * 1e6,
        "msgs_per_s": count / wall,
    }


def raw_client_run(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """The floor under any blocking client: after rfc6455's handshake, a blocking socket
    sends one pre-masked 32 B frame and reads the echo, with no WebSocket code at all."""
    from rfc6455 import connect, encode_frame

    ws: Any = connect(f"ws://127.0.0.1:{port}/")
    sock = ws._sock
    sock.setblocking(True)
    payload = os.urandom(32)
    frame = encode_frame(0x2, payload, mask=True)
    expected = encode_frame(0x2, payload)
    buf = bytearray(65536)
    count = max(1, args.client_messages)

    def round_trip() -> None:
        sock.sendall(frame)
        n = 0
        while n < len(expected):
            got = sock.recv_into(memoryview(buf)[n:])
            if not got:
                raise loadgen.BenchError("connection closed")
            n += got
        if buf[:n] != expected:
            raise loadgen.BenchError("wrong echo")

    try:
        for _ in range(100):  # warm-up
            round_trip()
        cpu0, t0 = time.process_time(), time.perf_counter()
        for _ in range(count):
            round_trip()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    finally:
        ws.close()
    return {"impl": "raw socket", "size": 32, "total_us": cpu / count * 1e6, "msgs_per_s": count / wall}


#: (heading, key, decimals): the table's measured columns.
COLUMNS: Final = (
    ("user µs/msg", "user_us", 2),
    ("sys µs/msg", "sys_us", 2),
    ("total µs/msg", "total_us", 2),
    ("minflt/msg", "minflt_per_msg", 3),
    ("msgs/s", "msgs_per_s", 0),
    ("p50 µs", "rtt_us.p50", 0),
    ("p99 µs", "rtt_us.p99", 0),
    ("peak RSS +KiB/conn", "rss_growth_per_conn_kib", 0),
    ("foreign", "foreign_cpu_util", 2),
)


def _cell(values: list[float], digits: int) -> str:
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return "–"
    med = statistics.median(clean)
    text = f"{med:,.{digits}f}"
    if len(clean) > 1 and round(clean[0], digits) != round(clean[-1], digits):
        text += f" ({clean[0]:,.{digits}f}–{clean[-1]:,.{digits}f})"
    return text


def table(
    runs: list[dict[str, Any]],
    size: int,
    reference: str,
    columns: Sequence[tuple[str, str, int]] = COLUMNS,
) -> str:
    """The markdown table of one message size: medians (ranges) and ratios to ``reference``."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run.get("size") == size and "error" not in run:
            groups.setdefault(run["impl"], []).append(run)

    def median(impl: str, key: str) -> float:
        values = [loadgen._dig(r, key) for r in groups.get(impl, [])]
        clean = [v for v in values if not math.isnan(v)]
        return statistics.median(clean) if clean else math.nan

    head = ["server", *(c[0] for c in columns), f"CPU × {reference}", f"rate × {reference}"]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for impl, group in groups.items():
        cells = [f"{impl} ({len(group)})"]
        cells += [_cell([loadgen._dig(r, key) for r in group], d) for _, key, d in columns]
        for key in ("total_us", "msgs_per_s"):
            ratio = median(impl, key) / median(reference, key)
            cells.append("–" if math.isnan(ratio) else f"{ratio:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Echo benchmark: rfc6455 and its peers in one run, one table per size."
    )
    parser.add_argument("--mode", choices=["echo", "handshake", "client", "deflate"],
                        default="echo",
                        help="echo (default); handshake: open --conns connections, server CPU "
                        "per handshake; client: blocking-client round trips, rfc6455's "
                        "connect() vs websockets.sync, against the picows echo server; "
                        "deflate: compressed echo of ~1 KiB text, rfc6455 vs websockets")
    parser.add_argument("--client-messages", type=int, default=20_000,
                        help="client mode: round trips per run")
    parser.add_argument("--client-server", default=None,
                        help="client mode: the echo server (one of --servers; default picows)")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                        help="comma-separated: rfc6455, picows, websockets, aiohttp, gorilla")
    parser.add_argument("--sizes", default="32", help="message sizes, bytes, comma-separated")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference", default="picows", help="the ratio columns' base")
    parser.add_argument("--gorilla", default=None, help="a gorilla/websocket echo server binary")
    parser.add_argument("--baseline", default=None, metavar="CHECKOUT",
                        help="also run CHECKOUT/benchmarks/bench_server.py as rfc6455@base")
    parser.add_argument("--python-kernels", action="store_true",
                        help="also run rfc6455 with RFC6455_NO_EXTENSIONS=1")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    parser.add_argument("--quiet-wait", type=float, default=5.0,
                        help="before each run, wait up to S s for other tenants to calm down")
    parser.add_argument("--noisy", type=float, default=0.25, help="foreign cores deemed quiet")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every run as JSON")
    return parser


HANDSHAKE_COLUMNS: Final = (
    ("user µs/handshake", "user_us", 1),
    ("sys µs/handshake", "sys_us", 1),
    ("total µs/handshake", "total_us", 1),
    ("handshakes/s", "msgs_per_s", 0),
)
CLIENT_COLUMNS: Final = (("client CPU µs/round trip", "total_us", 2), ("round trips/s", "msgs_per_s", 0))


def client_main(args: argparse.Namespace, commands: dict[str, str]) -> int:
    """The blocking clients, alternated, against one echo server (``--client-server``:
    picows by default, else rfc6455), with a raw blocking socket as the floor."""
    name = args.client_server or ("picows" if "picows" in commands else "rfc6455")
    if name not in commands:
        raise SystemExit(f"--client-server {name}: not among the servers available")
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_compare-") as log_dir:
        server = loadgen.ServerProcess(name, commands[name], "echo", args.server_cpu, log_dir)
        try:
            server.wait_ready()
            with loadgen.pinned(args.client_cpu):
                for rnd in range(args.rounds):
                    clients = ("rfc6455", "websockets", "raw socket")
                    for client in clients[:: 1 if rnd % 2 == 0 else -1]:
                        run = client_run(client, server.port, args)
                        print(f"round {rnd} {client}: {run['total_us']:.2f} µs/round trip, "
                              f"{run['msgs_per_s']:,.0f}/s", file=sys.stderr, flush=True)
                        runs.append(run)
        finally:
            server.stop()
    print(f"\nBlocking clients, 32 B round trips against the {name} echo server, "
          f"{args.client_messages} per run x {args.rounds} rounds\n")
    print(table(runs, 32, "websockets", CLIENT_COLUMNS))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run every server for every size and round; print the tables."""
    args = build_parser().parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("bench_compare needs Linux (epoll, /proc, CPU affinity)", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(not 0 < s <= MAX_SIZE for s in sizes) or not 1 <= args.rounds <= loadgen.MAX_ROUNDS:
        print(f"sizes must be 1..{MAX_SIZE}, rounds 1..{loadgen.MAX_ROUNDS}", file=sys.stderr)
        return 2
    commands, notes = server_commands(args)
    for note in notes:
        print(note, file=sys.stderr)
    loadgen._raise_nofile(args.conns * 2 + 100)
    if args.mode == "client":
        return client_main(args, commands)
    names = list(commands)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_compare-") as log_dir:
        for rnd in range(args.rounds):
            order = names[rnd % len(names) :] + names[: rnd % len(names)]
            for size in sizes if args.mode == "echo" else [0]:
                for name in order:
                    if args.mode == "handshake":
                        run = handshake_run(name, commands[name], args, log_dir)
                    elif args.mode == "deflate":
                        run = deflate_run(name, commands[name], args, log_dir)
                    else:
                        run = one_run(name, commands[name], size, args, log_dir)
                    run["round"] = rnd
                    runs.append(run)
                    if "error" in run:
                        print(f"round {rnd} {name} {size} B: ERROR {run['error']}",
                              file=sys.stderr)
                    else:
                        print(f"round {rnd} {name} {size} B: {run['total_us']:.2f} µs/msg "
                              f"(user {run['user_us']:.2f}, sys {run['sys_us']:.2f}), "
                              f"{run['msgs_per_s']:,.0f} msgs/s, foreign "
                              f"{run.get('foreign_cpu_util', run.get('foreign_before', math.nan)):.2f}", file=sys.stderr, flush=True)
    if args.mode == "deflate":
        print(f"\nCompressed echo (permessage-deflate), {len(DEFLATE_TEXT)} B text, one "
              f"connection, {args.client_messages} round trips x {args.rounds} rounds\n")
        print(table(runs, len(DEFLATE_TEXT), args.reference))
        return 0 if all("error" not in r for r in runs) else 1
    if args.mode == "handshake":
        print(f"\nHandshakes: {args.conns} connections opened 200 at a time x {args.rounds} "
              f"rounds; server CPU per handshake; rate = handshakes/s (wall)\n")
        print(table(runs, 0, args.reference, HANDSHAKE_COLUMNS))
        return 0 if all("error" not in r for r in runs) else 1
    print(f"\nEcho, {args.conns} connections, depth 1, {args.duration:g} s measured x "
          f"{args.rounds} rounds; server on CPU {args.server_cpu}, client on CPU "
          f"{args.client_cpu}; median (min–max); {time.strftime('%Y-%m-%d %H:%M:%S')}")
    for size in sizes:
        print(f"\n### {size:,} B\n")
        print(table(runs, size, args.reference))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"argv": sys.argv, "runs": runs}, f, indent=1, default=str)
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
