"""Smoke test of ``benchmarks/bench_redis.py``: a tiny run (a few subscribers, one round)
against a real ``redis-server``, the script's own subprocesses on 127.0.0.1. It checks the
shape of the output, never a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from redis_servers import need_redis

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_run_prints_both_tables() -> None:
    need_redis()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_redis-{os.getpid()}.json"
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "bench_redis.py"),
            "--latency-subscribers", "10", "--burst-subscribers", "20", "--publishes", "20",
            "--burst", "5", "--warmup", "2", "--rounds", "1", "--broker-publishes", "300",
            "--json", str(report),
        ],
        check=False, capture_output=True, text=True, timeout=90, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    latency = [line for line in lines if line.startswith("| redis x2 | 10 |")]
    throughput = [line for line in lines if line.startswith("| redis x2 | 20 |")]
    assert len(latency) == 1 and len(throughput) == 1, done.stdout
    cells = [c.strip() for c in latency[0].strip("|").split("|")]
    assert float(cells[2]) > 0 and float(cells[3]) >= float(cells[2])
    assert float(cells[5]) == 1.0  # one Redis round trip per publish, one at a time
    rows = json.loads(report.read_text())["rows"]
    report.unlink()
    assert {(r["setup"], r["mode"]) for r in rows} == {
        (s, m) for s in ("memory x1", "redis x1", "redis x2") for m in ("latency", "throughput")
    } | {("RedisBroker alone", "broker")}
    assert any(line.startswith("| RedisBroker alone") for line in lines)
    assert all(r["deliveries_per_s"] > 0 for r in rows if r["mode"] == "throughput")
