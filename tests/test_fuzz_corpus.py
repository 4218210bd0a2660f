"""The fuzz harnesses' targets over their seed corpus (fuzz/corpus/).

Every seed must satisfy the harness contract ("parse or raise a documented
error", split invariance, native == Python, sane answers). Inputs the fuzzers
found (``found-bugN-*``) are regression tests: while core bug N is open they
are expected to fail (strict xfail: fixing the bug makes them pass, and then
N must leave OPEN_BUGS here and KNOWN_BUGS in fuzz/fuzz_frames.py).
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import types
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"

#: Core bugs found by fuzzing and not fixed yet (fuzz/README.md, "Findings").
OPEN_BUGS: set[int] = set()


def _harness(name: str) -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(name)


fuzz_frames = _harness("fuzz_frames")
fuzz_handshake = _harness("fuzz_handshake")
fuzz_client = _harness("fuzz_client")
fuzz_deflate = _harness("fuzz_deflate")
fuzz_envelope = _harness("fuzz_envelope")
make_corpus = _harness("make_corpus")


def _cases(directory: str) -> list[Any]:
    cases = []
    for path in sorted((FUZZ_DIR / "corpus" / directory).iterdir()):
        match = re.match(r"found-bug(\d+)-", path.name)
        marks = []
        if match and int(match.group(1)) in OPEN_BUGS:
            marks.append(
                pytest.mark.xfail(
                    strict=True,
                    raises=fuzz_frames.HarnessFailure,
                    reason=f"core bug {match.group(1)} is open (fuzz/README.md)",
                )
            )
        cases.append(pytest.param(path, id=path.name, marks=marks))
    return cases


@pytest.fixture
def strict_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report known bugs too: the corpus runs without the fuzzing-time tolerance."""
    monkeypatch.setattr(fuzz_frames, "tolerate_known_bugs", False)
    monkeypatch.setattr(fuzz_handshake, "tolerate_known_bugs", False)


@pytest.mark.usefixtures("strict_frames")
@pytest.mark.parametrize("path", _cases("frames"))
def test_frames_corpus(path: Path) -> None:
    fuzz_frames.TestOneInput(path.read_bytes())


@pytest.mark.usefixtures("strict_frames")
@pytest.mark.parametrize("path", _cases("handshake"))
def test_handshake_corpus(path: Path) -> None:
    fuzz_handshake.TestOneInput(path.read_bytes())


@pytest.mark.parametrize("path", _cases("client"))
def test_client_corpus(path: Path) -> None:
    fuzz_client.TestOneInput(path.read_bytes())


@pytest.mark.parametrize("path", _cases("deflate"))
def test_deflate_corpus(path: Path) -> None:
    fuzz_deflate.TestOneInput(path.read_bytes())


@pytest.mark.parametrize("path", _cases("envelope"))
def test_envelope_corpus(path: Path) -> None:
    fuzz_envelope.TestOneInput(path.read_bytes())


@pytest.mark.parametrize(
    ("harness", "directory"),
    [
        (fuzz_frames, "frames"),
        (fuzz_handshake, "handshake"),
        (fuzz_client, "client"),
        (fuzz_deflate, "deflate"),
    ],
)
def test_lean_mode_passes_the_corpus(
    monkeypatch: pytest.MonkeyPatch, harness: ModuleType, directory: str
) -> None:
    # FUZZ_LEAN=1 is read at import; every module that imported the flag sees it.
    for module in (fuzz_frames, fuzz_handshake, fuzz_client, fuzz_deflate):
        monkeypatch.setattr(module, "LEAN", True)
    for path in sorted((FUZZ_DIR / "corpus" / directory).iterdir()):
        harness.TestOneInput(path.read_bytes())


def test_lean_mode_still_reports_an_escaping_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    monkeypatch.setattr(fuzz_frames, "LEAN", True)

    def broken(self: Any, buf: bytearray, nbytes: int) -> Any:
        raise RuntimeError("boom")

    # Lean mode feeds the input as the loop does: receive_one, then receive_messages.
    monkeypatch.setattr(_connection.Connection, "receive_messages", broken)
    seed = (FUZZ_DIR / "corpus" / "frames" / "seed-client-text").read_bytes()
    with pytest.raises(RuntimeError):
        fuzz_frames.TestOneInput(seed)


@pytest.mark.parametrize(
    ("directory", "generate"),
    [
        ("envelope", make_corpus.envelope_seeds),
        ("frames", make_corpus.frame_seeds),
        ("handshake", make_corpus.handshake_seeds),
        ("client", make_corpus.client_seeds),
        ("deflate", make_corpus.deflate_seeds),
    ],
)
def test_seed_files_match_make_corpus(directory: str, generate: Any) -> None:
    on_disk = {
        path.name: path.read_bytes()
        for path in (FUZZ_DIR / "corpus" / directory).glob("seed-*")
    }
    assert on_disk == {f"seed-{name}": data for name, data in generate()}


def test_empty_and_header_only_inputs() -> None:
    for data in (b"", b"\x01", bytes(8), b"\xff" * 8):
        fuzz_frames.TestOneInput(data)
    for data in (b"", b"\x10", bytes(4), b"\xff" * 4):
        fuzz_handshake.TestOneInput(data)
    for data in (b"", b"\x02", bytes(5), b"\xff" * 5):
        fuzz_client.TestOneInput(data)
    for data in (b"", b"\x01", bytes(4), b"\xff" * 4, bytes(6), b"\xff" * 6):
        fuzz_deflate.TestOneInput(data)
    for data in (b"", b"\x00", b"\x01", b"\xff", b"\x06{"):
        fuzz_envelope.TestOneInput(data)


def test_envelope_harness_reports_a_wrong_code(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import envelope

    original = envelope.parse

    def wrong_code(message: Any, *, max_size: int = 65536) -> Any:
        try:
            return original(message, max_size=max_size)
        except envelope.EnvelopeError as exc:
            if exc.code == "unsupported_version":
                raise envelope.EnvelopeError("bad_json", "no") from None
            raise

    monkeypatch.setattr(envelope, "parse", wrong_code)
    seed = (FUZZ_DIR / "corpus" / "envelope" / "seed-unsupported-version").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="parse said 'bad_json'"):
        fuzz_envelope.TestOneInput(seed)


def test_envelope_harness_reports_a_missing_re(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import envelope

    monkeypatch.setattr(envelope, "encode", lambda kind, data=None, *, re=None, ts=None:
                        json.dumps({"v": 1, "type": kind, "ts": 0, "data": dict(data or {})}))
    seed = (FUZZ_DIR / "corpus" / "envelope" / "seed-ping-id").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="expected '1'"):
        fuzz_envelope.TestOneInput(seed)


def test_client_and_deflate_header_decoding() -> None:
    data = make_corpus.client_header(
        make_corpus.C_DEFLATE | make_corpus.C_ECHO, offer=5, max_index=make_corpus.MAX_16,
        limit=make_corpus.C_LIMIT_64, chunks=(1, 3),
    ) + b"HTTP/1.1"
    config, wire = fuzz_client.parse_input(data)
    assert (config.subprotocols, config.deflate, config.stream, config.echo) == (
        False, True, False, True,
    )
    assert (config.deflate_offer, config.max_size, config.max_header_size) == (5, 16, 64)
    assert config.chunk_sizes == (1, 2)
    assert wire == b"HTTP/1.1"
    data = make_corpus.deflate_header(
        rx_bits=9, tx_bits=14, rx_no_context=True, max_index=5, level=1, mem_level=9, threshold=2
    )
    config, body = fuzz_deflate.parse_input(data + b"\x03\x02ab\x00\xffrest")
    assert (config.rx_bits, config.tx_bits, config.rx_no_context, config.tx_no_context) == (
        9, 14, True, False,
    )
    assert (config.max_size, config.level, config.mem_level, config.threshold) == (16, 0, 9, 16)
    assert fuzz_deflate.operations(body) == [(3, b"ab"), (0, b"rest")]


def test_frames_header_decoding() -> None:
    data = make_corpus.frames_header(
        make_corpus.CLIENT | make_corpus.STREAM, make_corpus.MAX_16, (1, 0, 3, 4)
    ) + b"\x81\x00"
    config, wire = fuzz_frames.parse_input(data)
    assert (config.client, config.stream, config.deflate, config.local_close) == (
        True, True, False, False,
    )
    assert config.max_size == 16
    assert config.chunk_sizes == (1, 0, 2, 3)
    assert wire == b"\x81\x00"
    assert fuzz_frames.split(b"abcdefgh", (1, 0)) == [b"a", b"bcdefgh"]
    assert fuzz_frames.split(b"abcdefgh", (3,)) == [b"abc", b"def", b"gh"]


# The harnesses must catch bugs, not just run: break the core on purpose.


def test_frames_harness_reports_an_escaping_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    def broken(self: Any, opcode: int, payload: bytes) -> bool:
        raise ValueError("boom")

    monkeypatch.setattr(_connection.Connection, "_control_frame", broken)
    seed = (FUZZ_DIR / "corpus" / "frames" / "seed-server-ping-pong").read_bytes()
    with pytest.raises(ValueError, match="boom"):
        fuzz_frames.TestOneInput(seed)


def test_frames_harness_reports_a_missing_pong(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    original = _connection.Connection._control_frame

    def no_pong(self: Any, opcode: int, payload: bytes) -> bool:
        result = original(self, opcode, payload)
        if opcode == 0x9:
            self._pong = None
        return result

    monkeypatch.setattr(_connection.Connection, "_control_frame", no_pong)
    seed = (FUZZ_DIR / "corpus" / "frames" / "seed-server-ping-pong").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="pongs"):
        fuzz_frames.TestOneInput(seed)


def test_frames_harness_reports_a_pong_for_an_older_ping(monkeypatch: pytest.MonkeyPatch) -> None:
    # §5.5.3 allows one pong for the *latest* ping; answering the first of a
    # chunk's pings (a waiting pong never replaced) is a bug the oracle sees.
    from rfc6455 import _connection

    original = _connection.Connection._control_frame

    def keeps_first(self: Any, opcode: int, payload: bytes) -> bool:
        waiting = self._pong
        result = original(self, opcode, payload)
        if opcode == 0x9 and waiting is not None:
            self._pong = waiting
        return result

    monkeypatch.setattr(_connection.Connection, "_control_frame", keeps_first)
    seed = (FUZZ_DIR / "corpus" / "frames" / "seed-server-ping-pong").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="pongs"):
        fuzz_frames.TestOneInput(seed)


def test_frames_harness_reports_split_dependence(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    original = _connection.Connection.receive_data

    def drops_single_bytes(self: Any, data: bytes) -> None:
        if len(data) != 1:
            original(self, data)

    monkeypatch.setattr(_connection.Connection, "receive_data", drops_single_bytes)
    seed = (FUZZ_DIR / "corpus" / "frames" / "seed-server-text").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="bytewise"):
        fuzz_frames.TestOneInput(seed)


def test_handshake_harness_reports_an_escaping_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rfc6455 import _handshake

    def broken(*args: Any, **kwargs: Any) -> bool:
        raise KeyError("boom")

    monkeypatch.setattr(_handshake, "_is_valid_key", broken)
    seed = (FUZZ_DIR / "corpus" / "handshake" / "seed-server-valid").read_bytes()
    with pytest.raises(KeyError):
        fuzz_handshake.TestOneInput(seed)


def test_client_harness_reports_an_escaping_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    def broken(self: Any, opcode: int, payload: bytes) -> bool:
        raise ValueError("boom")

    monkeypatch.setattr(_connection.Connection, "_control_frame", broken)
    seed = (FUZZ_DIR / "corpus" / "client" / "seed-valid-frames-with-head").read_bytes()
    with pytest.raises(ValueError, match="boom"):
        fuzz_client.TestOneInput(seed)


def test_client_harness_reports_a_missing_pong(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import _connection

    original = _connection.Connection._control_frame

    def no_pong(self: Any, opcode: int, payload: bytes) -> bool:
        result = original(self, opcode, payload)
        if opcode == 0x9:
            self._pong = None
        return result

    monkeypatch.setattr(_connection.Connection, "_control_frame", no_pong)
    seed = (FUZZ_DIR / "corpus" / "client" / "seed-ping-flood").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="pongs"):
        fuzz_client.TestOneInput(seed)


def test_client_harness_reports_lost_trailing_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # Frames in the same chunk as the 101 must reach the connection: dropping
    # them makes the whole feeding differ from the byte-by-byte one.
    from rfc6455 import _handshake

    original = _handshake._build_connection

    def drops_trailing_data(cls: Any, handshake: Any) -> Any:
        handshake.trailing_data = b""
        return original(cls, handshake)

    monkeypatch.setattr(_handshake, "_build_connection", drops_trailing_data)
    seed = (FUZZ_DIR / "corpus" / "client" / "seed-valid-frames-split").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="vs chunked"):
        fuzz_client.TestOneInput(seed)


def test_client_harness_reports_a_window_over_the_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import permessage_deflate

    original = permessage_deflate.ClientPerMessageDeflate.accept_response

    def wider(self: Any, params: Any) -> Any:
        extension = original(self, params)
        extension.remote_max_window_bits = 15
        return extension

    monkeypatch.setattr(permessage_deflate.ClientPerMessageDeflate, "accept_response", wider)
    seed = (FUZZ_DIR / "corpus" / "client" / "seed-deflate-windows-10-9").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="server window over the offer"):
        fuzz_client.TestOneInput(seed)


def test_deflate_harness_reports_an_unbounded_inflate(monkeypatch: pytest.MonkeyPatch) -> None:
    # max_length=0 is zlib's "no limit": a compression bomb would inflate in full.
    from rfc6455 import permessage_deflate

    monkeypatch.setattr(permessage_deflate, "sys", types.SimpleNamespace(maxsize=-1))
    seed = (FUZZ_DIR / "corpus" / "deflate" / "seed-bad-rx-bomb").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="max_length=0"):
        fuzz_deflate.TestOneInput(seed)


def test_deflate_harness_reports_a_wrong_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import permessage_deflate

    original = permessage_deflate.PerMessageDeflate.decode

    def drops_a_byte(self: Any, payload: bytes, **kwargs: Any) -> bytes:
        return original(self, payload, **kwargs)[1:]

    monkeypatch.setattr(permessage_deflate.PerMessageDeflate, "decode", drops_a_byte)
    for name, match in (("seed-rx-text", "zlib gives"), ("seed-tx-message", "round trip")):
        seed = (FUZZ_DIR / "corpus" / "deflate" / name).read_bytes()
        with pytest.raises(fuzz_frames.HarnessFailure, match=match):
            fuzz_deflate.TestOneInput(seed)


def test_deflate_harness_reports_kept_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from rfc6455 import permessage_deflate

    original = permessage_deflate.PerMessageDeflate.decode

    def keeps(self: Any, payload: bytes, **kwargs: Any) -> bytes:
        decompressor = self._decompressor
        data = original(self, payload, **kwargs)
        if self._decompressor is None:
            self._decompressor = decompressor or permessage_deflate.zlib.decompressobj(-15)
        return data

    monkeypatch.setattr(permessage_deflate.PerMessageDeflate, "decode", keeps)
    seed = (FUZZ_DIR / "corpus" / "deflate" / "seed-rx-window-8").read_bytes()
    with pytest.raises(fuzz_frames.HarnessFailure, match="keeps zlib state"):
        fuzz_deflate.TestOneInput(seed)
