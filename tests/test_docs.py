"""The examples in the modules' docstrings run and show what they say (they are documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import analyses
import extract
import figures
import landscape

MODULES = sorted(
    module.name
    for package in (landscape, extract, analyses, figures)
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not module.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed"


def test_the_modules_with_examples_are_found():
    finder = doctest.DocTestFinder()
    for name in ("landscape.store.hidden", "landscape.store.analysis", "landscape.knn", "extract.ranks", "analyses.workers"):
        assert name in MODULES
        assert any(test.examples for test in finder.find(importlib.import_module(name))), name


def test_the_schema_page_is_the_store_modules_layouts():
    """docs/schema.md is generated from landscape/store/'s docstrings: the layout lives in one place."""
    from pathlib import Path

    from landscape.store.__main__ import markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
    assert page.read_text() == markdown(), "docs/schema.md is stale: python -m landscape.store > docs/schema.md"
