"""The Sec-WebSocket-Extensions grammar (RFC 6455 §9.1, RFC 7692 §7.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfc6455._errors import HandshakeError, LocalProtocolError
from rfc6455._extensions import (
    Extension,
    is_token,
    parse_extensions,
    rsv_mask_of,
    serialize_extension,
)

PMD = "permessage-deflate"

VALID = [
    # one offer, no params
    ([PMD], [(PMD, [])]),
    # params with and without values, OWS around ';' and '='
    (
        [f"{PMD}; client_max_window_bits ;server_max_window_bits = 10"],
        [(PMD, [("client_max_window_bits", None), ("server_max_window_bits", "10")])],
    ),
    # RFC 7692 §7.1: a quoted-string value that unquotes to a token
    ([f'{PMD}; client_max_window_bits="10"'], [(PMD, [("client_max_window_bits", "10")])]),
    # quoted-pair inside the quoted-string
    ([f'{PMD}; x="1\\0"'], [(PMD, [("x", "10")])]),
    # several offers in one value, in order
    (
        [f"{PMD}; a, {PMD}, x-webkit-deflate-frame"],
        [(PMD, [("a", None)]), (PMD, []), ("x-webkit-deflate-frame", [])],
    ),
    # several header values, in order
    (["foo", "bar; baz=1"], [("foo", []), ("bar", [("baz", "1")])]),
    # empty list elements are ignored (RFC 7230 §7)
    ([" , foo ,, bar , "], [("foo", []), ("bar", [])]),
    # tabs are whitespace too
    (["foo\t;\tbar"], [("foo", [("bar", None)])]),
    # every tchar
    (["!#$%&'*+-.^_`|~09azAZ"], [("!#$%&'*+-.^_`|~09azAZ", [])]),
    # no header at all
    ([], []),
]


@pytest.mark.parametrize(("values", "expected"), VALID)
def test_parse_valid(values: list[str], expected: object) -> None:
    assert parse_extensions(values) == expected


INVALID = [
    "",  # 1#extension: at least one element
    " , ",
    "; a",  # parameter without an extension
    "foo;",  # parameter name missing
    "foo; =1",
    "foo; a=",  # value missing
    "foo; a=1=2",
    "foo bar",  # two tokens without a separator
    "fo/o",  # '/' is not a tchar
    "foo; a b",
    'foo; a="1',  # unterminated quoted-string
    'foo; a="1\\',  # unterminated quoted-pair
    'foo; a=""',  # §9.1: the unquoted value must be a token
    'foo; a="1 0"',
    'foo; a="x,y"',
    'foo; a="1"x',
    "foo\x00",
    "föö",
]


@pytest.mark.parametrize("value", INVALID)
def test_parse_invalid(value: str) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_extensions([value])
    assert info.value.status_code == 400
    assert "Sec-WebSocket-Extensions" in info.value.reason


def test_error_reason_is_bounded() -> None:
    with pytest.raises(HandshakeError) as info:
        parse_extensions(["a" * 10000 + ";"])
    assert len(info.value.reason) < 200


def test_parse_invalid_second_value() -> None:
    with pytest.raises(HandshakeError):
        parse_extensions(["foo", "bar;"])


def test_serialize() -> None:
    assert serialize_extension(PMD) == PMD
    assert (
        serialize_extension(
            PMD, [("server_no_context_takeover", None), ("client_max_window_bits", "10")]
        )
        == f"{PMD}; server_no_context_takeover; client_max_window_bits=10"
    )


@pytest.mark.parametrize(
    ("name", "params"),
    [("", []), ("a b", []), (PMD, [("", None)]), (PMD, [("a", "")]), (PMD, [("a", "1 0")])],
)
def test_serialize_invalid(name: str, params: list[tuple[str, str | None]]) -> None:
    with pytest.raises(LocalProtocolError):
        serialize_extension(name, params)


TOKENS = st.text(alphabet="!#$%&'*+-.^_`|~0123456789azAZ", min_size=1, max_size=8)
PARAMS = st.lists(st.tuples(TOKENS, st.none() | TOKENS), max_size=4)


@given(st.lists(st.tuples(TOKENS, PARAMS), min_size=1, max_size=4))
def test_round_trip(offers: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    header = ", ".join(serialize_extension(name, params) for name, params in offers)
    assert parse_extensions([header]) == offers


@given(st.lists(st.tuples(TOKENS, PARAMS), min_size=1, max_size=4))
def test_round_trip_quoted(offers: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    def element(name: str, params: list[tuple[str, str | None]]) -> str:
        parts = [name]
        for param, value in params:
            parts.append(param if value is None else f'{param}="{value}"')
        return " ; ".join(parts)

    assert parse_extensions([element(name, params) for name, params in offers]) == offers


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a,b")


def test_rsv_mask_of() -> None:
    class A(Extension):
        rsv_mask = 0x40

    class B(Extension):
        rsv_mask = 0x20

    assert rsv_mask_of([]) == 0
    assert rsv_mask_of([A(), B()]) == 0x60
