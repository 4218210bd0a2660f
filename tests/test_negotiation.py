"""permessage-deflate negotiation (RFC 7692 §5, §7.1), both roles.

The table tests generate every combination of offered parameters against
every server configuration. Each answer is checked two independent ways:
against the expected response (computed here from the RFC's rules, in a
different shape from the code), and against the RFC's constraints on any
response (``assert_valid_response``); then the client side must accept it
and the two extension objects must mirror each other and exchange messages.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfc6455 import BinaryMessage, HandshakeError
from rfc6455._extensions import ExtensionParams, parse_extensions
from rfc6455._handshake import ClientHandshake, HandshakeAccepted, ServerHandshake, accept_key
from rfc6455.permessage_deflate import (
    ClientPerMessageDeflate,
    PerMessageDeflate,
    ServerPerMessageDeflate,
)

ABSENT = "absent"
BARE = "bare"


@dataclass(frozen=True)
class Offer:
    """One valid offer: each parameter absent, bare, or with a value."""

    snct: bool
    cnct: bool
    smwb: int | None
    cmwb: int | str | None  # None: absent, BARE, or bits

    def params(self) -> ExtensionParams:
        params: ExtensionParams = []
        if self.snct:
            params.append(("server_no_context_takeover", None))
        if self.cnct:
            params.append(("client_no_context_takeover", None))
        if self.smwb is not None:
            params.append(("server_max_window_bits", str(self.smwb)))
        if self.cmwb == BARE:
            params.append(("client_max_window_bits", None))
        elif self.cmwb is not None:
            params.append(("client_max_window_bits", str(self.cmwb)))
        return params

    def client_factory(self) -> ClientPerMessageDeflate:
        return ClientPerMessageDeflate(
            server_no_context_takeover=self.snct,
            client_no_context_takeover=self.cnct,
            server_max_window_bits=self.smwb,
            client_max_window_bits=True if self.cmwb == BARE else self.cmwb,  # type: ignore[arg-type]
        )


OFFERS = [
    Offer(snct, cnct, smwb, cmwb)
    for snct, cnct, smwb, cmwb in itertools.product(
        [False, True], [False, True], [None, 8, 10, 15], [None, BARE, 8, 10, 15]
    )
]

CONFIGS = [
    {
        "server_no_context_takeover": snct,
        "client_no_context_takeover": cnct,
        "server_max_window_bits": smwb,
        "client_max_window_bits": cmwb,
        "require_client_max_window_bits": require,
        "refuse": refuse,
    }
    for snct, cnct, smwb, cmwb, require, refuse in itertools.product(
        [False, True],
        [False, True],
        [None, 9, 12],
        [None, 9, 12],
        [False, True],
        [(), ("server_no_context_takeover",), ("client_max_window_bits",)],
    )
    if cmwb is not None or not require
]


def expected_response(offer: Offer, config: dict[str, object]) -> dict[str, str | None] | None:
    """The response parameters RFC 7692 §7.1 leads to, or None for a decline."""
    refused = set(config["refuse"])  # type: ignore[call-overload]
    if refused & {name for name, _ in offer.params()}:
        return None
    if config["require_client_max_window_bits"] and offer.cmwb is None:
        return None
    response: dict[str, str | None] = {}
    # §7.1.1.1 and §7.1.1.2: asked by the client, or imposed by the server.
    if offer.snct or config["server_no_context_takeover"]:
        response["server_no_context_takeover"] = None
    if offer.cnct or config["client_no_context_takeover"]:
        response["client_no_context_takeover"] = None
    # §7.1.2.1: no larger than offered; the server's own cap applies too.
    candidates = [b for b in (offer.smwb, config["server_max_window_bits"]) if b is not None]
    if candidates:
        response["server_max_window_bits"] = str(min(candidates))  # type: ignore[type-var]
    # §7.1.2.2: only when offered; no larger than an offered value.
    if offer.cmwb is not None:
        limits = [b for b in (config["client_max_window_bits"],) if b is not None]
        if offer.cmwb != BARE:
            limits.append(offer.cmwb)
        if limits:
            response["client_max_window_bits"] = str(min(limits))  # type: ignore[type-var]
    return response


def assert_valid_response(offer: Offer, params: ExtensionParams) -> None:
    """RFC 7692's constraints on a response to ``offer``, checked directly."""
    names = [name for name, _ in params]
    assert len(names) == len(set(names)), "duplicate parameter"
    values = dict(params)
    for name, value in params:
        assert name in {
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
        }
        if name.endswith("no_context_takeover"):
            assert value is None
        else:
            assert value is not None and value in {str(b) for b in range(8, 16)}
    if offer.snct:
        assert "server_no_context_takeover" in values  # §7.1.1.1 MUST
    if offer.smwb is not None:
        assert int(values["server_max_window_bits"] or 0) <= offer.smwb  # §7.1.2.1 MUST
    if offer.cmwb is None:
        assert "client_max_window_bits" not in values  # §7.1.2.2 MUST NOT
    elif offer.cmwb != BARE and "client_max_window_bits" in values:
        assert int(values["client_max_window_bits"] or 0) <= int(offer.cmwb)


def element_params(element: str) -> ExtensionParams:
    ((name, params),) = parse_extensions([element])
    assert name == "permessage-deflate"
    return params


def assert_mirror(server_ext: PerMessageDeflate, client_ext: PerMessageDeflate) -> None:
    assert server_ext.local_no_context_takeover == client_ext.remote_no_context_takeover
    assert client_ext.local_no_context_takeover == server_ext.remote_no_context_takeover or (
        client_ext.local_no_context_takeover and not server_ext.remote_no_context_takeover
    )
    # Each side's compressor window fits the peer's decompressor.
    assert server_ext.local_max_window_bits <= client_ext.remote_max_window_bits
    assert client_ext.local_max_window_bits <= server_ext.remote_max_window_bits


def assert_exchange(server_ext: PerMessageDeflate, client_ext: PerMessageDeflate) -> None:
    message = bytes(range(256)) * 8 + b"tail"
    for _ in range(3):
        _, data = server_ext.encode(message, first=True, fin=True)
        assert client_ext.decode(data, rsv=0x40, fin=True, max_size=1 << 20) == message
        _, data = client_ext.encode(message, first=True, fin=True)
        assert server_ext.decode(data, rsv=0x40, fin=True, max_size=1 << 20) == message


def test_table_size() -> None:
    assert len(OFFERS) == 80
    assert len(CONFIGS) == 2 * 2 * 3 * (3 + 2) * 3


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_every_offer_against_every_configuration(config: dict[str, object]) -> None:
    server = ServerPerMessageDeflate(**config)  # type: ignore[arg-type]
    for offer in OFFERS:
        expected = expected_response(offer, config)
        result = server.accept(offer.params())
        if expected is None:
            assert result is None, (offer, config)
            continue
        assert result is not None, (offer, config)
        element, server_ext = result
        params = element_params(element)
        assert dict(params) == expected, (offer, config)
        assert_valid_response(offer, params)
        assert isinstance(server_ext, PerMessageDeflate)
        client_ext = offer.client_factory().accept_response(params)
        assert isinstance(client_ext, PerMessageDeflate)
        assert_mirror(server_ext, client_ext)
    # A sample of agreements also exchange data (all of them would be slow).
    for offer in OFFERS[::7]:
        result = server.accept(offer.params())
        if result is not None:
            element, server_ext = result
            client_ext = offer.client_factory().accept_response(element_params(element))
            assert isinstance(server_ext, PerMessageDeflate)
            assert isinstance(client_ext, PerMessageDeflate)
            assert_exchange(server_ext, client_ext)


# ------------------------------------------------------------ server: exact rows


@pytest.mark.parametrize(
    ("config", "offer", "response"),
    [
        # Browsers' offer against the defaults (websockets' server defaults).
        ({}, [("client_max_window_bits", None)],
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        # A bare offer: the client cannot be told its window.
        ({}, [], "permessage-deflate; server_max_window_bits=12"),
        # No caps configured: echo what the client asked for.
        ({"server_max_window_bits": None, "client_max_window_bits": None},
         [("client_max_window_bits", None)], "permessage-deflate"),
        ({"server_max_window_bits": None, "client_max_window_bits": None},
         [("server_no_context_takeover", None), ("server_max_window_bits", "10")],
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
        ({"server_max_window_bits": None, "client_max_window_bits": None},
         [("client_max_window_bits", "9")], "permessage-deflate; client_max_window_bits=9"),
        # Imposed by the server, unasked.
        ({"server_no_context_takeover": True, "client_no_context_takeover": True},
         [], ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=12")),
        # 8 bits asked: accepted (our compressor uses zlib's 9 within 256 bytes).
        ({}, [("server_max_window_bits", "8")], "permessage-deflate; server_max_window_bits=8"),
    ],
)
def test_server_responses(config: dict[str, object], offer: ExtensionParams, response: str) -> None:
    result = ServerPerMessageDeflate(**config).accept(offer)  # type: ignore[arg-type]
    assert result is not None
    assert result[0] == response


@pytest.mark.parametrize(
    "offer",
    [
        [("unknown", None)],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("client_max_window_bits", None), ("client_max_window_bits", "10")],
        [("server_no_context_takeover", "1")],
        [("client_no_context_takeover", "")],
        [("server_max_window_bits", None)],  # §7.1.2.1: needs a value in an offer
        [("server_max_window_bits", "7")],
        [("server_max_window_bits", "16")],
        [("server_max_window_bits", "08")],  # "without leading zeroes"
        [("client_max_window_bits", "09")],
        [("client_max_window_bits", "abc")],
        [("client_max_window_bits", "-9")],
        [("client_max_window_bits", "")],
        [("Server_No_Context_Takeover", None)],
    ],
)
def test_server_declines_invalid_offers(offer: ExtensionParams) -> None:
    # §5: "A server MUST decline an extension negotiation offer for this extension if ..."
    assert ServerPerMessageDeflate().accept(offer) is None


def test_server_configuration_is_validated() -> None:
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(server_max_window_bits=7)
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(client_max_window_bits=16)
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(client_max_window_bits=None, require_client_max_window_bits=True)
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(refuse=["server_max_window"])
    with pytest.raises(ValueError):
        ServerPerMessageDeflate(level=11)
    with pytest.raises(ValueError):
        ClientPerMessageDeflate(client_max_window_bits=7)
    with pytest.raises(ValueError):
        ClientPerMessageDeflate(server_max_window_bits=16)


def test_server_extension_gets_settings() -> None:
    result = ServerPerMessageDeflate(level=1, mem_level=3, compress_threshold=100).accept([])
    assert result is not None
    ext = result[1]
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.level, ext.mem_level, ext.compress_threshold) == (1, 3, 100)


# ------------------------------------------------------------ client side


@pytest.mark.parametrize(
    ("kwargs", "offer"),
    [
        ({}, "permessage-deflate; client_max_window_bits"),
        ({"client_max_window_bits": None}, "permessage-deflate"),
        ({"client_max_window_bits": 10}, "permessage-deflate; client_max_window_bits=10"),
        (
            {"server_no_context_takeover": True, "client_no_context_takeover": True,
             "server_max_window_bits": 9, "client_max_window_bits": 11},
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
                "server_max_window_bits=9; client_max_window_bits=11"
            ),
        ),
    ],
)
def test_client_offers(kwargs: dict[str, object], offer: str) -> None:
    assert ClientPerMessageDeflate(**kwargs).offer() == offer  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "response"),
    [
        # §5: unknown, duplicate, or invalid parameters.
        ({}, [("unknown", None)]),
        ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)]),
        ({}, [("server_no_context_takeover", "x")]),
        ({}, [("client_no_context_takeover", "x")]),
        ({}, [("server_max_window_bits", None)]),
        ({}, [("server_max_window_bits", "7")]),
        ({}, [("server_max_window_bits", "010")]),
        # §7.1.2.2: a response's client_max_window_bits needs a value.
        ({}, [("client_max_window_bits", None)]),
        ({}, [("client_max_window_bits", "16")]),
        # §7.1.2.2: "a server MUST NOT include" it unless offered.
        ({"client_max_window_bits": None}, [("client_max_window_bits", "10")]),
        # Larger than what we offered.
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "11")]),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")]),
        # §7.1.1.1 / §7.1.2.1: a requested parameter the response drops.
        ({"server_no_context_takeover": True}, []),
        ({"server_max_window_bits": 10}, []),
    ],
)
def test_client_fails_on_disallowed_responses(kwargs: dict[str, object], response: ExtensionParams) -> None:
    with pytest.raises(HandshakeError):
        ClientPerMessageDeflate(**kwargs).accept_response(response)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "response", "expected"),
    [
        ({}, [], (False, False, 15, 15)),
        # The server may impose these unasked.
        ({}, [("server_no_context_takeover", None), ("client_no_context_takeover", None)],
         (True, True, 15, 15)),
        ({}, [("server_max_window_bits", "8"), ("client_max_window_bits", "8")], (False, False, 8, 8)),
        ({"client_max_window_bits": 10}, [], (False, False, 10, 15)),
        ({"client_no_context_takeover": True}, [], (True, False, 15, 15)),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "9")], (False, False, 15, 9)),
    ],
)
def test_client_accepts(
    kwargs: dict[str, object], response: ExtensionParams, expected: tuple[bool, bool, int, int]
) -> None:
    ext = ClientPerMessageDeflate(**kwargs).accept_response(response)  # type: ignore[arg-type]
    assert isinstance(ext, PerMessageDeflate)
    assert (
        ext.local_no_context_takeover,
        ext.remote_no_context_takeover,
        ext.local_max_window_bits,
        ext.remote_max_window_bits,
    ) == expected


# ------------------------------------------------------ through the handshake


def handshake(
    server_factory: ServerPerMessageDeflate | None,
    offer_header: str | list[str] | None = None,
    client_factory: ClientPerMessageDeflate | None = None,
) -> tuple[ServerHandshake, bytes]:
    server = ServerHandshake(extensions=[server_factory] if server_factory else [])
    if offer_header is None:
        client = ClientHandshake("example.com", extensions=[client_factory] if client_factory else [])
        request = client.request_bytes()
    else:
        headers = [offer_header] if isinstance(offer_header, str) else offer_header
        request = (
            b"GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            + b"".join(b"Sec-WebSocket-Extensions: " + h.encode() + b"\r\n" for h in headers)
            + b"\r\n"
        )
    server.receive_data(request)
    event = server.next_event()
    response = server.accept(event)  # type: ignore[arg-type]
    return server, response


def extensions_header(response: bytes) -> list[str]:
    return [
        line.split(b":", 1)[1].strip().decode()
        for line in response.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]


@pytest.mark.parametrize(
    ("header", "response"),
    [
        # Quoted values are accepted (RFC 7692 §7.1 / RFC 6455 §9.1).
        ('permessage-deflate; client_max_window_bits="10"',
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10"),
        # Offers in order: the first invalid one is declined, the next taken.
        ("permessage-deflate; foo, permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"),
        (["permessage-deflate; server_max_window_bits=16",
          "permessage-deflate; client_max_window_bits"],
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"),
        # Other extensions are left alone.
        ("x-webkit-deflate-frame, permessage-deflate",
         "permessage-deflate; server_max_window_bits=12"),
    ],
)
def test_server_handshake(header: str | list[str], response: str) -> None:
    server, data = handshake(ServerPerMessageDeflate(), header)
    assert extensions_header(data) == [response]
    (ext,) = server.extensions
    assert isinstance(ext, PerMessageDeflate)


def test_server_handshake_all_declined() -> None:
    server, data = handshake(ServerPerMessageDeflate(), "permessage-deflate; foo")
    assert extensions_header(data) == []
    assert server.extensions == []


def test_full_handshake_then_compressed_messages() -> None:
    client = ClientHandshake("example.com", extensions=[ClientPerMessageDeflate()])
    server = ServerHandshake(extensions=[ServerPerMessageDeflate()])
    server.receive_data(client.request_bytes())
    request = server.next_event()
    client.receive_data(server.accept(request))  # type: ignore[arg-type]
    accepted = client.next_event()
    assert isinstance(accepted, HandshakeAccepted)
    (client_ext,) = accepted.extensions
    (server_ext,) = server.extensions
    assert isinstance(client_ext, PerMessageDeflate) and isinstance(server_ext, PerMessageDeflate)
    assert (client_ext.local_max_window_bits, client_ext.remote_max_window_bits) == (12, 12)
    assert (server_ext.local_max_window_bits, server_ext.remote_max_window_bits) == (12, 12)
    client_conn, server_conn = client.connection, server.connection
    message = b"compress me " * 1000
    assert server_conn.receive(client_conn.send_binary(message)) == [BinaryMessage(data=message)]
    assert client_conn.receive(server_conn.send_binary(message)) == [BinaryMessage(data=message)]


def client_against_response(factory: ClientPerMessageDeflate, element: str) -> None:
    client = ClientHandshake("example.com", extensions=[factory])
    client.request_bytes()
    # A hand-made 101 carrying ``element``; the accept key must match.
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(client.key)}\r\n"
        f"Sec-WebSocket-Extensions: {element}\r\n\r\n"
    )
    client.receive_data(response.encode())
    client.next_event()


def test_client_handshake_fails_on_bad_response() -> None:
    with pytest.raises(HandshakeError):
        client_against_response(ClientPerMessageDeflate(client_max_window_bits=None),
                                "permessage-deflate; client_max_window_bits=10")
    with pytest.raises(HandshakeError):
        client_against_response(ClientPerMessageDeflate(), "permessage-deflate; bogus")


def test_client_handshake_accepts_quoted_response() -> None:
    client_against_response(ClientPerMessageDeflate(), 'permessage-deflate; server_max_window_bits="10"')


# --------------------------------------------------- differential: websockets

ws_pmd = pytest.importorskip("websockets.extensions.permessage_deflate")


WS_CLIENTS = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 11},
    {"client_max_window_bits": None},
    {"server_no_context_takeover": True, "client_no_context_takeover": True,
     "server_max_window_bits": 9, "client_max_window_bits": 9},
]


@pytest.mark.parametrize("ws_kwargs", WS_CLIENTS)
@pytest.mark.parametrize("config", [{}, {"server_no_context_takeover": True},
                                    {"server_max_window_bits": None, "client_max_window_bits": None}])
def test_websockets_client_against_our_server(ws_kwargs: dict[str, object], config: dict[str, object]) -> None:
    theirs = ws_pmd.ClientPerMessageDeflateFactory(**ws_kwargs)
    result = ServerPerMessageDeflate(**config).accept(list(theirs.get_request_params()))  # type: ignore[arg-type]
    assert result is not None
    element, ours = result
    their_ext = theirs.process_response_params(element_params(element), [])
    assert isinstance(ours, PerMessageDeflate)
    assert their_ext.local_max_window_bits <= ours.remote_max_window_bits
    assert ours.local_max_window_bits <= their_ext.remote_max_window_bits
    assert their_ext.remote_no_context_takeover == ours.local_no_context_takeover


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"server_no_context_takeover": True}, {"client_no_context_takeover": True},
     {"server_max_window_bits": 10}, {"client_max_window_bits": 11}, {"client_max_window_bits": None}],
)
@pytest.mark.parametrize(
    "ws_server",
    [{}, {"server_max_window_bits": 12, "client_max_window_bits": 12},
     {"server_no_context_takeover": True, "client_no_context_takeover": True}],
)
def test_our_client_against_websockets_server(kwargs: dict[str, object], ws_server: dict[str, object]) -> None:
    ours = ClientPerMessageDeflate(**kwargs)  # type: ignore[arg-type]
    theirs = ws_pmd.ServerPerMessageDeflateFactory(**ws_server)
    response, their_ext = theirs.process_request_params(element_params(ours.offer()), [])
    our_ext = ours.accept_response(list(response))
    assert isinstance(our_ext, PerMessageDeflate)
    assert our_ext.local_max_window_bits <= their_ext.remote_max_window_bits
    assert their_ext.local_max_window_bits <= our_ext.remote_max_window_bits


# ------------------------------------------------------------- any offer

NAMES = [
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "unknown",
]
VALUES = [None, "", "7", "8", "9", "12", "15", "16", "08", "x"]


@given(
    params=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5),
    config=st.sampled_from(CONFIGS),
)
def test_property_any_offer_is_declined_or_answered_validly(
    params: ExtensionParams, config: dict[str, object]
) -> None:
    result = ServerPerMessageDeflate(**config).accept(params)  # type: ignore[arg-type]
    names = [name for name, _ in params]
    valid = (
        "unknown" not in names
        and len(names) == len(set(names))
        and all(
            value is None if name.endswith("no_context_takeover")
            else value in {str(b) for b in range(8, 16)}
            or (name == "client_max_window_bits" and value is None)
            for name, value in params
        )
    )
    if not valid:
        assert result is None
        return
    values = dict(params)
    cmwb = values.get("client_max_window_bits", "absent")
    offer = Offer(
        snct="server_no_context_takeover" in values,
        cnct="client_no_context_takeover" in values,
        smwb=int(values["server_max_window_bits"] or 0) if "server_max_window_bits" in values else None,
        cmwb=None if cmwb == "absent" else BARE if cmwb is None else int(cmwb),
    )
    assert (result is None) == (expected_response(offer, config) is None)
    if result is not None:
        response = element_params(result[0])
        assert_valid_response(offer, response)
        client_ext = offer.client_factory().accept_response(response)
        assert isinstance(client_ext, PerMessageDeflate) and isinstance(result[1], PerMessageDeflate)
        assert_mirror(result[1], client_ext)
