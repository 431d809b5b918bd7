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
HEADER = ("split", "condition", "layer", "metric", "grouping", "value", "low", "high")
MetricRow = tuple[str, str, int, str, str, float, float, float]


def metrics_rows(analysis: Path) -> list[MetricRow]:
    """Every result of analysis.h5 as (split, condition, layer, metric, grouping, value, low, high),
    sorted: grouping is the task's field, or answer, that a metric is about (empty for the others);
    low, high the 95 % interval of a value that has one (``<m>_low``/``<m>_high`` beside ``<m>``, or
    beside ``<m>_rho`` for correlations; NaN otherwise)."""
    rows = []
    with h5py.File(analysis, "r") as f:
        for split, condition, layer, scalars, _ in store.analysis.iter_results(f):
            folded: set[str] = set()
            for metric in scalars:
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
    return rows


def csv_number(value: float, *, blank_nan: bool = False) -> str:
    """How metrics.csv writes a number: exact (repr), ``nan``, or empty for a missing bound."""
    if np.isfinite(value):
        return repr(float(value))
    return "" if blank_nan else "nan"


def csv_cells(row: MetricRow) -> list:
    split, condition, layer, metric, grouping, value, low, high = row
    return [
        split,
        condition,
        layer,
        metric,
        grouping,
        csv_number(value),
        csv_number(low, blank_nan=True),
        csv_number(high, blank_nan=True),
    ]


def write_metrics_csv(analysis: Path) -> Path:
    """Rewrite RUN/metrics.csv from analysis.h5 (atomically), one ``metrics_rows`` row a line."""
    rows = metrics_rows(analysis)
    path = analysis.with_name(METRICS_FILE)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(csv_cells(row) for row in rows)

    replace_atomically(path, write)
    return path


def _interval_names(metric: str) -> tuple[str, str] | None:
    """The stored names of a metric's interval bounds (``probe_accuracy[subject]`` ->
    ``probe_accuracy_low[subject]``, ``..._high[subject]``; ``x_rho`` -> ``x_low``, ``x_high``)."""
    base, grouping = split_grouped(metric)
    if base.endswith(("_low", "_high")):
        return None
    stem = base[: -len("_rho")] if base.endswith("_rho") else base
    low, high = (grouped(stem + suffix, grouping) if grouping else stem + suffix for suffix in ("_low", "_high"))
    return low, high
