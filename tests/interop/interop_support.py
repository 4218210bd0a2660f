"""Helpers for interop tests against real, independent peers (fixtures: conftest.py).

Strategy: every peer (Node.js ``ws``, headless Chromium, ``websockets``, ``wsproto``
and our own server started through the CLI) runs as a separate
process or thread on 127.0.0.1 with an ephemeral port, and is stopped by the
fixture that started it, by PID, with a bounded wait. A peer that is missing
skips the test locally but fails it under ``CI=true``: CI must never go green
because a browser was not installed. That rule lives in ``require`` only.

Peers speak line-based protocols on stdout (``listening <port>`` then JSON
lines), read by a drain thread so a chatty peer never blocks on a full pipe.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import http.server
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NODE_PEERS = HERE / "node_peers"
CHROMIUM_PAGE = HERE / "chromium_page.html"

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}

# Generous: the machine has 2 shared cores and Chromium's cold start is slow.
START_TIMEOUT = 30.0
RUN_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0

LISTENING_OURS = re.compile(
    r"listening on (?P<scheme>wss?)://(?P<host>[^\s:/]+|\[[^\]]+\]):(?P<port>\d+)")
LISTENING_NODE = re.compile(r"^listening (?P<port>\d+)$")


def require(available: bool, what: str) -> None:
    """Skip when a peer is missing locally; fail under CI, where it must exist."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"interop peer missing under CI=true: {what}", pytrace=False)
    pytest.skip(f"interop peer missing: {what}")


# --------------------------------------------------------------------------- processes


class PeerProcess:
    """A child process whose merged stdout/stderr is drained into ``lines``."""

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None,
                 env: dict[str, str] | None = None, new_session: bool = False) -> None:
        self.argv = list(argv)
        self.lines: collections.deque[str] = collections.deque(maxlen=5000)
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            start_new_session=new_session,
        )
        self._new_session = new_session
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        """Return the first output line matching ``pattern``, waiting up to ``timeout``."""
        seen = 0
        with self._cond:
            while True:
                lines = list(self.lines)
                for line in lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(lines)
                if self._eof:
                    raise RuntimeError(f"{self.argv[:3]} exited before {pattern.pattern!r}:\n"
                                       + self.output())
                if not self._cond.wait(timeout):
                    raise TimeoutError(f"{self.argv[:3]} did not print {pattern.pattern!r} "
                                       f"within {timeout}s:\n" + self.output())

    def json_lines(self) -> list[dict[str, Any]]:
        """Every output line that parses as a JSON object."""
        out = []
        for line in list(self.lines):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def output(self) -> str:
        return "\n".join(list(self.lines)[-200:])

    def wait(self, timeout: float = RUN_TIMEOUT) -> int:
        """Wait for exit (killing the process if it overruns) and for the drain."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self._thread.join(STOP_TIMEOUT)
        return code

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (its whole session when it has one), by PID, bounded."""
        if self.proc.poll() is None:
            self._signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        elif self._new_session:
            # Children (Chromium's renderers) may outlive the leader.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._thread.join(STOP_TIMEOUT)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._new_session:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)


# --------------------------------------------------------------------------- Node ws


@dataclass
class NodeRun:
    """The outcome of one ``ws_client.js`` run."""

    returncode: int
    events: list[dict[str, Any]]
    output: str

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def close(self) -> dict[str, Any]:
        closes = self.of("close")
        assert closes, f"no close seen:\n{self.output}"
        return closes[-1]

    def assert_echoed(self) -> None:
        """Every message sent came back with the same type, length and digest."""
        sent = [(e["type"], e["length"], e["sha256"]) for e in self.of("sent")]
        got = [(e["type"], e["length"], e["sha256"]) for e in self.of("message")]
        assert got == sent, self.output


@dataclass
class NodeServer:
    """A running ``ws_echo_server.js``."""

    process: PeerProcess
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/"

    def events(self) -> list[dict[str, Any]]:
        return self.process.json_lines()


@dataclass
class NodePeers:
    node: str

    def start_client(self, url: str, script: list[dict[str, Any]] | None = None,
                     *options: str, timeout: float = 60.0) -> PeerProcess:
        """Start ``ws_client.js``; see :meth:`finish_client`."""
        argv = [self.node, str(NODE_PEERS / "ws_client.js"), url, "--timeout", str(timeout)]
        if script is not None:
            argv += ["--script", json.dumps(script)]
        argv += list(options)
        return PeerProcess(argv, cwd=HERE)

    @staticmethod
    def finish_client(peer: PeerProcess, timeout: float = 60.0) -> NodeRun:
        """Wait for a client from :meth:`start_client` to exit (it has its own timeout)."""
        try:
            code = peer.wait(timeout + 15)
        finally:
            peer.stop()
        return NodeRun(code, peer.json_lines(), peer.output())

    def run_client(self, url: str, script: list[dict[str, Any]] | None = None,
                   *options: str, timeout: float = 60.0) -> NodeRun:
        """Run ``ws_client.js`` to the end of its script."""
        peer = self.start_client(url, script, *options, timeout=timeout)
        return self.finish_client(peer, timeout)

    @contextlib.contextmanager
    def echo_server(self, *options: str) -> Iterator[NodeServer]:
        argv = [self.node, str(NODE_PEERS / "ws_echo_server.js"), "--port", "0", *options]
        peer = PeerProcess(argv, cwd=HERE)
        try:
            match = peer.wait_for_line(LISTENING_NODE)
            yield NodeServer(peer, int(match["port"]), tls="--cert" in options)
        finally:
            peer.stop()


def get_node_peers() -> NodePeers:
    """The Node peers, or skip/fail (see ``require``) when node or ``ws`` is missing."""
    node = shutil.which("node")
    require(node is not None, "the `node` executable (Node.js 18+)")
    require((HERE / "node_modules" / "ws" / "package.json").is_file(),
            "the npm package `ws` (run `npm ci` in tests/interop)")
    assert node is not None
    return NodePeers(node)


# --------------------------------------------------------------------------- Chromium


CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class _PageServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    report: dict[str, Any] | None = None
    reported: threading.Event
    ready: threading.Event


class _PageHandler(http.server.BaseHTTPRequestHandler):
    server: _PageServer

    def do_GET(self) -> None:
        if urllib.parse.urlsplit(self.path).path != "/page":
            self.send_error(404)
            return
        body = CHROMIUM_PAGE.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path == "/report" and self.server.report is None:
            self.server.report = json.loads(body)
            self.server.reported.set()
        elif self.path == "/ready":
            self.server.ready.set()
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Chromium:
    binary: str
    tmp_root: Path
    runs: int = field(default=0)

    def run_page(self, ws_url: str, messages: list[dict[str, Any]] | None = None,
                 close: dict[str, Any] | None = None, timeout: float = RUN_TIMEOUT,
                 flags: Sequence[str] = (),
                 on_ready: Callable[[], object] | None = None) -> dict[str, Any]:
        """Open the interop page against ``ws_url`` and return its JSON report.

        With ``on_ready``, the page does not close: once its messages are echoed it
        signals readiness, ``on_ready()`` runs (e.g. stops the server), and the page
        reports when the server has closed the connection.
        """
        config: dict[str, Any] = {"ws": ws_url, "report": "/report",
                                  "await_server_close": on_ready is not None}
        if messages is not None:
            config["messages"] = messages
        if close is not None:
            config["close"] = close
        httpd = _PageServer(("127.0.0.1", 0), _PageHandler)
        httpd.reported = threading.Event()
        httpd.ready = threading.Event()
        server_thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        server_thread.start()
        self.runs += 1
        profile = self.tmp_root / f"profile-{self.runs}"
        profile.mkdir(parents=True)
        page = (f"http://127.0.0.1:{httpd.server_address[1]}/page?"
                + urllib.parse.urlencode({"config": json.dumps(config)}))
        argv = [
            self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}", *flags, page,
        ]
        browser = PeerProcess(argv, new_session=True)
        try:
            if on_ready is not None:
                for _ in range(int(timeout * 10)):
                    if httpd.ready.wait(0.1) or httpd.reported.is_set():
                        break
                if httpd.ready.is_set():
                    on_ready()
            if not httpd.reported.wait(timeout):
                raise TimeoutError(f"Chromium sent no report within {timeout}s:\n"
                                   + browser.output())
            assert httpd.report is not None
            return httpd.report
        finally:
            browser.stop()
            httpd.shutdown()
            httpd.server_close()


def get_chromium(tmp_root: Path) -> Chromium:
    """A Chromium runner, or skip/fail (see ``require``) when no binary is found."""
    binary = find_chromium()
    require(binary is not None, "a Chromium binary (Debian package `chromium`, or $CHROMIUM)")
    assert binary is not None
    return Chromium(binary, tmp_root)


# --------------------------------------------------------------------------- websockets


def get_websockets() -> Any:
    """The ``websockets`` module, or skip/fail (see ``require``)."""
    require(importlib.util.find_spec("websockets") is not None,
            "the Python package `websockets`")
    import websockets

    return websockets


@dataclass
class WebsocketsServer:
    """A running ``websockets`` echo server: what it received and how connections closed."""

    port: int
    received: list[Any] = field(default_factory=list)
    closes: list[tuple[int | None, str | None]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    tls: bool = False

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/"

    def record_close(self, code: int | None, reason: str | None) -> None:
        with self.changed:
            self.closes.append((code, reason))
            self.changed.notify_all()

    def wait_closed(self, count: int, timeout: float = START_TIMEOUT) -> None:
        """Wait until ``count`` connections have finished on the server side."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.closes) >= count, timeout):
                raise TimeoutError(f"{len(self.closes)} of {count} connections closed")


@contextlib.contextmanager
def websockets_echo_server(**kwargs: Any) -> Iterator[WebsocketsServer]:
    """A ``websockets.sync`` echo server in a thread, with the same commands as the Node one.

    Text ``close:<code>:<reason>`` closes with that code; ``ping:<data>`` pings and replies
    ``pong:<data>`` when the pong arrives; ``frag:<text|binary>:<n>:<data>`` sends ``data``
    as one message in about ``n`` fragments; ``info`` replies with the negotiated extensions.
    """
    from websockets.sync.server import ServerConnection, serve

    state = WebsocketsServer(0, tls=kwargs.get("ssl") is not None)

    def handler(ws: ServerConnection) -> None:
        try:
            for message in ws:
                state.received.append(message)
                if isinstance(message, str) and message.startswith("close:"):
                    _, code, reason = message.split(":", 2)
                    ws.close(int(code), reason)
                    break
                if isinstance(message, str) and message.startswith("ping:"):
                    data = message[len("ping:"):]
                    ws.ping(data.encode()).wait(30)
                    ws.send(f"pong:{data}")
                    continue
                if isinstance(message, str) and message.startswith("frag:"):
                    _, kind, count, data = message.split(":", 3)
                    raw = data.encode()
                    step = max(1, -(-len(raw) // max(1, int(count))))
                    parts = [raw[i:i + step] for i in range(0, len(raw), step)] or [b""]
                    if kind == "text":
                        ws.send([p.decode() for p in parts])
                    else:
                        ws.send(parts)
                    continue
                if message == "info":
                    assert ws.response is not None
                    ws.send(json.dumps({
                        "offered_extensions": ws.request.headers.get("Sec-WebSocket-Extensions", "")
                        if ws.request else "",
                        "accepted_extensions": ws.response.headers.get("Sec-WebSocket-Extensions", ""),
                    }))
                    continue
                ws.send(message)
        finally:
            state.record_close(ws.close_code, ws.close_reason)

    kwargs.setdefault("max_size", 64 * 1024 * 1024)
    with serve(handler, "127.0.0.1", 0, **kwargs) as server:
        state.port = server.socket.getsockname()[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield state
        finally:
            server.shutdown()
            thread.join(STOP_TIMEOUT)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class SelfSignedCert:
    """A self-signed certificate for 127.0.0.1 (and localhost), made with ``openssl``."""

    cert: Path
    key: Path
    spki_sha256: str  # base64, for Chromium's --ignore-certificate-errors-spki-list


def make_cert(directory: Path) -> SelfSignedCert:
    """Create a one-day self-signed EC certificate in ``directory``."""
    require(shutil.which("openssl") is not None, "the `openssl` command")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=START_TIMEOUT,
    )
    pubkey = subprocess.run(["openssl", "x509", "-in", str(cert), "-pubkey", "-noout"],
                            check=True, capture_output=True, timeout=START_TIMEOUT).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey,
                         check=True, capture_output=True, timeout=START_TIMEOUT).stdout
    spki = base64.b64encode(hashlib.sha256(der).digest()).decode()
    return SelfSignedCert(cert, key, spki)


def client_ssl_context(cert: SelfSignedCert) -> ssl.SSLContext:
    """A verifying client context that trusts exactly ``cert``."""
    return ssl.create_default_context(cafile=str(cert.cert))


# --------------------------------------------------------------------------- our server


@dataclass
class OurServer:
    """Our server, started through ``python -m rfc6455 serve``."""

    process: PeerProcess
    host: str
    port: int
    scheme: str = "ws"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/"

    def log(self) -> str:
        return self.process.output()


def require_our_cli() -> None:
    require(importlib.util.find_spec("rfc6455.cli") is not None
            or importlib.util.find_spec("rfc6455.__main__") is not None,
            "rfc6455's CLI (rfc6455/cli.py, `python -m rfc6455 serve`)")


@contextlib.contextmanager
def our_server(*options: str, app: str = "echo") -> Iterator[OurServer]:
    """Run ``python -m rfc6455 serve --port 0 --app APP OPTIONS`` until the block ends."""
    require_our_cli()
    # Interop tests are about the wire, not limits: room for the 1 MiB messages and more.
    argv = [sys.executable, "-m", "rfc6455", "serve", "--host", "127.0.0.1", "--port", "0",
            "--app", app, "--max-message-size", str(64 * MIB), *options]
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    peer = PeerProcess(argv, cwd=REPO, env=env)
    try:
        match = peer.wait_for_line(LISTENING_OURS)
        yield OurServer(peer, match["host"], int(match["port"]), match["scheme"])
    except BaseException:
        peer.stop(signal.SIGTERM)
        raise
    # Checked only when the test passed, so they never hide its own failure.
    peer.stop(signal.SIGTERM)
    # docs/limits.md: SIGTERM starts a graceful shutdown and the process exits 0.
    assert peer.proc.returncode == 0, f"server exit status {peer.proc.returncode}:\n{peer.output()}"
    assert "Traceback" not in peer.output(), peer.output()


# --------------------------------------------------------------------------- payloads

MIB = 1024 * 1024
COMPRESSIBLE_UNIT = "The quick brown fox jumps over the lazy dog. "
# Sizes around every frame-length encoding boundary (7-bit, 16-bit, 64-bit), up to 1 MiB.
DEFLATE_SIZES = (0, 1, 125, 126, 1000, 65535, 65536, MIB)


def make_payload(kind: str, size: int, fill: str, seed: int = 6455) -> str | bytes:
    """Deterministic test data: ``kind`` text|binary, ``fill`` compressible|random|zeros."""
    if fill == "zeros":
        raw = bytes(size)
    elif fill == "random":
        raw = random.Random(seed + size).randbytes(size)
        if kind == "text":
            # Printable ASCII keeps random text valid UTF-8 (and barely compressible).
            raw = bytes(0x21 + b % 94 for b in raw)
    else:
        unit = COMPRESSIBLE_UNIT.encode()
        raw = (unit * (size // len(unit) + 1))[:size]
    return raw.decode("ascii") if kind == "text" else raw


def basic_messages() -> list[str | bytes]:
    """The plain echo set: text, UTF-8, empty, binary, 1 MiB of each type."""
    return [
        "hello",
        "h\u00e9llo w\u00f6rld \u2603 \U0001f600",
        "",
        b"\x00\xff\x10\x20\x7f\x80",
        b"",
        make_payload("binary", MIB, "random"),
        make_payload("text", MIB, "compressible"),
    ]


def deflate_specs() -> list[tuple[str, int, str]]:
    """(kind, size, fill) for the compression matrix: 0 B to 1 MiB, both data shapes."""
    return [(kind, size, fill) for size in DEFLATE_SIZES
            for fill in ("compressible", "random") for kind in ("text", "binary")]


def fragmented_messages() -> list[list[str] | list[bytes]]:
    """Messages to send as several frames: text, binary, an empty middle, ~300 KiB."""
    big = make_payload("binary", 300 * 1024, "random")
    assert isinstance(big, bytes)
    return [
        ["frag", "mented ", "text \u2603"],
        [b"\x01\x02", b"", b"\x03" * 70000],
        [big[:1], big[1:100_000], big[100_000:]],
        ["The quick brown fox " * 500, "", "jumps over the lazy dog " * 500],
    ]


def deflate_messages() -> list[str | bytes]:
    return [make_payload(kind, size, fill) for kind, size, fill in deflate_specs()]


def require_deflate() -> None:
    """permessage-deflate is implemented (rfc6455/permessage_deflate.py)."""
    require(importlib.util.find_spec("rfc6455.permessage_deflate") is not None,
            "rfc6455's permessage-deflate (rfc6455/permessage_deflate.py)")


# --------------------------------------------------------------------------- our client
# The one place that knows our blocking client's API; tests go through these.


def our_client_connect(url: str, *, deflate: dict[str, Any] | None = None,
                       **kwargs: Any) -> Any:
    """``rfc6455.client.connect(url)``; ``deflate``: offer permessage-deflate with these
    ``ClientPerMessageDeflate`` arguments (None: offer no extension)."""
    require(importlib.util.find_spec("rfc6455.client") is not None,
            "rfc6455's client (rfc6455/client.py)")
    from rfc6455 import connect

    if deflate is not None:
        require_deflate()
        from rfc6455.permessage_deflate import ClientPerMessageDeflate

        kwargs["extensions"] = [ClientPerMessageDeflate(**deflate)]
    else:
        kwargs["compression"] = False  # connect() offers permessage-deflate by default
    kwargs.setdefault("max_message_size", 64 * MIB)
    kwargs.setdefault("timeout", START_TIMEOUT)
    kwargs.setdefault("close_timeout", START_TIMEOUT)
    return connect(url, **kwargs)


def our_client_extensions(ws: Any) -> str:
    """The Sec-WebSocket-Extensions header of the 101 our client received ("" if none)."""
    for name, value in ws.response_headers:
        if name.lower() == "sec-websocket-extensions":
            return str(value)
    return ""


def our_client_ping(ws: Any, payload: bytes, timeout: float) -> None:
    """Ping from our client; the peer answers before it echoes a message sent after it."""
    ws.ping(payload)
    ws.send("after-ping-marker")
    assert ws.recv(timeout=timeout) == "after-ping-marker"
    assert payload in ws.pongs, f"no pong for our ping: {ws.pongs!r}"


def our_client_close_info(ws: Any, timeout: float) -> tuple[int | None, str | None]:
    """Wait for the peer's close and return (code, reason) as our client reports them."""
    from rfc6455 import ConnectionClosed

    try:
        while True:
            ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        assert (exc.code, exc.reason) == (ws.close_code, ws.close_reason)
    return ws.close_code, ws.close_reason


@dataclass
class InProcessServer:
    """Our server with a custom :class:`rfc6455.server.Config`, on a thread of this process."""

    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def our_inprocess_server(**config: Any) -> Iterator[InProcessServer]:
    """Our echo server in this process, for settings the CLI does not expose."""
    from rfc6455 import Config, EchoHandler, Server

    config.setdefault("max_message_size", 64 * MIB)
    server = Server(Config(host="127.0.0.1", port=0, **config), handler=EchoHandler)
    server.start()
    thread = threading.Thread(target=server.serve_forever, name="rfc6455-server", daemon=True)
    thread.start()
    try:
        yield InProcessServer(server.port)
    finally:
        server.shutdown()
        thread.join(STOP_TIMEOUT)
        assert not thread.is_alive(), "server thread did not stop"


# --------------------------------------------------------------------------- wsproto


def get_wsproto() -> Any:
    """The ``wsproto`` module, or skip/fail (see ``require``)."""
    require(importlib.util.find_spec("wsproto") is not None, "the Python package `wsproto`")
    import wsproto

    return wsproto


class WsprotoClient:
    """A blocking client on wsproto's sans-I/O connection, for talking to our server."""

    def __init__(self, port: int, *, deflate: dict[str, Any] | None = None,
                 timeout: float = START_TIMEOUT) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, RejectConnection, Request
        from wsproto.extensions import PerMessageDeflate

        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.messages: collections.deque[str | bytes] = collections.deque()
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._parts: list[Any] = []
        extensions = [PerMessageDeflate(**deflate)] if deflate is not None else []
        self._write(self.conn.send(Request(host=f"127.0.0.1:{port}", target="/",
                                           extensions=extensions)))
        self.accepted: Any = None
        while self.accepted is None:
            for event in self._read_events():
                if isinstance(event, AcceptConnection):
                    self.accepted = event
                elif isinstance(event, RejectConnection):
                    pytest.fail(f"handshake rejected: {event.status_code}")
                else:
                    self._handle(event)

    @property
    def extensions(self) -> list[Any]:
        return list(self.accepted.extensions)

    def _write(self, data: bytes) -> None:
        if data:
            self.sock.sendall(data)

    def _read_events(self) -> list[Any]:
        data = self.sock.recv(65536)
        self.conn.receive_data(data or None)
        return list(self.conn.events())

    def _handle(self, event: Any) -> None:
        from wsproto.events import CloseConnection, Message, Ping, Pong

        if isinstance(event, Message):
            self._parts.append(event.data)
            if event.message_finished:
                first = self._parts[0]
                joined = "".join(self._parts) if isinstance(first, str) else b"".join(self._parts)
                self._parts = []
                self.messages.append(joined)
        elif isinstance(event, Ping):
            self._write(self.conn.send(event.response()))
        elif isinstance(event, Pong):
            self.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            self.close_code, self.close_reason = event.code, event.reason
            from wsproto.connection import ConnectionState

            if self.conn.state is ConnectionState.REMOTE_CLOSING:
                self._write(self.conn.send(event.response()))

    def send(self, message: str | bytes, *, final: bool = True) -> None:
        from wsproto.events import BytesMessage, TextMessage

        event = (TextMessage(data=message, message_finished=final) if isinstance(message, str)
                 else BytesMessage(data=message, message_finished=final))
        self._write(self.conn.send(event))

    def recv(self) -> str | bytes:
        while not self.messages:
            if self.close_code is not None:
                raise AssertionError(f"closed: {self.close_code} {self.close_reason}")
            for event in self._read_events():
                self._handle(event)
        return self.messages.popleft()

    def ping(self, payload: bytes) -> None:
        """Ping and wait for the matching pong."""
        from wsproto.events import Ping

        self._write(self.conn.send(Ping(payload=payload)))
        while payload not in self.pongs:
            assert self.close_code is None, "closed while waiting for a pong"
            for event in self._read_events():
                self._handle(event)

    def close(self, code: int, reason: str) -> tuple[int | None, str | None]:
        """Close and return the code and reason of the answering close frame."""
        from wsproto.events import CloseConnection

        self._write(self.conn.send(CloseConnection(code=code, reason=reason)))
        while self.close_code is None:
            events = self._read_events()
            if not events:
                break
            for event in events:
                self._handle(event)
        self.sock.close()
        return self.close_code, self.close_reason


@dataclass
class WsprotoServer:
    """A wsproto echo server on a thread (one connection at a time)."""

    port: int
    closes: list[tuple[int, str | None]] = field(default_factory=list)
    accepted_extensions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def wsproto_echo_server(*, deflate: dict[str, Any] | None = None) -> Iterator[WsprotoServer]:
    """Echo every message (text as text); text ``close:<code>:<reason>`` closes with it.

    ``deflate``: accept permessage-deflate with these ``wsproto`` ``PerMessageDeflate``
    arguments (None: accept no extension).
    """
    from wsproto import ConnectionType, WSConnection
    from wsproto.connection import ConnectionState
    from wsproto.events import (
        AcceptConnection,
        BytesMessage,
        CloseConnection,
        Message,
        Ping,
        Request,
        TextMessage,
    )
    from wsproto.extensions import Extension, PerMessageDeflate

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    state = WsprotoServer(listener.getsockname()[1])
    stopping = threading.Event()

    def serve_one(sock: socket.socket) -> None:
        conn = WSConnection(ConnectionType.SERVER)
        parts: list[Any] = []
        sock.settimeout(START_TIMEOUT)
        while conn.state is not ConnectionState.CLOSED:
            data = sock.recv(1 << 20)
            conn.receive_data(data or None)
            out = b""
            for event in conn.events():
                if isinstance(event, Request):
                    extensions: list[Extension] = (
                        [PerMessageDeflate(**deflate)] if deflate is not None else [])
                    out += conn.send(AcceptConnection(extensions=extensions))
                    state.accepted_extensions.append(
                        ", ".join(str(e.name) for e in extensions if e.enabled()))
                elif isinstance(event, Message):
                    parts.append(event.data)
                    if not event.message_finished:
                        continue
                    whole: Any = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
                    parts = []
                    if isinstance(whole, str) and whole.startswith("close:"):
                        _, code, reason = whole.split(":", 2)
                        out += conn.send(CloseConnection(code=int(code), reason=reason))
                    elif isinstance(whole, str):
                        out += conn.send(TextMessage(data=whole))
                    else:
                        out += conn.send(BytesMessage(data=whole))
                elif isinstance(event, Ping):
                    out += conn.send(event.response())
                elif isinstance(event, CloseConnection):
                    state.closes.append((event.code, event.reason))
                    if conn.state is ConnectionState.REMOTE_CLOSING:
                        out += conn.send(event.response())
            if out:
                sock.sendall(out)
            if not data:
                break

    def run() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with sock:
                try:
                    serve_one(sock)
                except Exception as exc:  # noqa: BLE001 - reported through state.errors
                    state.errors.append(repr(exc))

    thread = threading.Thread(target=run, name="wsproto-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        thread.join(STOP_TIMEOUT)
        listener.close()
