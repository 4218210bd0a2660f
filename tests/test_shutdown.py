"""Graceful shutdown: SIGTERM with messages in flight, shutdown(), shutdown timeout."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from fakeclock import EPS, advance, fake_server, handshake, read_available, settle
from helpers import parse_close
from test_server import raw_handshake, url

from rfc6455 import Config, ConnectionClosed, EchoHandler, Server, connect

ROOT = Path(__file__).resolve().parent.parent

SERVER_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from rfc6455 import Config, Handler, Server

class Burst(Handler):
    def on_message(self, ws, message):
        for i in range(int(message)):
            ws.send(f"{i:06d}" + "x" * 1000)

Server(Config(port=0, shutdown_timeout=30), handler=Burst).serve_forever()
"""

CLIENTS = 50
MESSAGES = 1500


def test_sigterm_with_messages_in_flight_to_50_clients() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        port = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "the server did not report its port"
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep the pipe drained

        clients = [connect(f"ws://127.0.0.1:{port}/", timeout=10) for _ in range(CLIENTS)]
        for ws in clients:
            ws.send(str(MESSAGES))
        for ws in clients:  # every burst was queued by the server before the signal
            assert ws.recv(timeout=10).startswith("000000")
        proc.send_signal(signal.SIGTERM)
        for ws in clients:
            got = 1
            try:
                while True:
                    message = ws.recv(timeout=20)
                    assert isinstance(message, str)
                    assert message.startswith(f"{got:06d}")
                    got += 1
            except ConnectionClosed as exc:
                assert exc.code == 1001
            assert got == MESSAGES
            ws.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_shutdown_from_another_thread_closes_with_1001() -> None:
    server = Server(Config(port=0), handler=EchoHandler)
    server.start()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        ws = connect(url(server))
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        server.shutdown()
        try:
            ws.recv(timeout=5)
            raise AssertionError("expected the connection to close")
        except ConnectionClosed as exc:
            assert (exc.code, exc.reason) == (1001, "server shutting down")
        thread.join(10)
        assert not thread.is_alive()
        assert server.sockets == []  # the listener is closed
    finally:
        server.shutdown()
        thread.join(10)


def test_shutdown_timeout_drops_peers_that_never_answer() -> None:
    with fake_server(Config(shutdown_timeout=2.5)) as (server, clock):
        loop = server.loop
        sock = handshake(server)
        server.shutdown()  # the shutdown timer runs from now
        settle(loop)
        data, closed = read_available(sock)  # we never answer the close frame
        assert parse_close(data, masked=False) == (1001, b"server shutting down")
        assert not closed
        advance(loop, clock, 2.5 - EPS, step=0.5)
        assert read_available(sock) == (b"", False)
        assert len(server.connections) == 1
        assert server.sockets != []  # not done: the listener is still open
        advance(loop, clock, EPS)
        assert read_available(sock) == (b"", True)  # dropped at the shutdown timeout
        assert server.connections == []
        assert server.sockets == []  # and the shutdown is complete
        sock.close()


def test_second_signal_drops_what_is_left() -> None:
    script = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from rfc6455 import Config, EchoHandler, Server\n"
        "Server(Config(port=0, shutdown_timeout=60), handler=EchoHandler).serve_forever()\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stderr is not None
        port = 0
        while not port:
            line = proc.stderr.readline()
            assert line, "server exited early"
            match = re.search(r"listening on ws://127\.0\.0\.1:(\d+)", line)
            port = int(match.group(1)) if match else 0
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        sock = raw_handshake(port)  # will ignore the close frame
        proc.send_signal(signal.SIGTERM)
        sock.settimeout(10)
        assert sock.recv(2) == b"\x88\x16"  # close 1001 "server shutting down"
        proc.send_signal(signal.SIGTERM)  # impatient: drop it now
        assert proc.wait(timeout=10) == 0
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
