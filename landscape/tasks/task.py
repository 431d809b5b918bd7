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
from dataclasses import dataclass, field
from typing import Any, Mapping

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
