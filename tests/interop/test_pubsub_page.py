"""The live page of ``serve --app pubsub`` in headless Chromium, with a cut connection.

Two tabs of one headless Chromium open the page that the server itself serves (``GET /``):
one straight to the server, one through :class:`CuttableProxy`, a TCP forwarder in this
process that can drop its connections and refuse new ones on demand. The test drives and
reads the tabs over the DevTools protocol (``--remote-debugging-port``): ``Runtime.evaluate``
on each tab's DevTools WebSocket, spoken by our own blocking client. It fills and submits
the page's forms and reads the DOM (``#messages li.msg``, ``#status``) and
``window.pubsubPage``; every wait is a bounded poll.

The harness's ``chromium`` fixture provides the binary (skip locally when missing, fail under
``CI=true``) and the scratch directory for the profiles.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, Self

import pytest
from interop_support import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    Chromium,
    PeerProcess,
    our_server,
)

pytestmark = pytest.mark.interop

WAIT = 30.0  # the longest any one condition may take (reconnect backoff included)
DEVTOOLS_LISTENING = re.compile(r"DevTools listening on (?P<url>ws://\S+)")

MESSAGES_JS = """[...document.querySelectorAll('#messages li.msg')].map(
    li => [Number(li.dataset.offset), li.querySelector('.text').textContent])"""


# --------------------------------------------------------------------------- the proxy


class CuttableProxy:
    """Forwards TCP connections from its own port to ``upstream_port``, on one thread.

    :meth:`cut` closes every connection it carries (a network failure, as both ends see
    it: an EOF without a close frame); while :attr:`refusing` is set, new connections are
    accepted and closed at once, so the client's reconnects fail until it is cleared.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.refusing = threading.Event()
        self.accepted = 0
        self.refused = 0
        self.cuts = 0
        self._peer: dict[socket.socket, socket.socket] = {}
        self._cut_requested = threading.Event()
        self._cut_done = threading.Event()
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="cuttable-proxy", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(STOP_TIMEOUT)
        assert not self._thread.is_alive(), "proxy thread did not stop"

    def cut(self) -> int:
        """Close every carried connection now; returns how many were closed."""
        before = self.cuts
        self._cut_done.clear()
        self._cut_requested.set()
        assert self._cut_done.wait(STOP_TIMEOUT), "the proxy did not cut"
        return self.cuts - before

    def _run(self) -> None:
        self.listener.setblocking(False)
        self._sel.register(self.listener, selectors.EVENT_READ)
        try:
            while not self._stop.is_set():
                if self._cut_requested.is_set():
                    self._cut_requested.clear()
                    for sock in list(self._peer):
                        if sock in self._peer:
                            self.cuts += 1
                            self._drop(sock)
                    self._cut_done.set()
                for key, _ in self._sel.select(0.05):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.listener:
                        self._accept()
                    elif sock in self._peer:
                        self._forward(sock)
        finally:
            for sock in list(self._peer):
                if sock in self._peer:
                    self._drop(sock)
            self._sel.close()
            self.listener.close()

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        if self.refusing.is_set():
            self.refused += 1
            client.close()
            return
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            client.close()
            return
        self.accepted += 1
        for sock in (client, upstream):
            sock.settimeout(10)  # bounds sendall when the other side stops reading
            self._sel.register(sock, selectors.EVENT_READ)
        self._peer[client], self._peer[upstream] = upstream, client

    def _forward(self, sock: socket.socket) -> None:
        other = self._peer[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.sendall(data)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        other = self._peer.pop(sock)
        self._peer.pop(other, None)
        for s in (sock, other):
            self._sel.unregister(s)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {timeout}s"
        time.sleep(0.05)


# --------------------------------------------------------------------------- the browser


class Tab:
    """One page, driven over its DevTools WebSocket with our own client."""

    def __init__(self, name: str, ws_url: str) -> None:
        from rfc6455 import connect

        self.name = name
        self.ws = connect(ws_url, compression=False, max_message_size=64 << 20,
                          timeout=START_TIMEOUT)
        self._next_id = 0
        #: Browser log entries (CSP violations, network errors, uncaught exceptions...).
        self.log: list[dict[str, Any]] = []
        self.call("Log.enable")  # also sends the entries collected so far

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float = 10.0) -> dict[str, Any]:
        """One DevTools command; its result. Events meanwhile go to :attr:`log`."""
        self._next_id += 1
        ident = self._next_id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: no answer to {method} in {timeout}s")
            reply = json.loads(self.ws.recv(timeout=left))
            if reply.get("method") == "Log.entryAdded":
                self.log.append(reply["params"]["entry"])
            if reply.get("id") != ident:
                continue
            assert "error" not in reply, f"{self.name}: {method}: {reply['error']}"
            result: dict[str, Any] = reply["result"]
            return result

    def errors(self) -> list[str]:
        """Logged errors (CSP violations, exceptions...), but network ones (the cut)."""
        self.evaluate("0")  # collect what is pending
        return [f"{e.get('source')}: {e.get('text')} {e.get('url', '')}" for e in self.log
                if e.get("level") == "error" and e.get("source") != "network"]

    def evaluate(self, expression: str, *, await_promise: bool = False,
                 timeout: float = 10.0) -> Any:
        """The value of a JavaScript expression in the page (JSON-serializable)."""
        result = self.call("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise},
            timeout)
        if "exceptionDetails" in result:
            raise AssertionError(f"{self.name}: {expression!r} threw: "
                                 f"{result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = WAIT) -> Any:
        """Poll ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # e.g. the page is still loading
                value = self.evaluate(expression)
                if value:
                    return value
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: not {what} within {timeout}s; "
                             f"status {self.status()!r}, messages {self.messages()}")

    def status(self) -> str:
        with contextlib.suppress(Exception):
            return str(self.evaluate("document.querySelector('#status').textContent"))
        return "?"

    def state(self) -> str:
        return str(self.evaluate("document.querySelector('#status').dataset.state"))

    def messages(self) -> list[tuple[int, str]]:
        """The messages the page shows: (offset, text), top to bottom."""
        with contextlib.suppress(Exception):
            return [(offset, text) for offset, text in self.evaluate(MESSAGES_JS)]
        return []

    def wait_messages(self, count: int, timeout: float = WAIT) -> list[tuple[int, str]]:
        self.wait_for(f"document.querySelectorAll('#messages li.msg').length >= {count}",
                      f"showing {count} messages", timeout)
        return self.messages()

    def wait_subscribed(self, topic: str = "chat") -> None:
        self.wait_for(f"window.pubsubPage && pubsubPage.client.state === 'open'"
                      f" && pubsubPage.client.topics.get({json.dumps(topic)})",
                      f"subscribed to {topic}")

    def send(self, text: str) -> None:
        """Type ``text`` and submit the send form, as a user would."""
        self.evaluate(f"""(() => {{
            document.querySelector('#text').value = {json.dumps(text)};
            document.querySelector('#send-form').requestSubmit(); }})()""")

    def publish_many(self, texts: list[str]) -> list[int]:
        """Publish through the page's client, one after the other; the acked offsets."""
        offsets: list[int] = self.evaluate(f"""(async () => {{
            const offsets = [];
            for (const text of {json.dumps(texts)}) {{
                const ack = await pubsubPage.client.publish(pubsubPage.topic,
                                                            {{from: 'direct', text}});
                offsets.push(ack.offset);
            }}
            return offsets; }})()""", await_promise=True, timeout=WAIT)
        return offsets

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()


class Browser:
    """A headless Chromium with remote debugging on an ephemeral port."""

    def __init__(self, chromium: Chromium) -> None:
        chromium.runs += 1
        profile = chromium.tmp_root / f"pubsub-profile-{chromium.runs}"
        profile.mkdir(parents=True)
        argv = [
            chromium.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}",
            # Both tabs must keep running at full speed although only one is in front.
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            "about:blank",
        ]
        self.process = PeerProcess(argv, new_session=True)
        self.tabs: list[Tab] = []
        try:
            match = self.process.wait_for_line(DEVTOOLS_LISTENING)
            self.http = "http://" + match["url"].split("/")[2]
        except BaseException:
            self.process.stop()
            raise

    def open(self, name: str, url: str) -> Tab:
        """A new tab on ``url``."""
        request = urllib.request.Request(f"{self.http}/json/new?{url}", method="PUT")
        with urllib.request.urlopen(request, timeout=START_TIMEOUT) as response:
            target = json.load(response)
        tab = Tab(name, target["webSocketDebuggerUrl"])
        self.tabs.append(tab)
        return tab

    def close(self) -> None:
        for tab in self.tabs:
            tab.close()
        self.process.stop()


@contextlib.contextmanager
def browser_and_server(chromium: Chromium, *server_options: str
                       ) -> Iterator[tuple[Browser, Any, CuttableProxy]]:
    with our_server(*server_options, app="pubsub") as server, \
            CuttableProxy(server.port) as proxy:
        browser = Browser(chromium)
        try:
            yield browser, server, proxy
        finally:
            browser.close()


def open_pair(browser: Browser, server_port: int, proxy: CuttableProxy) -> tuple[Tab, Tab]:
    """The direct tab, subscribed, then the proxied one, subscribed."""
    direct = browser.open("direct", f"http://127.0.0.1:{server_port}/?name=direct")
    direct.wait_subscribed()
    proxied = browser.open("proxied", f"http://127.0.0.1:{proxy.port}/?name=proxied")
    proxied.wait_subscribed()
    return direct, proxied


def exchange(direct: Tab, proxied: Tab) -> list[tuple[int, str]]:
    """Each tab sends a line through its form; both show both, in the same order."""
    direct.send("hello from direct")
    direct.wait_messages(1)
    proxied.wait_messages(1)
    proxied.send("hello from proxied")
    expected = [(1, "hello from direct"), (2, "hello from proxied")]
    assert direct.wait_messages(2) == expected
    assert proxied.wait_messages(2) == expected
    return expected


def cut_off(proxied: Tab, direct: Tab, proxy: CuttableProxy) -> None:
    """Drop the proxied tab's connection and keep it out; wait until both sides know."""
    proxy.refusing.set()
    assert proxy.cut() >= 1
    proxied.wait_for("document.querySelector('#status').dataset.state === 'reconnecting'",
                     "reconnecting")
    # The server saw it go (join/leave is on for every topic): what follows is missed.
    direct.wait_for("[...document.querySelectorAll('#messages li.note')]"
                    ".some(li => li.textContent.endsWith(' left'))", "told of the leave")


# --------------------------------------------------------------------------- the tests


def test_page_and_client_are_served(chromium: Chromium) -> None:
    """GET / and GET /rfc6455.js: content types, no-cache, and a page that loads them."""
    with our_server(app="pubsub") as server:
        base = f"http://127.0.0.1:{server.port}"
        for path, kind in (("/", "text/html"), ("/rfc6455.js", "text/javascript"),
                           ("/page.js", "text/javascript"), ("/page.css", "text/css")):
            with urllib.request.urlopen(base + path, timeout=START_TIMEOUT) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith(kind), path
                assert response.headers["Cache-Control"] == "no-cache", path
                assert response.read(), path
        with urllib.request.urlopen(base + "/rfc6455.js", timeout=START_TIMEOUT) as response:
            assert b"class RFC6455PubSub" in response.read()


def test_two_pages_exchange_then_recover_every_missed_message(chromium: Chromium) -> None:
    missed = 12
    with browser_and_server(chromium, "--join-leave", "*") as (browser, server, proxy):
        direct, proxied = open_pair(browser, server.port, proxy)
        assert proxied.evaluate("pubsubPage.client.ws.protocol") == "rfc6455.json.v1"
        assert direct.evaluate("""(() => { const t = document.querySelector('#topic');
            const ok = (v) => { t.value = v; return t.checkValidity(); };
            const r = [ok('a.b/c@d#e:f_g-h'), ok('no spaces')]; t.value = 'chat'; return r; })()
            """) == [True, False]
        # Join/leave lines and the presence count.
        direct.wait_for("[...document.querySelectorAll('#messages li.note')]"
                        ".some(li => li.textContent.endsWith(' joined'))", "told of the join")
        for tab in (direct, proxied):
            tab.wait_for("document.querySelector('#presence').textContent === '2 here'",
                         "showing 2 here")
        expected = exchange(direct, proxied)

        cut_off(proxied, direct, proxy)
        texts = [f"missed {i}" for i in range(missed)]
        offsets = direct.publish_many(texts)
        assert offsets == list(range(3, 3 + missed))
        expected += list(zip(offsets, texts, strict=True))
        assert direct.wait_messages(len(expected)) == expected
        assert proxied.messages() == expected[:2]  # still cut off
        # Let one reconnect fail (refused by the proxy): the backoff goes on.
        wait_until(lambda: proxy.refused >= 1, "a refused reconnect")
        # Between attempts the page says when it tries again (it says "connecting…"
        # during an attempt itself, so wait for the next pause rather than sample once).
        wait_until(lambda: re.fullmatch(r"reconnecting in \d+ s", proxied.status()) is not None,
                   "the page showing its next reconnect")

        proxy.refusing.clear()
        proxied.wait_for("document.querySelector('#status').textContent"
                         f" === 'connected: recovered {missed} missed messages'",
                         f"recovered {missed}")
        # Every missed message once, in order, right after the ones seen before the cut.
        assert proxied.wait_messages(len(expected)) == expected
        assert proxied.evaluate("pubsubPage.messages.length") == len(expected)

        # Then the live stream, both ways.
        proxied.send("back again")
        expected.append((len(expected) + 1, "back again"))
        assert direct.wait_messages(len(expected)) == expected
        direct.send("welcome back")
        expected.append((len(expected) + 1, "welcome back"))
        assert proxied.wait_messages(len(expected)) == expected
        assert direct.wait_messages(len(expected)) == expected
        time.sleep(0.3)  # nothing more (no late duplicate)
        assert proxied.messages() == expected
        assert proxied.state() == "open"
        for tab in (direct, proxied):
            assert tab.errors() == [], tab.errors()


def test_lost_history_is_reported_as_resynced(chromium: Chromium) -> None:
    """More missed than the history keeps: recovered false, shown, never a silent skip."""
    with browser_and_server(chromium, "--join-leave", "*", "--history-size", "3"
                            ) as (browser, server, proxy):
        direct, proxied = open_pair(browser, server.port, proxy)
        exchange(direct, proxied)
        cut_off(proxied, direct, proxy)
        assert direct.publish_many([f"lost {i}" for i in range(6)]) == list(range(3, 9))
        proxy.refusing.clear()
        status = proxied.wait_for(
            "document.querySelector('#status').dataset.state === 'resynced'"
            " && document.querySelector('#status').textContent", "resynced")
        assert "6 message(s) could not be recovered" in status
        assert proxied.evaluate("document.querySelector('#messages li.resync') !== null")
        direct.send("after the gap")
        assert proxied.wait_messages(3) == [
            (1, "hello from direct"), (2, "hello from proxied"), (9, "after the gap")]
