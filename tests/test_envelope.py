"""Tests for rfc6455.envelope, from docs/protocol.md: every error code, correlation,
timestamps, unknown fields, the size limit, and a round trip over real sockets."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from rfc6455 import Config, Server, connect
from rfc6455.envelope import (
    ERROR_CODES,
    SUBPROTOCOL,
    Envelope,
    EnvelopeApp,
    EnvelopeError,
    Request,
    encode,
    error_message,
    parse,
)


class FakeWS:
    """Just enough of a connection for EnvelopeApp.handle (log only)."""

    def __init__(self) -> None:
        self.logged: list[str] = []

    def log(self, level: int, msg: str, *args: Any, exc_info: bool = False) -> None:
        self.logged.append(msg % args)


def make_app() -> EnvelopeApp:
    app = EnvelopeApp(max_size=1024)

    @app.route("echo")
    def echo(request: Request) -> dict[str, Any]:
        return {"text": request.field("text", str)}

    @app.route("count")
    def count(request: Request) -> dict[str, Any]:
        return {"n": request.field("n", int) + 1}

    @app.route("deny")
    def deny(request: Request) -> None:
        raise EnvelopeError("forbidden", "not you")

    @app.route("busy")
    def busy(request: Request) -> None:
        raise EnvelopeError("rate_limited", "slow down")

    @app.route("boom")
    def boom(request: Request) -> None:
        raise RuntimeError("secret internal detail")

    return app


def answer(message: Any, app: EnvelopeApp | None = None) -> dict[str, Any] | None:
    app = app or make_app()
    text = message if isinstance(message, (str, bytes)) else json.dumps(message)
    reply = app.handle(FakeWS(), text)  # type: ignore[arg-type]
    return None if reply is None else json.loads(reply)


def error_of(message: Any) -> tuple[str, str | None, bool]:
    reply = answer(message)
    assert reply is not None and reply["type"] == "error", reply
    return reply["data"]["code"], reply.get("re"), reply["data"]["temporary"]


class TestParse:
    def test_a_whole_envelope(self) -> None:
        env = parse('{"v":1,"type":"publish","id":"7","ts":5,"data":{"topic":"t"}}')
        assert env == Envelope(type="publish", data={"topic": "t"}, id="7", v=1)

    def test_data_and_id_are_optional(self) -> None:
        assert parse('{"v":1,"type":"ping"}') == Envelope(type="ping")
        assert parse('{"v":1,"type":"ping","data":null}').data == {}

    def test_unknown_fields_are_ignored(self) -> None:
        env = parse('{"v":1,"type":"x","later":[1,2],"data":{"a":1,"b":{"c":2}}}')
        assert env.type == "x" and env.data == {"a": 1, "b": {"c": 2}}

    @pytest.mark.parametrize(
        ("text", "code"),
        [
            (b'{"v":1,"type":"x"}', "bad_json"),
            ("not json", "bad_json"),
            ('{"v":1,"type":"x"', "bad_json"),
            ("[1, 2]", "bad_envelope"),
            ('"v"', "bad_envelope"),
            ('{"type":"x"}', "bad_envelope"),
            ('{"v":"1","type":"x"}', "bad_envelope"),
            ('{"v":true,"type":"x"}', "bad_envelope"),
            ('{"v":1.0,"type":"x"}', "bad_envelope"),
            ('{"v":1}', "bad_envelope"),
            ('{"v":1,"type":""}', "bad_envelope"),
            ('{"v":1,"type":5}', "bad_envelope"),
            ('{"v":1,"type":"x","data":[]}', "bad_envelope"),
            ('{"v":1,"type":"x","data":"s"}', "bad_envelope"),
            ('{"v":1,"type":"x","id":7}', "bad_envelope"),
            ('{"v":1,"type":"x","id":""}', "bad_envelope"),
            ('{"v":1,"type":"x","id":"' + "i" * 65 + '"}', "bad_envelope"),
            ('{"v":2,"type":"x"}', "unsupported_version"),
            ('{"v":0,"type":"x"}', "unsupported_version"),
        ],
    )
    def test_errors(self, text: str | bytes, code: str) -> None:
        with pytest.raises(EnvelopeError) as info:
            parse(text)  # type: ignore[arg-type]
        assert info.value.code == code

    def test_unsupported_version_lists_the_versions(self) -> None:
        with pytest.raises(EnvelopeError) as info:
            parse('{"v":9,"type":"x","id":"a"}')
        assert info.value.data == {"versions": [1]}
        assert info.value.re == "a"

    def test_too_large_counts_utf8_bytes(self) -> None:
        small = json.dumps({"v": 1, "type": "x", "data": {"s": "é" * 100}}, ensure_ascii=False)
        assert parse(small, max_size=256).type == "x"  # 100 characters, 200 bytes
        big = json.dumps({"v": 1, "type": "x", "data": {"s": "é" * 200}}, ensure_ascii=False)
        assert len(big) < 256 < len(big.encode())
        with pytest.raises(EnvelopeError) as info:
            parse(big, max_size=256)
        assert info.value.code == "too_large"

    @pytest.mark.parametrize(
        "number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5e309"]
    )
    def test_numbers_json_cannot_carry_are_bad_json(self, number: str) -> None:
        # Python's json reads these (and 1e400 as inf) and writes them back as
        # NaN / Infinity, which no RFC 8259 parser (JSON.parse) accepts: passed on,
        # one publication would break every subscriber (found by fuzz_envelope).
        with pytest.raises(EnvelopeError) as info:
            parse('{"v":1,"type":"x","id":"a","data":{"payload":[1,' + number + "]}}")
        assert (info.value.code, info.value.re) == ("bad_json", None)

    def test_large_but_finite_numbers_are_accepted(self) -> None:
        env = parse('{"v":1,"type":"x","data":{"a":1e308,"b":-2.5e-320,"c":' + "9" * 400 + "}}")
        assert env.data == {"a": 1e308, "b": -2.5e-320, "c": int("9" * 400)}

    def test_deep_nesting_is_bad_json_not_a_crash(self) -> None:
        with pytest.raises(EnvelopeError) as info:
            parse("[" * 100_000 + "]" * 100_000, max_size=1 << 20)
        assert info.value.code in ("bad_json", "bad_envelope")


class TestRouting:
    def test_ack_carries_the_id_and_the_result(self) -> None:
        reply = answer({"v": 1, "type": "echo", "id": "r1", "data": {"text": "hi"}})
        assert reply is not None
        assert (reply["type"], reply["re"], reply["data"]) == ("ack", "r1", {"text": "hi"})
        assert reply["v"] == 1 and abs(reply["ts"] - time.time() * 1000) < 60_000

    def test_no_id_no_ack(self) -> None:
        assert answer({"v": 1, "type": "echo", "data": {"text": "hi"}}) is None

    def test_errors_without_an_id_have_no_re(self) -> None:
        code, re, _ = error_of({"v": 1, "type": "echo", "data": {}})
        assert (code, re) == ("bad_envelope", None)

    @pytest.mark.parametrize(
        ("message", "code", "temporary"),
        [
            ({"v": 1, "type": "nope", "id": "a"}, "unknown_type", False),
            ({"v": 1, "type": "echo", "id": "a", "data": {}}, "bad_envelope", False),
            ({"v": 1, "type": "echo", "id": "a", "data": {"text": 5}}, "bad_envelope", False),
            ({"v": 1, "type": "count", "id": "a", "data": {"n": True}}, "bad_envelope", False),
            ({"v": 1, "type": "deny", "id": "a"}, "forbidden", False),
            ({"v": 1, "type": "busy", "id": "a"}, "rate_limited", True),
            ({"v": 1, "type": "boom", "id": "a"}, "internal", True),
            ({"v": 2, "type": "echo", "id": "a"}, "unsupported_version", False),
        ],
    )
    def test_every_request_with_an_id_gets_one_error(
        self, message: dict[str, Any], code: str, temporary: bool
    ) -> None:
        assert error_of(message) == (code, "a", temporary)

    def test_internal_errors_do_not_leak(self) -> None:
        ws = FakeWS()
        reply = json.loads(make_app().handle(ws, '{"v":1,"type":"boom","id":"x"}') or "")  # type: ignore[arg-type]
        assert "secret" not in json.dumps(reply)
        assert ws.logged == ["route 'boom' raised"]

    def test_too_large_and_bad_json(self) -> None:
        assert error_of("x" * 2000)[0] == "too_large"
        assert error_of("{")[0] == "bad_json"

    def test_ping_gets_a_pong(self) -> None:
        reply = answer({"v": 1, "type": "ping", "id": "p"})
        assert reply is not None and (reply["type"], reply["re"]) == ("pong", "p")
        reply = answer({"v": 1, "type": "ping"})
        assert reply is not None and reply["type"] == "pong" and "re" not in reply

    def test_error_codes_are_the_documented_ones(self) -> None:
        assert set(ERROR_CODES) == {
            "bad_json", "bad_envelope", "unsupported_version", "unknown_type", "unauthorized",
            "forbidden", "rate_limited", "too_large", "unavailable", "internal",
        }
        with pytest.raises(ValueError):
            EnvelopeError("nonsense", "x")

    def test_encode(self) -> None:
        assert json.loads(encode("message", {"a": 1}, ts=5)) == {
            "v": 1, "type": "message", "ts": 5, "data": {"a": 1}
        }
        err = json.loads(error_message(EnvelopeError("unavailable", "later", re="q"), ts=1))
        assert err == {
            "v": 1, "type": "error", "re": "q", "ts": 1,
            "data": {"code": "unavailable", "message": "later", "temporary": True},
        }


def test_over_real_sockets() -> None:
    app = make_app()
    server = Server(Config(port=0, subprotocols=[SUBPROTOCOL]), handler=app)
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with connect(f"ws://127.0.0.1:{server.port}/", subprotocols=[SUBPROTOCOL]) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            ws.send(json.dumps({"v": 1, "type": "echo", "id": "1", "data": {"text": "é"}}))
            ws.send("garbage")
            ws.send(b"\x00binary")
            ws.send(json.dumps({"v": 1, "type": "ping", "id": "2"}))
            replies = [json.loads(ws.recv(timeout=5)) for _ in range(4)]
            assert [(r["type"], r.get("re")) for r in replies] == [
                ("ack", "1"), ("error", None), ("error", None), ("pong", "2")
            ]
            assert replies[0]["data"] == {"text": "é"}
            assert [r["data"]["code"] for r in replies[1:3]] == ["bad_json", "bad_json"]
    finally:
        server.shutdown()
        thread.join(10)


def test_an_envelope_app_loads_with_app_module_attr(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rfc6455 serve --app MODULE:ATTR` takes an EnvelopeApp with the application's types."""
    from rfc6455.cli_commands import load_app

    (tmp_path / "my_envelope_app.py").write_text(
        "from rfc6455.envelope import EnvelopeApp\n"
        "app = EnvelopeApp()\n"
        "@app.route('add')\n"
        "def add(request):\n"
        "    return {'sum': request.field('a', int) + request.field('b', int)}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app("my_envelope_app:app")
    assert isinstance(app, EnvelopeApp)
    reply = answer({"v": 1, "type": "add", "id": "1", "data": {"a": 2, "b": 3}}, app)
    assert reply is not None and reply["data"] == {"sum": 5}


def test_replies_with_lone_surrogates_are_still_sendable_text() -> None:
    text = encode("ack", {"echo": "a\ud800b"}, re="1", ts=1)
    text.encode("utf-8")  # would raise if the surrogate were left raw
    assert json.loads(text)["data"]["echo"] == "a\ud800b"
    assert encode("ack", {"s": "é"}, ts=1) == '{"v":1,"type":"ack","ts":1,"data":{"s":"é"}}'
