"""A handler for tests/test_workers.py (``serve --app workers_app:PidHandler``): it tells
each client which worker process serves it, then echoes."""

from __future__ import annotations

import os

from rfc6455 import EchoHandler, WebSocket


class PidHandler(EchoHandler):
    """Sends the worker's pid on open, then echoes."""

    def on_open(self, ws: WebSocket) -> None:
        ws.send(str(os.getpid()))
