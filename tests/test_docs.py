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
    for name in (
        "landscape.store.hidden",
        "landscape.store.analysis",
        "landscape.knn",
        "extract.ranks",
        "analyses.workers",
    ):
        assert name in MODULES
        assert any(test.examples for test in finder.find(importlib.import_module(name))), name


def test_the_schema_page_is_the_store_modules_layouts():
    """docs/schema.md is generated from landscape/store/'s docstrings: the layout lives in one place."""
    from pathlib import Path

    from landscape.store.__main__ import markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "schema.md"
    assert page.read_text() == markdown(), "docs/schema.md is stale: python -m landscape.store > docs/schema.md"


def _without_fences(text: str) -> str:
    """Markdown without its fenced blocks (a '#' there is no heading, a link no link)."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        lines.append("" if fenced else line)
    return "\n".join(lines)


def _anchors(text: str):
    """GitHub's heading anchors of a Markdown page."""
    import re

    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", _without_fences(text), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        yield slug if seen[slug] == 0 else f"{slug}-{seen[slug]}"


def test_every_link_of_the_readme_and_docs_resolves():
    """Relative links in README.md and docs/*.md point at a file that exists and a heading it has."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = re.sub(r"`[^`\n]*`", "", _without_fences(page.read_text()))  # links in code are not links
        for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http:, mailto:
            path, _, anchor = target.partition("#")
            dest = (page.parent / path) if path else page
            if not dest.is_file() or (anchor and anchor not in set(_anchors(dest.read_text()))):
                broken.append(f"{page.relative_to(root)} -> {target}")
    assert not broken, broken


def test_usage_names_every_make_variable_and_every_option():
    """docs/usage.md promises every make variable and every option of every command."""
    import argparse
    import re
    from pathlib import Path

    from landscape.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    usage = (root / "docs" / "usage.md").read_text()
    variables = re.findall(r"^([A-Z][A-Z0-9_]*)\s*\?=", (root / "Makefile").read_text(), flags=re.M)
    assert "MODEL" in variables and "TORCH_INDEX" in variables
    missing = sorted({v for v in variables if f"`{v}`" not in usage})
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, parser in commands.items():
        assert f"`{name}`" in usage or f"landscape {name}" in usage, name
        for action in parser._actions:
            missing += [
                f"{name} {o}" for o in action.option_strings if o.startswith("--") and o != "--help" and o not in usage
            ]
    assert not missing, missing
