"""The doors open downwards: the core imports no stage, figures never imports extract, and the
command line is the only part of landscape/ that sits above the stages."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("extract", "analyses", "figures")


def _imports(path: Path) -> set[str]:
    """Top-level packages a module imports (at any depth of its code)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


# The command line sits on top: landscape/cli/ and `python -m landscape`, which runs it.
COMMAND_LINE = [p for p in _modules("landscape") if p.parent.name == "cli" or p == ROOT / "landscape" / "__main__.py"]
CORE = [p for p in _modules("landscape") if p not in COMMAND_LINE]


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_imports_no_stage(path):
    assert not _imports(path) & set(STAGES), f"{path.relative_to(ROOT)} imports a stage"


def test_the_command_line_is_what_reaches_the_stages():
    """The exempted modules are the command line, and it does import every stage."""
    assert {p.name for p in COMMAND_LINE} >= {"__init__.py", "extract.py", "analyze.py", "report.py", "__main__.py"}
    assert set().union(*(_imports(p) for p in COMMAND_LINE)) >= set(STAGES)


@pytest.mark.parametrize("path", _modules("figures"), ids=lambda p: str(p.relative_to(ROOT)))
def test_figures_read_runs_and_never_import_extract(path):
    assert "extract" not in _imports(path)


@pytest.mark.parametrize(
    "path",
    _modules("landscape") + _modules("extract") + _modules("analyses") + _modules("figures"),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_modules_are_small_or_say_why(path):
    """~400 written lines at most, unless the module's docstring gives the reason ("Long because ...").
    Written lines: lines that do not continue a bracketed expression, so that the count is what an
    author writes, not how ruff's formatter spreads a call one argument a line."""
    lines = _written_lines(path.read_text())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= 400 or "Long because" in doc, f"{path.relative_to(ROOT)}: {lines} lines and no reason given"


def _written_lines(text: str) -> int:
    """The number of lines of ``text`` whose first token is not inside brackets.

    >>> _written_lines("f(\n    1,\n    2,\n)\nx = 1\n")
    2
    """
    depth, depth_at_line = 0, {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            depth_at_line.setdefault(token.start[0], depth)
        if token.type == tokenize.OP and token.string in "([{":
            depth += 1
        elif token.type == tokenize.OP and token.string in ")]}":
            depth -= 1
    return len(text.splitlines()) - sum(1 for d in depth_at_line.values() if d > 0)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_imports(path: Path, known: set[str]) -> set[str]:
    """Project modules a module imports, anywhere in its code (functions and TYPE_CHECKING blocks
    too: a circle there is still two modules that each need the other); ``from package import
    module`` counts as the module."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            out |= {
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names
            }
    return out


def test_no_import_circles():
    """No two modules need each other, directly or through others (a package's __init__, which
    gathers its modules, is left out: importing a package is not needing all of it)."""
    paths = {_module_name(p): p for package in ("landscape", *STAGES) for p in _modules(package)}
    graph = {
        name: _module_imports(path, set(paths)) - {name} for name, path in paths.items() if path.name != "__init__.py"
    }
    graph = {name: {m for m in targets if m in graph} for name, targets in graph.items()}
    circles = []
    for start in sorted(graph):  # a circle through start: a path from one of its imports back to it
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    circles.append(" -> ".join([*trail, start]))
                elif nxt not in seen and nxt > start:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert not circles, "import circles:\n" + "\n".join(circles)


# Import names whose distribution is called otherwise (pyproject.toml names distributions).
DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "PyYAML", "skdim": "scikit-dimension", "umap": "umap-learn"}


def _requirement_name(requirement: str) -> str:
    import re

    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_third_party_import_is_declared():
    """`pip install landscape[...]` brings what the code imports: every third-party package the four
    packages import (at any depth: optional ones inside functions too) is a dependency or in an extra."""
    import sys
    import tomllib  # the standard library's since 3.11, the oldest Python the project supports

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    declared |= {_requirement_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    ours = {"landscape", *STAGES}
    imported = set().union(*(_imports(p) for package in ours for p in _modules(package)))
    third_party = {name for name in imported - ours if name not in sys.stdlib_module_names and name != "__future__"}
    assert {"numpy", "torch", "ray", "playwright"} <= third_party  # the scan sees them, inside functions too
    missing = sorted(
        name for name in third_party if DISTRIBUTIONS.get(name, name).lower().replace("_", "-") not in declared
    )
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def _tests_imported(path: Path) -> set[str]:
    """The modules of tests/ a file there imports, by name (``tests.x``, a sibling's bare ``x``,
    ``from . import x``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or "" if node.level == 0 else ".".join(filter(None, ("tests", node.module)))
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            first, _, rest = name.partition(".")
            local = rest.partition(".")[0] if first == "tests" else first
            if (ROOT / "tests" / f"{local}.py").exists():
                out.add(local)
    return out


def test_test_files_never_import_each_other_or_conftest():
    """Helpers that several test files use live in tests/helpers.py, fixtures in conftest.py (which
    pytest hands to the tests by name): a test file never imports another (that would run its
    tests' module code twice and tie the two together) nor conftest.py."""
    files = sorted((ROOT / "tests").glob("*.py"))
    imported = {path.name: _tests_imported(path) for path in files}
    assert "helpers" in imported["conftest.py"] and "helpers" in imported["test_tasks.py"]  # the scan sees them
    wrong = {
        name: sorted(m for m in modules if m == "conftest" or m.startswith("test_"))
        for name, modules in imported.items()
    }
    wrong = {name: modules for name, modules in wrong.items() if modules}
    assert not wrong, f"test modules imported: {wrong}"
