"""Tests for rfc6455.auth with the pub/sub app over real sockets (docs/protocol.md,
"Authentication"): JWT HS256 and RS256 at the handshake (header, ?token=, cookie) and in
``connect``, expired and forged tokens (401 / ``unauthorized``, never a traceback), topic
patterns (``forbidden``), the pub/sub counters in /metrics, and the serve flags."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CI") == "true":  # CI installs the jwt extra: missing is a failure there
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
else:
    jwt = pytest.importorskip("jwt")
    rsa = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.rsa")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")

from test_pubsub import Client

from rfc6455 import Config, HandshakeRejected, Loop, Server, connect
from rfc6455.auth import (
    Auth,
    AuthError,
    Credentials,
    Identity,
    JWTAuthenticator,
)
from rfc6455.broker import InProcessBroker
from rfc6455.cli import build_parser
from rfc6455.envelope import SUBPROTOCOL
from rfc6455.pubsub import PubSubApp

ROOT = Path(__file__).resolve().parent.parent
SECRET = "s3cret-of-at-least-32-bytes-for-hs256!"


def hs256(sub: str = "alice", *, ttl: float = 60, secret: str = SECRET, **claims: Any) -> str:
    payload = {"sub": sub, "exp": int(time.time() + ttl), **claims}
    token: str = jwt.encode(payload, secret, algorithm="HS256")
    return token


@pytest.fixture(scope="module")
def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: Any) -> bytes:
    pem: bytes = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


def rs256(key: Any, sub: str = "bob", *, ttl: float = 60, **claims: Any) -> str:
    token: str = jwt.encode(
        {"sub": sub, "exp": int(time.time() + ttl), **claims}, key, algorithm="RS256"
    )
    return token


@contextmanager
def auth_server(auth: Auth, **options: Any) -> Iterator[tuple[Server, PubSubApp]]:
    loop = Loop()
    app = PubSubApp(InProcessBroker(loop), auth=auth, **options)
    config = Config(
        port=0, subprotocols=(SUBPROTOCOL,), shutdown_timeout=2.0, check_request=app.check_request
    )
    server = Server(
        config, handler=app, loop=loop, extra_metrics=lambda: app.metrics_text(server.incidents())
    )
    server.start()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, app
    finally:
        server.shutdown()
        thread.join(10)
        assert not thread.is_alive()
        loop.close()


class AuthClient(Client):
    """test_pubsub's client, with a path (``?token=``) and extra handshake headers."""

    def __init__(self, server: Server, path: str = "/", headers: Any = ()) -> None:
        self.ws = connect(
            f"ws://127.0.0.1:{server.port}{path}",
            subprotocols=[SUBPROTOCOL],
            extra_headers=list(headers),
        )
        self.inbox = []


def refused(server: Server, path: str = "/", headers: Any = ()) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as info:
        connect(f"ws://127.0.0.1:{server.port}{path}", subprotocols=[SUBPROTOCOL],
                extra_headers=list(headers))
    return info.value


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if r.exc_info], caplog.text
    assert "Traceback" not in caplog.text


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


# -- the built-in JWT authenticator ------------------------------------------------------


def test_hs256_header_token_puts_the_user_in_presence_and_join() -> None:
    auth = Auth(JWTAuthenticator(SECRET))
    with auth_server(auth, join_leave=["room:*"]) as (server, _):
        alice = AuthClient(server, headers=bearer(hs256("alice")))
        bob = AuthClient(server, headers=bearer(hs256("bob")))
        assert alice.request("connect")["data"]["user"] == "alice"
        alice.request("subscribe", {"topic": "room:1"})
        bob.request("subscribe", {"topic": "room:1"})
        join = json.loads(alice.ws.recv(timeout=5))
        assert join["type"] == "join" and join["data"]["client"]["user"] == "bob"
        presence = alice.request("presence", {"topic": "room:1"})["data"]
        assert sorted(c["user"] for c in presence["clients"]) == ["alice", "bob"]
        bob.close()
        leave = json.loads(alice.ws.recv(timeout=5))
        assert (leave["type"], leave["data"]["client"]["user"]) == ("leave", "bob")
        alice.close()


def test_rs256_query_token(rsa_key: Any) -> None:
    auth = Auth(JWTAuthenticator(public_pem(rsa_key), "RS256"))
    with auth_server(auth) as (server, _):
        c = AuthClient(server, f"/?room=1&token={rs256(rsa_key, 'bob')}")
        assert c.request("subscribe", {"topic": "news"})["type"] == "ack"
        presence = c.request("presence", {"topic": "news"})["data"]
        assert [cl["user"] for cl in presence["clients"]] == ["bob"]
        c.close()
        # An HS256 token where RS256 is expected (the algorithm confusion attack): refused.
        forged = jwt.encode({"sub": "eve", "exp": int(time.time()) + 60}, "x" * 32, "HS256")
        assert refused(server, f"/?token={forged}").status_code == 401


def test_expired_token_is_401_at_the_handshake_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, app):
        for path, headers in [("/", bearer(hs256(ttl=-10))), (f"/?token={hs256(ttl=-10)}", ())]:
            exc = refused(server, path, headers)
            assert exc.status_code == 401
            challenge = {k.lower(): v for k, v in exc.headers}["www-authenticate"]
            assert challenge.startswith("Bearer ") and "token expired" in challenge
        assert app.stats["unauthorized"] == 2
    no_traceback(caplog)


def test_expired_token_in_connect_is_unauthorized(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        c = AuthClient(server)  # anonymous at the handshake: allowed, to send connect
        reply = c.request("connect", {"token": hs256(ttl=-10)})
        assert reply["type"] == "error"
        assert reply["data"]["code"] == "unauthorized"
        assert reply["data"]["message"] == "token expired"
        assert reply["data"]["temporary"] is False
        assert c.request("subscribe", {"topic": "t"})["data"]["code"] == "unauthorized"
        ack = c.request("connect", {"token": hs256("carol")})  # a good one after
        assert ack["type"] == "ack" and ack["data"]["user"] == "carol"
        assert c.request("subscribe", {"topic": "t"})["type"] == "ack"
        c.close()
    no_traceback(caplog)


#: Made when the test runs, not at collection: a run of the whole suite can take longer
#: than the tokens' lifetime, and an expired token is refused for that reason first.
BAD_TOKENS: dict[str, tuple[Callable[[], str], str]] = {
    "signature": (
        lambda: hs256(secret="another-secret-of-at-least-32-bytes"), "invalid token signature"
    ),
    "garbage": (lambda: "not.a.jwt", "invalid token"),
    "no-exp": (lambda: jwt.encode({"sub": "x"}, SECRET, "HS256"), "token has no exp claim"),
    "no-sub": (
        lambda: jwt.encode({"exp": int(time.time()) + 60}, SECRET, "HS256"),
        "token has no sub claim",
    ),
    "topics-not-list": (
        lambda: hs256(topics="room:*"), "invalid token: topics must be a list of strings"
    ),
    "hs384": (
        lambda: jwt.encode({"sub": "x", "exp": 1}, SECRET * 2, "HS384"),
        "token not signed with HS256",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_tokens(case: str, caplog: pytest.LogCaptureFixture) -> None:
    make_token, message = BAD_TOKENS[case]
    token = make_token()
    caplog.set_level(logging.DEBUG)
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        exc = refused(server, headers=bearer(token))
        assert exc.status_code == 401 and message.encode() in exc.body
        assert f'error_description="{message}"' in dict(exc.headers)["www-authenticate"]
        c = AuthClient(server)
        reply = c.request("connect", {"token": token})
        assert (reply["data"]["code"], reply["data"]["message"]) == ("unauthorized", message)
        c.close()
    no_traceback(caplog)


def test_anonymous_requests_are_unauthorized_until_connect() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        c = AuthClient(server)
        for kind, data in [
            ("subscribe", {"topic": "t"}),
            ("publish", {"topic": "t", "payload": 1}),
            ("history", {"topic": "t"}),
            ("presence", {"topic": "t"}),
        ]:
            assert c.request(kind, data)["data"]["code"] == "unauthorized", kind
        assert c.request("connect")["data"]["code"] == "unauthorized"
        assert c.request("ping")["type"] == "pong"
        c.close()


def test_handshake_required_refuses_anonymous_connections() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET), handshake_required=True)) as (server, _):
        exc = refused(server)
        assert exc.status_code == 401
        assert ("www-authenticate", "Bearer") in [(k.lower(), v) for k, v in exc.headers]
        AuthClient(server, f"/?token={hs256()}").close()


def test_not_required_lets_anonymous_connections_in() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET), required=False)) as (server, _):
        c = AuthClient(server)
        assert c.request("subscribe", {"topic": "t"})["type"] == "ack"
        c.close()


def test_connect_cannot_switch_users() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        c = AuthClient(server, headers=bearer(hs256("alice")))
        assert c.request("connect", {"token": hs256("mallory")})["data"]["code"] == "forbidden"
        assert c.request("connect", {"token": hs256("alice")})["data"]["user"] == "alice"
        c.close()


def test_topic_patterns_allow_and_deny() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        token = hs256("dora", topics=["room:*", "user/dora/*"], publish=["room:lobby"])
        c = AuthClient(server, f"/?token={token}")
        ok = [
            ("subscribe", {"topic": "room:1"}),
            ("subscribe", {"topic": "user/dora/inbox"}),
            ("presence", {"topic": "room:1"}),
            ("history", {"topic": "room:1"}),
            ("publish", {"topic": "room:lobby", "payload": "hi"}),
        ]
        for kind, data in ok:
            assert c.request(kind, data)["type"] == "ack", (kind, data)
        denied = [
            ("subscribe", {"topic": "admin"}),
            ("subscribe", {"topic": "user/eve/inbox"}),
            ("presence", {"topic": "admin"}),
            ("history", {"topic": "admin"}),
            ("publish", {"topic": "room:1", "payload": "hi"}),  # not in `publish`
            ("publish", {"topic": "admin", "payload": "hi"}),
        ]
        for kind, data in denied:
            reply = c.request(kind, data)
            assert reply["data"]["code"] == "forbidden", (kind, data)
            assert reply["data"]["message"] == f"not allowed to {kind} {data['topic']}"
        c.close()
        none = AuthClient(server, f"/?token={hs256(topics=[])}")
        assert none.request("subscribe", {"topic": "room:1"})["data"]["code"] == "forbidden"
        none.close()


def test_authorize_hook_sees_the_identity() -> None:
    seen: list[tuple[str | None, str, str]] = []

    def authorize(ws: Any, action: str, topic: str) -> bool:
        identity = app_ref[0].identity(ws)
        seen.append((identity.user if identity else None, action, topic))
        return topic != "vip"

    app_ref: list[PubSubApp] = []
    with auth_server(Auth(JWTAuthenticator(SECRET)), authorize=authorize) as (server, app):
        app_ref.append(app)
        c = AuthClient(server, headers=bearer(hs256("erin")))
        assert c.request("subscribe", {"topic": "t"})["type"] == "ack"
        assert c.request("subscribe", {"topic": "vip"})["data"]["code"] == "forbidden"
        c.close()
    assert seen == [("erin", "subscribe", "t"), ("erin", "subscribe", "vip")]


# -- credentials and identities ------------------------------------------------------------


def test_credentials_come_from_header_then_query_then_cookie() -> None:
    from rfc6455._handshake import UpgradeRequest

    def request(target: str, *headers: tuple[str, str]) -> UpgradeRequest:
        return UpgradeRequest(
            method="GET", target=target, headers=list(headers), host="h", origin=None,
            key="k", subprotocols=[], extensions=[],
        )

    auth = Auth(lambda c: Identity("u"), cookie="tok")
    both = request("/?token=q", ("authorization", "Bearer h"), ("cookie", "tok=c"))
    assert auth.credentials(both) == Credentials("h", "header")
    assert auth.credentials(request("/?a=1&token=q", ("cookie", "tok=c"))) == Credentials(
        "q", "query"
    )
    assert auth.credentials(request("/", ("cookie", "a=1; tok=c"))) == Credentials("c", "cookie")
    assert auth.credentials(request("/", ("authorization", "Basic eDp5"))) is None
    assert Auth(lambda c: None).credentials(request("/", ("cookie", "tok=c"))) is None
    with pytest.raises(AuthError, match="invalid token"):
        Auth(lambda c: None).identify(Credentials("x", "connect"))


def test_identity_allows() -> None:
    anyone = Identity("u")
    assert anyone.allows("subscribe", "x") and anyone.allows("publish", "x")
    limited = Identity("u", ("a.*",), ("a.w",))
    assert limited.allows("subscribe", "a.b") and limited.allows("history", "a.b")
    assert not limited.allows("presence", "b")
    assert limited.allows("publish", "a.w") and not limited.allows("publish", "a.b")
    assert Identity("u", ("a",)).allows("publish", "a")  # publish defaults to topics


def test_jwt_authenticator_errors(rsa_key: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    private = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="public key, not the private"):
        JWTAuthenticator(private, "RS256")
    with pytest.raises(ValueError, match="not a PEM public key"):
        JWTAuthenticator(b"garbage", "RS256")
    with pytest.raises(ValueError, match="algorithm"):
        JWTAuthenticator(SECRET, "none")
    with pytest.raises(ValueError, match="empty"):
        JWTAuthenticator("")
    monkeypatch.setitem(sys.modules, "jwt", None)  # as if PyJWT were not installed
    with pytest.raises(RuntimeError, match=r"pip install 'rfc6455\[jwt\]'"):
        JWTAuthenticator(SECRET)


def test_audience_issuer_and_no_exp() -> None:
    check = JWTAuthenticator(SECRET, audience="chat", issuer="me", require_exp=False)
    good = jwt.encode({"sub": "a", "aud": "chat", "iss": "me"}, SECRET, "HS256")
    identity = check(Credentials(good, "connect"))
    assert identity.user == "a" and identity.claims["aud"] == "chat"
    for claims, message in [
        ({"sub": "a", "aud": "other", "iss": "me"}, "token for another audience"),
        ({"sub": "a", "aud": "chat", "iss": "you"}, "token from another issuer"),
    ]:
        with pytest.raises(AuthError, match=message):
            check(Credentials(jwt.encode(claims, SECRET, "HS256"), "connect"))


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_show_the_pubsub_counters() -> None:
    with auth_server(Auth(JWTAuthenticator(SECRET))) as (server, _):
        sub = AuthClient(server, headers=bearer(hs256("s")))
        pub = AuthClient(server, headers=bearer(hs256("p", publish=["t1"])))
        epoch = sub.request("subscribe", {"topic": "t1"})["data"]["epoch"]
        sub.request("subscribe", {"topic": "t2"})
        for i in range(3):
            pub.request("publish", {"topic": "t1", "payload": i})
        sub.messages(3, "t1")
        pub.request("publish", {"topic": "t2", "payload": 0})  # forbidden
        late = AuthClient(server, headers=bearer(hs256("l")))
        late.request("subscribe", {"topic": "t1", "since": {"offset": 1, "epoch": epoch}})
        late.request("subscribe", {"topic": "t2", "since": {"offset": 0, "epoch": "old"}})
        refused(server, headers=bearer("bad"))
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        sub.close()
        pub.close()
        late.close()
    values = dict(re.findall(r"^(rfc6455_pubsub_\S+) (\d+)$", text, re.MULTILINE))
    assert values == {
        "rfc6455_pubsub_topics": "2",
        "rfc6455_pubsub_subscriptions": "4",
        "rfc6455_pubsub_publishes_total": "3",
        "rfc6455_pubsub_deliveries_total": "5",  # 3 live, 2 replayed
        "rfc6455_pubsub_slow_subscribers_dropped_total": "0",
        'rfc6455_pubsub_recoveries_total{result="recovered"}': "1",
        'rfc6455_pubsub_recoveries_total{result="not_recovered"}': "1",
        "rfc6455_pubsub_shared_compressions_total": "0",
        "rfc6455_pubsub_gaps_total": "0",
        'rfc6455_pubsub_auth_refusals_total{code="unauthorized"}': "1",
        'rfc6455_pubsub_auth_refusals_total{code="forbidden"}': "1",
    }
    assert "# TYPE rfc6455_pubsub_topics gauge" in text
    assert "# TYPE rfc6455_pubsub_publishes_total counter" in text
    assert "rfc6455_connections_open" in text  # the server's own are still there


def test_slow_subscribers_come_from_the_server_incidents() -> None:
    app = PubSubApp(InProcessBroker(Loop()))
    text = app.metrics_text({"slow_consumer": 4, "rate_limit": 1})
    assert "rfc6455_pubsub_slow_subscribers_dropped_total 4\n" in text


# -- the command line --------------------------------------------------------------------------


def test_every_serve_flag_has_a_help_with_its_default() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(
        [sys.executable, "-m", "rfc6455", "serve", "--help"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout
    text = " ".join(out.split())
    for fragment in [
        "--host HOST address to bind (default 127.0.0.1)",
        "(default 8765)",
        "--jwt-secret SECRET pubsub: require JWTs signed with HS256",
        "(default 1048576)",
        "(default 20.0)",
    ]:
        assert fragment in text, fragment
    parser = build_parser()
    serve = next(
        a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"
    ).choices["serve"]  # type: ignore[attr-defined]
    for action in serve._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and "default" in action.help, action.option_strings


def _start_serve(*flags: str) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--app", "pubsub",
         "--log-level", "DEBUG", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        match = re.search(r"listening on ws://[\d.]+:(\d+)", proc.stdout.readline())
        if match:
            return proc, int(match.group(1))
    proc.kill()
    raise AssertionError("the server did not start")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    return out


def test_serve_jwt_public_key_from_the_command_line(rsa_key: Any, tmp_path: Path) -> None:
    pem = tmp_path / "public.pem"
    pem.write_bytes(public_pem(rsa_key))
    proc, port = _start_serve("--jwt-public-key", str(pem), "--jwt-cookie", "session")
    try:
        with pytest.raises(HandshakeRejected) as info:
            connect(f"ws://127.0.0.1:{port}/?token={rs256(rsa_key, ttl=-5)}")
        assert info.value.status_code == 401
        ws = connect(f"ws://127.0.0.1:{port}/",
                     extra_headers=[("Cookie", f"session={rs256(rsa_key, 'frank')}")])
        ws.send(json.dumps({"v": 1, "type": "connect", "id": "c"}))
        assert json.loads(ws.recv(timeout=10))["data"]["user"] == "frank"
        ws.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert 'rfc6455_pubsub_auth_refusals_total{code="unauthorized"} 1' in r.read().decode()
    finally:
        if proc.poll() is None:
            out = _stop(proc)
            assert "Traceback" not in out and "401 unauthorized: token expired" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--jwt-public-key", "/nonexistent.pem"], "No such file"),
        (["--jwt-cookie", "c"], "--jwt-cookie needs --jwt-secret"),
        (["--app", "echo", "--jwt-secret", SECRET], "--jwt-* flags need --app pubsub"),
    ],
)
def test_serve_jwt_flag_errors(flags: list[str], message: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "rfc6455", "serve", "--port", "0", "--app", "pubsub", *flags],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert result.returncode != 0 and message in result.stderr
    assert "Traceback" not in result.stderr
