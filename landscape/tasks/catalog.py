"""Tasks with their rows read: the listing of the built-ins, and the task a run was made with.

``describe_builtins`` is what ``landscape tasks`` prints; ``from_run`` gives the later stages
(fine-tuning, the report) the task file stored in a run and the very data file it was made from.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

from landscape.files import file_sha256
from landscape.tasks.parse import builtin_tasks, load_task, parse_task
from landscape.tasks.rows import load_items, source_path
from landscape.tasks.task import Item, Task, TaskError


def describe_builtins() -> list[dict]:
    """name, description, source, rows, choices, groups of every built-in task (reads each source)."""
    out = []
    for name in builtin_tasks():
        task = load_task(name)
        row: dict[str, Any] = {
            "name": name,
            "description": task.description,
            "source": task.source,
            "groups": list(task.groups),
            "score": task.score,
        }
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
    candidates = _data_candidates(task, attrs, data_path)
    for path in candidates:
        if path.is_file() and file_sha256(path) == attrs.get("dataset_hash"):
            task, items = load_items(task, path)
            return task, items, path
    tried = ", ".join(str(p) for p in candidates) or "nothing"
    raise TaskError(
        f"the data file of task {task.name!r} this run was made from is not at hand (tried {tried}; "
        "sha256 must match): pass --task-data FILE"
    )


def _data_candidates(task: Task, attrs: Mapping[str, Any], data_path: str | Path | None) -> list[Path]:
    """Where the run's data file may be, in order: ``data_path`` alone, else the run's record and the source."""
    candidates = [Path(data_path)] if data_path else [Path(p) for p in (attrs.get("dataset_path"),) if p]
    if not data_path:
        with suppress(TaskError):
            candidates.append(source_path(task))
    return candidates
