"""Interop with headless Chromium: the browser is the client our users care most about.

The test serves ``chromium_page.html`` from a local HTTP server; the page opens
a WebSocket to our server (the CLI, ``--app echo``), sends each message, checks
its echo byte for byte, closes, and POSTs a report back. Chromium offers
permessage-deflate on every connection, so the report's ``extensions`` shows
what our server negotiated.
"""

from __future__ import annotations

from typing import Any

import pytest
from interop_support import (
    MIB,
    Chromium,
    SelfSignedCert,
    deflate_specs,
    our_inprocess_server,
    our_server,
    require_deflate,
    websockets_echo_server,
)

pytestmark = pytest.mark.interop

DEFLATE_MESSAGES = [{"type": kind, "size": size, "fill": fill}
                    for kind, size, fill in deflate_specs()]


def assert_report_ok(report: dict[str, Any], close_code: int = 1000) -> None:
    assert report.get("error") is None, report
    bad = [r for r in report["results"] if not r["match"]]
    assert not bad, f"echoes that differ: {bad}"
    assert report["ok"], report
    assert report["close"] == {"code": close_code, "reason": report["close"]["reason"],
                               "wasClean": True}, report["close"]


def test_page_with_websockets_server(chromium: Chromium, websockets_lib: Any) -> None:
    """The page itself against the websockets library: the harness is sound."""
    with websockets_echo_server() as peer:
        report = chromium.run_page(peer.url)
        peer.wait_closed(1)
    assert_report_ok(report)
    assert report["extensions"].startswith("permessage-deflate")
    assert report["close"]["reason"] == "done"
    assert peer.closes == [(1000, "done")]


def test_echo_and_clean_close_without_compression(chromium: Chromium) -> None:
    with our_server("--no-compression") as server:
        report = chromium.run_page(server.url)
    assert_report_ok(report)
    assert report["extensions"] == ""
    assert len(report["results"]) == 8


def test_close_4001_with_reason(chromium: Chromium) -> None:
    messages = [{"type": "text", "data": "bye soon"}]
    with our_server() as server:
        report = chromium.run_page(server.url, messages, close={"code": 4001, "reason": "bye"})
    assert_report_ok(report, close_code=4001)


def test_echo_with_compression(chromium: Chromium) -> None:
    require_deflate()
    messages = [*DEFLATE_MESSAGES, {"type": "text", "size": MIB, "fill": "compressible"}]
    with our_server() as server:
        report = chromium.run_page(server.url, messages)
    # Chromium offers "permessage-deflate; client_max_window_bits".
    assert report["extensions"].startswith("permessage-deflate"), report["extensions"]
    assert_report_ok(report)
    assert len(report["results"]) == len(messages)


def test_echo_with_compression_no_context_takeover(chromium: Chromium) -> None:
    """A server that imposes no context takeover both ways (the CLI has no flag for it)."""
    require_deflate()
    from rfc6455.permessage_deflate import ServerPerMessageDeflate

    factory = ServerPerMessageDeflate(server_no_context_takeover=True,
                                      client_no_context_takeover=True)
    with our_inprocess_server(extensions=(factory,)) as server:
        report = chromium.run_page(server.url, DEFLATE_MESSAGES)
    extensions = report["extensions"]
    assert extensions.startswith("permessage-deflate"), extensions
    assert "server_no_context_takeover" in extensions
    assert "client_no_context_takeover" in extensions
    assert_report_ok(report)


def test_wss_echo(chromium: Chromium, tls_cert: SelfSignedCert) -> None:
    """wss:// from the browser; Chromium trusts exactly our test key (SPKI pin)."""
    with our_server("--certfile", str(tls_cert.cert), "--keyfile", str(tls_cert.key)) as server:
        assert server.url.startswith("wss://")
        report = chromium.run_page(
            server.url, flags=[f"--ignore-certificate-errors-spki-list={tls_cert.spki_sha256}"])
    assert_report_ok(report)
    assert len(report["results"]) == 8


def test_graceful_shutdown_closes_with_1001(chromium: Chromium) -> None:
    """SIGTERM to the server: the browser gets close 1001 after its messages, cleanly."""
    messages: list[dict[str, Any]] = [
        {"type": "text", "data": "before shutdown"},
        {"type": "binary", "size": 100_000, "fill": "random"},
    ]
    with our_server() as server:
        report = chromium.run_page(server.url, messages, on_ready=server.process.stop)
    assert report.get("error") is None, report
    assert all(r["match"] for r in report["results"]), report["results"]
    assert report["close"]["code"] == 1001, report["close"]
    assert report["close"]["wasClean"], report["close"]


def test_message_over_limit_closes_with_1009(chromium: Chromium) -> None:
    """The browser learns why it was dropped: close code 1009, not a bare 1006."""
    messages: list[dict[str, Any]] = [
        {"type": "text", "data": "small"},
        {"type": "binary", "size": 70_000, "fill": "random"},
    ]
    with our_server("--max-message-size", "65536") as server:
        report = chromium.run_page(server.url, messages)
    assert [r["match"] for r in report["results"]] == [True, False]
    assert report["close"]["code"] == 1009, report["close"]
