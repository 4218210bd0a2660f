"""The design docs (docs/) say what the code does: tables drawn from the code are checked
against it, so the docs cannot drift. Building the HTML (Sphinx) is .ci/test's job."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

import rfc6455
from rfc6455._endpoint import PHASE_TRANSITIONS, Phase, PhaseTrigger
from rfc6455._state import TRANSITIONS, ConnectionState, Trigger
from rfc6455.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _table(page: str, name: str) -> list[list[str]]:
    """The body rows of the table between ``<!-- NAME: begin -->`` and ``<!-- NAME: end -->``,
    cells stripped of spaces and backticks."""
    text = (DOCS / page).read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name}: begin -->\n(.*?)<!-- {name}: end -->", text, re.DOTALL)
    assert match, f"no {name} table in docs/{page}"
    lines = [line.strip() for line in match.group(1).strip().splitlines()]
    assert all(line.startswith("|") and line.endswith("|") for line in lines), lines
    rows = [[cell.strip().strip("`") for cell in line[1:-1].split("|")] for line in lines]
    header, rule, *body = rows
    assert set("".join(rule)) <= set("-: "), f"the {name} table has no header rule"
    assert all(len(row) == len(header) for row in body)
    return body


def test_transition_table_is_the_code() -> None:
    rows = _table("state.md", "transitions")
    documented = {
        (ConnectionState[state], Trigger[trigger]): ConnectionState[target]
        for state, trigger, target, _why in rows
    }
    assert len(documented) == len(rows), "a transition is listed twice"
    assert documented == TRANSITIONS


def test_phase_table_is_the_code() -> None:
    rows = _table("state.md", "phases")
    documented = {
        (Phase[phase], PhaseTrigger[trigger]): Phase[target]
        for phase, trigger, _event, target in rows
    }
    assert len(documented) == len(rows), "a phase change is listed twice"
    assert documented == PHASE_TRANSITIONS


def _python_value(cell: str) -> object:
    """A default as written in a table cell: a Python expression (``1 << 20``, ``None``)."""
    return eval(cell, {"__builtins__": {}})  # our own docs: trusted text


def test_config_table_lists_every_field_with_its_default() -> None:
    rows = _table("limits.md", "config")
    documented = {name: _python_value(default) for name, default, *_ in rows}
    actual = {f.name: _default(f) for f in dataclasses.fields(rfc6455.Config)}
    assert documented == actual


def _default(field: dataclasses.Field[object]) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    assert field.default_factory is not dataclasses.MISSING
    return field.default_factory()


def _serve_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices["serve"]
            return sub
    raise AssertionError("no serve subcommand")


def test_serve_flag_table_has_the_parser_defaults() -> None:
    rows = _table("limits.md", "serve-flags")
    documented = {flag: _python_value(default) for flag, default, *_ in rows}
    actual = {
        action.option_strings[0]: action.default
        for action in _serve_parser()._actions
        if action.option_strings and action.option_strings[0] in documented
    }
    assert documented == actual


def test_server_deflate_table_has_the_defaults() -> None:
    rows = _table("limits.md", "server-deflate")
    documented = {name: _python_value(default) for name, default, *_ in rows}
    factory = rfc6455.ServerPerMessageDeflate()
    actual = {name: getattr(factory, name) for name in documented}
    actual["refuse"] = tuple(actual["refuse"])
    assert documented == actual


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_links_stay_in_the_repository(page: Path) -> None:
    """Relative links resolve to files of this repository; nothing points outside it."""
    text = page.read_text(encoding="utf-8")
    assert "DESIGN.md" not in text
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            assert target.startswith("https://"), target
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(ROOT), target
        assert path.exists(), target


def test_readme_links_the_docs_not_design_md() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "DESIGN.md" not in text
    assert "](docs/index.md)" in text


def test_api_page_documents_public_data_by_hand() -> None:
    """autodoc documents module data only when the module's source gives it a ``#:``
    comment, which rfc6455/__init__.py does not: api.md declares those names itself."""
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    for name in rfc6455.__all__:
        obj = getattr(rfc6455, name)
        if not (isinstance(obj, type) or callable(obj)):
            assert f".. py:data:: rfc6455.{name}" in api, name
