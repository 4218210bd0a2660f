"""Authentication for the pub/sub server (docs/protocol.md, "Authentication").

Strategy: an :class:`Auth` finds the client's token (the handshake's ``Authorization:
Bearer`` header, the ``?token=`` query parameter, a cookie if one is named, or later the
``token`` of a ``connect`` envelope) and hands it to an *authenticate* function, which
returns the :class:`Identity` it stands for or raises :class:`AuthError` (whose text is
sent to the client: it says what is wrong with the token, nothing more). An identity
carries the user (``sub``) and the topic patterns it may use; :meth:`Identity.allows`
is the per-topic check. :class:`JWTAuthenticator` is the built-in authenticate function:
JWT signed with HS256 (a shared secret) or RS256 (a public key), verified by PyJWT, which
is imported only when one is made (``pip install 'rfc6455[jwt]'``).

Where each outcome goes is :class:`~rfc6455.pubsub.PubSubApp`'s business: a bad token at
the handshake is an HTTP 401 with ``WWW-Authenticate: Bearer``, in a ``connect`` envelope
an ``unauthorized`` error; a topic the identity may not use is ``forbidden``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl

from ._errors import HandshakeError
from ._handshake import UpgradeRequest

__all__ = [
    "ACTIONS",
    "Auth",
    "AuthError",
    "Authenticate",
    "Credentials",
    "Identity",
    "JWTAuthenticator",
]

#: What a connection may do with a topic, each checked by :meth:`Identity.allows`.
ACTIONS = ("subscribe", "publish", "history", "presence")


@dataclass(frozen=True, slots=True)
class Credentials:
    """A token presented by a client.

    Attributes:
        token: the token as sent.
        source: where it came from: ``"header"`` (``Authorization: Bearer``),
            ``"query"``, ``"cookie"`` or ``"connect"`` (the ``connect`` envelope).
    """

    token: str
    source: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a connection is, and which topics it may use.

    Attributes:
        user: the user (the JWT ``sub``); shown in presence, join and leave.
        topics: ``fnmatch`` patterns of the topics it may subscribe to, publish to and
            read the history and presence of; None: every topic.
        publish: patterns of the topics it may publish to; None: those of ``topics``.
        claims: everything the token said (for an application's own checks).
    """

    user: str
    topics: tuple[str, ...] | None = None
    publish: tuple[str, ...] | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def allows(self, action: str, topic: str) -> bool:
        """May this identity do ``action`` (one of :data:`ACTIONS`) on ``topic``?"""
        patterns = self.publish if action == "publish" and self.publish is not None else (
            self.topics
        )
        return patterns is None or any(fnmatchcase(topic, p) for p in patterns)


class AuthError(Exception):
    """Credentials were presented but are not valid (bad signature, expired, ...).

    Its text goes to the client (the ``unauthorized`` error's message, the 401's
    ``error_description``): it says what is wrong with the token, never more.
    """


#: The authenticate hook: credentials in, the identity out. Raise :class:`AuthError`
#: (or return None, for "invalid token") when they are not valid.
Authenticate = Callable[[Credentials], "Identity | None"]


class Auth:
    """How a pub/sub server authenticates its clients (give it to ``PubSubApp(auth=)``).

    Args:
        authenticate: credentials → :class:`Identity`; raises :class:`AuthError` or
            returns None for credentials that are not valid.
        required: every topic request (subscribe, publish, history, presence) needs an
            identity; without one it gets ``unauthorized``. If False, anonymous
            connections may do whatever ``authorize`` lets them.
        handshake_required: also refuse a handshake that carries no token (401). Off by
            default: a browser cannot set headers, and a token in the URL ends up in
            logs, so a client may open anonymously and send ``connect`` with its token.
        query_param: the query parameter read for a token (None: none).
        cookie: the cookie read for a token (None, the default: none). A browser sends
            cookies with cross-site WebSocket requests too: restrict ``allowed_origins``
            when tokens come in cookies.
    """

    __slots__ = ("authenticate", "cookie", "handshake_required", "query_param", "required")

    def __init__(
        self,
        authenticate: Authenticate,
        *,
        required: bool = True,
        handshake_required: bool = False,
        query_param: str | None = "token",
        cookie: str | None = None,
    ) -> None:
        self.authenticate = authenticate
        self.required = required
        self.handshake_required = handshake_required
        self.query_param = query_param
        self.cookie = cookie

    def credentials(self, request: UpgradeRequest) -> Credentials | None:
        """The token of a handshake request: ``Authorization: Bearer``, else the query
        parameter, else the cookie; None if there is none."""
        cookies: list[str] = []
        for name, value in request.headers:
            if name == "authorization":
                scheme, _, token = value.strip().partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return Credentials(token.strip(), "header")
            elif name == "cookie":
                cookies.append(value)
        if self.query_param is not None:
            _, _, query = request.target.partition("?")
            for key, value in parse_qsl(query, keep_blank_values=False):
                if key == self.query_param:
                    return Credentials(value, "query")
        if self.cookie is not None and cookies:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load("; ".join(cookies))
            except CookieError:
                return None
            morsel = jar.get(self.cookie)
            if morsel is not None and morsel.value:
                return Credentials(morsel.value, "cookie")
        return None

    def identify(self, credentials: Credentials) -> Identity:
        """The identity of ``credentials``.

        Raises:
            AuthError: they are not valid.
        """
        identity = self.authenticate(credentials)
        if identity is None:
            raise AuthError("invalid token")
        return identity

    def check_handshake(self, request: UpgradeRequest) -> Identity | None:
        """The identity of a handshake request, None if it carries no token.

        Raises:
            HandshakeError: 401 with ``WWW-Authenticate: Bearer``: a token that is not
                valid, or none when :attr:`handshake_required`.
        """
        credentials = self.credentials(request)
        if credentials is None:
            if self.handshake_required:
                raise HandshakeError(
                    "unauthorized: a token is required", 401, [("WWW-Authenticate", "Bearer")]
                )
            return None
        try:
            return self.identify(credentials)
        except AuthError as exc:
            description = str(exc).replace("\\", "").replace('"', "'")
            raise HandshakeError(
                f"unauthorized: {exc}",
                401,
                [(
                    "WWW-Authenticate",
                    f'Bearer error="invalid_token", error_description="{description}"',
                )],
            ) from None


class JWTAuthenticator:
    """Verifies JSON Web Tokens (RFC 7519) with PyJWT: an :data:`Authenticate` hook.

    Claims: ``sub`` (required, a string) is the user; ``exp`` (required unless
    ``require_exp`` is False) is checked; ``topics`` (optional, a list of ``fnmatch``
    patterns) limits the topics the user may subscribe to, publish to and read the
    history and presence of (absent: every topic; ``[]``: none); ``publish`` (optional,
    patterns) limits publishing further (absent: as ``topics``). ``aud`` and ``iss`` are
    checked when ``audience`` or ``issuer`` is given. Only ``algorithm`` is accepted,
    whatever the token's header says.

    Args:
        key: the HS256 secret, or the RS256 public key (PEM text or bytes).
        algorithm: ``"HS256"`` or ``"RS256"``.
        leeway: seconds of clock skew tolerated on ``exp`` (and ``nbf``, ``iat``).

    Raises:
        RuntimeError: PyJWT (for RS256: with ``cryptography``) is not installed.
        ValueError: an unknown algorithm, or a key that is not a usable public key.
    """

    ALGORITHMS = ("HS256", "RS256")

    __slots__ = (
        "_jwt",
        "_key",
        "algorithm",
        "audience",
        "issuer",
        "leeway",
        "publish_claim",
        "require_exp",
        "topics_claim",
    )

    def __init__(
        self,
        key: str | bytes,
        algorithm: str = "HS256",
        *,
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        require_exp: bool = True,
        topics_claim: str = "topics",
        publish_claim: str = "publish",
    ) -> None:
        if algorithm not in self.ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(self.ALGORITHMS)}")
        self._jwt = _import_jwt(algorithm)
        self.algorithm = algorithm
        self.audience = audience
        self.issuer = issuer
        self.leeway = leeway
        self.require_exp = require_exp
        self.topics_claim = topics_claim
        self.publish_claim = publish_claim
        if algorithm == "HS256":
            if not key:
                raise ValueError("the HS256 secret is empty")
            self._key: Any = key
        else:
            self._key = _rsa_public_key(key)

    @classmethod
    def from_public_key_file(cls, path: str, **options: Any) -> JWTAuthenticator:
        """An RS256 authenticator with the PEM public key in ``path``."""
        with open(path, "rb") as file:
            return cls(file.read(), "RS256", **options)

    def __call__(self, credentials: Credentials) -> Identity:
        jwt = self._jwt
        required = ["sub", "exp"] if self.require_exp else ["sub"]
        try:
            claims: dict[str, Any] = jwt.decode(
                credentials.token,
                self._key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid token signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token has no {exc.claim} claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError(f"token not signed with {self.algorithm}") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token from another issuer") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        user = claims.get("sub")
        if not isinstance(user, str) or not user:
            raise AuthError("invalid token: sub must be a non-empty string")
        return Identity(
            user,
            _patterns(claims, self.topics_claim),
            _patterns(claims, self.publish_claim),
            claims,
        )


def _patterns(claims: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise AuthError(f"invalid token: {name} must be a list of strings")
    return tuple(value)


_MISSING = "JWT authentication needs PyJWT{extra}: pip install 'rfc6455[jwt]'"


def _import_jwt(algorithm: str) -> Any:
    """PyJWT, imported on first use (it is an optional dependency)."""
    try:
        import jwt
        import jwt.algorithms
    except ImportError:
        raise RuntimeError(_MISSING.format(extra="")) from None
    if algorithm == "RS256" and not jwt.algorithms.has_crypto:
        raise RuntimeError(_MISSING.format(extra=" with cryptography, for RS256"))
    return jwt


def _rsa_public_key(pem: str | bytes) -> Any:
    """The RSA public key of a PEM text, loaded once (not at every verification)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        raise ValueError(
            "RS256 needs the public key, not the private one "
            "(openssl rsa -in key.pem -pubout -out public.pem)"
        )
    try:
        key = load_pem_public_key(data)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, RSAPublicKey):  # an EC key, say: the file is wrong, not a type
        raise ValueError("RS256 needs an RSA public key")  # noqa: TRY004
    return key
