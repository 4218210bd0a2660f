#!/usr/bin/env python3
"""Atheris harness: the JSON envelope (``rfc6455/envelope.py``, docs/protocol.md).

Run it (see fuzz/README.md)::

    python fuzz/fuzz_envelope.py fuzz/corpus/envelope -dict=fuzz/envelope.dict -max_total_time=60

No socket, no connection: one fuzzer input is one WebSocket message given to
:func:`rfc6455.envelope.parse` and to an :class:`~rfc6455.envelope.EnvelopeApp`
(``handle``) with a few routes, on a stand-in for the connection.

Input format: one configuration byte, then the message.

    byte 0     bit 0: a binary message (the bytes as they are), else text
               (the bytes decoded as UTF-8, invalid sequences replaced, as a
               WebSocket text message is always valid UTF-8);
               bits 1-2: max_size, MAX_SIZES[(byte >> 1) & 3]

Contract checked, for every input (docs/protocol.md, "Fields" and "Errors"):

1. ``parse`` returns an ``Envelope`` or raises ``EnvelopeError`` with one of
   the codes a message alone can cause (``PARSE_CODES``); nothing else
   escapes (``ACCEPTED_EXCEPTIONS`` is empty).
2. The outcome agrees with the documented rules, checked here independently
   (``_violations``): the error's code is one of the rules the message
   breaks, and a message is accepted only if it breaks none. The rules:
   binary or not strict JSON (RFC 8259: no ``NaN``/``Infinity``; no number
   beyond a double, such as ``1e400``) is ``bad_json``; over ``max_size`` UTF-8 bytes is ``too_large``; not an
   object, an ``id`` that is not a 1-64 character string, ``v`` not a JSON
   integer, ``type`` not a non-empty string, ``data`` not an object (absent
   or null: ``{}``) is ``bad_envelope``; another ``v`` is
   ``unsupported_version`` with ``data.versions``. An accepted envelope
   carries exactly the message's ``v``, ``type``, ``id`` and ``data``.
3. An error carries the request's ``id`` in ``re`` when the message had a
   usable one and got as far as the envelope checks, and never another
   value.
4. Every answer is sendable and well formed: strict JSON, UTF-8 encodable
   text, an object with ``v`` 1, an integer ``ts``, an object ``data``;
   an ``error`` has ``code`` / ``message`` / ``temporary`` as documented.
5. ``EnvelopeApp.handle`` answers a request with an ``id`` exactly once
   (``ack``, ``pong`` or ``error`` with ``re`` = the id), a request without
   one only with a ``pong`` or an ``error`` (never an ``ack``), nothing for a
   route that answers later; a route that raises gives ``internal``, an
   unknown type ``unknown_type``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from typing import Any

import atheris

if __name__ == "__main__":  # fuzz the checkout this file lives in
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

_instrument = atheris.instrument_imports() if __name__ == "__main__" else contextlib.nullcontext()
with _instrument:
    from rfc6455 import envelope as env
    from rfc6455.envelope import LATER, Envelope, EnvelopeApp, EnvelopeError, Request

from fuzz_frames import HarnessFailure

#: Exceptions that may escape without being a bug. Empty on purpose.
ACCEPTED_EXCEPTIONS: tuple[type[BaseException], ...] = ()

HEADER_SIZE = 1

#: max_size choices: the default and small limits (``too_large`` within reach).
MAX_SIZES = (env.DEFAULT_MAX_ENVELOPE_SIZE, 16, 64, 256)

#: The codes ``parse`` may raise: those a message causes by itself.
PARSE_CODES = frozenset({"bad_json", "bad_envelope", "unsupported_version", "too_large"})

#: Server → client types an app answers with (docs/protocol.md).
ANSWER_TYPES = frozenset({"ack", "error", "pong"})


class _Socket:
    """What a route's ``Request`` needs of a connection: ``open``, ``send``, ``log``."""

    def __init__(self) -> None:
        self.open = True
        self.sent: list[str] = []

    def send(self, text: str) -> None:
        self.sent.append(text)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        pass


def _echo(request: Request) -> dict[str, Any]:
    return {"text": request.field("text", str), "n": request.field("n", int, required=False)}


def _data(request: Request) -> dict[str, Any]:
    return request.data  # the client's data, sent back as it came


def _boom(request: Request) -> None:
    raise RuntimeError("a route bug")


def _later(request: Request) -> Any:
    return LATER


def _refuse(request: Request) -> None:
    raise EnvelopeError("forbidden", "no", {"why": request.field("why", (str, int, bool), required=False)})


APP = EnvelopeApp()
for _name, _route in (("echo", _echo), ("data", _data), ("boom", _boom), ("later", _later),
                      ("refuse", _refuse)):
    APP.add_route(_name, _route)
#: Types APP answers with something other than an ack, or not at all.
_SPECIAL = {"boom": "error", "later": None, "refuse": "error"}


def parse_input(data: bytes) -> tuple[bool, int, str | bytes]:
    """(binary, max_size, message) of a fuzzer input."""
    header = data[:HEADER_SIZE].ljust(HEADER_SIZE, b"\0")
    binary = bool(header[0] & 1)
    max_size = MAX_SIZES[(header[0] >> 1) & 3]
    body = data[HEADER_SIZE:]
    return binary, max_size, body if binary else body.decode("utf-8", "replace")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond a double")
    return value


def strict_json(text: str) -> Any:
    """``json.loads`` as RFC 8259 has it: no NaN, Infinity or -Infinity; and, as
    docs/protocol.md has it, no number beyond a double's range (``1e400``).

    Raises ValueError (or RecursionError) for anything else."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)


def _violations(message: str | bytes, max_size: int) -> tuple[set[str], str | None]:
    """The documented rules ``message`` breaks, and its usable ``id`` (or None)."""
    if isinstance(message, bytes):
        return {"bad_json"}, None
    broken: set[str] = set()
    if len(message.encode("utf-8", "surrogatepass")) > max_size:
        return {"too_large"}, None  # the limit comes first: no parse of a huge text
    try:
        obj = strict_json(message)
    except (ValueError, RecursionError):
        return {"bad_json"}, None
    if not isinstance(obj, dict):
        return {"bad_envelope"}, None
    raw_id = obj.get("id")
    usable_id = None
    if raw_id is not None:
        if isinstance(raw_id, str) and 1 <= len(raw_id) <= env.MAX_ID_LENGTH:
            usable_id = raw_id
        else:
            broken.add("bad_envelope")
    version = obj.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        broken.add("bad_envelope")
    elif version not in env.VERSIONS:
        broken.add("unsupported_version")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        broken.add("bad_envelope")
    if not isinstance(obj.get("data"), (dict, type(None))):
        broken.add("bad_envelope")
    return broken, usable_id


def _check_answer(text: Any, kind: str | None = None, re: str | None = None) -> dict[str, Any]:
    """One server message: sendable, strict JSON, the documented shape."""
    if not isinstance(text, str):
        raise HarnessFailure(f"an answer that is not text: {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HarnessFailure(f"an answer that cannot be sent as UTF-8: {text[:200]!r}") from None
    try:
        obj = strict_json(text)
    except (ValueError, RecursionError) as exc:
        raise HarnessFailure(f"an answer that is not strict JSON ({exc}): {text[:200]!r}") from None
    if not isinstance(obj, dict) or obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise HarnessFailure(f"an answer without v 1: {text[:200]!r}")
    if type(obj.get("ts")) is not int or not isinstance(obj.get("data"), dict):
        raise HarnessFailure(f"an answer without an integer ts or an object data: {text[:200]!r}")
    if obj.get("type") not in ANSWER_TYPES or (kind is not None and obj["type"] != kind):
        raise HarnessFailure(f"answer of type {obj.get('type')!r}, expected {kind!r}")
    if obj.get("re") != re or ("re" in obj) != (re is not None):
        raise HarnessFailure(f"answer with re {obj.get('re')!r}, expected {re!r}")
    if obj["type"] == "error":
        data = obj["data"]
        code = data.get("code")
        if code not in env.ERROR_CODES or data.get("temporary") is not env.ERROR_CODES[code]:
            raise HarnessFailure(f"error with code {code!r}, temporary {data.get('temporary')!r}")
        if not isinstance(data.get("message"), str):
            raise HarnessFailure("error without a message")
    return obj


def _check_parse(binary: bool, max_size: int, message: str | bytes) -> Envelope | None:
    broken, usable_id = _violations(message, max_size)
    try:
        envelope = env.parse(message, max_size=max_size)
    except EnvelopeError as exc:
        if exc.code not in PARSE_CODES:
            raise HarnessFailure(f"parse raised code {exc.code!r}") from None
        if exc.code not in broken:
            raise HarnessFailure(f"parse said {exc.code!r}; the rules broken: {sorted(broken)}") from None
        if exc.re is not None and exc.re != usable_id:
            raise HarnessFailure(f"error re {exc.re!r}, the message's id {usable_id!r}") from None
        if exc.code in ("bad_envelope", "unsupported_version") and exc.re != usable_id:
            raise HarnessFailure(f"error re {exc.re!r} for a usable id {usable_id!r}") from None
        if exc.code == "unsupported_version" and exc.data.get("versions") != list(env.VERSIONS):
            raise HarnessFailure(f"unsupported_version without the versions: {exc.data!r}") from None
        answer = _check_answer(env.error_message(exc, ts=0), "error", exc.re)
        if answer["data"]["code"] != exc.code:
            raise HarnessFailure("error_message changed the code")
        return None
    if broken:
        raise HarnessFailure(f"accepted a message that breaks {sorted(broken)}: {message[:200]!r}")
    assert isinstance(message, str)
    obj = strict_json(message)
    expected = (obj["type"], obj.get("data") or {}, obj.get("id"), obj["v"])
    if (envelope.type, envelope.data, envelope.id, envelope.v) != expected:
        raise HarnessFailure(f"envelope {envelope!r} is not the message's {expected!r}")
    return envelope


def _check_app(message: str | bytes, envelope: Envelope | None, max_size: int) -> None:
    ws = _Socket()
    APP.max_size = max_size
    reply = APP.handle(ws, message)  # type: ignore[arg-type]
    if ws.sent:
        raise HarnessFailure(f"a route sent besides the reply: {ws.sent!r}")
    if envelope is None:
        # A malformed message: one error, with the id when usable.
        obj = _check_answer(reply, "error", _violations(message, max_size)[1])
        if obj["data"]["code"] not in PARSE_CODES:
            raise HarnessFailure(f"malformed message answered with {obj['data']['code']!r}")
        return
    known = envelope.type in ("ping", "echo", "data", "boom", "later", "refuse")
    if not known:
        obj = _check_answer(reply, "error", envelope.id)
        if obj["data"]["code"] != "unknown_type":
            raise HarnessFailure(f"unknown type answered with {obj['data']['code']!r}")
        return
    if envelope.type == "later":
        if reply is not None:
            raise HarnessFailure(f"a LATER route got an answer: {reply!r}")
        return
    if envelope.type == "ping":
        _check_answer(reply, "pong", envelope.id)
        return
    if reply is None:
        if envelope.id is not None or envelope.type in _SPECIAL:
            raise HarnessFailure(f"no answer to {envelope!r}")
        return
    obj = _check_answer(reply, None, envelope.id)
    if envelope.type == "boom" and obj["data"]["code"] != "internal":
        raise HarnessFailure(f"a raising route answered with {reply!r}")
    if obj["type"] == "ack":
        if envelope.id is None:
            raise HarnessFailure("an ack without an id to answer")
        if envelope.type == "data" and obj["data"] != envelope.data:
            raise HarnessFailure("data did not come back as it came")


def TestOneInput(data: bytes) -> None:
    """Check the contract in the module docstring on one input."""
    binary, max_size, message = parse_input(data)
    try:
        envelope = _check_parse(binary, max_size, message)
        _check_app(message, envelope, max_size)
    except ACCEPTED_EXCEPTIONS:
        return


def main() -> None:
    """Fuzz until libFuzzer's limits say stop."""
    logging.disable(logging.CRITICAL)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
