"""Which of a task's rows a run uses: values of the first group, and seeded per-value partitions.

A task (``landscape.tasks``) gives its rows as ``Item``s; the first of its groups (e.g. MMLU's
subject) is the one selected here (``--subjects``) and the one demonstrations are drawn by.
Each selected value's rows are shuffled with a seed and cut, in this order, into ``demos`` (the
pool k-shot demonstrations come from), ``eval`` (up to ``per_subject``) and ``train`` (for
fine-tuning). Taking eval before train means a larger train budget never changes the eval set;
the same seed always gives the same partition, and adding a value leaves the others' unchanged.
``train_first`` cuts train before eval instead: every value gets its training rows even when
``per_subject`` exceeds what it has (the paper's recipe: 20 training questions of each of the 57
subjects, then up to 200 to evaluate; its training rows came from MMLU's dev and validation
splits, which the data wheel does not ship, so here they are the test split's, disjoint from eval).
``train_values`` trains on other values than the evaluated ones (``select_train_values``:
``others`` is the paper's fine-tune, ~20 questions of every subject not evaluated): a value only
trained on gives its first ``train_per_subject`` shuffled rows, an evaluated one not among them
gives none, and the evaluated values' demos and eval rows are exactly those of a run without it.

Example:
    >>> from landscape.tasks import Item
    >>> items = [Item(i, ("s",), "q?", ("a", "b", "c", "d"), i % 4) for i in range(30)]
    >>> p = make_partition(items, ["s"], demo_pool=5, per_subject=10, train_per_subject=8, seed=0)
    >>> len(p.demos["s"]), len(p.eval), len(p.train)
    (5, 10, 8)
    >>> p = make_partition(items, ["s"], demo_pool=5, per_subject=200, train_per_subject=8, seed=0, train_first=True)
    >>> len(p.eval), len(p.train), p.settings["train_first"]
    (17, 8, True)
    >>> items += [Item(30 + i, ("t",), "q?", ("a", "b", "c", "d"), i % 4) for i in range(30)]
    >>> p = make_partition(items, ["s"], demo_pool=5, per_subject=10, train_per_subject=8, seed=0, train_values=["t"])
    >>> len(p.eval), len(p.train), min(p.train) >= 30, p.settings["train_values"]
    (10, 8, True, ['t'])
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from landscape.tasks import Item, TaskError

DataError = TaskError  # a data request that cannot be met (unknown value, too few rows) is a task error


@dataclass(frozen=True)
class Partition:
    """Disjoint parts per value of the first group, as item ids. ``demos`` keeps each pool in order."""

    values: tuple[str, ...]
    demos: dict[str, list[int | str]]
    eval: list[int | str]
    train: list[int | str]
    settings: dict = field(default_factory=dict)


def select_values(items: list[Item], spec: str, group: str = "group") -> list[str]:
    """Values of the first group named by ``spec``: ``all``, ``largest:N`` (the N with most rows)
    or a comma list. Names may use underscores for spaces (``high_school_biology``). Sorted."""
    counts = Counter(item.group for item in items)
    spec = spec.strip()
    if spec == "all":
        return sorted(counts)
    if spec.startswith("largest:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise DataError(f"bad {group} selection {spec!r}: expected largest:N with N an integer") from None
        if not 1 <= n <= len(counts):
            raise DataError(f"bad {group} selection {spec!r}: N must be in 1..{len(counts)}")
        ranked = sorted(counts, key=lambda s: (-counts[s], s))
        return sorted(ranked[:n])
    chosen = []
    for name in (part.strip() for part in spec.split(",")):
        value = name if name in counts else name.replace("_", " ")
        if value not in counts:
            raise DataError(
                f"unknown {group} {name!r}; the task's {group} values are e.g. {', '.join(sorted(counts)[:3])}, ..."
            )
        chosen.append(value)
    if not chosen:
        raise DataError(f"no {group} selected")
    return sorted(set(chosen))


def select_train_values(items: list[Item], spec: str, evaluated: list[str], group: str = "group") -> list[str]:
    """The values whose rows a run fine-tunes on: ``others`` (every value not evaluated), or any
    ``select_values`` spec (``all``, ``largest:K``, a comma list). Sorted; none is an error."""
    if spec.strip() == "others":
        chosen = sorted({item.group for item in items} - set(evaluated))
        if not chosen:
            raise DataError(f"--train-subjects others: every {group} is evaluated, none is left to train on")
        return chosen
    return select_values(items, spec, group)


def make_partition(
    items: list[Item],
    values: list[str],
    *,
    demo_pool: int,
    per_subject: int,
    train_per_subject: int,
    seed: int,
    group: str = "group",
    train_first: bool = False,
    train_values: list[str] | None = None,
) -> Partition:
    """Seeded, disjoint partition per value of the first group: demos, then eval, then train
    (``train_first``: demos, then train, then eval); ``train_values`` (None: the evaluated
    values) the values whose rows are trained on."""
    for name, count in (
        ("demo_pool", demo_pool),
        ("per_subject", per_subject),
        ("train_per_subject", train_per_subject),
    ):
        if count < 0:
            raise DataError(f"{name} must be >= 0, got {count}")
    trained = set(values if train_values is None else train_values)
    by_value: dict[str, list[int | str]] = {v: [] for v in sorted(set(values) | trained)}
    for item in items:
        if item.group in by_value:
            by_value[item.group].append(item.id)
    demos: dict[str, list[int | str]] = {}
    eval_ids: list[int | str] = []
    train_ids: list[int | str] = []
    for value in by_value:  # sorted
        evaluated = value in values  # a value trained on only has a demo pool (its k-shot prompts), no eval rows
        ids = np.array(by_value[value])
        if len(ids) <= demo_pool:
            raise DataError(
                f"{group} {value!r} has {len(ids)} rows, not more than the demo pool ({demo_pool}): "
                f"lower --demo-pool or choose other {'values' if evaluated else '--train-subjects'}"
            )
        # One generator per value, so adding a value leaves the others' partitions unchanged.
        rng = np.random.default_rng([seed, zlib.crc32(value.encode())])
        ids = ids[rng.permutation(len(ids))].tolist()
        demos[value] = ids[:demo_pool]
        rest = ids[demo_pool:]
        n_eval, n_train = (per_subject if evaluated else 0), (train_per_subject if value in trained else 0)
        if train_first:
            train_ids += sorted(rest[:n_train])
            eval_ids += sorted(rest[n_train : n_train + n_eval])
        else:
            eval_ids += sorted(rest[:n_eval])
            train_ids += sorted(rest[n_eval : n_eval + n_train])
    return Partition(
        values=tuple(sorted(values)),
        demos=demos,
        eval=eval_ids,
        train=train_ids,
        # train_first and train_values recorded only when set: runs made before them keep their settings
        settings=dict(
            demo_pool=demo_pool,
            per_subject=per_subject,
            train_per_subject=train_per_subject,
            seed=seed,
            **({"train_first": True} if train_first else {}),
            **({"train_values": sorted(trained)} if train_values is not None else {}),
        ),
    )
