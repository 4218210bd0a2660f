"""A FastAPI app under uvicorn with ``--ws rfc6455.uvicorn:WebSocketProtocol``, and real clients.

uvicorn runs as a subprocess (``python -m uvicorn fastapi_ws_app:app --port 0 --ws ...``)
on 127.0.0.1, on asyncio and on uvloop; headless Chromium, websockets' client and Node's
``ws`` talk to it: text, UTF-8, binary, 1 MiB messages, fragmented messages,
permessage-deflate, close codes and reasons both ways, a dropped connection (1006)
when the endpoint raises, 403 and a denial response before accepting.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from interop_support import (
    HERE,
    MIB,
    REPO,
    Chromium,
    NodePeers,
    PeerProcess,
    deflate_specs,
    get_websockets,
    require,
)

pytestmark = pytest.mark.interop

RUNNING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(?P<port>\d+)")
TIMEOUT = 30.0


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def uvicorn_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``ws://127.0.0.1:PORT``: the FastAPI app under uvicorn with our protocol."""
    require(_has("fastapi") and _has("uvicorn"), "the Python packages `fastapi` and `uvicorn`")
    if request.param == "uvloop":
        require(_has("uvloop"), "the Python package `uvloop`")
    argv = [sys.executable, "-m", "uvicorn", "fastapi_ws_app:app", "--app-dir", str(HERE),
            "--host", "127.0.0.1", "--port", "0", "--loop", request.param,
            "--ws", "rfc6455.uvicorn:WebSocketProtocol", "--lifespan", "off"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = PeerProcess(argv, cwd=HERE, env=env)
    try:
        match = server.wait_for_line(RUNNING)
        yield f"ws://127.0.0.1:{match['port']}"
        assert server.proc.poll() is None, server.output()
    finally:
        server.stop()
    output = server.output()
    assert output.count("Traceback") == output.count(_EXPECTED_TRACEBACK), output


# The one traceback uvicorn logs on purpose: the endpoint that raises.
_EXPECTED_TRACEBACK = "RuntimeError: the endpoint failed on purpose"


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ------------------------------------------------------------------ websockets


def test_websockets_client_echo_and_compression(uvicorn_url: str) -> None:
    get_websockets()
    from websockets.sync.client import connect

    messages: list[str | bytes] = ["hello", "h\u00e9llo \u2603 \U0001f600", "", b"\x00\xff",
                                   b"", b"\x01" * MIB, "x" * MIB]
    with connect(f"{uvicorn_url}/ws", max_size=4 * MIB, open_timeout=TIMEOUT) as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert extensions.startswith("permessage-deflate"), extensions
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=TIMEOUT) == message
        ws.send(["frag", "mented ", "\u2603"])
        assert ws.recv(timeout=TIMEOUT) == "fragmented \u2603"
        ws.close(4002, "client bye")
    assert ws.close_code == 4002  # the server's answer echoes the code


def test_websockets_client_without_compression(uvicorn_url: str) -> None:
    get_websockets()
    from websockets.sync.client import connect

    with connect(f"{uvicorn_url}/ws", compression=None, open_timeout=TIMEOUT) as ws:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send(b"\x02" * 70000)
        assert ws.recv(timeout=TIMEOUT) == b"\x02" * 70000


def test_app_closes_with_code_and_reason(uvicorn_url: str) -> None:
    get_websockets()
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    with connect(f"{uvicorn_url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("close:4001:app bye")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=TIMEOUT)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "app bye")


def test_endpoint_exception_drops_the_connection(uvicorn_url: str) -> None:
    """As with uvicorn's own protocols: no close frame after an app exception (1006)."""
    get_websockets()
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    with connect(f"{uvicorn_url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send("raise")
        with pytest.raises(ConnectionClosedError) as caught:
            ws.recv(timeout=TIMEOUT)
    assert caught.value.rcvd is None  # TCP closed without a close frame


def test_refusals_before_accepting(uvicorn_url: str) -> None:
    get_websockets()
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as caught:
        connect(f"{uvicorn_url}/reject", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{uvicorn_url}/deny", open_timeout=TIMEOUT)
    assert caught.value.response.status_code == 401
    assert caught.value.response.body == b"nope"


def test_subprotocol(uvicorn_url: str) -> None:
    get_websockets()
    from websockets.sync.client import connect
    from websockets.typing import Subprotocol

    offered = [Subprotocol("chat.v1"), Subprotocol("chat.v2")]
    with connect(f"{uvicorn_url}/subprotocol", subprotocols=offered,
                 open_timeout=TIMEOUT) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.recv(timeout=TIMEOUT) == "chat.v1,chat.v2"


# ------------------------------------------------------------------------ Node


def test_node_ws_default_script_with_deflate(uvicorn_url: str, node_peers: NodePeers) -> None:
    """Text, UTF-8, empty, binary, 1 MiB random and compressible, fragments, ping, close."""
    run = node_peers.run_client(f"{uvicorn_url}/ws", None, "--deflate")
    assert run.returncode == 0, run.output
    assert not run.of("error"), run.output
    assert len(run.of("sent")) == 9
    run.assert_echoed()
    assert run.of("pong") == [{"event": "pong", "data": "are you there"}]
    assert run.close["code"] == 1000, run.output
    opened = run.of("open")
    assert opened and "permessage-deflate" in str(opened[0]), run.output


def test_node_ws_compressed_sizes_and_app_close(uvicorn_url: str, node_peers: NodePeers) -> None:
    script: list[dict[str, Any]] = [
        {"op": kind, "size": size, "fill": fill} for kind, size, fill in deflate_specs()]
    script += [{"op": "text", "data": "close:4003:node bye", "expect": 0},
               {"op": "expect_close"}]
    run = node_peers.run_client(f"{uvicorn_url}/ws", script, "--deflate")
    assert run.returncode == 0, run.output
    sent = [(e["type"], e["length"], e["sha256"]) for e in run.of("sent")]
    got = [(e["type"], e["length"], e["sha256"]) for e in run.of("message")]
    assert got == sent[:-1], run.output  # everything but the close command came back
    assert (run.close["code"], run.close["reason"]) == (4003, "node bye"), run.output


# -------------------------------------------------------------------- Chromium


def test_chromium_echo_with_compression(uvicorn_url: str, chromium: Chromium) -> None:
    messages = [{"type": kind, "size": size, "fill": fill} for kind, size, fill in deflate_specs()]
    messages.append({"type": "binary", "size": MIB, "fill": "random"})
    report = chromium.run_page(f"{uvicorn_url}/ws", messages)
    assert report.get("error") is None, report
    assert all(r["match"] for r in report["results"]), report["results"]
    assert len(report["results"]) == len(messages)
    assert report["extensions"].startswith("permessage-deflate"), report["extensions"]
    assert report["close"]["code"] == 1000 and report["close"]["wasClean"], report["close"]


def test_chromium_close_4001_with_reason(uvicorn_url: str, chromium: Chromium) -> None:
    report = chromium.run_page(f"{uvicorn_url}/ws", [{"type": "text", "data": "bye soon"}],
                               close={"code": 4001, "reason": "bye"})
    assert report.get("error") is None, report
    assert report["ok"], report
    # The server's answering close frame echoes the code (its reason is its own).
    assert (report["close"]["code"], report["close"]["wasClean"]) == (4001, True), report["close"]
