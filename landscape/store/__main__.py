"""``python -m landscape.store > docs/schema.md``: the layout of every file of a run, from the
store modules' docstrings (their examples left out); tests/test_docs.py checks the page is current."""

from __future__ import annotations

from landscape.store import analysis, edl, encoding, hidden, layout, maps, shards
from landscape.store.layout import SCHEMA_VERSION

SECTIONS = (
    ("The run folder", layout),
    ("RUN/hidden.h5", hidden),
    ("How the states are stored", encoding),
    ("RUN/hidden.h5: the EDL records", edl),
    ("RUN/shards/", shards),
    ("RUN/analysis.h5", analysis),
    ("RUN/maps.h5", maps),
)


def markdown() -> str:
    parts = [
        f"# The files of a run (schema version {SCHEMA_VERSION})\n",
        "Generated from the docstrings of `landscape/store/` (`python -m landscape.store > docs/schema.md`);",
        "`tests/test_docs.py` checks that it is current. Each module is the only code that spells paths in its file.\n",
    ]
    for title, module in SECTIONS:
        text = (module.__doc__ or "").split("\nExample:")[0].strip()  # not cleandoc: literal blocks keep their indent
        parts += [f"## {title} (`{module.__name__.replace('.', '/')}.py`)\n", _fenced(text) + "\n"]
    return "\n".join(parts)


def _fenced(text: str) -> str:
    """reST literal blocks (a line ending '::', then indented lines) as fenced Markdown blocks."""
    out: list[str] = []
    block: list[str] | None = None
    for line in [*text.splitlines(), ""]:
        if block is not None and line.strip() and not line.startswith("    "):
            out += ["```text", *_trimmed(block), "```", ""]
            block = None
        if block is not None:
            block.append(line[4:])
        elif line.endswith("::"):
            out += [line[:-1], ""]
            block = []
        else:
            out.append(line)
    if block is not None:
        out += ["```text", *_trimmed(block), "```"]
    return "\n".join(out).strip()


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


if __name__ == "__main__":
    print(markdown(), end="")
