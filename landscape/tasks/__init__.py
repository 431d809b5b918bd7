"""Multiple-choice tasks as data: a YAML task file names a table and says how its rows become questions.

This package is the only place that knows a task's fields; every stage above it sees a ``Task``
(the prompt format, the choice labels, the names of the grouping fields) and its ``Item`` rows.
Built-in tasks are the ``*.yaml`` files beside this module (``landscape tasks`` lists them); a
user's task is any file with the same keys::

    name: arith                          # condition names and the report title use it
    source: questions.csv                # .csv, .jsonl, .json, .parquet; relative to the task file,
                                         # or package:<package>/<path> (a file a wheel ships)
    id: qid                              # optional; default: the row number (0-based). Unique.
    question: "What is {a} {sym} {b}?"   # str.format template over the row's fields
    choices: [c1, c2, c3]                # several fields, or one field holding a list
    answer: gold                         # the field holding the right choice
    answer_as: letter                    # index (0-based) | letter | text (the choice's own text)
    groups: [op, size]                   # label fields; the first one draws demos and is selected
    header: "Questions about {op}.\\n\\n"  # optional; a template over the row's fields

Optional keys: ``description``; ``control`` (true for a positive control: a task whose truth is
planted and learnable; the report then asks "does the suite detect a real effect?"); ``filter`` (a pandas query keeping rows, e.g. to drop header
rows); ``rename`` (``{old: new}`` field names, applied first); ``transform`` (a built-in row
transform of ``landscape.tasks.transforms`` with its parameters, or a list of them, applied in
order after the filter, e.g. ``{name: one_candidate, ...}``: they add fields, so one table gives
tasks of other shapes); ``score`` (``letter``: the
letters' logits at the last prompt token, or ``text``: each choice's text scored as a
continuation); and the prompt format, whose defaults are MMLU's (letter scoring) or lm-eval's
(text scoring): ``prompt`` (``{question}``, ``{choices}`` and any field), ``choice``
(``{letter}``, ``{text}``: one line per choice, joined into ``{choices}``), ``demo_answer`` and
``continuation`` (``{letter}``, ``{text}``: what follows a demonstration, and the scored
continuation). Text cells are stripped of surrounding whitespace.

Every error names the file, the key or row, and what is wrong (``TaskError``, one line).

Example:
    >>> task = load_task("mmlu")
    >>> task.name, task.groups, task.letters
    ('mmlu', ('subject',), ('A', 'B', 'C', 'D'))
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from landscape.files import MissingFile, file_sha256, package_file

BUILTIN_DIR = Path(__file__).parent
DEFAULT_TASK = "mmlu"
PACKAGE_PREFIX = "package:"
ALPHABET = string.ascii_uppercase
ANSWER_FORMS = ("index", "letter", "text")
SCORES = ("letter", "text")
REQUIRED = ("name", "source", "question", "choices", "answer", "groups")
OPTIONAL = ("description", "control", "id", "answer_as", "header", "filter", "rename", "transform", "score", "prompt", "choice",
            "demo_answer", "continuation")
# The prompt format: MMLU's (Doimo et al. 2024, lm-eval) for letters; lm-eval's plain
# "question, then the answer's text" for text scoring, where the choices are not listed.
FORMAT_DEFAULTS = {
    "letter": {"prompt": "{question}\n{choices}Answer:", "choice": "{letter}. {text}\n",
               "demo_answer": " {letter}\n\n", "continuation": " {letter}"},
    "text": {"prompt": "{question}\nAnswer:", "choice": "{letter}. {text}\n",
             "demo_answer": " {text}\n\n", "continuation": " {text}"},
}
RESERVED_GROUPS = ("answer",)  # the answer is analysed as a grouping of its own


class TaskError(ValueError):
    """A task file, its data, or a request of its rows that cannot be met."""


@dataclass(frozen=True)
class Item:
    """One question of a task: ``groups`` holds the values of ``Task.groups``, in order."""

    id: int
    groups: tuple[str, ...]
    question: str  # the rendered ``question`` template
    choices: tuple[str, ...]
    answer: int  # 0-based index into ``choices``
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def group(self) -> str:
        """The value of the first group (the one demos are drawn by)."""
        return self.groups[0]


@dataclass(frozen=True)
class Task:
    """A parsed task file. ``text`` is the file as written (stored in every run), ``sha256`` its hash."""

    name: str
    path: str  # the task file, or builtin:<name>
    text: str
    source: str
    question: str
    choices: tuple[str, ...] | str
    answer: str
    answer_as: str
    groups: tuple[str, ...]
    header: str = ""
    id: str | None = None
    description: str = ""
    control: bool = False
    filter: str | None = None
    rename: Mapping[str, str] = field(default_factory=dict)
    transform: list[Mapping[str, Any]] | None = None
    score: str = "letter"
    prompt: str = FORMAT_DEFAULTS["letter"]["prompt"]
    choice: str = FORMAT_DEFAULTS["letter"]["choice"]
    demo_answer: str = FORMAT_DEFAULTS["letter"]["demo_answer"]
    continuation: str = FORMAT_DEFAULTS["letter"]["continuation"]
    n_choices: int = 0  # set once the data is read (load_items); 0 before

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def letters(self) -> tuple[str, ...]:
        """The choice labels A, B, ... (as many as the task has choices)."""
        n = self.n_choices or (len(self.choices) if isinstance(self.choices, tuple) else 0)
        return tuple(ALPHABET[:n])

    @property
    def first_group(self) -> str:
        return self.groups[0]

    def format_dict(self) -> dict:
        """The prompt format, as recorded with every condition."""
        return {"name": self.name, "score": self.score, "header": self.header, "prompt": self.prompt,
                "choice": self.choice, "demo_answer": self.demo_answer, "continuation": self.continuation}


# ---------------------------------------------------------------- task files


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
    import yaml

    where = str(path)
    try:
        spec = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise TaskError(f"{where}:{at} YAML syntax error: {problem}") from None
    if not isinstance(spec, dict):
        raise TaskError(f"{where}: a task file is a mapping of keys (name, source, question, ...)")
    for key in REQUIRED:
        if key not in spec or spec[key] in (None, "", []):
            raise TaskError(f"{where}: missing key {key!r} (required: {', '.join(REQUIRED)})")
    unknown = [key for key in spec if key not in REQUIRED + OPTIONAL]
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(REQUIRED + OPTIONAL)})")
    score = str(spec.get("score", "letter"))
    if score not in SCORES:
        raise TaskError(f"{where}: key 'score' must be one of {', '.join(SCORES)}, got {score!r}")
    if score == "letter" and "{text}" in str(spec.get("continuation", "")):
        raise TaskError(f"{where}: key 'continuation' names {{text}}, which letter scoring cannot score: use score: text")
    answer_as = str(spec.get("answer_as", "index"))
    if answer_as not in ANSWER_FORMS:
        raise TaskError(f"{where}: key 'answer_as' must be one of {', '.join(ANSWER_FORMS)}, got {answer_as!r}")
    choices = spec["choices"]
    if isinstance(choices, list):
        choices = tuple(str(c) for c in choices)
        if not 2 <= len(choices) <= len(ALPHABET):
            raise TaskError(f"{where}: key 'choices' names {len(choices)} fields; a task has 2 to 26 choices")
    elif not isinstance(choices, str):
        raise TaskError(f"{where}: key 'choices' is a list of fields or one field holding a list")
    groups = spec["groups"]
    groups = tuple(str(g) for g in (groups if isinstance(groups, list) else [groups]))
    for g in groups:
        if g in RESERVED_GROUPS or not re.fullmatch(r"[A-Za-z0-9_ .-]+", g):
            raise TaskError(f"{where}: key 'groups': {g!r} cannot name a grouping "
                            "(letters, digits, space, _ . - only; 'answer' is reserved)")
    if len(set(groups)) != len(groups):
        raise TaskError(f"{where}: key 'groups' names a field twice")
    rename = spec.get("rename") or {}
    if not isinstance(rename, dict):
        raise TaskError(f"{where}: key 'rename' is a mapping {{old field: new field}}")
    transform = spec.get("transform")
    if transform is not None:
        from landscape.tasks.transforms import TRANSFORMS

        transform = transform if isinstance(transform, list) else [transform]
        for step in transform:
            if not isinstance(step, dict) or step.get("name") not in TRANSFORMS:
                raise TaskError(f"{where}: key 'transform' is a mapping (or a list of them) with a name among "
                                f"{', '.join(TRANSFORMS)}")
    strings = {key: spec[key] for key in ("name", "source", "question", "answer", "header", "description", "filter",
                                           "prompt", "choice", "demo_answer", "continuation", "id") if key in spec}
    for key, value in strings.items():
        if value is not None and not isinstance(value, (str, int)):
            raise TaskError(f"{where}: key {key!r} must be a string")
    name = str(spec["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise TaskError(f"{where}: key 'name': {name!r} may hold letters, digits, _ . - only")
    defaults = FORMAT_DEFAULTS[score]
    return Task(
        name=name, path=where, text=text, source=str(spec["source"]), question=str(spec["question"]),
        choices=choices, answer=str(spec["answer"]), answer_as=answer_as, groups=groups,
        header=str(spec.get("header") or ""), id=None if spec.get("id") is None else str(spec["id"]),
        description=str(spec.get("description") or ""), control=bool(spec.get("control", False)),
        filter=spec.get("filter"),
        rename={str(k): str(v) for k, v in rename.items()}, transform=transform, score=score,
        **{key: str(spec.get(key, defaults[key])) for key in defaults},
    )


def source_path(task: Task, override: str | Path | None = None) -> Path:
    """The data file of ``task``: ``override`` if given, a file a package ships, or a path
    relative to the task file. The package is located without being imported."""
    if override is not None:
        return Path(override)
    if task.source.startswith(PACKAGE_PREFIX):
        package, _, relpath = task.source[len(PACKAGE_PREFIX):].partition("/")
        try:
            return package_file(package, relpath)
        except MissingFile as error:
            raise TaskError(f"{task.path}: source: {error}") from None
    path = Path(task.source)
    if not path.is_absolute() and not task.path.startswith("<"):
        path = Path(task.path).parent / path
    return path


# ---------------------------------------------------------------- rows


def read_table(path: Path, where: str):
    """The source file as a pandas DataFrame (its row order kept); errors name the file."""
    import pandas as pd

    if not path.is_file():
        raise TaskError(f"{where}: source file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":  # every cell as text, empty cells as "" (not NaN)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        elif suffix == ".json":
            frame = pd.read_json(path, dtype=False, convert_dates=False)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise TaskError(f"{where}: source {path.name}: unknown format {suffix!r} (.csv, .jsonl, .json, .parquet)")
    except TaskError:
        raise
    except Exception as error:  # pandas' parsers raise many kinds
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TaskError(f"{where}: cannot read source {path}: {first}") from None
    if frame.empty:
        raise TaskError(f"{where}: source {path} holds no rows")
    return frame.reset_index(drop=True)


def _cell(value: Any) -> Any:
    """A table cell as the templates see it: text stripped, numpy scalars as Python values."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _missing(value: Any) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    try:
        return bool(isinstance(value, float) and np.isnan(value))
    except TypeError:
        return False


def _template_fields(template: str, where: str, key: str) -> set[str]:
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as error:
        raise TaskError(f"{where}: key {key!r}: bad template ({error})") from None


def _list_cell(value: Any) -> list | None:
    """A cell that holds a list of choices: a list, an array, or JSON text of a list."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


def load_items(task: Task, data_path: str | Path | None = None) -> tuple[Task, list[Item]]:
    """Read the task's rows into ``Item``s, checking every row; returns the task with its choice
    count set, and the items in source order. ``data_path`` replaces the task's ``source``."""
    where = task.path
    path = source_path(task, data_path)
    frame = read_table(path, where)
    if task.rename:
        missing = [old for old in task.rename if old not in frame.columns]
        if missing:
            raise TaskError(f"{where}: key 'rename': no field {missing[0]!r} in {path.name}")
        frame = frame.rename(columns=task.rename)
    frame["__row__"] = np.arange(len(frame))
    if task.filter:
        try:
            frame = frame.query(task.filter, engine="python")
        except Exception as error:
            raise TaskError(f"{where}: key 'filter': {str(error).splitlines()[0]}") from None
        if frame.empty:
            raise TaskError(f"{where}: key 'filter' keeps no row of {path.name}")
    if task.transform:
        from landscape.tasks.transforms import apply_transform

        for step in task.transform:
            frame = apply_transform(frame, step, where)
    columns = [str(c) for c in frame.columns if c != "__row__"]
    known = set(columns)

    def need(key: str, names) -> None:
        for name in names:
            if name not in known:
                raise TaskError(f"{where}: key {key!r} names the field {name!r}, which {path.name} does not have "
                                f"(fields: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})")

    need("question", _template_fields(task.question, where, "question"))
    need("header", _template_fields(task.header, where, "header"))
    need("prompt", _template_fields(task.prompt, where, "prompt") - {"question", "choices"})
    for key in ("choice", "demo_answer", "continuation"):
        extra = _template_fields(getattr(task, key), where, key) - {"letter", "text"}
        if extra:
            raise TaskError(f"{where}: key {key!r} may use {{letter}} and {{text}} only, not {{{sorted(extra)[0]}}}")
    need("answer", [task.answer])
    need("groups", task.groups)
    need("choices", [task.choices] if isinstance(task.choices, str) else task.choices)
    if task.id is not None:
        need("id", [task.id])

    records = frame.to_dict("records")
    items, seen, n_choices = [], {}, None
    for record in records:
        fields = {str(k): _cell(v) for k, v in record.items() if k != "__row__"}
        row = int(record["__row__"])
        at = f"{where}: {path.name} row {row}"
        if isinstance(task.choices, str):
            choices = _list_cell(record[task.choices])
            if choices is None:
                raise TaskError(f"{at}: field {task.choices!r} does not hold a list of choices")
        else:
            choices = [record[c] for c in task.choices]
        choices = tuple("" if _missing(c) else str(_cell(c)) for c in choices)
        if not 2 <= len(choices) <= len(ALPHABET):
            raise TaskError(f"{at}: {len(choices)} choices; a task has 2 to 26")
        if n_choices is None:
            n_choices = len(choices)
        elif len(choices) != n_choices:
            raise TaskError(f"{at}: {len(choices)} choices, but earlier rows have {n_choices} (all rows need the same number)")
        answer = _answer_index(fields[task.answer], choices, task.answer_as, at, task.answer)
        groups = []
        for g in task.groups:
            if _missing(fields[g]):
                raise TaskError(f"{at}: group field {g!r} is empty")
            groups.append(str(fields[g]))
        if task.id is None:
            item_id = row
        else:
            try:
                item_id = int(fields[task.id])
            except (TypeError, ValueError):
                raise TaskError(f"{at}: id field {task.id!r} holds {fields[task.id]!r}, not an integer") from None
        if item_id in seen:
            raise TaskError(f"{at}: duplicate id {item_id} (also row {seen[item_id]})")
        seen[item_id] = row
        try:
            question = task.question.format(**fields)
        except (KeyError, IndexError, ValueError, AttributeError) as error:
            raise TaskError(f"{at}: key 'question' cannot be filled ({type(error).__name__}: {error})") from None
        items.append(Item(id=item_id, groups=tuple(groups), question=question, choices=choices, answer=answer,
                          fields=fields))
    if not items:
        raise TaskError(f"{where}: source {path} holds no rows")
    return _with_choices(task, n_choices), items


def _with_choices(task: Task, n: int) -> Task:
    if isinstance(task.choices, tuple) and len(task.choices) != n:
        raise TaskError(f"{task.path}: key 'choices' names {len(task.choices)} fields but rows have {n}")
    return replace(task, n_choices=n)


def _answer_index(value: Any, choices: tuple[str, ...], form: str, at: str, key: str) -> int:
    """The 0-based index of the right choice, from the answer field as ``answer_as`` reads it."""
    k = len(choices)
    if _missing(value):
        raise TaskError(f"{at}: answer field {key!r} is empty")
    if form == "index":
        try:
            index = int(str(value).strip())
        except ValueError:
            raise TaskError(f"{at}: answer {value!r} is not a 0-based index") from None
        if not 0 <= index < k:
            raise TaskError(f"{at}: answer index {index} out of range 0..{k - 1}")
        return index
    if form == "letter":
        letter = str(value).strip()
        if len(letter) != 1 or letter not in ALPHABET[:k]:
            raise TaskError(f"{at}: answer {value!r} is not one of the letters {ALPHABET[0]}..{ALPHABET[k - 1]}")
        return ALPHABET.index(letter)
    text = str(_cell(value))
    matches = [i for i, c in enumerate(choices) if c == text]
    if not matches:
        raise TaskError(f"{at}: answer {text!r} is not one of the choices")
    if len(matches) > 1:
        raise TaskError(f"{at}: answer {text!r} matches {len(matches)} choices")
    return matches[0]


# ---------------------------------------------------------------- prompts


def render_question(task: Task, item: Item) -> str:
    """The question part of a prompt: the question, its choices, and the cue whose last token is read.

    Example:
        >>> task = load_task("mmlu")
        >>> item = Item(0, ("anatomy",), "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 0)
        >>> print(render_question(task, item))
        Which bone?
        A. Femur
        B. Ulna
        C. Skull
        D. Rib
        Answer:
    """
    choices = "".join(task.choice.format(letter=l, text=t) for l, t in zip(ALPHABET, item.choices))
    return task.prompt.format(**{**item.fields, "question": item.question, "choices": choices})


def render_header(task: Task, item: Item) -> str:
    """The header line(s) of ``item``'s prompt, filled from its fields ('' when the task has none)."""
    return task.header.format(**item.fields) if task.header else ""


def render_prefix(task: Task, header_item: Item | None, demos: list[Item]) -> str:
    """Header (of ``header_item``; none when None) plus demonstrations, each ending in its answer.

    Example:
        >>> task = load_task("mmlu")
        >>> item = Item(0, ("anatomy",), "Which bone?", ("Femur", "Ulna", "Skull", "Rib"), 0, {"subject": "anatomy"})
        >>> render_prefix(task, item, [item])[-18:]
        'D. Rib\\nAnswer: A\\n\\n'
    """
    parts = [render_header(task, header_item)] if header_item is not None else []
    for demo in demos:
        parts.append(render_question(task, demo) + render_answer(task, task.demo_answer, demo.choices, demo.answer))
    return "".join(parts)


def render_answer(task: Task, template: str, choices: tuple[str, ...], index: int) -> str:
    return template.format(letter=ALPHABET[index], text=choices[index])


def continuations(task: Task, item: Item) -> list[str]:
    """The scored continuation of each choice (``" A"``, ``" B"``, ... with letter scoring)."""
    return [render_answer(task, task.continuation, item.choices, i) for i in range(len(item.choices))]


def describe_builtins() -> list[dict]:
    """name, description, source, rows, choices, groups of every built-in task (reads each source)."""
    out = []
    for name in builtin_tasks():
        task = load_task(name)
        row = {"name": name, "description": task.description, "source": task.source, "groups": list(task.groups),
               "score": task.score}
        try:
            task, items = load_items(task)
            row.update(rows=len(items), choices=task.n_choices)
        except TaskError as error:
            row.update(rows=None, choices=None, error=str(error))
        out.append(row)
    return out


def from_run(attrs: Mapping[str, Any], data_path: str | Path | None = None) -> tuple[Task, list[Item], Path]:
    """The task a run was made with (the task file's text stored in it, not today's file) and its
    rows, read from the very data file: ``data_path``, else where the run found it, else the
    task's source; its sha256 must match the run's."""
    if "task_text" not in attrs:
        raise TaskError("the run records no task (made before tasks were data files): extract it again")
    task = parse_task(attrs["task_text"], attrs.get("task_file", "<task>"))
    candidates = [Path(data_path)] if data_path else [Path(p) for p in (attrs.get("dataset_path"),) if p]
    if not data_path:
        try:
            candidates.append(source_path(task))
        except TaskError:
            pass
    for path in candidates:
        if path.is_file() and file_sha256(path) == attrs.get("dataset_hash"):
            task, items = load_items(task, path)
            return task, items, path
    tried = ", ".join(str(p) for p in candidates) or "nothing"
    raise TaskError(f"the data file of task {task.name!r} this run was made from is not at hand (tried {tried}; "
                    "sha256 must match): pass --task-data FILE")
