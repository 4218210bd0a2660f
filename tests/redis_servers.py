"""Real ``redis-server`` processes for the Redis broker tests: one node, or a 3-master cluster.

Each server runs on a free loopback port with its files in the test's own directory and
is stopped by its PID (SIGTERM, then SIGKILL). Without ``/usr/bin/redis-server`` (or
``redis-server`` on PATH) the tests are skipped with the reason, except under CI
(``CI=true``), where that is a failure: CI installs Debian's ``redis-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["RedisCluster", "RedisServer", "free_port", "need_redis"]


def _binary(name: str) -> str | None:
    path = f"/usr/bin/{name}"
    return path if os.access(path, os.X_OK) else shutil.which(name)


def need_redis() -> tuple[str, str]:
    """The paths of ``redis-server`` and ``redis-cli``; skip (fail under CI) without them."""
    server, cli = _binary("redis-server"), _binary("redis-cli")
    if server is None or cli is None:
        reason = "redis-server/redis-cli not installed (Debian package redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return server, cli


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` on 127.0.0.1; restartable on the same port and directory.

    Args:
        directory: where its files go (created).
        persistent: ``appendonly yes`` with ``appendfsync always``: every write
            acknowledged is on disk, so it survives a SIGKILL.
        cluster: ``cluster-enabled yes`` (its ``nodes.conf`` in ``directory``).
    """

    def __init__(self, directory: Path, *, persistent: bool = False,
                 cluster: bool = False) -> None:
        self.server, self.cli = need_redis()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.cluster = cluster
        self.cluster_port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start(persistent=persistent)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, persistent: bool = False, wipe: bool = False) -> None:
        """Start it (again); ``wipe`` deletes the data files first (not nodes.conf)."""
        assert self.proc is None, "already running"
        if wipe:
            shutil.rmtree(self.directory / "appendonlydir", ignore_errors=True)
            (self.directory / "dump.rdb").unlink(missing_ok=True)
        args = [
            self.server, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            "--appendonly", "yes" if persistent else "no",
            "--appendfsync", "always",
        ]  # fmt: skip
        if self.cluster:
            if self.cluster_port is None:
                self.cluster_port = free_port()  # the default, port + 10000, may be taken
            args += ["--cluster-enabled", "yes", "--cluster-port", str(self.cluster_port), "--cluster-config-file",
                     str(self.directory / "nodes.conf"), "--cluster-node-timeout", "2000",
                     "--cluster-require-full-coverage", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        log = (self.directory / "redis.log")
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{tail}")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def redis_cli(self, *args: str) -> str:
        done = subprocess.run([self.cli, "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=20, check=True)
        return done.stdout

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; what was not fsynced is lost."""
        proc = self.proc
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


class RedisCluster:
    """Three masters, no replicas, every slot covered; built with ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", persistent=persistent, cluster=True)
            for i in range(3)
        ]
        try:
            self.nodes[0].redis_cli(
                "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            )
            self.wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def urls(self) -> list[str]:
        return [f"redis://127.0.0.1:{n.port}" for n in self.nodes]

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every node says ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout
        while True:
            states = [n.redis_cli("cluster", "info") if n.proc else "" for n in self.nodes]
            if all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not ok: {states}")
            time.sleep(0.1)

    def node_of(self, key: str) -> RedisServer:
        """The master that holds ``key``'s slot."""
        slot = int(self.nodes[0].redis_cli("cluster", "keyslot", key).strip())
        for node in self.nodes:
            for line in node.redis_cli("cluster", "nodes").splitlines():
                fields = line.split()
                if "myself" in fields[2]:
                    for spec in fields[8:]:
                        lo, _, hi = spec.partition("-")
                        if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                            return node
        raise LookupError(key)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
