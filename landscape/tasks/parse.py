"""Task files: find one (a built-in name or a path), read its YAML, and check every key into a ``Task``.

The data the file names is not read here (``landscape.tasks.rows`` does that); every error is a
one-line ``TaskError`` that names the file and the key.

Example:
    >>> task = parse_task("name: t\\nsource: t.csv\\nquestion: '{q}'\\nchoices: [a, b]\\nanswer: gold\\ngroups: topic\\n")
    >>> task.groups, task.letters, task.prompt
    (('topic',), ('A', 'B'), '{question}\\n{choices}Answer:')
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from landscape.tasks.task import (
    ALPHABET,
    ANSWER_FORMS,
    FORMAT_DEFAULTS,
    OPTIONAL,
    REQUIRED,
    RESERVED_GROUPS,
    SCORES,
    Task,
    TaskError,
)

BUILTIN_DIR = Path(__file__).parent
DEFAULT_TASK = "mmlu"
STRING_KEYS = (
    "name",
    "source",
    "question",
    "answer",
    "header",
    "description",
    "filter",
    "prompt",
    "choice",
    "demo_answer",
    "continuation",
    "id",
)


def builtin_tasks() -> dict[str, Path]:
    """name -> task file of every built-in task."""
    return {path.stem: path for path in sorted(BUILTIN_DIR.glob("*.yaml"))}


def resolve_task_path(spec: str | Path) -> Path:
    """A built-in name or a task file's path -> the file."""
    builtins = builtin_tasks()
    if str(spec) in builtins:
        return builtins[str(spec)]
    path = Path(spec)
    if path.is_file():
        return path
    raise TaskError(f"unknown task {str(spec)!r}: not a built-in ({', '.join(builtins)}) nor a file")


def load_task(spec: str | Path) -> Task:
    """Read a task file (a built-in name or a path) and check its keys; the data is not read yet."""
    path = resolve_task_path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TaskError(f"{path}: cannot read the task file ({error})") from None
    return parse_task(text, path)


def parse_task(text: str, path: str | Path = "<task>") -> Task:
    """A ``Task`` from a task file's text (``path`` locates a relative ``source`` and names errors)."""
    where = str(path)
    spec = _read_yaml(text, where)
    _check_keys(spec, where)
    score = _score(spec, where)
    answer_as = _answer_as(spec, where)
    choices = _choices(spec, where)
    groups = _groups(spec, where)
    rename = _rename(spec, where)
    transform = _transform(spec, where)
    _check_strings(spec, where)
    name = _name(spec, where)
    defaults = FORMAT_DEFAULTS[score]
    return Task(
        name=name,
        path=where,
        text=text,
        source=str(spec["source"]),
        question=str(spec["question"]),
        choices=choices,
        answer=str(spec["answer"]),
        answer_as=answer_as,
        groups=groups,
        header=str(spec.get("header") or ""),
        id=None if spec.get("id") is None else str(spec["id"]),
        description=str(spec.get("description") or ""),
        control=_control(spec, where),
        filter=spec.get("filter"),
        rename={str(k): str(v) for k, v in rename.items()},
        transform=transform,
        score=score,
        prompt=str(spec.get("prompt", defaults["prompt"])),
        choice=str(spec.get("choice", defaults["choice"])),
        demo_answer=str(spec.get("demo_answer", defaults["demo_answer"])),
        continuation=str(spec.get("continuation", defaults["continuation"])),
    )


def _control(spec: dict, where: str) -> bool:
    """``control``: a YAML boolean (a quoted "false" would otherwise be true)."""
    value = spec.get("control", False)
    if not isinstance(value, bool):
        raise TaskError(f"{where}: control must be true or false (unquoted), got {value!r}")
    return value


def _read_yaml(text: str, where: str) -> Any:
    """The YAML document; a syntax error names its line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TaskError(f"{where}:{at} YAML syntax error: {problem}") from None


def _check_keys(spec: Any, where: str) -> None:
    """A mapping that has every required key and no unknown one."""
    if not isinstance(spec, dict):
        raise TaskError(f"{where}: a task file is a mapping of keys (name, source, question, ...)")
    for key in REQUIRED:
        if key not in spec or spec[key] in (None, "", []):
            raise TaskError(f"{where}: missing key {key!r} (required: {', '.join(REQUIRED)})")
    unknown = [key for key in spec if key not in REQUIRED + OPTIONAL]
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(REQUIRED + OPTIONAL)})")


def _score(spec: dict, where: str) -> str:
    """The ``score`` key (letter by default), checked against the ``continuation`` it scores."""
    score = str(spec.get("score", "letter"))
    if score not in SCORES:
        raise TaskError(f"{where}: key 'score' must be one of {', '.join(SCORES)}, got {score!r}")
    if score == "letter" and "{text}" in str(spec.get("continuation", "")):
        raise TaskError(
            f"{where}: key 'continuation' names {{text}}, which letter scoring cannot score: use score: text"
        )
    return score


def _answer_as(spec: dict, where: str) -> str:
    """The ``answer_as`` key (index by default)."""
    answer_as = str(spec.get("answer_as", "index"))
    if answer_as not in ANSWER_FORMS:
        raise TaskError(f"{where}: key 'answer_as' must be one of {', '.join(ANSWER_FORMS)}, got {answer_as!r}")
    return answer_as


def _choices(spec: dict, where: str) -> tuple[str, ...] | str:
    """The ``choices`` key: a tuple of 2 to 26 fields, or the name of one field holding a list."""
    choices = spec["choices"]
    if isinstance(choices, list):
        choices = tuple(str(c) for c in choices)
        if not 2 <= len(choices) <= len(ALPHABET):
            raise TaskError(f"{where}: key 'choices' names {len(choices)} fields; a task has 2 to 26 choices")
    elif not isinstance(choices, str):
        raise TaskError(f"{where}: key 'choices' is a list of fields or one field holding a list")
    return choices


def _groups(spec: dict, where: str) -> tuple[str, ...]:
    """The ``groups`` key as a tuple of distinct field names that can name a grouping."""
    groups = spec["groups"]
    groups = tuple(str(g) for g in (groups if isinstance(groups, list) else [groups]))
    for g in groups:
        if g in RESERVED_GROUPS or not re.fullmatch(r"[A-Za-z0-9_ .-]+", g):
            raise TaskError(
                f"{where}: key 'groups': {g!r} cannot name a grouping "
                "(letters, digits, space, _ . - only; 'answer' is reserved)"
            )
    if len(set(groups)) != len(groups):
        raise TaskError(f"{where}: key 'groups' names a field twice")
    return groups


def _rename(spec: dict, where: str) -> dict:
    """The ``rename`` key: a mapping (empty when absent)."""
    rename = spec.get("rename") or {}
    if not isinstance(rename, dict):
        raise TaskError(f"{where}: key 'rename' is a mapping {{old field: new field}}")
    return rename


def _transform(spec: dict, where: str) -> list | None:
    """The ``transform`` key as a list of steps, each naming a built-in transform (None when absent)."""
    transform = spec.get("transform")
    if transform is None:
        return None
    from landscape.tasks.transforms import TRANSFORMS

    transform = transform if isinstance(transform, list) else [transform]
    for step in transform:
        if not isinstance(step, dict) or step.get("name") not in TRANSFORMS:
            raise TaskError(
                f"{where}: key 'transform' is a mapping (or a list of them) with a name among {', '.join(TRANSFORMS)}"
            )
    return transform


def _check_strings(spec: dict, where: str) -> None:
    """The keys that hold text hold a string (or a number, read as text)."""
    for key in STRING_KEYS:
        if key in spec and spec[key] is not None and not isinstance(spec[key], (str, int)):
            raise TaskError(f"{where}: key {key!r} must be a string")


def _name(spec: dict, where: str) -> str:
    """The ``name`` key, which condition names and the report title use."""
    name = str(spec["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise TaskError(f"{where}: key 'name': {name!r} may hold letters, digits, _ . - only")
    return name
