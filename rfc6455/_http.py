"""Plain HTTP on the WebSocket port: ``/healthz``, ``/metrics``, custom routes, 426 and 404.

Strategy: a request that is not an upgrade gets one complete response and the
socket closes (the server speaks HTTP/1.1 without keep-alive here). What to
answer is decided here, from the request path alone; writing it is the
server's job. The metrics are rendered in the Prometheus text format from the
server's counters, read at scrape time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from ._handshake import HTTPRequest
from .app import Router

__all__ = ["HTTPResponse", "HTTPRoute", "PlainHTTP", "render_metrics"]

logger = logging.getLogger("rfc6455.server")

#: Status, headers and body of one plain HTTP response.
HTTPResponse = tuple[int, Sequence[tuple[str, str]], bytes]
#: A custom plain-HTTP route: the request in, the response out.
HTTPRoute = Callable[[HTTPRequest], HTTPResponse]

#: (metric name, key in the server's stats, Prometheus type, help text).
_METRICS: tuple[tuple[str, str, str, str], ...] = (
    ("rfc6455_connections_open", "connections_open", "gauge", "Open WebSocket connections."),
    (
        "rfc6455_connections_accepted_total",
        "connections_total",
        "counter",
        "TCP connections accepted.",
    ),
    ("rfc6455_messages_received_total", "messages_in", "counter", "Data messages received."),
    ("rfc6455_messages_sent_total", "messages_out", "counter", "Data messages sent."),
    ("rfc6455_bytes_received_total", "bytes_in", "counter", "Bytes received."),
    ("rfc6455_bytes_sent_total", "bytes_out", "counter", "Bytes sent."),
    (
        "rfc6455_incoming_buffered_bytes",
        "incoming_buffered_bytes",
        "gauge",
        "Incoming bytes held in partial frames and messages (the memory budget's total).",
    ),
)

_TEXT = ("Content-Type", "text/plain")


def render_metrics(stats: Mapping[str, int], incidents: Mapping[str, int]) -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    lines = []
    for name, key, kind, help_ in _METRICS:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name} {stats[key]}")
    lines.append("# HELP rfc6455_incidents_total Limits hit, by kind (docs/security.md).")
    lines.append("# TYPE rfc6455_incidents_total counter")
    for kind, count in sorted(incidents.items()):
        lines.append(f'rfc6455_incidents_total{{kind="{kind}"}} {count}')
    return "\n".join(lines) + "\n"


class PlainHTTP:
    """Answers the plain HTTP requests that reach a WebSocket server.

    Args:
        router: tells which paths are WebSocket endpoints (426 for a plain GET).
        routes: path → function returning ``(status, headers, body)``; they
            take precedence over the built-in paths.
        metrics: renders ``/metrics`` (the server's counters, read at scrape time).
    """

    __slots__ = ("_metrics", "_router", "_routes")

    def __init__(
        self,
        router: Router,
        routes: Mapping[str, HTTPRoute] | None,
        metrics: Callable[[], str],
    ) -> None:
        self._router = router
        self._routes = dict(routes or {})
        self._metrics = metrics

    def respond(self, request: HTTPRequest) -> HTTPResponse:
        """The response to ``request``; a failing custom route is a logged 500."""
        path = request.target.split("?", 1)[0]
        custom = self._routes.get(path)
        if custom is not None:
            try:
                return custom(request)
            except Exception:
                logger.exception("HTTP route %s failed", path)
                return 500, [_TEXT], b"internal server error\n"
        if path == "/healthz":
            return 200, [_TEXT], b"ok\n"
        if path == "/metrics":
            body = self._metrics().encode()
            return 200, [("Content-Type", "text/plain; version=0.0.4")], body
        if self._router.is_endpoint(path):
            return (
                426,
                [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"), _TEXT],
                b"this is a WebSocket endpoint: send an upgrade request\n",
            )
        return 404, [_TEXT], b"not found\n"
