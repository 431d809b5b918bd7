"""Multiple-choice tasks as data: a YAML task file names a table and says how its rows become questions.

This package is the only place that knows a task's fields; every stage above it sees a ``Task``
(the prompt format, the choice labels, the names of the grouping fields) and its ``Item`` rows.
Built-in tasks are the ``*.yaml`` files beside this module (``landscape tasks`` lists them); a
user's task is any file with the same keys::

    name: arith                          # condition names and the report title use it
    source: questions.csv                # .csv, .jsonl, .json, .parquet; relative to the task file,
                                         # or package:<package>/<path> (a file a wheel ships)
    id: qid                              # optional; default: the row number (0-based). Unique
                                         # integers, or (any cell not one) strings, kept as given.
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

The package is one module per concern; everything is imported from ``landscape.tasks`` itself:

- ``landscape.tasks.task``: the ``Task`` and ``Item`` types, the keys and their defaults, ``TaskError``,
  and the ids as arrays (``id_array``, ``id_key``, ``text_ids``, ``same_ids``);
- ``landscape.tasks.parse``: task files, built-in (``BUILTIN_DIR``) or not, read and checked (``load_task``);
- ``landscape.tasks.rows``: the data file's rows read, prepared and checked into ``Item``s (``load_items``);
- ``landscape.tasks.transforms``: the built-in row transforms of the ``transform`` key;
- ``landscape.tasks.render``: the prompts (``render_prefix``, ``render_question``, ``continuations``);
- ``landscape.tasks.catalog``: the built-ins listed (``describe_builtins``) and a run's task (``from_run``).

Example:
    >>> task = load_task("mmlu")
    >>> task.name, task.groups, task.letters
    ('mmlu', ('subject',), ('A', 'B', 'C', 'D'))
"""

from landscape.files import MissingFile, file_sha256, package_file  # re-exported: callers use tasks.file_sha256
from landscape.tasks.catalog import describe_builtins, from_run
from landscape.tasks.parse import BUILTIN_DIR, DEFAULT_TASK, builtin_tasks, load_task, parse_task, resolve_task_path
from landscape.tasks.render import continuations, render_answer, render_header, render_prefix, render_question
from landscape.tasks.rows import load_items, read_table, source_path
from landscape.tasks.task import (
    ALPHABET,
    ANSWER_FORMS,
    FORMAT_DEFAULTS,
    OPTIONAL,
    PACKAGE_PREFIX,
    REQUIRED,
    RESERVED_GROUPS,
    SCORES,
    Item,
    Task,
    TaskError,
    id_array,
    id_key,
    same_ids,
    text_ids,
)

__all__ = [
    "ALPHABET",
    "ANSWER_FORMS",
    "BUILTIN_DIR",
    "DEFAULT_TASK",
    "FORMAT_DEFAULTS",
    "OPTIONAL",
    "PACKAGE_PREFIX",
    "REQUIRED",
    "RESERVED_GROUPS",
    "SCORES",
    "Item",
    "MissingFile",
    "Task",
    "TaskError",
    "builtin_tasks",
    "continuations",
    "describe_builtins",
    "file_sha256",
    "from_run",
    "id_array",
    "id_key",
    "load_items",
    "load_task",
    "package_file",
    "parse_task",
    "read_table",
    "render_answer",
    "render_header",
    "render_prefix",
    "render_question",
    "resolve_task_path",
    "same_ids",
    "source_path",
    "text_ids",
]
