"""Tests for rfc6455._events: frozen, slotted, keyword-only, validating events."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from rfc6455 import (
    NEED_DATA,
    BinaryChunk,
    BinaryMessage,
    Close,
    ConnectionFailed,
    ConnectionLost,
    Event,
    NeedData,
    Ping,
    Pong,
    TextChunk,
    TextMessage,
)
from rfc6455._events import make_binary, make_binary_chunk, make_text, make_text_chunk

SAMPLES: list[Event] = [
    TextMessage(data="t"),
    BinaryMessage(data=b"b"),
    TextChunk(data="c", final=False),
    BinaryChunk(data=b"c", final=True),
    Ping(payload=b"p"),
    Pong(payload=b"q"),
    Close(code=1001, reason="r"),
    ConnectionFailed(code=1002, reason="bad"),
    ConnectionLost(),
]


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
class TestEventShape:
    def test_is_event(self, event: Event) -> None:
        assert isinstance(event, Event)

    def test_frozen(self, event: Event) -> None:
        field = dataclasses.fields(event)[0].name  # type: ignore[arg-type]
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, field, getattr(event, field))

    def test_slotted(self, event: Event) -> None:
        assert not hasattr(event, "__dict__")

    def test_keyword_only(self, event: Event) -> None:
        values = [getattr(event, f.name) for f in dataclasses.fields(event)]  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            type(event)(*values)

    def test_equality_and_hash(self, event: Event) -> None:
        copy = dataclasses.replace(event)  # type: ignore[type-var]
        assert copy == event
        assert hash(copy) == hash(event)

    def test_pickle(self, event: Event) -> None:
        assert pickle.loads(pickle.dumps(event)) == event


class TestValidation:
    def test_text_needs_str(self) -> None:
        with pytest.raises(TypeError):
            TextMessage(data=b"x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            TextChunk(data=b"x", final=True)  # type: ignore[arg-type]

    def test_binary_needs_bytes(self) -> None:
        with pytest.raises(TypeError):
            BinaryMessage(data="x")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            BinaryChunk(data="x", final=True)  # type: ignore[arg-type]
        assert BinaryMessage(data=bytearray(b"x")).data == b"x"

    @pytest.mark.parametrize("cls", [Ping, Pong])
    def test_control_payload_limit(self, cls: type[Ping | Pong]) -> None:
        # §5.5: control frame payloads are 125 bytes or less.
        assert cls(payload=b"x" * 125).payload == b"x" * 125
        with pytest.raises(ValueError):
            cls(payload=b"x" * 126)

    def test_defaults(self) -> None:
        assert Ping().payload == b""
        assert Pong().payload == b""
        assert (Close().code, Close().reason) == (1000, "")
        assert (ConnectionLost().code, ConnectionLost().reason) == (1006, "")
        assert ConnectionFailed(code=1009).reason == ""
        with pytest.raises(TypeError):
            ConnectionFailed()  # type: ignore[call-arg]


class TestFastConstructors:
    def test_same_as_validated(self) -> None:
        assert make_text("a") == TextMessage(data="a")
        assert make_binary(b"a") == BinaryMessage(data=b"a")
        assert make_text_chunk("a", True) == TextChunk(data="a", final=True)
        assert make_binary_chunk(b"a", False) == BinaryChunk(data=b"a", final=False)
        assert type(make_text("a")) is TextMessage

    def test_result_still_frozen(self) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            make_text("a").data = "b"  # type: ignore[misc]


class TestNeedData:
    def test_singleton(self) -> None:
        assert NeedData() is NEED_DATA
        assert repr(NEED_DATA) == "NEED_DATA"
        assert not isinstance(NEED_DATA, Event)
