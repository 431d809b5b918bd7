"""Several analysed runs side by side (``landscape compare``): what the comparison page draws,
read from the runs' files into plain structures.

- one tidy table, every metrics row of every run with the run's label, model, task and the
  layer's relative depth (layer / last layer: 0 = embeddings, 1 = the last block), so models of
  different depths line up (``compare_rows``; written as ``compare.csv``);
- each run's headline: model, task, rows, recipe, accuracies and EDL gains with intervals, the
  claims' verdicts (``RunSummary``);
- what differs between the runs: model and its sha256, task and data hashes, partition, analysis
  settings, fine-tune settings, package versions (``differences``);
- where two runs share their rows (same task and data file, same questions in the same order and
  splits: two seeds of a fine-tune, two recipes on one extraction, float16 vs float32 storage),
  per-layer paired differences of each condition's ARIs and of its accuracy, with a bootstrap over
  the shared rows (``paired_differences``).

Example (two views of one planted run share their rows; a run against itself differs by 0)::

    >>> from analyses.claims import planted_view
    >>> view = planted_view(n_per_class=20, layers=6, seed=0)
    >>> rows = paired_differences(view, view, n_boot=200, seed=0)
    >>> max(abs(r.value) for r in rows)
    0.0
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from analyses.claims import Claim, RunView, evaluate_claims, read_run
from analyses.metrics import HEADER, MetricRow, csv_cells, csv_number, metrics_rows
from landscape import claims as cl
from landscape import reader, store, tasks
from landscape.names import ANSWER, grouped

COMPARE_FILE = "compare.csv"
COMPARE_HEADER = ("label", "run", "model", "task", *HEADER[:3], "relative_depth", *HEADER[3:])


@dataclass
class RunSummary:
    """One run as the comparison sees it: its files' header, its analysis, its claims."""

    label: str
    path: Path
    info: dict
    settings: dict  # the analysis settings (analysis.h5)
    view: RunView  # eval rows: labels, correctness, clusters (analyses.claims)
    claims: list[Claim]
    ids: np.ndarray  # (N,) every row's task item id (int64, or str for a string-id task), in the run's order
    splits: np.ndarray  # (N,)
    n_layers: int  # the model's layers (blocks + embeddings), stored or not
    rows: list[MetricRow] = field(default_factory=list)  # analyses.metrics.metrics_rows

    @property
    def last_layer(self) -> int:
        return self.n_layers - 1

    @property
    def conditions(self) -> list[str]:
        return [c for c, attrs in self.info["conditions"].items() if attrs.get("complete")]

    def relative_depth(self, layer: int) -> float:
        return layer / self.last_layer if self.last_layer else 0.0

    def accuracy(self, condition: str, counts: np.ndarray) -> tuple[float, float, float]:
        """Eval accuracy of ``condition`` and its 95 % bootstrap interval (``counts`` from cl.row_counts)."""
        draws = cl.weighted_mean(self.view.correct[condition].astype(float), counts)
        return (float(draws[0]), *cl.percentile_interval(draws[1:]))

    def edl_gain(self, condition: str) -> tuple[float, float, float] | None:
        """A fine-tune's gain beyond format, bits per training label, and its interval (None: no record)."""
        attrs = self.view.edl.get(condition)
        if not attrs or "gain_beyond_format_bits" not in attrs:
            return None
        n = float(attrs["n_train"])
        value, low, high = (float(attrs[f"gain_beyond_format_bits{s}"]) / n for s in ("", "_low", "_high"))
        return value, low, high

    def edl_total(self, condition: str) -> tuple[float, float, float] | None:
        """A fine-tune's EDL on held-out answers, in bits, and its interval (None: no record)."""
        attrs = self.view.edl.get(condition)
        if not attrs or "edl_heldout_bits" not in attrs:
            return None
        value, low, high = (float(attrs[f"edl_heldout_bits{s}"]) for s in ("", "_low", "_high"))
        return value, low, high


def summarize(run: Path, label: str, *, n_boot: int = cl.N_BOOT, seed: int = 0) -> RunSummary:
    """Read one analysed run (refuses, in one line, a run without analysis.h5)."""
    run = Path(run)
    analysis = run / store.ANALYSIS_FILE
    if not analysis.is_file():
        raise FileNotFoundError(f"no {store.ANALYSIS_FILE} in {run}: run `landscape analyze {run}` first")
    info = reader.info(run)
    with reader.open_run_file(run) as f:
        examples = store.hidden.read_examples(f)
        complete = [c for c, a in info["conditions"].items() if a.get("complete")]
        n_layers = store.hidden.n_layers(f, complete[0]) if complete else 0
    with h5py.File(analysis, "r") as f:
        settings = store.analysis.analysis_settings(f)
    view = read_run(run)
    return RunSummary(
        label=label,
        path=run,
        info=info,
        settings=settings,
        view=view,
        claims=evaluate_claims(view, n_boot=n_boot, seed=seed),
        ids=np.asarray(examples.ids),
        splits=np.asarray(examples.splits).astype(str),
        n_layers=n_layers,
        rows=metrics_rows(analysis),
    )


# ---------------------------------------------------------------- the tidy table


def compare_rows(runs: list[RunSummary]) -> list[list]:
    """Every metrics row of every run, as compare.csv writes it (``COMPARE_HEADER``): the run's
    label, folder, model and task, then the metrics row with the layer's relative depth after it."""
    out = []
    for run in runs:
        for row in run.rows:
            cells = csv_cells(row)
            out.append(
                [
                    run.label,
                    str(run.path),
                    run.info.get("model", ""),
                    run.info.get("task", ""),
                    *cells[:3],
                    csv_number(run.relative_depth(row[2])),
                    *cells[3:],
                ]
            )
    return out


# ---------------------------------------------------------------- shared rows and paired differences


def shared_rows(a: RunSummary, b: RunSummary) -> str:
    """Why two runs do not share their eval rows ('' when they do: the same task, data file and eval
    questions in the same order, so eval row i of one is eval row i of the other). Their train rows
    may differ: a run fine-tuned on other subjects pairs with one fine-tuned on the evaluated ones."""
    for key, what in (("task_hash", "task file"), ("dataset_hash", "data file")):
        if a.info.get(key) != b.info.get(key):
            return f"{a.label} and {b.label} have different {what}s"
    ids_a, ids_b = a.ids[a.splits == "eval"], b.ids[b.splits == "eval"]
    if not tasks.same_ids(ids_a, ids_b):
        return f"{a.label} and {b.label} hold different questions ({len(ids_a)} and {len(ids_b)} eval rows)"
    return ""


@dataclass(frozen=True)
class PairedDifference:
    """``a`` minus ``b`` on the shared eval rows: a metric of one condition at one layer (layer -1:
    not per layer, e.g. accuracy), with its 95 % bootstrap interval over the rows."""

    condition: str
    metric: str  # "ari[<grouping>]" or "accuracy"
    layer: int
    relative_depth: float
    value: float
    low: float
    high: float


def paired_differences(a: RunView, b: RunView, *, n_boot: int = cl.N_BOOT, seed: int = 0) -> list[PairedDifference]:
    """Per-layer differences (a - b) of every shared condition's ARI with each labelling, and of its
    accuracy, on one bootstrap of the shared eval rows (the same draws for both runs: paired).

    Layers are matched by relative depth: the same layer index where the models are as deep, else
    the layer of ``b`` nearest each layer of ``a`` (within half a layer; none when ``b`` stored
    only a subset and lacks that depth)."""
    if a.n_rows != b.n_rows:
        raise ValueError(f"paired differences need the same rows ({a.n_rows} and {b.n_rows} eval rows)")
    counts = cl.row_counts(a.n_rows, n_boot, seed)
    out = []
    for condition in [c for c in a.correct if c in b.correct]:
        draws = cl.weighted_mean(a.correct[condition].astype(float) - b.correct[condition].astype(float), counts)
        out.append(
            PairedDifference(
                condition, "accuracy", -1, float("nan"), float(draws[0]), *cl.percentile_interval(draws[1:])
            )
        )
        layers_a, layers_b = a.clusters.get(condition, {}), b.clusters.get(condition, {})
        if not layers_a or not layers_b:
            continue
        order_b = sorted(layers_b)
        depth_b = np.array(order_b) / max(b.last_layer, 1)
        for layer in sorted(layers_a):
            depth = layer / max(a.last_layer, 1)
            match = order_b[int(np.argmin(np.abs(depth_b - depth)))]
            if abs(match / max(b.last_layer, 1) - depth) > 0.5 / max(min(a.last_layer, b.last_layer), 1):
                continue  # no layer of b at this depth (layer subsets)
            for grouping in (a.grouping, ANSWER):
                labels = a.labels[grouping]
                diff = cl.weighted_ari(layers_a[layer], labels, counts) - cl.weighted_ari(
                    layers_b[match], labels, counts
                )
                out.append(
                    PairedDifference(
                        condition,
                        grouped("ari", grouping),
                        layer,
                        depth,
                        float(diff[0]),
                        *cl.percentile_interval(diff[1:]),
                    )
                )
    return out


# ---------------------------------------------------------------- what differs


def describe(run: RunSummary) -> dict[str, str]:
    """What a run was made of, flattened to 'what' -> value (compared across runs)."""
    info = run.info
    out = {
        "model": str(info.get("model", "")),
        "model sha256": str(info.get("model_hash", "")),
        "task": str(info.get("task", "")),
        "task sha256": str(info.get("task_hash", "")),
        "data sha256": str(info.get("dataset_hash", "")),
        "partition": json.dumps(info.get("partition", {}), sort_keys=True),
        "split seed": str(info.get("split_seed", "")),
        "rows (eval + train)": f"{int((run.splits == 'eval').sum())} + {int((run.splits == 'train').sum())}",
        "layers": str(run.n_layers),
        "conditions": ", ".join(run.conditions),
    }
    for key, value in sorted(run.settings.items()):
        out[f"analysis: {key}"] = json.dumps(value, sort_keys=True)
    for condition, attrs in sorted(run.view.edl.items()):
        for key, value in sorted(dict(attrs.get("settings", {})).items()):
            out[f"fine-tune {condition}: {key}"] = json.dumps(value, sort_keys=True)
    for package, version in sorted(dict(info.get("versions", {})).items()):
        out[f"version: {package}"] = str(version)
    return out


def differences(runs: list[RunSummary]) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """(what differs: name -> each run's value ('' where a run lacks it), what every run shares)."""
    described = [describe(run) for run in runs]
    names = list(dict.fromkeys(itertools.chain.from_iterable(described)))
    differ, same = [], []
    for name in names:
        values = [d.get(name, "") for d in described]
        if len(set(values)) > 1:
            differ.append((name, values))
        else:
            same.append((name, values[0]))
    return differ, same


def claim_keys(runs: list[RunSummary]) -> list[str]:
    return list(dict.fromkeys(c.key for run in runs for c in run.claims))
