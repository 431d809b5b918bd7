"""Which demonstrations precede each question: the demo-sampling controls of an ICL condition.

Demos are drawn by the task's first grouping field (MMLU: the subject; "value" below). With
``fixed`` demos (Doimo et al.'s recipe) every question of a value shares one prefix, so a cluster
of that value may only mean "these prompts begin with the same text". The other samplings take
that confound apart:

- ``fixed``: the value's first k pool demos, after the question's header (condition ``5shot``);
- ``resampled``: each question draws its own k demos from its value's pool (``5shot-resampled``);
- ``other-subject``: each question gets the fixed demos of another value, drawn at random; the
  header is still the question's own (``5shot-othersubject``);
- ``no-header``: the fixed demos with no header line, and no header at 0 shots (``5shot-noheader``).

Draws are seeded per question by (seed, value, question id: an integer id as itself, a string
id by its sha256), so adding questions or values changes no other question's demos. The pool is
the partition's ``demos`` part, disjoint from eval and train.

Example:
    >>> import numpy as np
    >>> pool = {"a": [1, 2, 3], "b": [4, 5, 6]}
    >>> plan = plan_demos(np.array([10, 11]), np.array(["a", "b"]), pool, k=2, sampling="other-subject", seed=0)
    >>> plan.demo_ids.tolist(), plan.headers.tolist()
    ([[4, 5], [1, 2]], ['a', 'b'])
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from landscape.names import SAMPLINGS, unknown
from landscape.tasks import text_ids

# Samplings that differ from ``fixed`` at 0 shots (no demos: only the header can change).
ZERO_SHOT_SAMPLINGS = ("fixed", "no-header")


@dataclass(frozen=True)
class DemoPlan:
    """Per row: ``headers`` (N,) the row's value, or '' for no header; ``demo_ids`` (N, k), of
    the dtype of the task's ids (int64, or str for string ids)."""

    headers: np.ndarray
    demo_ids: np.ndarray

    @property
    def demo_sets(self) -> np.ndarray:
        """(N,) int32: rows with the same demos in the same order share a number ("which demo set")."""
        if self.demo_ids.shape[1] == 0:
            return np.zeros(len(self.demo_ids), dtype=np.int32)
        return np.unique(self.demo_ids, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int32)


def _rng(seed: int, value: str, question_id: int | str, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(value.encode()), _id_seed(question_id), stream])


def _id_seed(question_id: int | str) -> int:
    """A question's id as seed entropy: an integer id itself, a string id its sha256's first 8 bytes."""
    if isinstance(question_id, str):  # np.str_ too
        return int.from_bytes(hashlib.sha256(str(question_id).encode()).digest()[:8], "little")
    return int(question_id)


def plan_demos(
    ids: np.ndarray, values: np.ndarray, pool: Mapping[str, Sequence[int | str]], *, k: int, sampling: str, seed: int
) -> DemoPlan:
    """The header and demos of every row (``ids``, ``values``: (N,), the first grouping field),
    drawn from ``pool[value]``."""
    if sampling not in SAMPLINGS:
        raise ValueError(unknown("demo sampling", sampling, SAMPLINGS))
    for value in set(values):
        if len(pool[value]) < k:
            raise ValueError(f"{k} shots asked but {value!r} has {len(pool[value])} demos in its pool")
    others = sorted(pool)
    if sampling == "other-subject" and len(others) < 2:
        raise ValueError("other-subject demos need at least two values of the first grouping field")
    text = text_ids(ids)  # string ids: the demos' ids are strings too
    demo_ids = np.empty((len(ids), k), dtype=object) if text else np.zeros((len(ids), k), dtype=np.int64)
    for row, (question, value) in enumerate(zip(ids, values, strict=True)):
        chosen: Sequence[int | str] | np.ndarray
        if sampling in ("fixed", "no-header"):
            chosen = pool[value][:k]
        elif sampling == "resampled":
            chosen = _rng(seed, value, question, 0).choice(pool[value], size=k, replace=False)
        else:
            candidates = [s for s in others if s != value]
            other = candidates[_rng(seed, value, question, 1).integers(len(candidates))]
            chosen = pool[other][:k]
        demo_ids[row] = chosen
    headers = np.array(["" if sampling == "no-header" else str(s) for s in values], dtype=object)
    return DemoPlan(headers=headers, demo_ids=demo_ids.astype(str) if text else demo_ids)
