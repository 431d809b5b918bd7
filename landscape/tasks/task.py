"""The ``Task`` and ``Item`` types, the keys of a task file and their defaults, and ``TaskError``.

A ``Task`` is a task file read and checked (``landscape.tasks.parse``); its ``Item``s are its data
rows read and checked (``landscape.tasks.rows``). Nothing here reads a file.

Example:
    >>> item = Item(7, ("anatomy",), "Which bone?", ("Femur", "Ulna"), 1)
    >>> item.group, item.choices[item.answer]
    ('anatomy', 'Ulna')
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PACKAGE_PREFIX = "package:"
ALPHABET = string.ascii_uppercase
ANSWER_FORMS = ("index", "letter", "text")
SCORES = ("letter", "text")
REQUIRED = ("name", "source", "question", "choices", "answer", "groups")
OPTIONAL = (
    "description",
    "control",
    "id",
    "answer_as",
    "header",
    "filter",
    "rename",
    "transform",
    "score",
    "prompt",
    "choice",
    "demo_answer",
    "continuation",
)
# The prompt format: MMLU's (Doimo et al. 2024, lm-eval) for letters; lm-eval's plain
# "question, then the answer's text" for text scoring, where the choices are not listed.
FORMAT_DEFAULTS = {
    "letter": {
        "prompt": "{question}\n{choices}Answer:",
        "choice": "{letter}. {text}\n",
        "demo_answer": " {letter}\n\n",
        "continuation": " {letter}",
    },
    "text": {
        "prompt": "{question}\nAnswer:",
        "choice": "{letter}. {text}\n",
        "demo_answer": " {text}\n\n",
        "continuation": " {text}",
    },
}
RESERVED_GROUPS = ("answer",)  # the answer is analysed as a grouping of its own


def id_array(ids: Iterable, *, text: bool = False) -> np.ndarray:
    """Task ids as one array: int64 for integer ids (as runs have always stored them), str for
    string ids (``text``: str even when there are none, e.g. an empty part of a string-id task).

    Example:
        >>> id_array([3, 7]).dtype, id_array(["test-00042", "arith/plus/17"]).tolist()
        (dtype('int64'), ['test-00042', 'arith/plus/17'])
        >>> same_ids(id_array([1, 2]), id_array(["1", "2"])), id_key(id_array(["a"])[0]), id_key(id_array([5])[0])
        (False, 'a', 5)
    """
    ids = list(ids)
    if text or any(isinstance(i, str) for i in ids):
        return np.array([str(i) for i in ids], dtype=str)
    return np.array(ids, dtype=np.int64)


def text_ids(ids: np.ndarray) -> bool:
    """Whether an array of ids holds strings (a string-id task) rather than integers."""
    return np.asarray(ids).dtype.kind in "USO"


def id_key(value: Any) -> int | str:
    """An id taken from an array as the ``Item.id`` it names (numpy scalars as Python's ``int`` or ``str``)."""
    return value.item() if isinstance(value, np.generic) else value


def same_ids(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays hold the same ids in the same order (an integer id never equals a string one)."""
    return len(a) == len(b) and text_ids(a) == text_ids(b) and bool(np.array_equal(a, b))


class TaskError(ValueError):
    """A task file, its data, or a request of its rows that cannot be met."""


@dataclass(frozen=True)
class Item:
    """One question of a task: ``groups`` holds the values of ``Task.groups``, in order; ``id``
    is an integer or a string (a task's ids are all one kind: ``id_array``)."""

    id: int | str
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
        return {
            "name": self.name,
            "score": self.score,
            "header": self.header,
            "prompt": self.prompt,
            "choice": self.choice,
            "demo_answer": self.demo_answer,
            "continuation": self.continuation,
        }
