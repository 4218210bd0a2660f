"""Sphinx configuration: the design pages (Markdown, through MyST) and the API reference
built from the docstrings (autodoc; napoleon for the Google-style sections).

Build it as .ci/test does, warnings as errors:

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Document the package of this checkout, not an installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rfc6455

project = "rfc6455"
author = "the rfc6455 authors"
release = version = rfc6455.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# The pages link to each other as files (``[limits](limits.md#timeouts)``) so that they
# read the same on GitHub; MyST resolves such links to headings up to level 3.
myst_heading_anchors = 3

# -- API reference ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Unresolved references (private modules, typing aliases) are not errors.
nitpicky = False

html_theme = "alabaster"
html_title = f"rfc6455 {release}"

# -- One entry per public name -----------------------------------------------------------
# ``rfc6455`` re-exports the public API of every layer; its ``__all__`` is the list of
# public names. api.md documents that module first, then each submodule; a submodule's
# section shows its docstring and the names it adds, and leaves out the names that
# ``rfc6455`` already documents (otherwise every class would appear twice, and a
# re-export such as ``rfc6455.client.ConnectionClosed`` is a duplicate object
# description, which Sphinx reports as an error that no setting silences).
_PUBLIC = {id(getattr(rfc6455, name)) for name in rfc6455.__all__}
_current_module = ["rfc6455"]


def _note_module(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    """Track which module autodoc is documenting (its docstring comes before its members)."""
    if what == "module":
        _current_module[0] = name


def _skip_member(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> bool | None:
    if what != "module":
        return None
    if _current_module[0] == "rfc6455":
        # Every name of __all__, with or without a docstring (NEED_DATA, __version__).
        return False if name in rfc6455.__all__ else None
    if id(obj) in _PUBLIC:
        return True
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _note_module)
    app.connect("autodoc-skip-member", _skip_member)
