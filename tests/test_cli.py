"""The command line contract (README, "Command line"): info, serve, connect."""

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

from rfc6455 import _kernels, connect
from rfc6455.cli import main

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
    assert f"masking: {_kernels.IMPLEMENTATION}" in out.splitlines()


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


def test_bench_is_no_longer_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    # The load generator is benchmarks/loadgen.py in the checkout (tests/test_bench.py).
    with pytest.raises(SystemExit) as exc:
        main(["bench", "echo"])
    assert exc.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err


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
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
        timeout=60,
    ).stdout
    assert out.strip() == "True"


def test_autobahn_client_runs_every_case_then_updates_reports() -> None:
    """`rfc6455 autobahn-client` against a stand-in for the fuzzingserver's URL protocol:
    getCaseCount, runCase?case=N&agent=A (echo everything until closed), updateReports."""
    import json
    import threading

    from rfc6455 import Config, Handler, Server, WebSocket

    log: list[tuple[str, object]] = []

    class CaseCount(Handler):
        def on_open(self, ws: WebSocket) -> None:
            ws.send("2")
            ws.close()

    class CaseInfo(Handler):
        def on_open(self, ws: WebSocket) -> None:
            ws.send(json.dumps({"id": "1.1.1"}))
            ws.close()

    class RunCase(Handler):
        def on_open(self, ws: WebSocket) -> None:
            self.echoes: list[str | bytes] = []
            ws.send("text €")
            ws.send(b"\x00\xff" * 1000)
            ws.send("x" * 20_000)  # compressible: permessage-deflate is offered

        def on_message(self, ws: WebSocket, message: str | bytes) -> None:
            self.echoes.append(message)
            if len(self.echoes) == 3:
                log.append(("case", self.echoes))
                ws.close()

    class UpdateReports(Handler):
        def on_open(self, ws: WebSocket) -> None:
            log.append(("reports", ws.request.target if ws.request else None))
            ws.close()

    routes = {
        "/getCaseCount": CaseCount,
        "/getCaseInfo": CaseInfo,
        "/runCase": RunCase,
        "/updateReports": UpdateReports,
    }
    server = Server(Config(port=0), routes=routes)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rfc6455",
                "autobahn-client",
                "--url",
                f"ws://127.0.0.1:{server.port}",
                "--agent",
                "rfc6455 test",
            ],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "2 cases" in result.stdout
    finally:
        server.shutdown()
        thread.join(10)
    cases = [entry for kind, entry in log if kind == "case"]
    assert cases == [["text €", b"\x00\xff" * 1000, "x" * 20_000]] * 2
    assert log[-1] == ("reports", "/updateReports?agent=rfc6455%20test")


def test_autobahn_server_echoes_large_compressed_messages() -> None:
    """The fuzzingclient testee: echo, permessage-deflate, limits raised past the
    16 MiB of the 9.x cases."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfc6455", "autobahn-server", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            match = LISTENING.search(proc.stdout.readline())
            if match:
                url = f"ws://{match.group(1)}:{match.group(2)}/"
        assert url
        big = os.urandom(1 << 20) * 17  # 17 MiB, over the default 1 MiB limit
        with connect(url, max_message_size=None) as ws:
            extensions = dict(ws.response_headers).get("sec-websocket-extensions", "")
            assert extensions.startswith("permessage-deflate")
            ws.send(big)
            assert ws.recv(timeout=60) == big
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
