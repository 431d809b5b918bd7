"""``RUN/metrics.csv``: every result of analysis.h5 as one tidy table (split, condition, layer,
metric, grouping, value, low, high), rewritten whole after each analysis."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np

from landscape import store
from landscape.atomic import replace_atomically
from landscape.names import grouped, split_grouped

METRICS_FILE = "metrics.csv"


def write_metrics_csv(analysis: Path) -> Path:
    """Rewrite RUN/metrics.csv from analysis.h5 (atomically): split, condition, layer, metric,
    grouping (the task's field, or answer, that a metric is about; empty for the others), value,
    low, high (the 95 % interval of a value that has one: ``<m>_low``/``<m>_high`` beside ``<m>``,
    or beside ``<m>_rho`` for correlations; empty otherwise)."""
    rows = []
    with h5py.File(analysis, "r") as f:
        for split, condition, layer, scalars, _ in store.analysis.iter_results(f):
            folded = set()
            for metric, value in scalars.items():
                interval = _interval_names(metric)
                if interval and all(name in scalars for name in interval):
                    folded.update(interval)
            for metric, value in scalars.items():
                if metric in folded:
                    continue
                interval = _interval_names(metric)
                low, high = (scalars[n] for n in interval) if interval and interval[0] in folded else (np.nan, np.nan)
                rows.append((split, condition, layer, *split_grouped(metric), value, low, high))
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[3], r[4]))
    path = analysis.with_name(METRICS_FILE)

    def number(v: float) -> str:
        return repr(float(v)) if np.isfinite(v) else "nan"

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["split", "condition", "layer", "metric", "grouping", "value", "low", "high"])
            writer.writerows((s, c, l, m, g, number(v), "" if not np.isfinite(lo) else number(lo), "" if not np.isfinite(hi) else number(hi))
                             for s, c, l, m, g, v, lo, hi in rows)

    replace_atomically(path, write)
    return path


def _interval_names(metric: str) -> tuple[str, str] | None:
    """The stored names of a metric's interval bounds (``probe_accuracy[subject]`` ->
    ``probe_accuracy_low[subject]``, ``..._high[subject]``; ``x_rho`` -> ``x_low``, ``x_high``)."""
    base, grouping = split_grouped(metric)
    if base.endswith(("_low", "_high")):
        return None
    stem = base[: -len("_rho")] if base.endswith("_rho") else base
    return tuple(grouped(stem + suffix, grouping) if grouping else stem + suffix for suffix in ("_low", "_high"))
