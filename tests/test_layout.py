"""The package's shape (docs/layers.md): who imports whom, module size, and privacy.

These read the source, so a change that breaks a layering rule fails here and
not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rfc6455"
MODULES = sorted(p for p in PACKAGE.glob("*.py"))

#: The sans-I/O core: no sockets, clocks, threads or loop below this line (docs/layers.md).
CORE = {
    "_close",
    "_connection",
    "_constants",
    "_errors",
    "_events",
    "_extensions",
    "_frames",
    "_handshake",
    "_kernels",
    "_kernels_py",
    "_state",
    "permessage_deflate",
}
IO_MODULES = {"socket", "selectors", "ssl", "threading", "time", "asyncio", "select"}
LOOP_LAYER = {
    "_loop",
    "_transport",
    "_endpoint",
    "server",
    "client",
    "sync_client",
    "app",
    "_aio_connection",
    "_aio_server",
    "_aio_client",
}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(path: Path) -> set[str]:
    """Top-level names of everything ``path`` imports (``.server`` -> ``server``)."""
    names: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y / from . import x
                if node.module:
                    names.add(node.module.split(".")[0])
                else:
                    names.update(alias.name for alias in node.names)
            elif node.module:
                names.add(node.module.split(".")[0])
                if node.module.startswith("rfc6455."):
                    names.add(node.module.split(".")[1])
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_under_1000_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 1000


def test_client_and_server_do_not_import_each_other() -> None:
    client_side = {"client", "sync_client", "_client_options"}
    assert not _imports(PACKAGE / "server.py") & client_side
    for name in client_side:
        assert "server" not in _imports(PACKAGE / f"{name}.py"), name


def test_asyncio_client_and_server_do_not_import_each_other() -> None:
    assert not _imports(PACKAGE / "_aio_server.py") & {"_aio_client", "client", "sync_client"}
    assert not _imports(PACKAGE / "_aio_client.py") & {"_aio_server", "server"}
    # The shared connection imports neither role.
    assert not _imports(PACKAGE / "_aio_connection.py") & {"_aio_server", "_aio_client"}


@pytest.mark.parametrize("name", sorted(CORE))
def test_core_does_no_io(name: str) -> None:
    path = PACKAGE / f"{name}.py"
    if not path.exists():
        pytest.skip(f"{name}.py is not in this tree")
    imported = _imports(path)
    assert not imported & IO_MODULES, imported & IO_MODULES
    assert not imported & LOOP_LAYER, imported & LOOP_LAYER


#: Underscore names the standard library documents for use (os._exit) or types with.
ALLOWED = {"os._exit", "zlib._Compress", "zlib._Decompress"}


def _foreign_private_reads(path: Path) -> list[str]:
    """``obj._name`` where ``obj`` is not ``self``/``cls``/``super()``: another object's
    private attribute. Private names that this module's own classes define (methods,
    attributes set on ``self``) are allowed: a module is one unit of privacy. So are
    the standard library's documented underscore names in ``ALLOWED``."""
    tree = _tree(path)
    local_classes = {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    own_attrs: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            own_attrs.add(node.attr)
        if isinstance(node, ast.ClassDef):
            own_attrs.update(
                item.name
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            )
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        attr = node.attr
        if not attr.startswith("_") or attr.startswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "super":
            continue
        if isinstance(value, ast.Name) and value.id in local_classes:
            continue
        if attr in own_attrs:
            continue  # an attribute this module's own classes define
        if isinstance(value, ast.Name) and f"{value.id}.{attr}" in ALLOWED:
            continue
        found.append(f"{path.name}:{node.lineno} .{attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_private_reads_across_modules(path: Path) -> None:
    assert _foreign_private_reads(path) == []


#: The optional Redis dependency stays in the Redis broker's modules (the ``redis`` extra):
#: ``import rfc6455`` and the in-process pub/sub never need redis-py.
REDIS_MODULES = {"redis_broker", "_redis_io", "_redis_scripts"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_redis_is_imported_only_by_the_redis_broker(path: Path) -> None:
    imported = _imports(path)
    if path.stem not in REDIS_MODULES:
        assert "redis" not in imported
    if path.stem not in REDIS_MODULES | {"cli_commands"}:  # cli_commands: only for --redis
        assert not imported & REDIS_MODULES, imported & REDIS_MODULES


def test_the_redis_broker_modules_do_not_reach_into_the_app() -> None:
    for name in REDIS_MODULES:
        imported = _imports(PACKAGE / f"{name}.py")
        assert not imported & {"pubsub", "server", "envelope", "cli", "cli_commands"}, name
def test_uvicorn_binding_sits_on_the_core() -> None:
    """``rfc6455/uvicorn.py`` runs on uvicorn's loop and the core, never on our loop layer;
    no other module imports it or uvicorn, so ``import rfc6455`` never needs uvicorn."""
    assert not _imports(PACKAGE / "uvicorn.py") & LOOP_LAYER
    for path in MODULES:
        if path.name != "uvicorn.py":
            assert "uvicorn" not in _imports(path), path.name
