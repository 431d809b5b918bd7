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
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    if not module.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    results = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed"


def test_the_modules_with_examples_are_found():
    finder = doctest.DocTestFinder()
    for name in ("landscape.schema", "landscape.knn", "extract.ranks", "analyses.workers"):
        assert name in MODULES
        assert any(test.examples for test in finder.find(importlib.import_module(name))), name
