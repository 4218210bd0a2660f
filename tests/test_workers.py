"""``rfc6455 serve --workers N`` (rfc6455/_workers.py) over real processes: the workers share
one port, a killed worker is restarted, SIGTERM stops them all with 1001, no worker outlives
its supervisor, and what cannot work refuses to start."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rfc6455 import Config, ConnectionClosed, EchoHandler, Server, connect
from rfc6455._workers import reserve_port
from rfc6455.sync_client import SyncWebSocket

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"listening on ws://([\d.]+):(\d+) with (\d+) workers \(pids ([\d ]+)\)")
RESTARTED = re.compile(r"worker \d+ \(pid (\d+)\) ready")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc to check for orphans")


def _env(pure_python: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), str(ROOT / "tests"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    if pure_python:
        env["RFC6455_NO_EXTENSIONS"] = "1"
    return env


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_gone(pids: set[int], timeout: float = 30.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {pid for pid in pids if _alive(pid)}
        if not alive:
            return alive
        time.sleep(0.1)
    return {pid for pid in pids if _alive(pid)}


class Service:
    """``rfc6455 serve --workers N`` in a subprocess, its log read on a thread."""

    def __init__(self, *args: str, pure_python: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rfc6455", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=_env(pure_python), cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.seen_pids: set[int] = set()
        self._cursor = 0  # lines of self.log already searched by expect()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def expect(self, pattern: re.Pattern[str], timeout: float = 60.0) -> re.Match[str]:
        """The next line (after the last one matched) that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            while self._cursor < len(self.log):
                self._cursor += 1
                match = pattern.search(self.log[self._cursor - 1])
                if match:
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {pattern.pattern!r} in:\n{''.join(self.log)}")
            try:
                self.log.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def ready(self) -> tuple[str, list[int]]:
        match = self.expect(READY)
        pids = [int(p) for p in match.group(4).split()]
        assert len(pids) == int(match.group(3))
        self.seen_pids.update(pids)
        return f"ws://{match.group(1)}:{match.group(2)}/", pids

    def restarted(self) -> list[int]:
        """The pids of replacement workers logged so far (without waiting)."""
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return [int(m.group(1)) for line in self.log if (m := RESTARTED.search(line))]

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the supervisor to exit: its status and its whole log."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        while not self.lines.empty():
            self.log.append(self.lines.get())
        return code, "".join(self.log)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        # its workers follow it (the orphan guard); make sure of it
        for pid in _wait_gone(self.seen_pids, timeout=20):
            os.kill(pid, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        service.stop()


def _open_until(url: str, wanted: set[int], limit: int = 300) -> list[tuple[int, SyncWebSocket]]:
    """Connect until a client of every pid in ``wanted`` is open; the kernel spreads
    connections by a hash of their addresses, so a few tries reach every worker."""
    clients: list[tuple[int, SyncWebSocket]] = []
    seen: set[int] = set()
    try:
        for _ in range(limit):
            ws = connect(url, timeout=10)
            pid = int(ws.recv(timeout=10))
            if pid in wanted and pid not in seen:
                seen.add(pid)
                clients.append((pid, ws))
                if seen == wanted:
                    return clients
            else:
                ws.close()
    except BaseException:
        for _, ws in clients:
            ws.close()
        raise
    for _, ws in clients:
        ws.close()
    raise AssertionError(f"{limit} connections reached only {seen} of {wanted}")


@pytest.mark.parametrize(
    ("pure_python", "stop"),
    [(False, signal.SIGTERM), (True, signal.SIGINT)],
    ids=["native-SIGTERM", "python-SIGINT"],
)
def test_workers_share_a_port_restart_and_stop_with_1001(
    services: list[Service], pure_python: bool, stop: signal.Signals
) -> None:
    service = Service("--workers", "2", "--app", "workers_app:PidHandler",
                      pure_python=pure_python)
    services.append(service)
    url, pids = service.ready()
    assert len(set(pids)) == 2
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            assert int(stat.read().rsplit(")", 1)[1].split()[1]) == service.proc.pid  # ppid

    # Both workers serve on the one port.
    for pid, ws in _open_until(url, set(pids)):
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.close()

    # A worker killed outright is replaced, and the port keeps serving meanwhile.
    victim, survivor = pids
    os.kill(victim, signal.SIGKILL)
    assert _wait_gone({victim}) == set()
    with connect(url, timeout=10) as ws:
        assert int(ws.recv(timeout=10)) in (survivor, *service.restarted())
    replacement = int(service.expect(RESTARTED).group(1))
    service.seen_pids.add(replacement)
    assert replacement not in pids
    clients = _open_until(url, {survivor, replacement})

    # SIGTERM or SIGINT: every open client gets 1001, every process exits, the supervisor
    # with 0.
    service.proc.send_signal(stop)
    for _, ws in clients:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.code == 1001
        ws.close()
    assert service.proc.wait(timeout=60) == 0
    assert _wait_gone(service.seen_pids) == set()


def test_no_worker_outlives_its_supervisor(services: list[Service]) -> None:
    service = Service("--workers", "2", "--app", "workers_app:PidHandler")
    services.append(service)
    url, pids = service.ready()
    clients = _open_until(url, set(pids))
    service.proc.kill()  # SIGKILL: no chance to stop its workers itself
    service.proc.wait(timeout=10)
    for _, ws in clients:  # the workers still shut down gracefully
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
        assert closed.value.code == 1001
        ws.close()
    assert _wait_gone(set(pids)) == set()


def test_pubsub_workers_without_redis_refuse_to_start() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--app", "pubsub",
         "--workers", "2"],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )
    assert refused.returncode != 0
    assert "--redis" in refused.stderr and "worker" not in refused.stdout
    assert "started" not in refused.stderr  # refused before any worker started


def test_a_crash_looping_app_makes_the_supervisor_give_up(services: list[Service]) -> None:
    service = Service("--workers", "2", "--app", "no_such_module_for_workers:App")
    services.append(service)
    code, log = service.finish(timeout=120)
    assert code != 0
    assert "failed to start 5 times in a row, giving up" in log
    assert "No module named 'no_such_module_for_workers'" in log.splitlines()[-1]
    started = {int(pid) for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", log)}
    assert len(started) >= 5
    assert _wait_gone(started) == set()


def test_workers_refuse_a_zero_count() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--workers", "0"],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )
    assert refused.returncode != 0 and "--workers must be at least 1" in refused.stderr


def test_a_reserved_port_is_free_for_workers_and_accepts_nothing_itself() -> None:
    port, held = reserve_port("127.0.0.1")
    try:
        assert port > 0 and len(held) == 1
        server = Server(Config(port=port, reuse_port=True), handler=EchoHandler)
        server.start()
        try:
            assert server.port == port
        finally:
            server.close()
        # with no worker listening, the held socket does not accept: refused at once
        with pytest.raises(OSError):
            connect(f"ws://127.0.0.1:{port}/", timeout=5)
    finally:
        for sock in held:
            sock.close()


def test_without_pdeathsig_a_worker_stops_when_the_control_pipe_closes() -> None:
    """The orphan guard where PR_SET_PDEATHSIG is missing: EOF on the supervisor's pipe
    makes the worker send itself SIGTERM (so its server shuts down gracefully)."""
    code = (
        "import os, signal, threading\n"
        "from rfc6455._workers import _watch_control\n"
        "got = threading.Event()\n"
        "signal.signal(signal.SIGTERM, lambda *a: got.set())\n"
        "r, w = os.pipe()\n"
        "threading.Thread(target=_watch_control, args=(r,), daemon=True).start()\n"
        "os.close(w)\n"
        "while not got.wait(0.05):\n"
        "    pass\n"
        "print('stopped')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
