"""What the claims read from one analysed run (``RunView``): the eval rows' labels, correctness,
clusters, IDs, per-row label and data overlaps, the pairs' nulls and the EDL records, aligned to
the eval rows (``read_run``); and planted runs whose verdicts are known (``planted_view``: tests
and docstrings). ``analyses.claims`` computes the claims on it; ``analyses.compare`` pairs two.

Example:
    >>> view = planted_view(n_per_class=10, layers=4)
    >>> view.n_rows, sorted(view.clusters), sorted(view.clusters["5shot"])
    (40, ['0shot', '5shot'], [1, 2, 3, 4])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from landscape import names, store
from landscape.names import ANSWER, ZERO_SHOT


@dataclass
class RunView:
    """What the claims read from a run: eval rows only, every per-row array aligned to them.

    ``clusters[c][layer]`` (n,), ``scalars[c][layer]`` (the layer's metrics), ``ids[c][layer]``
    (ID, its error), ``overlaps[(a, b)][layer]`` (n,) per-row data overlap (NaN: dropped),
    ``correct[c]`` (n,) bool, ``edl[c]`` the EDL record's attrs, ``overlap_rows[c][layer]`` (n,)
    each row's share of same-answer neighbours (``analyses.layer``; absent in runs analysed before it)."""

    last_layer: int
    grouping: str
    labels: dict[str, np.ndarray]  # grouping and "answer" -> (n,)
    correct: dict[str, np.ndarray] = field(default_factory=dict)
    clusters: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    scalars: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)
    ids: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    overlaps: dict[tuple[str, str], dict[int, np.ndarray]] = field(default_factory=dict)
    edl: dict[str, dict] = field(default_factory=dict)
    overlap_rows: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    pair_nulls: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)  # data overlap's null mean

    @property
    def n_rows(self) -> int:
        return len(self.labels[ANSWER])


# ---------------------------------------------------------------- reading a run


def read_run(run: Path) -> RunView:
    """The eval rows' labels, correctness, clusters, IDs, per-row data overlaps and EDL records."""
    run = Path(run)
    analysis = run / store.ANALYSIS_FILE
    if not analysis.is_file():
        raise FileNotFoundError(f"no {store.ANALYSIS_FILE} in {run}: run `landscape analyze {run}` first")
    with h5py.File(run / store.HIDDEN_FILE, "r") as f:
        examples = store.hidden.read_examples(f)
        conditions = [
            c for c in store.hidden.condition_names(f) if store.hidden.get_condition(f, c).attrs.get("complete", False)
        ]
        if not conditions:
            raise store.SchemaError(f"{run} holds no complete condition")
        last_layer = store.hidden.n_layers(f, conditions[0]) - 1
        eval_rows = np.flatnonzero(examples.splits == "eval")
        correct = {c: (store.hidden.read_outputs(f, c)[2] == examples.answers)[eval_rows] for c in conditions}
        edl = {c: store.edl.read_edl(f, c)[1] for c in store.edl.edl_names(f)}
    grouping = examples.group_names[0]
    view = RunView(
        last_layer=last_layer,
        grouping=grouping,
        labels={grouping: examples.first_group[eval_rows], ANSWER: examples.answers[eval_rows]},
        correct=correct,
        edl=edl,
    )
    position = np.full(len(examples), -1)
    position[eval_rows] = np.arange(len(eval_rows))
    with h5py.File(analysis, "r") as f:
        for condition in conditions:
            for layer in range(last_layer + 1):
                _read_layer(view, f, condition, layer, position)
        for a, b in itertools.permutations(conditions, 2):
            for layer in range(last_layer + 1):
                path = store.analysis.result_path(a, layer, other=b)
                if store.analysis.result_done(f, path):
                    scalars, arrays, skipped = store.analysis.read_result(f, path, ("data_overlap",))
                    if not skipped and "data_overlap" in arrays:
                        view.overlaps.setdefault((a, b), {})[layer] = _aligned(
                            arrays["data_overlap"], None, len(eval_rows)
                        )
                        if "data_overlap_null" in scalars:
                            view.pair_nulls.setdefault((a, b), {})[layer] = scalars["data_overlap_null"]
    return view


def _read_layer(view: RunView, f: h5py.File, condition: str, layer: int, position: np.ndarray) -> None:
    """One analysed layer of a condition (nothing when it was not analysed or was skipped)."""
    path = store.analysis.result_path(condition, layer)
    if not store.analysis.result_done(f, path):
        return
    overlap = names.grouped("label_overlap_rows", ANSWER)
    scalars, arrays, skipped = store.analysis.read_result(
        f, path, ("rows", "cluster", "gride_ids", "gride_errors", overlap)
    )
    if skipped or "cluster" not in arrays:
        return
    rows = position[arrays["rows"]]
    view.clusters.setdefault(condition, {})[layer] = _aligned(arrays["cluster"], rows, len(view.labels[ANSWER]))
    if overlap in arrays:
        view.overlap_rows.setdefault(condition, {})[layer] = _aligned(arrays[overlap], rows, len(view.labels[ANSWER]))
    view.scalars.setdefault(condition, {})[layer] = scalars
    id_value = scalars.get("id_gride", np.nan)
    match = np.flatnonzero(np.isclose(arrays.get("gride_ids", np.array([])), id_value))
    error = float(arrays["gride_errors"][match[0]]) if len(match) else np.nan
    view.ids.setdefault(condition, {})[layer] = (id_value, error)


def _aligned(values: np.ndarray, rows: np.ndarray | None, n: int) -> np.ndarray:
    """Per-row values placed at the eval rows' positions (rows None: already in that order)."""
    if rows is None:
        if len(values) != n:
            raise store.SchemaError(f"{len(values)} per-row values for {n} eval rows")
        return np.asarray(values)
    if (rows < 0).any() or len(rows) != n:
        raise store.SchemaError("a layer's rows are not the run's eval rows")
    out = np.empty(n, dtype=np.asarray(values).dtype)
    out[rows] = values
    return out


def planted_view(
    *,
    n_per_class: int = 40,
    layers: int = 12,
    seed: int = 0,
    transition: float | None = None,
    conditions: tuple[str, ...] = (ZERO_SHOT, "5shot"),
) -> RunView:
    """A run whose answers are known: 4 subjects x ``n_per_class`` rows; ``5shot`` clusters by
    subject up to ``transition`` (relative depth; None: first half only, with a fall at 0.5) and
    at random after it, ``0shot`` at random everywhere; the ID peaks at the transition."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(4), n_per_class)
    answers = rng.integers(0, 4, len(subjects))
    cut = 0.5 if transition is None else transition
    view = RunView(last_layer=layers, grouping="subject", labels={"subject": subjects, ANSWER: answers})
    for c in conditions:
        view.clusters[c], view.ids[c], view.scalars[c] = {}, {}, {}
        for layer in range(1, layers + 1):
            organised = c != ZERO_SHOT and layer / layers <= cut
            view.clusters[c][layer] = subjects.copy() if organised else rng.integers(0, 4, len(subjects))
            view.ids[c][layer] = (10.0 - 8 * abs(layer / layers - cut), 0.1)
            view.scalars[c][layer] = {}
            view.overlap_rows.setdefault(c, {})[layer] = rng.uniform(0.1, 0.4, len(subjects))  # no answer structure
        view.correct[c] = rng.random(len(subjects)) < 0.4
    return view
