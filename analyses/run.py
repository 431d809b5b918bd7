"""``landscape analyze RUN``: every condition x layer of hidden.h5 into analysis.h5 and metrics.csv.

Each (condition, layer) is an independent task (``analyses.layer.analyze_layer``) that reads its
own layer from hidden.h5, so tasks can run in worker processes (``jobs``); results are written
by this process as they arrive, each group marked complete last. A re-run skips complete groups
(unless ``force``), then compares every pair of conditions layer by layer, then rewrites
metrics.csv from analysis.h5 (tidy: condition, layer, metric, value; pairs as ``a~b``).
"""

from __future__ import annotations

import csv
import itertools
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from analyses.layer import AnalysisConfig, LayerResult, analyze_layer, compare_layers
from landscape import reader, schema

ANALYSIS_FILE = "analysis.h5"
METRICS_FILE = "metrics.csv"


class AnalysisMismatch(ValueError):
    """analysis.h5 exists with other settings."""


def run_analysis(
    run_dir: Path,
    config: AnalysisConfig = AnalysisConfig(),
    *,
    conditions: list[str] | None = None,
    layers: list[int] | None = None,
    jobs: int = 1,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Analyse a run; returns the path of metrics.csv."""
    config.validate()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    hidden = reader.hidden_path(run_dir)
    with reader.open_run_file(hidden) as f:
        available = schema.condition_names(f)
        conditions = available if conditions is None else conditions
        for name in conditions:
            group = schema.get_condition(f, name)
            if not group.attrs["complete"]:
                raise ValueError(f"condition {name} of {hidden} is incomplete: finish `landscape extract` first")
        n_layers = {name: schema.n_layers(f, name) for name in conditions}
        examples = schema.read_examples(f)
    if not conditions:
        raise ValueError(f"{hidden} has no conditions: run `landscape extract` first")
    if len(examples) < config.maxk + 1:
        raise ValueError(f"{len(examples)} examples but maxk={config.maxk} needs at least {config.maxk + 1}: lower --maxk")

    out = hidden.parent / ANALYSIS_FILE
    _prepare(out, config, hidden, force=force)
    tasks = []
    with h5py.File(out, "r") as f:
        for name in conditions:
            for layer in layers if layers is not None else range(n_layers[name]):
                if not -n_layers[name] <= layer < n_layers[name]:
                    raise ValueError(f"layer {layer} out of range: {name} has layers 0..{n_layers[name] - 1}")
                layer %= n_layers[name]
                if not schema.result_done(f, schema.result_path(name, layer)):
                    tasks.append((name, layer))

    bar = tqdm(total=len(tasks), desc="analyze", unit="layer", disable=not progress)
    with h5py.File(out, "a") as f:
        for (name, layer), result in _execute(hidden, tasks, config, jobs):
            schema.write_result(f, schema.result_path(name, layer), result.scalars, result.arrays, result.skipped)
            f.flush()
            bar.update(1)
        bar.close()
        _compare_pairs(f, conditions, n_layers, layers, config)
    return write_metrics_csv(out)


def _prepare(out: Path, config: AnalysisConfig, hidden: Path, *, force: bool) -> None:
    settings = config.to_dict()
    settings.pop("device")  # where it ran does not change the numbers
    if out.exists() and not force:
        with h5py.File(out, "r") as f:
            have = schema.analysis_settings(f)
        differing = [k for k in settings if have.get(k) != settings[k]]
        if differing:
            key = differing[0]
            raise AnalysisMismatch(f"{out} was made with {key}={have.get(key)!r}, not {settings[key]!r}: use --force to redo it")
        return
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        schema.write_analysis_header(f, settings, str(hidden.name))
    os.replace(tmp, out)


def _task(hidden: Path, name: str, layer: int, config: AnalysisConfig) -> LayerResult:
    with h5py.File(hidden, "r") as f:
        X = schema.read_layer(f, name, layer)
        examples = schema.read_examples(f)
    return analyze_layer(X, examples.subjects, examples.answers, config)


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # one core per worker process


def _execute(hidden: Path, tasks: list[tuple[str, int]], config: AnalysisConfig, jobs: int):
    """Yield ((condition, layer), LayerResult) in completion order."""
    if jobs == 1 or len(tasks) <= 1:
        for name, layer in tasks:
            yield (name, layer), _task(hidden, name, layer, config)
        return
    # spawn, not fork: the parent may hold torch threads and open HDF5 handles.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        futures = {pool.submit(_task, hidden, name, layer, config): (name, layer) for name, layer in tasks}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _compare_pairs(f: h5py.File, conditions: list[str], n_layers: dict[str, int], layers, config: AnalysisConfig) -> None:
    for a, b in itertools.combinations(conditions, 2):
        shared = range(min(n_layers[a], n_layers[b])) if layers is None else [l % n_layers[a] for l in layers]
        for layer in shared:
            path = schema.result_path(a, layer, other=b)
            if schema.result_done(f, path):
                continue
            result_a = _as_result(schema.read_result(f, schema.result_path(a, layer)))
            result_b = _as_result(schema.read_result(f, schema.result_path(b, layer)))
            pair = compare_layers(result_a, result_b, config)
            schema.write_result(f, path, pair.scalars, pair.arrays, pair.skipped)


def _as_result(stored: tuple[dict, dict, str]) -> LayerResult:
    scalars, arrays, skipped = stored
    return LayerResult(scalars=scalars, arrays=arrays, skipped=skipped)


def write_metrics_csv(analysis: Path) -> Path:
    """Rewrite RUN/metrics.csv from analysis.h5 (atomically): condition, layer, metric, value."""
    rows = []
    with h5py.File(analysis, "r") as f:
        for condition, layer, scalars, _ in schema.iter_results(f):
            rows += [(condition, layer, metric, value) for metric, value in scalars.items()]
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    path = analysis.with_name(METRICS_FILE)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["condition", "layer", "metric", "value"])
        writer.writerows((c, l, m, repr(float(v)) if np.isfinite(v) else "nan") for c, l, m, v in rows)
    os.replace(tmp, path)
    return path

