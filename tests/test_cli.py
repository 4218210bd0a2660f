"""The command line contract of DESIGN.md: info, serve, connect."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rfc6455 import _mask
from rfc6455.client import connect

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"listening on ws://([\d.]+):(\d+)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_info_reports_version_and_masking_implementation() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "rfc6455", "info"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        timeout=60,
    ).stdout
    assert out.startswith("rfc6455 ")
    assert f"masking: {_mask.IMPLEMENTATION}" in out.splitlines()


def test_info_follows_the_environment_switch() -> None:
    env = _env()
    env["RFC6455_NO_EXTENSIONS"] = "1"
    out = subprocess.run(
        [sys.executable, "-m", "rfc6455", "info"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    assert "masking: python" in out.splitlines()


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--app", "echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        url = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            match = LISTENING.search(line)
            if match:
                url = f"ws://{match.group(1)}:{match.group(2)}"
                break
        assert url, "server did not log 'listening on ws://HOST:PORT'"
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_serve_echoes_and_exits_zero_on_sigterm(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = server
    with connect(url + "/") as ws:
        ws.send("text stays text")
        assert ws.recv(timeout=10) == "text stays text"
        ws.send(b"\x00binary\xff")
        assert ws.recv(timeout=10) == b"\x00binary\xff"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_connect_sends_stdin_lines_and_prints_messages(
    server: tuple[subprocess.Popen[str], str],
) -> None:
    _, url = server
    result = subprocess.run(
        [sys.executable, "-m", "rfc6455", "connect", url + "/"],
        check=False,  # the exit code is asserted below
        input="hello\nworld\n",
        capture_output=True,
        text=True,
        env=_env(),
        timeout=60,
    )
    assert result.stdout.splitlines() == ["hello", "world"]
    assert result.returncode == 0


def test_serve_workers_share_the_port_and_all_exit_zero() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        urls = []
        deadline = time.monotonic() + 30
        while len(urls) < 2 and time.monotonic() < deadline:
            match = LISTENING.search(proc.stdout.readline())
            if match:
                urls.append(f"ws://{match.group(1)}:{match.group(2)}")
        assert len(urls) == 2 and urls[0] == urls[1]  # two workers, one port
        for _ in range(4):
            with connect(urls[0] + "/") as ws:
                ws.send("hi")
                assert ws.recv(timeout=10) == "hi"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_raises_the_open_file_limit_to_the_hard_limit() -> None:
    code = (
        "import resource\n"
        "from rfc6455.cli_commands import raise_fd_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))\n"
        "assert raise_fd_limit() == resource.getrlimit(resource.RLIMIT_NOFILE)[0]\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard or hard == resource.RLIM_INFINITY)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env(),
        timeout=60,
    ).stdout
    assert out.strip() == "True"
