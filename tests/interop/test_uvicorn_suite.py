"""uvicorn's own WebSocket test suite, run against rfc6455.uvicorn.WebSocketProtocol.

``tests/protocols/test_websocket.py`` comes from the sdist of the installed uvicorn
(``pip download`` at test time into a cache directory, extracted into a temp
directory: none of uvicorn's code is committed here), with the files it imports
from uvicorn's ``tests/``. A ``conftest.py`` beside it parametrizes its
``ws_protocol_cls`` fixture with uvicorn's built-in protocols (wsproto,
websockets-sansio) and ours, and the suite runs once in a subprocess. The one edit
to the file itself: two tests assert ``isinstance(protocol, (<built-ins>))``
before reading ``protocol.ping_sent_at`` / ``ping_timer``; our class joins that
tuple.

The assertion: every test id that passes for a built-in passes for ours, except
the deliberate deviations in ``DEVIATIONS``, which must fail the way the
deviation says (so a regression there is caught too).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

import pytest
from interop_support import REPO, require

pytestmark = pytest.mark.interop

BUILTINS = {
    "wsproto": "uvicorn.protocols.websockets.wsproto_impl:WSProtocol",
    "websockets-sansio": "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
}
OURS = "rfc6455"

#: Test (name without parameters) -> text the failure must contain, and why.
DEVIATIONS = {
    # The app's second websocket.accept raises inside send(). An exception after
    # accepting closes with 1011 here (RFC 6455 §7.4.1, as hypercorn does); uvicorn's
    # protocols drop TCP without a close frame, so the client reports 1006.
    "test_duplicate_handshake": "1011",
}

SUITE_TIMEOUT = 540.0

CONFTEST = '''
import pytest
from uvicorn.importer import import_from_string

PROTOCOLS = {protocols!r}


@pytest.fixture(params=[pytest.param(path, id=name) for name, path in PROTOCOLS.items()])
def ws_protocol_cls(request):
    return import_from_string(request.param)
'''

ISINSTANCE = "isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol))"
ISINSTANCE_OURS = (
    "isinstance(protocol, (_WSProtocol, WebSocketsSansIOProtocol, "
    "__import__('rfc6455.uvicorn').uvicorn.WebSocketProtocol))"
)


def _sdist(version: str) -> Path:
    """The uvicorn sdist of ``version``, downloaded once into a cache directory."""
    cache = Path(tempfile.gettempdir()) / "rfc6455-uvicorn-sdist"
    cache.mkdir(exist_ok=True)
    found = sorted(cache.glob(f"uvicorn-{version}.tar.gz"))
    if found:
        return found[0]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(cache), f"uvicorn=={version}"]
    try:
        subprocess.run(command, check=True, timeout=300, capture_output=True)
    except (subprocess.SubprocessError, OSError) as exc:
        require(False, f"the uvicorn {version} sdist (pip download failed: {exc})")
    found = sorted(cache.glob(f"uvicorn-{version}.tar.gz"))
    require(bool(found), f"the uvicorn {version} sdist")
    return found[0]


def _local_imports(source: str) -> set[str]:
    """The modules of uvicorn's ``tests`` package that ``source`` imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
            names.add(node.module.removeprefix("tests."))
    return names


def _extract(sdist: Path, version: str, into: Path) -> Path:
    """uvicorn's WebSocket tests and what they import, laid out as a ``tests`` package."""
    prefix = f"uvicorn-{version}/tests/"
    with tarfile.open(sdist) as tar:
        def read(name: str) -> str:
            member = tar.extractfile(prefix + name)
            assert member is not None, name
            return member.read().decode("utf-8")

        wanted = ["__init__.py", "conftest.py", "protocols/__init__.py",
                  "protocols/test_websocket.py"]
        sources = {name: read(name) for name in wanted}
        pending = set()
        for source in sources.values():
            pending |= _local_imports(source)
        while pending:
            module = pending.pop()
            name = module.replace(".", "/") + ".py"
            if name not in sources:
                sources[name] = read(name)
                pending |= _local_imports(sources[name])
    suite = sources["protocols/test_websocket.py"]
    assert ISINSTANCE in suite, "uvicorn's suite changed: update ISINSTANCE"
    sources["protocols/test_websocket.py"] = suite.replace(ISINSTANCE, ISINSTANCE_OURS)
    protocols = {**BUILTINS, OURS: "rfc6455.uvicorn:WebSocketProtocol"}
    sources["protocols/conftest.py"] = CONFTEST.format(protocols=protocols)
    for name, source in sources.items():
        path = into / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    (into / "pytest.ini").write_text("[pytest]\nfaulthandler_timeout = 60\n", encoding="utf-8")
    return into / "tests" / "protocols" / "test_websocket.py"


def _outcomes(report: Path) -> dict[str, tuple[str, str]]:
    """Test id -> (passed | failed | skipped, failure text), from a JUnit report."""
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        if failure is not None:
            text = (failure.get("message") or "") + (failure.text or "")
            outcomes[case.get("name", "")] = ("failed", text)
        elif case.find("skipped") is not None:
            outcomes[case.get("name", "")] = ("skipped", "")
        else:
            outcomes[case.get("name", "")] = ("passed", "")
    return outcomes


def _split(test_id: str) -> tuple[str, str | None]:
    """``test_x[a-rfc6455-h11]`` -> (``test_x[a-*-h11]``, ``rfc6455``)."""
    for name in (*BUILTINS, OURS):
        pattern = rf"(?<=[\[-]){re.escape(name)}(?=[\]-])"
        if re.search(pattern, test_id):
            return re.sub(pattern, "*", test_id, count=1), name
    return test_id, None


def test_uvicorn_websocket_suite(tmp_path: Path) -> None:
    version = metadata.version("uvicorn")
    suite = _extract(_sdist(version), version, tmp_path)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not zttp",
               f"--junitxml={report}", str(suite)]
    try:
        run = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"uvicorn's suite did not finish in {SUITE_TIMEOUT:.0f}s: {exc.stdout!r}")
    assert report.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    by_case: dict[str, dict[str, tuple[str, str]]] = {}
    for test_id, outcome in _outcomes(report).items():
        case, protocol = _split(test_id)
        if protocol is not None:
            by_case.setdefault(case, {})[protocol] = outcome

    ours_ran = [case for case, results in by_case.items() if OURS in results]
    assert len(ours_ran) > 50, f"too few of uvicorn's tests ran for ours:\n{run.stdout[-3000:]}"
    missing, deviating = [], []
    for case, results in sorted(by_case.items()):
        if not any(results.get(name, ("",))[0] == "passed" for name in BUILTINS):
            continue
        status, text = results.get(OURS, ("missing", ""))
        expected = DEVIATIONS.get(case.partition("[")[0])
        if expected is not None:
            if status != "failed" or expected not in text:
                deviating.append(f"{case}: {status}, expected a failure showing {expected}")
        elif status != "passed":
            missing.append(f"{case}: {status}\n{text[-1500:]}")
    assert not missing, "passes for a built-in protocol but not for ours:\n" + "\n".join(missing)
    assert not deviating, "\n".join(deviating)
