"""Run N copies of a server on one port and keep them running (``rfc6455 serve --workers N``).

The supervisor starts each worker as a fresh interpreter (``subprocess``: fork and exec at
once), never as an ``os.fork()`` of itself: a fork copies the parent mid-flight (its threads,
locks, loop, descriptors and signal handlers), and ``multiprocessing``'s spawn pickles the
target, re-imports ``__main__`` and starts a resource-tracker process we do not need. A worker
here is ``python -m rfc6455._workers TARGET CONTROL_FD STATUS_FD`` with two pipes:

- the *control* pipe (supervisor to worker) carries the options as one JSON line (never argv
  or the environment: the options may hold a JWT secret). The supervisor keeps its end open;
  when the supervisor dies the worker gets SIGTERM from the kernel (``PR_SET_PDEATHSIG`` on
  Linux) or, elsewhere, sees EOF on this pipe and sends itself SIGTERM: no orphan outlives it,
  and its clients still get 1001.
- the *status* pipe (worker to supervisor): ``ready`` once the worker listens, or ``failed
  REASON`` if it could not start; EOF means the worker exited. The supervisor waits on these
  pipes and on a signal wakeup socket with ``selectors``: no polling, no SIGCHLD handler.

Workers run in their own process group, so a terminal's Ctrl-C reaches only the supervisor,
which forwards one SIGTERM to each worker (a second signal is forwarded too: the workers then
drop the connections still closing, as a single process does).

A worker that exits while the service runs is restarted. One that fails before it is ready
``max_start_failures`` times in a row (the app does not import, the port is taken) makes the
supervisor give up: it stops the others and raises :class:`WorkersFailed` with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Supervisor", "WorkerTarget", "WorkersFailed", "reserve_port"]

logger = logging.getLogger("rfc6455.workers")

#: ``target(options, ready) -> exit status``: runs one worker; calls ``ready()`` once it
#: accepts connections. Must be a module-level function (the worker imports it by name).
WorkerTarget = Callable[[dict[str, Any], Callable[[], None]], int]

#: How long a worker may take to exit after SIGKILL, or after its status pipe closed.
_REAP_TIMEOUT = 5.0
#: Extra time past the shutdown timeout before the survivors get SIGKILL.
_KILL_GRACE = 5.0
#: A worker that dies this soon after it was ready is restarted after a pause.
_MIN_UPTIME = 5.0
_PR_SET_PDEATHSIG = 1


class WorkersFailed(RuntimeError):
    """The supervisor gave up: a worker kept failing at start-up."""


def reserve_port(host: str | None) -> tuple[int, list[socket.socket]]:
    """A free port on every address of ``host``, held by bound (not listening) sockets.

    The sockets set ``SO_REUSEPORT`` like the workers, so the workers can bind the port while
    the supervisor keeps it from anyone else; they never accept (only listening sockets
    receive connections). Close them when the service stops.
    """
    infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    for _ in range(20):
        held: list[socket.socket] = []
        port = 0
        try:
            seen: set[tuple[int, Any]] = set()
            for family, type_, proto, _, addr in infos:
                if (family, addr[0]) in seen:
                    continue
                seen.add((family, addr[0]))
                sock = socket.socket(family, type_, proto)
                held.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((addr[0], port, *addr[2:]))
                port = sock.getsockname()[1]
            return port, held
        except OSError:
            for sock in held:
                sock.close()
            # the port picked on the first address was taken on another: pick again
    raise OSError(f"no port free on every address of {host!r}")


@dataclass
class _Worker:
    """One worker slot: the process now in it and its start-up history."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    control: int = -1  # our end of the control pipe (kept open: the worker's lifeline)
    status: int = -1  # our end of the status pipe
    buffer: bytes = b""
    ready: bool = False
    ready_at: float = 0.0
    failures: int = 0  # start-up failures in a row
    reason: str = ""  # why the last start-up failed
    restart_at: float | None = None
    history: list[int] = field(default_factory=list)  # every pid this slot has had


class Supervisor:
    """Start ``count`` workers running ``target(options, ready)``; restart those that exit;
    stop them all on SIGINT/SIGTERM (see the module docstring).

    ``shutdown_timeout`` is the workers' own graceful-shutdown bound: a worker still alive
    this long (plus a grace period) after SIGTERM gets SIGKILL. ``address`` (``ws://h:p``) is
    logged once, when every worker is ready.
    """

    def __init__(
        self,
        target: WorkerTarget,
        options: dict[str, Any],
        count: int,
        *,
        shutdown_timeout: float,
        address: str,
        log_level: str = "INFO",
        max_start_failures: int = 5,
        backoff: float = 0.5,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._target = f"{target.__module__}:{target.__qualname__}"
        self._payload = json.dumps(
            {"options": options, "supervisor": os.getpid(), "log_level": log_level}
        ).encode() + b"\n"
        self._workers = [_Worker(i + 1) for i in range(count)]
        self._shutdown_timeout = shutdown_timeout
        self._address = address
        self._max_start_failures = max_start_failures
        self._backoff = backoff
        self._selector = selectors.DefaultSelector()
        self._signals: list[int] = []
        self._stopping_at: float | None = None
        self._announced = False
        self._failure: str | None = None

    @property
    def pids(self) -> list[int]:
        """The pids of the workers running now."""
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def run(self) -> int:
        """Run until SIGINT/SIGTERM and every worker has exited: 0. Raises
        :class:`WorkersFailed` if a worker crash-loops at start-up (after stopping the
        others). Only from the main thread (it handles signals)."""
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        self._selector.register(wake_r, selectors.EVENT_READ, None)
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        old_handlers = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            for worker in self._workers:
                self._spawn(worker)
            self._loop(wake_r)
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            for worker in self._workers:
                self._kill(worker)
            self._selector.close()
            wake_r.close()
            wake_w.close()
        if self._failure is not None:
            raise WorkersFailed(self._failure)
        logger.info("all workers have exited")
        return 0

    # -- the loop ---------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: object) -> None:
        self._signals.append(sig)

    def _loop(self, wake_r: socket.socket) -> None:
        while True:
            now = time.monotonic()
            for sig in self._take_signals():
                self._stop(f"signal {sig}", sig)
            for worker in self._workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    self._reap(worker)  # exited without closing its status pipe first
                if (worker.proc is None and worker.restart_at is not None
                        and now >= worker.restart_at and self._stopping_at is None):
                    self._spawn(worker)
            if self._stopping_at is not None:
                if not self.pids:
                    return
                if now >= self._stopping_at:
                    logger.warning("workers %s outlived the shutdown timeout: killing them",
                                   self.pids)
                    for worker in self._workers:
                        self._kill(worker)
                    return
            for key, _ in self._selector.select(self._timeout(now)):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        while wake_r.recv(4096):
                            pass
                else:
                    self._read_status(key.data)

    def _take_signals(self) -> Iterator[int]:
        while self._signals:
            yield self._signals.pop(0)

    def _timeout(self, now: float) -> float:
        deadlines = [w.restart_at for w in self._workers
                     if w.proc is None and w.restart_at is not None]
        if self._stopping_at is not None:
            deadlines.append(self._stopping_at)
        # also wake once a second to notice a worker that exited with its pipe still open
        return max(0.0, min([now + 1.0, *deadlines]) - now)

    def _stop(self, why: str, sig: int = signal.SIGTERM) -> None:
        if self._stopping_at is None:
            logger.info("%s: stopping the workers (pids %s)", why,
                        " ".join(map(str, self.pids)) or "none")
            self._stopping_at = time.monotonic() + self._shutdown_timeout + _KILL_GRACE
        else:
            logger.warning("%s again: the workers drop their remaining connections", why)
        for worker in self._workers:
            worker.restart_at = None
            if worker.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM if sig == signal.SIGINT else sig)

    # -- one worker ---------------------------------------------------------------------

    def _spawn(self, worker: _Worker) -> None:
        worker.restart_at = None
        worker.ready = False
        worker.buffer = b""
        worker.reason = ""
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        env = dict(os.environ)
        # the workers import the same rfc6455 as we do, wherever it was found
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            worker.proc = subprocess.Popen(
                [sys.executable, "-m", "rfc6455._workers", self._target,
                 str(control_r), str(status_w)],
                stdin=subprocess.DEVNULL,
                pass_fds=(control_r, status_w),
                env=env,
                process_group=0,
            )
        except BaseException:
            for fd in (control_r, control_w, status_r, status_w):
                os.close(fd)
            raise
        os.close(control_r)
        os.close(status_w)
        worker.control, worker.status = control_w, status_r
        worker.history.append(worker.proc.pid)
        with contextlib.suppress(BrokenPipeError):  # it died already: EOF on status says so
            os.write(control_w, self._payload)  # small: fits in the pipe's buffer
        os.set_blocking(status_r, False)
        self._selector.register(status_r, selectors.EVENT_READ, worker)
        logger.info("worker %d started (pid %d)", worker.index, worker.proc.pid)

    def _read_status(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.status, 4096)
        except BlockingIOError:
            return
        if not data:
            self._reap(worker)
            return
        worker.buffer += data
        while b"\n" in worker.buffer:
            line, _, worker.buffer = worker.buffer.partition(b"\n")
            text = line.decode("utf-8", "replace")
            if text == "ready":
                self._on_ready(worker)
            elif text.startswith("failed "):
                worker.reason = text[len("failed "):]

    def _on_ready(self, worker: _Worker) -> None:
        worker.ready = True
        worker.ready_at = time.monotonic()
        worker.failures = 0
        if self._announced:
            pid = worker.proc.pid if worker.proc is not None else 0
            logger.info("worker %d (pid %d) ready", worker.index, pid)
        elif self._stopping_at is None and all(w.ready for w in self._workers):
            self._announced = True
            logger.info("listening on %s with %d workers (pids %s)", self._address,
                        len(self._workers), " ".join(map(str, self.pids)))

    def _reap(self, worker: _Worker) -> None:
        proc = worker.proc
        if proc is None:
            return
        try:
            code = proc.wait(timeout=_REAP_TIMEOUT)
        except subprocess.TimeoutExpired:  # closed its status pipe but lives on
            proc.kill()
            code = proc.wait(timeout=_REAP_TIMEOUT)
        self._close_pipes(worker)
        worker.proc = None
        how = f"exit status {code}" if code >= 0 else f"signal {-code}"
        if self._stopping_at is not None:
            logger.info("worker %d (pid %d) stopped: %s", worker.index, proc.pid, how)
            return
        if not worker.ready:
            worker.failures += 1
            reason = worker.reason or how
            if worker.failures >= self._max_start_failures:
                self._failure = (f"worker {worker.index} failed to start "
                                 f"{worker.failures} times in a row, giving up: {reason}")
                logger.error("%s", self._failure)
                self._stop("giving up")
                return
            delay = self._backoff * 2 ** (worker.failures - 1)
            logger.warning("worker %d (pid %d) failed to start (%s): retrying in %.1f s",
                           worker.index, proc.pid, reason, delay)
        else:
            uptime = time.monotonic() - worker.ready_at
            delay = self._backoff if uptime < _MIN_UPTIME else 0.0
            logger.warning("worker %d (pid %d) exited (%s) after %.1f s: restarting",
                           worker.index, proc.pid, how, uptime)
        worker.restart_at = time.monotonic() + delay

    def _close_pipes(self, worker: _Worker) -> None:
        if worker.status >= 0:
            self._selector.unregister(worker.status)
            os.close(worker.status)
            worker.status = -1
        if worker.control >= 0:
            os.close(worker.control)
            worker.control = -1

    def _kill(self, worker: _Worker) -> None:
        proc = worker.proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_REAP_TIMEOUT)
            worker.proc = None
        self._close_pipes(worker)


# -- the worker side ------------------------------------------------------------------------


def _die_with_parent() -> bool:
    """Ask the kernel for SIGTERM when our parent dies (Linux); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_control(fd: int) -> None:
    """Block until the supervisor's end of the control pipe closes, then stop gracefully."""
    while True:
        try:
            if not os.read(fd, 4096):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    logger.warning("the supervisor is gone: shutting down")
    os.kill(os.getpid(), signal.SIGTERM)


def _read_payload(fd: int) -> dict[str, Any] | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            return None  # the supervisor died before it told us anything
        data += chunk
    payload: dict[str, Any] = json.loads(data)
    return payload


def worker_main(target: str, control_fd: int, status_fd: int) -> int:
    """The worker process: read the options, arm the orphan guard, run ``target``."""
    os.set_inheritable(control_fd, False)  # nothing the app starts may hold our pipes
    os.set_inheritable(status_fd, False)
    payload = _read_payload(control_fd)
    if payload is None:
        return 1
    guarded = _die_with_parent()
    if os.getppid() != payload["supervisor"]:
        return 1  # the supervisor died before the guard was armed
    if not guarded:
        threading.Thread(target=_watch_control, args=(control_fd,), daemon=True).start()
    logging.basicConfig(
        level=getattr(logging, str(payload["log_level"]).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    status = os.fdopen(status_fd, "wb", buffering=0)
    started = False

    def ready() -> None:
        nonlocal started
        if not started:
            started = True
            with contextlib.suppress(OSError):  # the supervisor is gone: SIGTERM follows
                status.write(b"ready\n")

    try:
        module, _, name = target.partition(":")
        run: WorkerTarget = getattr(importlib.import_module(module), name)
        return run(payload["options"], ready)
    except BaseException as exc:
        if not started:
            reason = str(exc.code) if isinstance(exc, SystemExit) else (
                f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(OSError):
                status.write(f"failed {' '.join(reason.split())}\n".encode())
        raise


if __name__ == "__main__":
    raise SystemExit(worker_main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
