"""Smoke test of the pub/sub fan-out benchmark ``benchmarks/bench_pubsub.py``: a tiny run
(20 subscribers, 10 publishes, one round) against both servers, started by the script as
subprocesses on 127.0.0.1. It checks the shape of the output, never a speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tiny_run_prints_a_table_for_both_servers(tmp_path: Path) -> None:
    report = tmp_path / "runs.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [
            sys.executable, str(ROOT / "benchmarks" / "bench_pubsub.py"),
            "--subscribers", "20", "--publishes", "10", "--warmup", "2", "--rounds", "1",
            "--json", str(report),
        ],
        check=False, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| server |"))
    assert "last-subscriber p99 ms" in header and "server CPU µs/delivery" in header
    rows = [line for line in lines if line.startswith(("| rfc6455 |", "| websockets |"))]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:3] == ["20", "10"]
        assert float(cells[3]) > 0 and float(cells[4]) >= float(cells[3])
    assert any(line.startswith("- 20 subscribers, rfc6455/websockets:") for line in lines)
    runs = json.loads(report.read_text())["runs"]
    assert {r["server"] for r in runs} == {"rfc6455", "websockets"}
    for r in runs:
        assert 0 < r["first_p50_ms"] <= r["last_p50_ms"] <= r["last_p99_ms"]
        assert r["cpu_us_per_delivery"] >= 0
