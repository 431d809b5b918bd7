"""A task's data: find and read its table, prepare its rows, and check every row into an ``Item``.

``load_items`` reads top-down: the source file (``source_path``, ``read_table``), the rows
prepared as the task file says (rename, filter, transforms), the fields every template and key
names checked against the table, then each row read into an ``Item`` (its choices, answer, groups,
id and question). Every error names the file, and the row where one is to blame.
"""

from __future__ import annotations

import json
import string
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from landscape.files import MissingFile, package_file
from landscape.tasks.task import ALPHABET, PACKAGE_PREFIX, Item, Task, TaskError

ROW = "__row__"  # the column that keeps each row's number in the source file through filter and transforms


def source_path(task: Task, override: str | Path | None = None) -> Path:
    """The data file of ``task``: ``override`` if given, a file a package ships, or a path
    relative to the task file. The package is located without being imported."""
    if override is not None:
        return Path(override)
    if task.source.startswith(PACKAGE_PREFIX):
        package, _, relpath = task.source[len(PACKAGE_PREFIX) :].partition("/")
        try:
            return package_file(package, relpath)
        except MissingFile as error:
            raise TaskError(f"{task.path}: source: {error}") from None
    path = Path(task.source)
    if not path.is_absolute() and not task.path.startswith("<"):
        path = Path(task.path).parent / path
    return path


def read_table(path: Path, where: str):
    """The source file as a pandas DataFrame (its row order kept); errors name the file."""
    if not path.is_file():
        raise TaskError(f"{where}: source file {path} does not exist")
    try:
        frame = _read_frame(path, where)
    except TaskError:
        raise
    except Exception as error:  # pandas' parsers raise many kinds
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TaskError(f"{where}: cannot read source {path}: {first}") from None
    if frame.empty:
        raise TaskError(f"{where}: source {path} holds no rows")
    return frame.reset_index(drop=True)


def load_items(task: Task, data_path: str | Path | None = None) -> tuple[Task, list[Item]]:
    """Read the task's rows into ``Item``s, checking every row; returns the task with its choice
    count set, and the items in source order. ``data_path`` replaces the task's ``source``."""
    path = source_path(task, data_path)
    frame = _prepare_rows(task, read_table(path, task.path), path)
    _check_fields(task, [str(c) for c in frame.columns if c != ROW], path)
    items, n_choices = _read_items(task, frame, path)
    return _with_choices(task, n_choices), items


# ---------------------------------------------------------------- the table


def _read_frame(path: Path, where: str):
    """The file parsed by its suffix: every CSV cell as text, empty cells as "" (not NaN)."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    if suffix == ".json":
        return pd.read_json(path, dtype=False, convert_dates=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    raise TaskError(f"{where}: source {path.name}: unknown format {suffix!r} (.csv, .jsonl, .json, .parquet)")


def _prepare_rows(task: Task, frame, path: Path):
    """The rows as the task file asks: fields renamed, rows numbered, filtered, then transformed."""
    frame = _rename(task, frame, path)
    frame[ROW] = np.arange(len(frame))
    frame = _filter(task, frame, path)
    return _transform(task, frame)


def _rename(task: Task, frame, path: Path):
    """The ``rename`` key applied; every old name must be a field."""
    if not task.rename:
        return frame
    missing = [old for old in task.rename if old not in frame.columns]
    if missing:
        raise TaskError(f"{task.path}: key 'rename': no field {missing[0]!r} in {path.name}")
    return frame.rename(columns=task.rename)


def _filter(task: Task, frame, path: Path):
    """The rows the ``filter`` query keeps (at least one)."""
    if not task.filter:
        return frame
    try:
        frame = frame.query(task.filter, engine="python")
    except Exception as error:
        raise TaskError(f"{task.path}: key 'filter': {str(error).splitlines()[0]}") from None
    if frame.empty:
        raise TaskError(f"{task.path}: key 'filter' keeps no row of {path.name}")
    return frame


def _transform(task: Task, frame):
    """The ``transform`` steps applied in order."""
    if not task.transform:
        return frame
    from landscape.tasks.transforms import apply_transform

    for step in task.transform:
        frame = apply_transform(frame, step, task.path)
    return frame


# ---------------------------------------------------------------- the fields the task names


def _check_fields(task: Task, columns: list[str], path: Path) -> None:
    """Every field a template or key names is a column; the answer templates use letter and text only."""
    where, known = task.path, set(columns)

    def need(key: str, names) -> None:
        for name in names:
            if name not in known:
                raise TaskError(
                    f"{where}: key {key!r} names the field {name!r}, which {path.name} does not have "
                    f"(fields: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})"
                )

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


def _template_fields(template: str, where: str, key: str) -> set[str]:
    """The fields a ``str.format`` template names (``{a.b}`` and ``{a[0]}`` name ``a``)."""
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as error:
        raise TaskError(f"{where}: key {key!r}: bad template ({error})") from None


# ---------------------------------------------------------------- rows into items


class _ItemParts(TypedDict):
    """An ``Item``'s parts but its id (set once every row's id cell is read: ``_ids``)."""

    groups: tuple[str, ...]
    question: str
    choices: tuple[str, ...]
    answer: int
    fields: dict[str, Any]


def _read_items(task: Task, frame, path: Path) -> tuple[list[Item], int]:
    """Every row as an ``Item``, in source order, and the choice count they all share."""
    rows: list[tuple[int, Any, _ItemParts]] = []
    n_choices: int | None = None
    for record in frame.to_dict("records"):
        fields = {str(k): _cell(v) for k, v in record.items() if k != ROW}
        row = int(record[ROW])
        at = f"{task.path}: {path.name} row {row}"
        choices = _row_choices(task, record, at)
        n_choices = _same_count(choices, n_choices, at)
        answer = _answer_index(fields[task.answer], choices, task.answer_as, at, task.answer)
        groups = _row_groups(task, fields, at)
        rows.append(
            (
                row,
                _row_id(task, fields, row, at),
                _ItemParts(
                    groups=groups,
                    question=_row_question(task, fields, at),
                    choices=choices,
                    answer=answer,
                    fields=fields,
                ),
            )
        )
    if not rows or n_choices is None:  # (a row sets n_choices)
        raise TaskError(f"{task.path}: source {path} holds no rows")
    ids = _ids([cell for _, cell, _ in rows])
    seen: dict = {}
    for item_id, (row, _, _) in zip(ids, rows, strict=True):
        if item_id in seen:
            raise TaskError(f"{task.path}: {path.name} row {row}: duplicate id {item_id!r} (also row {seen[item_id]})")
        seen[item_id] = row
    return [Item(id=item_id, **parts) for item_id, (_, _, parts) in zip(ids, rows, strict=True)], n_choices


def _row_choices(task: Task, record: dict, at: str) -> tuple[str, ...]:
    """The row's choices as text (several fields, or one field holding a list), 2 to 26 of them."""
    if isinstance(task.choices, str):
        cells = _list_cell(record[task.choices])
        if cells is None:
            raise TaskError(f"{at}: field {task.choices!r} does not hold a list of choices")
    else:
        cells = [record[c] for c in task.choices]
    choices = tuple("" if _missing(c) else str(_cell(c)) for c in cells)
    if not 2 <= len(choices) <= len(ALPHABET):
        raise TaskError(f"{at}: {len(choices)} choices; a task has 2 to 26")
    return choices


def _same_count(choices: tuple[str, ...], n_choices: int | None, at: str) -> int:
    """The choice count of every row so far: the first row's, which each later row must match."""
    if n_choices is None:
        return len(choices)
    if len(choices) != n_choices:
        raise TaskError(
            f"{at}: {len(choices)} choices, but earlier rows have {n_choices} (all rows need the same number)"
        )
    return n_choices


def _row_groups(task: Task, fields: dict, at: str) -> tuple[str, ...]:
    """The values of the task's group fields, none empty."""
    groups = []
    for g in task.groups:
        if _missing(fields[g]):
            raise TaskError(f"{at}: group field {g!r} is empty")
        groups.append(str(fields[g]))
    return tuple(groups)


def _row_id(task: Task, fields: dict, row: int, at: str) -> Any:
    """The row's id cell (its row number when the task names no ``id`` field); an empty one is an error."""
    if task.id is None:
        return row
    if _missing(fields[task.id]):  # text cells are stripped: blank is empty
        raise TaskError(f"{at}: id field {task.id!r} is empty")
    return fields[task.id]


def _ids(cells: list) -> list[int | str]:
    """The task's ids from its rows' id cells: integers where every cell is one (as text or a
    number), else every cell as text, as written (a table keys its rows by one kind of id)."""
    numbers: list[int | str] = [n for n in map(_integer, cells) if n is not None]
    if len(numbers) == len(cells):
        return numbers
    return [str(cell) for cell in cells]


def _integer(cell: Any) -> int | None:
    """An id cell as an integer (``42``, ``"42"``, ``42.0``), or None when it is not one."""
    if isinstance(cell, float):
        return int(cell) if cell.is_integer() else None
    if isinstance(cell, int):
        return int(cell)
    try:
        return int(str(cell))
    except ValueError:
        return None


def _row_question(task: Task, fields: dict, at: str) -> str:
    """The ``question`` template filled from the row's fields."""
    try:
        return task.question.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as error:
        raise TaskError(f"{at}: key 'question' cannot be filled ({type(error).__name__}: {error})") from None


def _with_choices(task: Task, n: int) -> Task:
    """The task with its choice count set from the rows (which must match its choice fields)."""
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


# ---------------------------------------------------------------- cells


def _cell(value: Any) -> Any:
    """A table cell as the templates see it: text stripped, numpy scalars as Python values."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _missing(value: Any) -> bool:
    """An empty cell: None, "", or NaN."""
    if value is None or (isinstance(value, str) and value == ""):
        return True
    try:
        return bool(isinstance(value, float) and np.isnan(value))
    except TypeError:
        return False


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
