"""Row transforms a task file can name (``transform: {name: ..., ...}``): one table, tasks of other
shapes. Each takes the filtered table and the transform's parameters and returns the table with
fields added; every draw is seeded per row, so a task file always gives the same rows.

- ``one_candidate`` (``choices``: the fields of a lettered row, ``answer``: its letter field,
  ``seed``): each row gets one proposed answer, the right one or (half of the rows, seeded by
  row number) one of the wrong ones drawn at random; fields ``candidate`` (its text),
  ``verdict`` ("True" or "False") and ``verdicts`` (the list ["True", "False"]).
- ``label_choices`` (``field``: a label field, ``k``: choices, ``seed``; or ``all: true``): the
  question becomes "which value of ``field`` is this row's?": ``label_choices`` holds k values of
  the field, the row's own at a position drawn uniformly (so every letter is right equally often)
  and k - 1 others drawn from the field's other values; with ``all: true``, every value of the
  field in sorted order, the same list for every row (so each letter stands for one value: a
  plain classification). ``label_answer`` is the position (0-based). The positive control
  ``mmlu-topic`` uses it: the subject of an MMLU question, a planted, learnable truth.
- ``buckets`` (``field``: a new field's name, ``n``, ``seed``): each row drawn into one of n
  buckets ``<field>-1`` .. ``<field>-n`` (seeded by row number). As the first group of a task
  whose answer is another group, the demos of a bucket mix the answers instead of repeating the
  question's own (which would give the answer away).

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"a": ["x", "p"], "b": ["y", "q"], "gold": ["A", "B"], "__row__": [0, 1]})
    >>> out = apply_transform(frame, {"name": "one_candidate", "choices": ["a", "b"], "answer": "gold", "seed": 2}, "t.yaml")
    >>> out[["candidate", "verdict"]].values.tolist()
    [['x', 'True'], ['p', 'False']]
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import numpy as np


def one_candidate(frame, params: Mapping[str, Any], where: str):
    from landscape.tasks import TaskError

    choices, answer, seed = params.get("choices"), params.get("answer"), int(params.get("seed", 0))
    if not isinstance(choices, list) or len(choices) < 2 or not isinstance(answer, str):
        raise TaskError(
            f"{where}: transform one_candidate needs choices (a list of fields) and answer (a letter field)"
        )
    for name in [*choices, answer]:
        if name not in frame.columns:
            raise TaskError(
                f"{where}: transform one_candidate names the field {name!r}, which the source does not have"
            )
    letters = string.ascii_uppercase[: len(choices)]
    candidates, verdicts = [], []
    for _, row in frame.iterrows():
        letter = str(row[answer]).strip()
        if letter not in letters:
            raise TaskError(f"{where}: row {int(row['__row__'])}: answer {letter!r} is not one of {', '.join(letters)}")
        right = letters.index(letter)
        rng = np.random.default_rng([seed, int(row["__row__"])])
        correct = bool(rng.integers(2))
        pick = right if correct else [i for i in range(len(choices)) if i != right][rng.integers(len(choices) - 1)]
        candidates.append(str(row[choices[pick]]).strip())
        verdicts.append("True" if correct else "False")
    frame = frame.copy()
    frame["candidate"] = candidates
    frame["verdict"] = verdicts
    frame["verdicts"] = [["True", "False"]] * len(frame)
    return frame


def label_choices(frame, params: Mapping[str, Any], where: str):
    from landscape.tasks import TaskError

    name, k, seed = params.get("field"), int(params.get("k", 4)), int(params.get("seed", 0))
    if name not in frame.columns:
        raise TaskError(f"{where}: transform label_choices names the field {name!r}, which the source does not have")
    values = sorted({str(v).strip() for v in frame[name]})
    if params.get("all"):
        if not 2 <= len(values) <= 26:
            raise TaskError(f"{where}: transform label_choices with all: the field has {len(values)} values, not 2..26")
        frame = frame.copy()
        frame["label_choices"] = [list(values)] * len(frame)
        frame["label_answer"] = [values.index(str(v).strip()) for v in frame[name]]
        return frame
    if not 2 <= k <= min(26, len(values)):
        raise TaskError(
            f"{where}: transform label_choices: k={k} needs 2..{min(26, len(values))} (the field has "
            f"{len(values)} values)"
        )
    choices, answers = [], []
    for value, row in zip(frame[name], frame["__row__"], strict=True):
        own = str(value).strip()
        rng = np.random.default_rng([seed, int(row)])
        others = [v for v in values if v != own]
        drawn = [others[i] for i in rng.choice(len(others), size=k - 1, replace=False)]
        position = int(rng.integers(k))
        choices.append([*drawn[:position], own, *drawn[position:]])
        answers.append(position)
    frame = frame.copy()
    frame["label_choices"] = choices
    frame["label_answer"] = answers
    return frame


def buckets(frame, params: Mapping[str, Any], where: str):
    from landscape.tasks import TaskError

    name, n, seed = params.get("field"), int(params.get("n", 4)), int(params.get("seed", 0))
    if not isinstance(name, str) or not name or n < 1:
        raise TaskError(f"{where}: transform buckets needs field (a new field's name) and n >= 1")
    frame = frame.copy()
    frame[name] = [f"{name}-{int(np.random.default_rng([seed, int(row)]).integers(n)) + 1}" for row in frame["__row__"]]
    return frame


TRANSFORMS = {"one_candidate": one_candidate, "label_choices": label_choices, "buckets": buckets}


def apply_transform(frame, spec: Mapping[str, Any], where: str):
    params = {k: v for k, v in spec.items() if k != "name"}
    return TRANSFORMS[spec["name"]](frame, params, where)
