"""The opening handshake (RFC 6455 §4), both roles, and against wsproto."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import h11
import pytest
import wsproto
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.extensions import PerMessageDeflate

from rfc6455._connection import ClientConnection, ServerConnection
from rfc6455._errors import HandshakeError, HandshakeRejected, LocalProtocolError
from rfc6455._events import NEED_DATA, BinaryMessage, TextMessage
from rfc6455._extensions import Extension, ExtensionParams, serialize_extension
from rfc6455._handshake import (
    DEFAULT_MAX_BODY_SIZE,
    ClientHandshake,
    HandshakeAccepted,
    HTTPRequest,
    ServerHandshake,
    UpgradeRequest,
    accept_key,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# A masked text frame "Hello" (RFC 6455 §5.7).
MASKED_HELLO = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
UNMASKED_HELLO = b"\x81\x05Hello"

BASE_HEADERS = [
    ("Host", "example.com"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
]


def make_request(
    *,
    request_line: str = "GET /chat HTTP/1.1",
    replace: dict[str, str | None] | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """An upgrade request; ``replace`` maps a header name to a new value or None (drop)."""
    replace = dict(replace or {})
    headers: list[tuple[str, str]] = []
    for name, value in BASE_HEADERS:
        if name in replace:
            new = replace[name]
            if new is not None:
                headers.append((name, new))
        else:
            headers.append((name, value))
    headers.extend(extra)
    lines = [request_line] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def feed(handshake: ServerHandshake | ClientHandshake, data: bytes, *, step: int = 0) -> object:
    """Feed ``data`` whole (step 0) or in chunks of ``step`` bytes; return the first event."""
    chunks = [data] if step == 0 else [data[i : i + step] for i in range(0, len(data), step)]
    for chunk in chunks:
        handshake.receive_data(chunk)
        event = handshake.next_event()
        if event is not NEED_DATA:
            return event
    return NEED_DATA


def parse_response(data: bytes) -> tuple[h11.Response | h11.InformationalResponse, bytes]:
    """Parse a server's response with h11 (strict), returning it and its body."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x"), ("Upgrade", "y")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, (h11.Response, h11.InformationalResponse))
    body = b""
    if isinstance(response, h11.Response):
        while True:
            event = client.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            else:
                assert isinstance(event, h11.EndOfMessage)
                break
    return response, body


def header(response: h11.Response | h11.InformationalResponse, name: str) -> list[str]:
    return [v.decode("latin-1") for n, v in response.headers if n == name.lower().encode()]


class TestAcceptKey:
    def test_rfc_1_3_vector(self) -> None:
        # RFC 6455 §1.3.
        assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


# --- server: valid requests ------------------------------------------------------


class TestServerValidRequest:
    @pytest.mark.parametrize("step", [0, 1, 7])
    def test_request_fed_whole_and_in_pieces(self, step: int) -> None:
        server = ServerHandshake()
        event = feed(server, make_request(extra=[("Origin", "https://example.com")]), step=step)
        assert event == UpgradeRequest(
            method="GET",
            target="/chat",
            headers=[
                ("host", "example.com"),
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-key", KEY),
                ("sec-websocket-version", "13"),
                ("origin", "https://example.com"),
            ],
            host="example.com",
            origin="https://example.com",
            key=KEY,
            subprotocols=[],
            extensions=[],
            http_version="1.1",
        )
        assert server.next_event() is NEED_DATA  # until the caller answers

    def test_every_split_point(self) -> None:
        data = make_request() + MASKED_HELLO
        for cut in range(1, len(data)):  # b"" would mean EOF
            server = ServerHandshake()
            server.receive_data(data[:cut])
            event = server.next_event()
            server.receive_data(data[cut:])
            if event is NEED_DATA:
                event = server.next_event()
            assert isinstance(event, UpgradeRequest), cut
            server.accept(event)
            assert server.trailing_data == MASKED_HELLO, cut

    def test_accept_response(self) -> None:
        server = ServerHandshake()
        request = feed(server, make_request())
        assert isinstance(request, UpgradeRequest)
        response, _ = parse_response(server.accept(request))
        assert response.status_code == 101
        assert response.reason == b"Switching Protocols"
        assert header(response, "upgrade") == ["websocket"]
        assert header(response, "connection") == ["Upgrade"]
        assert header(response, "sec-websocket-accept") == ["s3pPLMBiTxaQ9kYGzzhZRbK+xOo="]
        assert header(response, "sec-websocket-protocol") == []
        assert header(response, "sec-websocket-extensions") == []

    @pytest.mark.parametrize(
        "replace",
        [
            {"Upgrade": "WebSocket"},
            {"Upgrade": "h2c, websocket"},
            {"Connection": "keep-alive, Upgrade"},
            {"Connection": "UPGRADE"},
            {"Sec-WebSocket-Version": " 13 "},
        ],
    )
    def test_accepted_variants(self, replace: dict[str, str | None]) -> None:
        assert isinstance(feed(ServerHandshake(), make_request(replace=replace)), UpgradeRequest)

    def test_connection_tokens_in_several_headers(self) -> None:
        data = make_request(replace={"Connection": "keep-alive"}, extra=[("Connection", "upgrade")])
        assert isinstance(feed(ServerHandshake(), data), UpgradeRequest)

    def test_header_names_case_insensitive(self) -> None:
        data = (
            b"GET / HTTP/1.1\r\nHOST: a\r\nUPGRADE: websocket\r\nconnection: upgrade\r\n"
            b"SEC-WEBSOCKET-KEY: " + KEY.encode() + b"\r\nsec-websocket-VERSION: 13\r\n\r\n"
        )
        event = feed(ServerHandshake(), data)
        assert isinstance(event, UpgradeRequest)
        assert event.key == KEY

    def test_target_with_query(self) -> None:
        event = feed(ServerHandshake(), make_request(request_line="GET /a/b?c=1&d HTTP/1.1"))
        assert isinstance(event, UpgradeRequest)
        assert event.target == "/a/b?c=1&d"

    def test_offers_parsed(self) -> None:
        data = make_request(
            extra=[
                ("Sec-WebSocket-Protocol", "chat, superchat"),
                ("Sec-WebSocket-Protocol", "v2"),
                ("Sec-WebSocket-Extensions", 'permessage-deflate; client_max_window_bits="10"'),
                ("Sec-WebSocket-Extensions", "x-foo"),
            ]
        )
        event = feed(ServerHandshake(), data)
        assert isinstance(event, UpgradeRequest)
        assert event.subprotocols == ["chat", "superchat", "v2"]
        assert event.extensions == [
            ("permessage-deflate", [("client_max_window_bits", "10")]),
            ("x-foo", []),
        ]

    def test_trailing_bytes_reach_the_connection(self) -> None:
        server = ServerHandshake(max_message_size=100)
        request = feed(server, make_request() + MASKED_HELLO[:4])
        assert isinstance(request, UpgradeRequest)
        server.receive_data(MASKED_HELLO[4:])  # arrives before accept: still trailing
        server.accept(request)
        assert server.trailing_data == MASKED_HELLO
        connection = server.connection
        assert isinstance(connection, ServerConnection)
        assert connection is server.connection
        assert connection.next_event() == TextMessage(data="Hello")

    def test_connection_options_pass_through(self) -> None:
        server = ServerHandshake(max_message_size=3)
        request = feed(server, make_request() + MASKED_HELLO)
        assert isinstance(request, UpgradeRequest)
        server.accept(request)
        event = server.connection.next_event()
        assert getattr(event, "code", None) == 1009  # "Hello" is over 3 bytes

    def test_connection_before_accept(self) -> None:
        server = ServerHandshake()
        with pytest.raises(LocalProtocolError):
            server.connection  # noqa: B018

    def test_receive_after_accept(self) -> None:
        server = ServerHandshake()
        request = feed(server, make_request())
        assert isinstance(request, UpgradeRequest)
        server.accept(request)
        with pytest.raises(LocalProtocolError):
            server.receive_data(b"x")
        with pytest.raises(LocalProtocolError):
            server.accept(request)
        with pytest.raises(LocalProtocolError):
            server.reject(400, "no")


# --- server: invalid requests ----------------------------------------------------

BAD_REQUESTS = [
    ("method POST", make_request(request_line="POST /chat HTTP/1.1"), 400, "GET"),
    ("HTTP/1.0", make_request(request_line="GET /chat HTTP/1.0"), 400, "HTTP/1.1"),
    ("missing Host", make_request(replace={"Host": None}), 400, "Host"),
    ("two Hosts", make_request(extra=[("Host", "b")]), 400, "Host"),
    ("missing Upgrade", make_request(replace={"Upgrade": None}), 400, "Upgrade"),
    ("wrong Upgrade", make_request(replace={"Upgrade": "h2c"}), 400, "Upgrade"),
    ("missing Connection", make_request(replace={"Connection": None}), 400, "Connection"),
    (
        "Connection keep-alive",
        make_request(replace={"Connection": "keep-alive"}),
        400,
        "Connection",
    ),
    ("missing key", make_request(replace={"Sec-WebSocket-Key": None}), 400, "missing"),
    ("key not base64", make_request(replace={"Sec-WebSocket-Key": "!" * 22 + "=="}), 400, "Key"),
    (
        "key 15 bytes",
        make_request(replace={"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()}),
        400,
        "Key",
    ),
    (
        "key 17 bytes",
        make_request(replace={"Sec-WebSocket-Key": base64.b64encode(b"x" * 17).decode()}),
        400,
        "Key",
    ),
    ("key not ASCII", make_request(replace={"Sec-WebSocket-Key": "\x80" * 22 + "=="}), 400, "Key"),
    ("key unpadded", make_request(replace={"Sec-WebSocket-Key": KEY.rstrip("=")}), 400, "Key"),
    ("key duplicated", make_request(extra=[("Sec-WebSocket-Key", KEY)]), 400, "duplicated"),
    ("version 8", make_request(replace={"Sec-WebSocket-Version": "8"}), 426, "version"),
    ("version missing", make_request(replace={"Sec-WebSocket-Version": None}), 426, "version"),
    ("version 13, 8", make_request(replace={"Sec-WebSocket-Version": "13, 8"}), 426, "version"),
    ("with a body", make_request(extra=[("Content-Length", "5")]) + b"12345", 400, "body"),
    (
        "chunked body",
        make_request(extra=[("Transfer-Encoding", "chunked")]) + b"0\r\n\r\n",
        400,
        "body",
    ),
    ("two Origins", make_request(extra=[("Origin", "a"), ("Origin", "b")]), 400, "Origin"),
    (
        "bad subprotocol",
        make_request(extra=[("Sec-WebSocket-Protocol", "a b")]),
        400,
        "subprotocol",
    ),
    (
        "bad extensions",
        make_request(extra=[("Sec-WebSocket-Extensions", "permessage-deflate;")]),
        400,
        "Extensions",
    ),
    # Only a Sec-WebSocket-* header makes it a handshake attempt.
    (
        "plain GET with a key",
        b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n\r\n",
        400,
        "Upgrade",
    ),
    (
        "TLS client hello",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
        400,
        "",
    ),
    ("garbage", b"\x00\xff garbage \r\n\r\n", 400, ""),
    ("bad header line", b"GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, ""),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0"),
]


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [pytest.param(d, s, f, id=i) for i, d, s, f in BAD_REQUESTS],
)
@pytest.mark.parametrize("step", [0, 1])
def test_bad_request(data: bytes, status: int, fragment: str, step: int) -> None:
    server = ServerHandshake()
    with pytest.raises(HandshakeError) as info:
        feed(server, data, step=step)
    error = info.value
    assert not isinstance(error, HandshakeRejected)
    assert error.status_code == status
    assert fragment in error.reason
    # The error is terminal and sticky.
    with pytest.raises(HandshakeError) as again:
        server.next_event()
    assert again.value is error
    response, body = parse_response(server.reject_bytes(error))
    assert response.status_code == status
    assert header(response, "connection") == ["close"]
    assert header(response, "content-type") == ["text/plain; charset=utf-8"]
    assert body == error.reason.encode() + b"\n"
    if status == 426:
        assert header(response, "sec-websocket-version") == ["13"]
    with pytest.raises(LocalProtocolError):
        server.connection  # noqa: B018


class TestServerLimits:
    def test_huge_header_incomplete(self) -> None:
        server = ServerHandshake(max_header_size=1024)
        server.receive_data(make_request()[:-4] + b"\r\nX-Big: " + b"a" * 2000)
        with pytest.raises(HandshakeError) as info:
            server.next_event()
        assert info.value.status_code == 431

    def test_huge_header_complete_in_one_chunk(self) -> None:
        server = ServerHandshake(max_header_size=1024)
        server.receive_data(make_request(extra=[("X-Big", "a" * 2000)]))
        with pytest.raises(HandshakeError) as info:
            server.next_event()
        assert info.value.status_code == 431
        response, _ = parse_response(server.reject_bytes(info.value))
        assert response.status_code == 431

    def test_huge_header_byte_by_byte(self) -> None:
        server = ServerHandshake(max_header_size=1024)
        with pytest.raises(HandshakeError) as info:
            feed(server, make_request(extra=[("X-Big", "a" * 2000)]), step=1)
        assert info.value.status_code == 431

    def test_default_header_limit_fits_a_big_cookie(self) -> None:
        data = make_request(extra=[("Cookie", "c" * 8000)])
        assert isinstance(feed(ServerHandshake(), data), UpgradeRequest)

    def test_eof_before_request(self) -> None:
        server = ServerHandshake()
        server.receive_data(b"")
        with pytest.raises(HandshakeError) as info:
            server.next_event()
        assert info.value.status_code == 400

    def test_eof_inside_request(self) -> None:
        server = ServerHandshake()
        server.receive_data(make_request()[:30])
        assert server.next_event() is NEED_DATA
        server.receive_data(b"")
        server.receive_data(b"")  # repeated EOF is harmless
        with pytest.raises(HandshakeError) as info:
            server.next_event()
        assert info.value.status_code == 400

    def test_data_after_eof(self) -> None:
        server = ServerHandshake()
        server.receive_data(b"")
        with pytest.raises(LocalProtocolError):
            server.receive_data(b"GET")


# --- server: plain HTTP ---------------------------------------------------------


class TestPlainHTTP:
    def test_healthz(self) -> None:
        server = ServerHandshake()
        event = feed(server, b"GET /healthz HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n")
        assert event == HTTPRequest(
            method="GET",
            target="/healthz",
            headers=[("host", "a"), ("accept", "*/*")],
            http_version="1.1",
            body=b"",
        )
        data = server.respond(200, [("Content-Type", "text/plain")], b"ok\n")
        response, body = parse_response(data)
        assert response.status_code == 200
        assert response.reason == b"OK"
        assert body == b"ok\n"
        assert header(response, "connection") == ["close"]
        assert header(response, "content-length") == ["3"]
        with pytest.raises(LocalProtocolError):
            server.respond(200)

    def test_http_1_0_without_host(self) -> None:
        event = feed(ServerHandshake(), b"GET /metrics HTTP/1.0\r\n\r\n")
        assert isinstance(event, HTTPRequest)
        assert event.http_version == "1.0"

    def test_head_has_no_body(self) -> None:
        server = ServerHandshake()
        feed(server, b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        data = server.respond(200, body=b"ok\n")
        assert data.endswith(b"Content-Length: 3\r\nConnection: close\r\n\r\n")

    def test_other_upgrade_is_plain(self) -> None:
        data = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        assert isinstance(feed(ServerHandshake(), data), HTTPRequest)

    @pytest.mark.parametrize("step", [0, 1])
    def test_body_is_read(self, step: int) -> None:
        data = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        event = feed(ServerHandshake(), data, step=step)
        assert isinstance(event, HTTPRequest)
        assert event.body == b"hello"

    def test_body_too_large(self) -> None:
        server = ServerHandshake(max_body_size=4)
        with pytest.raises(HandshakeError) as info:
            feed(server, b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
        assert info.value.status_code == 413

    def test_404_via_reject(self) -> None:
        server = ServerHandshake()
        feed(server, b"GET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
        response, body = parse_response(server.reject(404, "not found"))
        assert (response.status_code, body) == (404, b"not found\n")

    def test_respond_and_accept_need_the_right_request(self) -> None:
        server = ServerHandshake()
        request = feed(server, make_request())
        with pytest.raises(LocalProtocolError):
            server.respond(200)
        plain = ServerHandshake()
        plain_request = feed(plain, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(LocalProtocolError):
            plain.accept(plain_request)  # type: ignore[arg-type]
        other = ServerHandshake()
        with pytest.raises(LocalProtocolError):
            other.accept(request)  # type: ignore[arg-type]

    def test_header_injection_refused(self) -> None:
        server = ServerHandshake()
        feed(server, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        with pytest.raises(LocalProtocolError):
            server.respond(200, [("X", "a\r\nSet-Cookie: b")])
        with pytest.raises(LocalProtocolError):
            server.reject(400, "no", [("Bad Name", "x")])

    def test_unknown_status_has_empty_phrase(self) -> None:
        data = ServerHandshake().reject(499, "client went away")
        assert data.startswith(b"HTTP/1.1 499 \r\n")
        assert parse_response(data)[0].status_code == 499

    def test_reject_reason_is_one_line(self) -> None:
        server = ServerHandshake()
        _, body = parse_response(server.reject(403, "no\r\nX-Injected: 1"))
        assert body == b"no X-Injected: 1\n"


# --- server: hooks, subprotocols, extensions ------------------------------------


class TestCheckRequest:
    def test_refuse_origin(self) -> None:
        def check(request: UpgradeRequest) -> None:
            if request.origin != "https://good.example":
                raise HandshakeError("origin not allowed", 403)

        server = ServerHandshake(check_request=check)
        with pytest.raises(HandshakeError) as info:
            feed(server, make_request(extra=[("Origin", "https://evil.example")]))
        response, body = parse_response(server.reject_bytes(info.value))
        assert response.status_code == 403
        assert body == b"origin not allowed\n"

        server = ServerHandshake(check_request=check)
        event = feed(server, make_request(extra=[("Origin", "https://good.example")]))
        assert isinstance(event, UpgradeRequest)

    def test_auth_with_headers(self) -> None:
        def check(request: UpgradeRequest) -> None:
            raise HandshakeError("auth required", 401, [("WWW-Authenticate", "Bearer")])

        server = ServerHandshake(check_request=check)
        with pytest.raises(HandshakeError) as info:
            feed(server, make_request())
        response, _ = parse_response(server.reject_bytes(info.value))
        assert response.status_code == 401
        assert header(response, "www-authenticate") == ["Bearer"]

    def test_caller_rejects_after_inspecting(self) -> None:
        server = ServerHandshake()
        request = feed(server, make_request())
        assert isinstance(request, UpgradeRequest)
        response, _ = parse_response(server.reject(403, "forbidden"))
        assert response.status_code == 403


def negotiate(
    server: ServerHandshake,
    protocols: Sequence[str] = (),
    offers: Sequence[str] = (),
    **kwargs: object,
) -> tuple[h11.InformationalResponse, ServerHandshake]:
    """Feed a request with these offers to ``server`` and parse its accept() response."""
    extra = [("Sec-WebSocket-Protocol", p) for p in protocols]
    extra += [("Sec-WebSocket-Extensions", e) for e in offers]
    request = feed(server, make_request(extra=extra))
    assert isinstance(request, UpgradeRequest)
    response, _ = parse_response(server.accept(request, **kwargs))  # type: ignore[arg-type]
    assert isinstance(response, h11.InformationalResponse)
    return response, server


class TestSubprotocol:
    def test_server_preference_wins(self) -> None:
        response, server = negotiate(ServerHandshake(subprotocols=["b", "a"]), ["a, b"])
        assert header(response, "sec-websocket-protocol") == ["b"]
        assert server.subprotocol == "b"

    def test_no_overlap_means_no_header(self) -> None:
        response, server = negotiate(ServerHandshake(subprotocols=["x"]), ["a"])
        assert header(response, "sec-websocket-protocol") == []
        assert server.subprotocol is None

    def test_no_offer(self) -> None:
        response, _ = negotiate(ServerHandshake(subprotocols=["x"]))
        assert header(response, "sec-websocket-protocol") == []

    def test_explicit(self) -> None:
        response, _ = negotiate(ServerHandshake(subprotocols=["b"]), ["a", "b"], subprotocol="a")
        assert header(response, "sec-websocket-protocol") == ["a"]

    def test_explicit_not_offered(self) -> None:
        with pytest.raises(LocalProtocolError):
            negotiate(ServerHandshake(), ["a"], subprotocol="z")

    def test_hook(self) -> None:
        seen: list[list[str]] = []

        def select(offered: list[str]) -> str | None:
            seen.append(offered)
            return offered[-1]

        response, _ = negotiate(
            ServerHandshake(subprotocols=["a"], select_subprotocol=select), ["a, b"]
        )
        assert seen == [["a", "b"]]
        assert header(response, "sec-websocket-protocol") == ["b"]

    def test_hook_not_offered(self) -> None:
        server = ServerHandshake(select_subprotocol=lambda offered: "z")
        with pytest.raises(LocalProtocolError):
            negotiate(server, ["a"])


class FakeExtension(Extension):
    def __init__(self, name: str, params: ExtensionParams, rsv_mask: int = 0x40) -> None:
        self.name = name
        self.params = params
        self.rsv_mask = rsv_mask


class FakeServerFactory:
    """Accepts an offer unless it has a ``decline`` parameter; echoes the params."""

    def __init__(self, name: str = "x-fake", rsv_mask: int = 0x40) -> None:
        self.name = name
        self.rsv_mask = rsv_mask
        self.calls: list[ExtensionParams] = []

    def accept(self, params: ExtensionParams) -> tuple[str, Extension] | None:
        self.calls.append(params)
        if any(name == "decline" for name, _ in params):
            return None
        return serialize_extension(self.name, params), FakeExtension(
            self.name, params, self.rsv_mask
        )


class FakeClientFactory:
    def __init__(
        self, name: str = "x-fake", offer: str | None = None, rsv_mask: int = 0x40
    ) -> None:
        self.name = name
        self._offer = offer if offer is not None else name
        self.rsv_mask = rsv_mask
        self.responses: list[ExtensionParams] = []

    def offer(self) -> str:
        return self._offer

    def accept_response(self, params: ExtensionParams) -> Extension:
        self.responses.append(params)
        if any(name == "bad" for name, _ in params):
            raise HandshakeError("bad parameter")
        return FakeExtension(self.name, params, self.rsv_mask)


class TestServerExtensions:
    def test_first_acceptable_offer_wins(self) -> None:
        factory = FakeServerFactory()
        response, server = negotiate(
            ServerHandshake(extensions=[factory]),
            offers=["x-other, x-fake; decline", "x-fake; a=1, x-fake; b"],
        )
        assert factory.calls == [[("decline", None)], [("a", "1")]]
        assert header(response, "sec-websocket-extensions") == ["x-fake; a=1"]
        assert [(e.name, getattr(e, "params", None)) for e in server.extensions] == [
            ("x-fake", [("a", "1")])
        ]

    def test_factory_order_and_rsv_conflicts(self) -> None:
        first = FakeServerFactory("x-one", 0x40)
        second = FakeServerFactory("x-two", 0x20)
        clash = FakeServerFactory("x-three", 0x40)  # wants RSV1 too: skipped
        response, server = negotiate(
            ServerHandshake(extensions=[first, second, clash]), offers=["x-three, x-two, x-one"]
        )
        assert header(response, "sec-websocket-extensions") == ["x-one, x-two"]
        assert [e.name for e in server.extensions] == ["x-one", "x-two"]
        assert clash.calls == [[]]

    def test_nothing_offered(self) -> None:
        factory = FakeServerFactory()
        response, server = negotiate(ServerHandshake(extensions=[factory]))
        assert header(response, "sec-websocket-extensions") == []
        assert factory.calls == []
        assert server.extensions == []

    def test_all_declined(self) -> None:
        response, server = negotiate(
            ServerHandshake(extensions=[FakeServerFactory()]), offers=["x-fake; decline"]
        )
        assert header(response, "sec-websocket-extensions") == []
        assert server.extensions == []

    def test_override_per_request(self) -> None:
        factory = FakeServerFactory()
        response, server = negotiate(
            ServerHandshake(extensions=[factory]), offers=["x-fake"], extensions=()
        )
        assert factory.calls == []
        assert header(response, "sec-websocket-extensions") == []
        assert server.extensions == []

    def test_factory_refuses_outright(self) -> None:
        class Refusing(FakeServerFactory):
            def accept(self, params: ExtensionParams) -> tuple[str, Extension] | None:
                raise HandshakeError("bad permessage-deflate offer")

        server = ServerHandshake(extensions=[Refusing()])
        request = feed(server, make_request(extra=[("Sec-WebSocket-Extensions", "x-fake")]))
        assert isinstance(request, UpgradeRequest)
        with pytest.raises(HandshakeError) as info:
            server.accept(request)
        response, body = parse_response(server.reject_bytes(info.value))
        assert (response.status_code, body) == (400, b"bad permessage-deflate offer\n")

    def test_extensions_reach_the_connection(self) -> None:
        _, server = negotiate(ServerHandshake(extensions=[FakeServerFactory()]), offers=["x-fake"])
        assert isinstance(server.connection, ServerConnection)

    def test_extra_headers(self) -> None:
        response, _ = negotiate(ServerHandshake(), extra_headers=[("Set-Cookie", "a=b")])
        assert header(response, "set-cookie") == ["a=b"]
        with pytest.raises(LocalProtocolError):
            negotiate(ServerHandshake(), extra_headers=[("X", "a\nb")])


# --- client -----------------------------------------------------------------------


def parse_request(data: bytes) -> tuple[h11.Request, list[tuple[str, str]]]:
    server = h11.Connection(h11.SERVER)
    server.receive_data(data)
    request = server.next_event()
    assert isinstance(request, h11.Request)
    assert isinstance(server.next_event(), h11.EndOfMessage)
    headers = [(n.decode(), v.decode()) for n, v in request.headers]
    return request, headers


def response_101(
    client: ClientHandshake,
    *,
    replace: dict[str, str | None] | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    replace = dict(replace or {})
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(client.key)),
    ]
    headers = [(n, replace.get(n, v)) for n, v in headers if replace.get(n, v) is not None]  # type: ignore[misc]
    headers.extend(extra)
    lines = ["HTTP/1.1 101 Switching Protocols"] + [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def started(**kwargs: object) -> ClientHandshake:
    client = ClientHandshake("example.com:8080", "/chat?x=1", **kwargs)  # type: ignore[arg-type]
    client.request_bytes()
    return client


class TestClientRequest:
    def test_request(self) -> None:
        client = ClientHandshake(
            "example.com:8080",
            "/chat?x=1",
            subprotocols=["a", "b"],
            extensions=[FakeClientFactory(offer="x-fake; a=1, x-fake"), FakeClientFactory("x-two")],
            extra_headers=[("Authorization", "Bearer t")],
            origin="https://example.com",
        )
        request, headers = parse_request(client.request_bytes())
        assert request.method == b"GET"
        assert request.target == b"/chat?x=1"
        assert request.http_version == b"1.1"
        assert headers == [
            ("host", "example.com:8080"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", client.key),
            ("sec-websocket-version", "13"),
            ("origin", "https://example.com"),
            ("sec-websocket-protocol", "a, b"),
            ("sec-websocket-extensions", "x-fake; a=1, x-fake, x-two"),
            ("authorization", "Bearer t"),
        ]
        assert len(base64.b64decode(client.key, validate=True)) == 16

    def test_minimal_request_has_no_optional_headers(self) -> None:
        _, headers = parse_request(ClientHandshake("h").request_bytes())
        assert [n for n, _ in headers] == [
            "host",
            "upgrade",
            "connection",
            "sec-websocket-key",
            "sec-websocket-version",
        ]

    def test_keys_are_random(self) -> None:
        assert ClientHandshake("h").key != ClientHandshake("h").key

    def test_request_twice(self) -> None:
        client = started()
        with pytest.raises(LocalProtocolError):
            client.request_bytes()

    def test_next_event_before_request(self) -> None:
        with pytest.raises(LocalProtocolError):
            ClientHandshake("h").next_event()

    def test_bad_local_input(self) -> None:
        with pytest.raises(LocalProtocolError):
            ClientHandshake("h", subprotocols=["a b"])
        with pytest.raises(LocalProtocolError):
            ClientHandshake("h", extra_headers=[("X", "a\r\nb")]).request_bytes()
        with pytest.raises(HandshakeError):
            ClientHandshake("h", extensions=[FakeClientFactory(offer="x;")]).request_bytes()
        with pytest.raises(LocalProtocolError):
            ClientHandshake("h", "no spaces allowed").request_bytes()

    def test_request_accepted_by_our_server(self) -> None:
        client = ClientHandshake("h", subprotocols=["a"], origin="o")
        event = feed(ServerHandshake(), client.request_bytes())
        assert isinstance(event, UpgradeRequest)
        assert (event.origin, event.subprotocols) == ("o", ["a"])


class TestClientResponse:
    @pytest.mark.parametrize("step", [0, 1])
    def test_accepted_with_trailing_frame(self, step: int) -> None:
        client = started(subprotocols=["a", "b"])
        data = response_101(client, extra=[("Sec-WebSocket-Protocol", "b")]) + UNMASKED_HELLO
        event = feed(client, data, step=step)
        assert isinstance(event, HandshakeAccepted)
        assert event.subprotocol == "b"
        assert event.extensions == []
        assert ("sec-websocket-protocol", "b") in event.headers
        assert client.subprotocol == "b"
        if step == 0:
            assert client.trailing_data == UNMASKED_HELLO
        else:  # the event came as soon as the head was complete
            assert client.trailing_data == b""
        assert client.next_event() is NEED_DATA

    def test_trailing_frame_reaches_the_connection(self) -> None:
        client = started(max_message_size=100)
        event = feed(client, response_101(client) + UNMASKED_HELLO)
        assert isinstance(event, HandshakeAccepted)
        connection = client.connection
        assert isinstance(connection, ClientConnection)
        assert connection is client.connection
        assert connection.next_event() == TextMessage(data="Hello")
        with pytest.raises(LocalProtocolError):
            client.receive_data(b"x")

    def test_case_insensitive_and_lists(self) -> None:
        client = started()
        data = response_101(
            client, replace={"Upgrade": "WebSocket", "Connection": "keep-alive, upgrade"}
        )
        assert isinstance(feed(client, data), HandshakeAccepted)

    def test_informational_before_101(self) -> None:
        client = started()
        data = b"HTTP/1.1 100 Continue\r\n\r\n" + response_101(client)
        assert isinstance(feed(client, data, step=3), HandshakeAccepted)

    def test_extensions_negotiated(self) -> None:
        one, two = (
            FakeClientFactory("x-one", rsv_mask=0x40),
            FakeClientFactory("x-two", rsv_mask=0x20),
        )
        client = started(extensions=[one, two])
        data = response_101(client, extra=[("Sec-WebSocket-Extensions", "x-two; a=1, x-one")])
        event = feed(client, data)
        assert isinstance(event, HandshakeAccepted)
        assert [e.name for e in event.extensions] == ["x-two", "x-one"]
        assert two.responses == [[("a", "1")]]
        assert client.extensions == event.extensions

    def test_connection_before_accept(self) -> None:
        with pytest.raises(LocalProtocolError):
            started().connection  # noqa: B018


BAD_101 = [
    ("wrong accept", {"Sec-WebSocket-Accept": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}, [], "Accept"),
    ("missing accept", {"Sec-WebSocket-Accept": None}, [], "Accept"),
    ("missing Upgrade", {"Upgrade": None}, [], "Upgrade"),
    ("wrong Upgrade", {"Upgrade": "h2c"}, [], "Upgrade"),
    ("extra Upgrade token", {"Upgrade": "websocket, h2c"}, [], "Upgrade"),
    ("missing Connection", {"Connection": None}, [], "Connection"),
    ("Connection keep-alive", {"Connection": "keep-alive"}, [], "Connection"),
    ("subprotocol not offered", {}, [("Sec-WebSocket-Protocol", "z")], "subprotocol"),
    ("two subprotocols", {}, [("Sec-WebSocket-Protocol", "a, b")], "subprotocol"),
    ("extension not offered", {}, [("Sec-WebSocket-Extensions", "x-other")], "not offered"),
    ("extension twice", {}, [("Sec-WebSocket-Extensions", "x-fake, x-fake")], "twice"),
    ("extension refused", {}, [("Sec-WebSocket-Extensions", "x-fake; bad")], "bad parameter"),
    ("extension grammar", {}, [("Sec-WebSocket-Extensions", "x-fake;")], "Extensions"),
]


@pytest.mark.parametrize(
    ("replace", "extra", "fragment"),
    [pytest.param(r, e, f, id=i) for i, r, e, f in BAD_101],
)
def test_bad_101(
    replace: dict[str, str | None], extra: list[tuple[str, str]], fragment: str
) -> None:
    client = started(subprotocols=["a", "b"], extensions=[FakeClientFactory()])
    with pytest.raises(HandshakeError) as info:
        feed(client, response_101(client, replace=replace, extra=extra))
    assert not isinstance(info.value, HandshakeRejected)
    assert info.value.status_code == 101
    assert fragment in info.value.reason
    with pytest.raises(HandshakeError) as again:
        client.next_event()
    assert again.value is info.value
    with pytest.raises(LocalProtocolError):
        client.connection  # noqa: B018


def test_subprotocol_when_none_offered() -> None:
    client = started()
    with pytest.raises(HandshakeError):
        feed(client, response_101(client, extra=[("Sec-WebSocket-Protocol", "a")]))


def test_rsv_clash_between_extensions() -> None:
    client = started(extensions=[FakeClientFactory("x-one"), FakeClientFactory("x-two")])
    with pytest.raises(HandshakeError) as info:
        feed(client, response_101(client, extra=[("Sec-WebSocket-Extensions", "x-one, x-two")]))
    assert "RSV" in info.value.reason


class TestClientRejected:
    @pytest.mark.parametrize("step", [0, 1])
    def test_with_content_length(self, step: int) -> None:
        client = started()
        data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\nX-Why: origin\r\n\r\nnope"
        with pytest.raises(HandshakeRejected) as info:
            feed(client, data, step=step)
        error = info.value
        assert error.status_code == 403
        assert error.body == b"nope"
        assert ("x-why", "origin") in error.headers
        assert "403 Forbidden" in error.reason

    def test_body_until_eof(self) -> None:
        client = started()
        client.receive_data(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\nbusy")
        assert client.next_event() is NEED_DATA
        client.receive_data(b"")
        with pytest.raises(HandshakeRejected) as info:
            client.next_event()
        assert (info.value.status_code, info.value.body) == (503, b"busy")

    def test_eof_inside_body(self) -> None:
        client = started()
        client.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 100\r\n\r\npart")
        assert client.next_event() is NEED_DATA
        client.receive_data(b"")
        with pytest.raises(HandshakeRejected) as info:
            client.next_event()
        assert (info.value.status_code, info.value.body) == (404, b"part")

    def test_body_is_bounded(self) -> None:
        client = started()
        client.receive_data(
            b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * (DEFAULT_MAX_BODY_SIZE + 10)
        )
        with pytest.raises(HandshakeRejected) as info:
            client.next_event()
        assert info.value.body == b"x" * DEFAULT_MAX_BODY_SIZE

    def test_426_from_our_server(self) -> None:
        server = ServerHandshake()
        with pytest.raises(HandshakeError) as info:
            feed(server, make_request(replace={"Sec-WebSocket-Version": "8"}))
        client = started()
        with pytest.raises(HandshakeRejected) as rejected:
            feed(client, server.reject_bytes(info.value))
        assert rejected.value.status_code == 426
        assert ("sec-websocket-version", "13") in rejected.value.headers
        assert rejected.value.body == info.value.reason.encode() + b"\n"


class TestClientBrokenResponse:
    def test_eof_before_response(self) -> None:
        client = started()
        client.receive_data(b"")
        with pytest.raises(HandshakeError) as info:
            client.next_event()
        assert info.value.status_code == 0
        assert "closed" in info.value.reason

    def test_eof_inside_head(self) -> None:
        client = started()
        client.receive_data(b"HTTP/1.1 101 Swi")
        assert client.next_event() is NEED_DATA
        client.receive_data(b"")
        with pytest.raises(HandshakeError) as info:
            client.next_event()
        assert info.value.status_code == 0

    def test_garbage(self) -> None:
        client = started()
        client.receive_data(b"\x00\x01 not http\r\n\r\n")
        with pytest.raises(HandshakeError) as info:
            client.next_event()
        assert not isinstance(info.value, HandshakeRejected)
        assert info.value.status_code == 0

    def test_huge_head(self) -> None:
        client = started(max_header_size=1024)
        client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nX: " + b"a" * 2000)
        with pytest.raises(HandshakeError):
            client.next_event()

    def test_data_after_eof(self) -> None:
        client = started()
        client.receive_data(b"")
        client.receive_data(b"")  # repeated EOF is harmless
        with pytest.raises(LocalProtocolError):
            client.receive_data(b"x")


# --- both roles in memory, and against wsproto -------------------------------------


def test_client_server_in_memory() -> None:
    server_factory = FakeServerFactory()
    client_factory = FakeClientFactory(offer="x-fake; decline, x-fake; p=2")
    client = ClientHandshake(
        "localhost",
        "/ws",
        subprotocols=["v1", "v2"],
        extensions=[client_factory],
        origin="http://localhost",
    )
    server = ServerHandshake(subprotocols=["v2"], extensions=[server_factory])
    request = feed(server, client.request_bytes() + MASKED_HELLO)
    assert isinstance(request, UpgradeRequest)
    assert request.extensions == [("x-fake", [("decline", None)]), ("x-fake", [("p", "2")])]
    accepted = feed(client, server.accept(request) + UNMASKED_HELLO)
    assert isinstance(accepted, HandshakeAccepted)
    assert accepted.subprotocol == server.subprotocol == "v2"
    assert client_factory.responses == [[("p", "2")]]
    assert (
        [e.name for e in accepted.extensions] == [e.name for e in server.extensions] == ["x-fake"]
    )
    assert server.trailing_data == MASKED_HELLO
    assert client.trailing_data == UNMASKED_HELLO
    # The fake extension claims RSV1 but Hello has none: it passes through untouched.
    assert server.connection.next_event() == TextMessage(data="Hello")
    assert client.connection.next_event() == TextMessage(data="Hello")
    # And the connections talk to each other.
    client.connection.receive_data(server.connection.send_binary(b"\x00\x01"))
    assert client.connection.next_event() == BinaryMessage(data=b"\x00\x01")


class PMDServerFactory(FakeServerFactory):
    """Answers permessage-deflate offers the way a minimal server would (§7.1 RFC 7692)."""

    def __init__(self) -> None:
        super().__init__("permessage-deflate")

    def accept(self, params: ExtensionParams) -> tuple[str, Extension] | None:
        self.calls.append(params)
        return "permessage-deflate", FakeExtension(self.name, [])


class TestWsprotoClientOurServer:
    def test_handshake(self) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        data = ws.send(wse.Request(host="localhost", target="/ws?a=b", subprotocols=["p1", "p2"]))
        server = ServerHandshake(subprotocols=["p2"])
        request = feed(server, data, step=5)
        assert isinstance(request, UpgradeRequest)
        assert (request.target, request.host, request.subprotocols) == (
            "/ws?a=b",
            "localhost",
            ["p1", "p2"],
        )
        ws.receive_data(server.accept(request))
        events = list(ws.events())
        assert len(events) == 1
        assert isinstance(events[0], wse.AcceptConnection)
        assert events[0].subprotocol == "p2"
        # wsproto's first frame reaches our connection.
        server.connection.receive_data(ws.send(wse.TextMessage(data="hi")))
        assert server.connection.next_event() == TextMessage(data="hi")
        ws.receive_data(server.connection.send_text("back"))
        assert [e.data for e in ws.events()] == ["back"]  # type: ignore[attr-defined]

    def test_permessage_deflate_negotiated(self) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        data = ws.send(wse.Request(host="localhost", target="/", extensions=[PerMessageDeflate()]))
        factory = PMDServerFactory()
        server = ServerHandshake(extensions=[factory])
        request = feed(server, data)
        assert isinstance(request, UpgradeRequest)
        assert [name for name, _ in request.extensions] == ["permessage-deflate"]
        assert factory_params(request) == [
            ("client_max_window_bits", "15"),
            ("server_max_window_bits", "15"),
        ]
        ws.receive_data(server.accept(request))
        (event,) = list(ws.events())
        assert isinstance(event, wse.AcceptConnection)
        assert [e.name for e in event.extensions] == ["permessage-deflate"]

    def test_rejected(self) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        data = ws.send(wse.Request(host="localhost", target="/"))
        server = ServerHandshake()
        assert isinstance(feed(server, data), UpgradeRequest)
        ws.receive_data(server.reject(403, "origin not allowed"))
        events = list(ws.events())
        assert isinstance(events[0], wse.RejectConnection)
        assert events[0].status_code == 403
        assert (
            b"".join(e.data for e in events[1:] if isinstance(e, wse.RejectData))
            == b"origin not allowed\n"
        )


def factory_params(request: UpgradeRequest) -> ExtensionParams:
    return [param for name, params in request.extensions for param in params]


class TestOurClientWsprotoServer:
    def test_handshake_and_early_frame(self) -> None:
        client = ClientHandshake(
            "localhost:9000", "/chat", subprotocols=["p1", "p2"], origin="http://x"
        )
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        ws.receive_data(client.request_bytes())
        (request,) = list(ws.events())
        assert isinstance(request, wse.Request)
        assert (request.host, request.target, request.subprotocols) == (
            "localhost:9000",
            "/chat",
            ["p1", "p2"],
        )
        # The server's first message arrives in the same packet as the 101.
        data = ws.send(wse.AcceptConnection(subprotocol="p1")) + ws.send(
            wse.TextMessage(data="early")
        )
        accepted = feed(client, data)
        assert isinstance(accepted, HandshakeAccepted)
        assert accepted.subprotocol == "p1"
        assert client.connection.next_event() == TextMessage(data="early")
        ws.receive_data(client.connection.send_text("hello"))
        assert [e.data for e in ws.events()] == ["hello"]  # type: ignore[attr-defined]

    def test_extension_accepted_by_wsproto(self) -> None:
        factory = FakeClientFactory(
            "permessage-deflate", offer="permessage-deflate; client_max_window_bits"
        )
        client = ClientHandshake("localhost", extensions=[factory])
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        ws.receive_data(client.request_bytes())
        (request,) = list(ws.events())
        assert isinstance(request, wse.Request)
        data = ws.send(wse.AcceptConnection(extensions=[PerMessageDeflate()]))
        accepted = feed(client, data)
        assert isinstance(accepted, HandshakeAccepted)
        assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
        assert factory.responses and all(name for name, _ in factory.responses[0])

    def test_rejected_by_wsproto(self) -> None:
        client = ClientHandshake("localhost")
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        ws.receive_data(client.request_bytes())
        list(ws.events())
        data = ws.send(
            wse.RejectConnection(
                status_code=401, headers=[(b"content-length", b"6")], has_body=True
            )
        )
        data += ws.send(wse.RejectData(data=b"denied"))
        with pytest.raises(HandshakeRejected) as info:
            feed(client, data)
        assert (info.value.status_code, info.value.body) == (401, b"denied")


# --- properties: parse or raise a documented error, whatever the split -------------


def server_verdict(data: bytes, step: int) -> object:
    """What the server makes of ``data`` then EOF: the event, or the error's status."""
    server = ServerHandshake()
    chunks = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    try:
        for chunk in chunks:
            if chunk:  # b"" would mean EOF
                server.receive_data(chunk)
            event = server.next_event()
            if event is not NEED_DATA:
                return event
        server.receive_data(b"")
        return server.next_event()
    except HandshakeError as exc:
        return ("error", exc.status_code)


def mutated_requests() -> st.SearchStrategy[bytes]:
    base = make_request(
        extra=[("Sec-WebSocket-Protocol", "a, b"), ("Sec-WebSocket-Extensions", "x; y=1")]
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        start = draw(st.integers(0, len(base)))
        end = draw(st.integers(start, min(len(base), start + 8)))
        insert = draw(
            st.binary(max_size=8) | st.sampled_from([b"\r\n", b":", b",", b";", b'"', b" "])
        )
        return base[:start] + insert + base[end:]

    return mutate()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | mutated_requests())
def test_server_parses_or_raises_the_same_at_any_split(data: bytes) -> None:
    whole = server_verdict(data, 0)
    assert server_verdict(data, 1) == whole
    assert server_verdict(data, 13) == whole


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_client_parses_or_raises(data: bytes) -> None:
    client = started()
    try:
        client.receive_data(data)
        client.receive_data(b"")
        client.next_event()
    except HandshakeError:
        pass
