"""The live page of ``serve --app pubsub``: a chat / live-feed demo and the JS client.

Strategy: the files ship as package data in ``rfc6455/static/`` and are read once, when
the routes are made; each route answers a plain HTTP ``GET`` on the WebSocket port (see
``Server(http_routes=...)``) with its content type, ``Cache-Control: no-cache`` (the
browser revalidates, so a new version shows up on reload) and a Content-Security-Policy
that allows only this origin: the page has no inline script or style and loads nothing
from elsewhere.
"""

from __future__ import annotations

from importlib import resources

from ._handshake import HTTPRequest
from ._http import HTTPResponse, HTTPRoute

__all__ = ["STATIC_FILES", "pubsub_page_routes"]

#: URL path -> (file in rfc6455/static, content type).
STATIC_FILES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/rfc6455.js": ("rfc6455.js", "text/javascript; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _route(body: bytes, content_type: str) -> HTTPRoute:
    headers = [
        ("Content-Type", content_type),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", _CSP),
    ]

    def respond(request: HTTPRequest) -> HTTPResponse:
        if request.method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], b"GET only\n"
        return 200, headers, body

    return respond


def pubsub_page_routes() -> dict[str, HTTPRoute]:
    """``http_routes`` for the live page: ``/``, ``/rfc6455.js``, ``/page.js``, ``/page.css``
    (and a 204 for ``/favicon.ico``)."""
    static = resources.files("rfc6455").joinpath("static")
    routes = {
        path: _route(static.joinpath(name).read_bytes(), content_type)
        for path, (name, content_type) in STATIC_FILES.items()
    }
    routes["/favicon.ico"] = _no_icon
    return routes


def _no_icon(request: HTTPRequest) -> HTTPResponse:
    """No icon, said without an error (browsers ask for it on every page)."""
    return 204, [("Cache-Control", "max-age=86400")], b""
