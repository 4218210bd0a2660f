"""Fixtures for the interop tests; the machinery lives in interop_support.py.

Every test here is marked ``interop``. A missing peer skips locally and fails
under ``CI=true`` (``interop_support.require``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# Make interop_support importable whatever pytest's import mode is.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from interop_support import (
    Chromium,
    NodePeers,
    OurServer,
    SelfSignedCert,
    get_chromium,
    get_node_peers,
    get_websockets,
    make_cert,
    our_server,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: talks to a real third-party peer (Node ws, Chromium, websockets)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def node_peers() -> NodePeers:
    return get_node_peers()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    return get_chromium(tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="session")
def websockets_lib() -> Any:
    return get_websockets()


@pytest.fixture
def our_echo_server() -> Iterator[OurServer]:
    with our_server() as server:
        yield server


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> SelfSignedCert:
    return make_cert(tmp_path_factory.mktemp("tls"))
