"""Everything the report shows, read from a run's files into plain arrays (the only I/O of figures/).

The figure modules are pure functions of these structures, so they can be tested and reused on
any run without touching HDF5.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from analyses.claims import evaluate_claims, read_run
from landscape import reader, store, tasks
from landscape.names import ANSWER, grouped, parse_result, split_grouped

# A profile: metric -> (layers (L,), values (L,)), for one (split, condition or pair).
Profile = dict[str, tuple[np.ndarray, np.ndarray]]


# A measure's permutation null: '<measure>_null' (the draws' mean) beside '<measure>', with
# '<measure>_null_low' / '_null_high' (their 2.5 and 97.5 percentiles; landscape.nulls).
NULL = "_null"


def null_metric(metric: str, bound: str = "") -> str:
    """The stored name of a measure's permutation null (``bound`` '', '_low' or '_high'):
    ``ari[subject]`` -> ``ari_null[subject]``, ``ari_null_low[subject]``; ``cka`` -> ``cka_null``."""
    base, grouping = split_grouped(metric)
    name = base + NULL + bound
    return grouped(name, grouping) if grouping else name


def is_null(metric: str) -> bool:
    """Whether a metric is a permutation null or one of its bounds (drawn with its measure, not alone)."""
    base = split_grouped(metric)[0]
    return base.endswith((NULL, NULL + "_low", NULL + "_high"))


NullSeries = tuple[np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"]  # layers, mean, low, high


def null_series(profile: Profile, metric: str) -> NullSeries | None:
    """(layers, mean, low, high) of ``metric``'s permutation null in ``profile``, or None when the
    analysis drew none (runs analysed before the nulls existed); low/high None when not stored."""
    found = profile.get(null_metric(metric))
    if found is None or not np.isfinite(found[1]).any():
        return None
    layers, mean = found
    bounds: list[np.ndarray | None] = []
    for bound in ("_low", "_high"):
        stored = profile.get(null_metric(metric, bound))
        if stored is None:
            bounds.append(None)
            continue
        by_layer = dict(zip(stored[0].tolist(), stored[1].tolist(), strict=True))  # aligned to the mean's layers
        bounds.append(np.array([by_layer.get(layer, np.nan) for layer in layers.tolist()], dtype=float))
    return layers, mean, bounds[0], bounds[1]


@dataclass
class LayerSimilarity:
    """A condition's layer x layer similarity: ``matrices[measure]`` (L, L) over ``layers`` (L,)."""

    layers: np.ndarray
    matrices: dict[str, np.ndarray]


@dataclass
class TreeLayer:
    """The density-peak dendrogram of one layer: scipy linkage over ``leaves`` (cluster ids)."""

    linkage: np.ndarray  # (n_leaves - 1, 4)
    leaf_labels: list[str]  # "dominant value 93% (n=97)" per leaf, in ``leaves`` order
    n_clusters: int


@dataclass
class RunData:
    """What the report draws. ``eval_rows`` are the /examples rows of the eval split, in order."""

    run: Path
    info: dict[str, Any]
    examples: store.hidden.Examples
    eval_rows: np.ndarray
    predictions: dict[str, np.ndarray]  # condition -> (N,) predicted letter index
    profiles: dict[tuple[str, str], Profile] = field(default_factory=dict)
    analysis_settings: dict[str, Any] = field(default_factory=dict)
    edl: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = field(default_factory=dict)
    complexity: tuple[dict[str, np.ndarray], dict[str, Any]] | None = None
    claims: list = field(default_factory=list)  # analyses.claims.Claim, in the order of docs/replication.md

    @property
    def groupings(self) -> list[str]:
        """The task's grouping fields, then the answer: every labelling the analysis measured."""
        return [*self.examples.group_names, ANSWER]

    @property
    def is_control(self) -> bool:
        """The run's task is a positive control (task file ``control: true``)."""
        try:
            return tasks.parse_task(self.info["task_text"], self.info.get("task_file", "<task>")).control
        except (KeyError, tasks.TaskError):
            return False

    @property
    def first_group(self) -> str:
        return self.examples.group_names[0]

    @property
    def choice_labels(self) -> list[str]:
        return list(self.info.get("choice_labels") or [])

    @property
    def conditions(self) -> list[str]:
        return [c for c, attrs in self.info["conditions"].items() if attrs.get("complete")]

    def analysed(self, split: str = "eval") -> list[str]:
        """Conditions with per-layer results on ``split``, in the run's order."""
        return [c for c in self.conditions if (split, c) in self.profiles]

    def pairs(self, split: str = "eval") -> list[str]:
        return sorted(name for s, name in self.profiles if s == split and parse_result(name)[0] == "pair")

    def seed_families(self, split: str = "eval") -> list[str]:
        return sorted(
            what for s, (kind, what) in self._kinds() if s == split and kind == "seeds" and isinstance(what, str)
        )

    def correlation_targets(self, split: str) -> list[str]:
        return sorted(
            what for s, (kind, what) in self._kinds() if s == split and kind == "correlation" and isinstance(what, str)
        )

    def _kinds(self) -> list[tuple[str, tuple[str, str | tuple[str, str]]]]:
        """(split, parse_result) of every result: a seeds' or correlation's what is a str, a pair's two."""
        return [(s, parse_result(name)) for s, name in self.profiles]


def analysis_path(run: Path) -> Path:
    return reader.hidden_path(run).with_name(store.ANALYSIS_FILE)


def collect(run: Path) -> RunData:
    """Read hidden.h5 (header, outputs, EDL) and analysis.h5 (every complete result's scalars)."""
    run = Path(run)
    info = reader.info(run)
    with reader.open_run_file(run) as f:
        examples = store.hidden.read_examples(f)
        predictions = {
            name: store.hidden.read_outputs(f, name)[2]
            for name in info["conditions"]
            if info["conditions"][name].get("complete")
        }
        edl = {name: store.edl.read_edl(f, name) for name in store.edl.edl_names(f)}
    data = RunData(
        run=run,
        info=info,
        examples=examples,
        eval_rows=np.flatnonzero(examples.splits == "eval"),
        predictions=predictions,
        edl=edl,
    )
    path = analysis_path(run)
    if not path.is_file():
        raise FileNotFoundError(f"no {store.ANALYSIS_FILE} in {run}: run `landscape analyze {run}` first")
    series: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = defaultdict(lambda: defaultdict(list))
    with _open_analysis(path) as f:
        data.analysis_settings = store.analysis.analysis_settings(f)
        data.complexity = store.analysis.read_complexity(f)
        for split, name, layer, scalars, _ in store.analysis.iter_results(f):
            for metric, value in scalars.items():
                series[(split, name)][metric].append((layer, value))
    for key, metrics in series.items():
        data.profiles[key] = {}
        for metric, points in metrics.items():
            points.sort()
            data.profiles[key][metric] = (
                np.array([p[0] for p in points]),
                np.array([p[1] for p in points], dtype=float),
            )
    if not data.analysed("eval"):
        raise ValueError(f"{path} holds no eval-split results: run `landscape analyze {run}`")
    data.claims = evaluate_claims(read_run(run))
    return data


def layer_similarity(run: Path, *, split: str = "eval") -> dict[str, LayerSimilarity]:
    """condition -> its layer x layer similarity matrices (empty when the analysis has none)."""
    out = {}
    with _open_analysis(analysis_path(run)) as f:
        for name in reader.info(run)["conditions"]:
            found = store.analysis.read_similarity(f, store.analysis.similarity_path(split, condition=name))
            if found is not None:
                out[name] = LayerSimilarity(layers=found[0], matrices=found[1])
    return out


def _open_analysis(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise store.SchemaError(f"{path} is not a readable HDF5 file ({error})") from None


def layer_arrays(
    run: Path, condition: str, layers: list[int], names: tuple[str, ...], *, split: str = "eval"
) -> dict[int, dict[str, np.ndarray]]:
    """Per-layer result arrays (e.g. ``cluster``, ``gride_ids``) of one condition; skipped layers are left out."""
    out = {}
    with _open_analysis(analysis_path(run)) as f:
        for layer in layers:
            path = store.analysis.result_path(condition, layer, split=split)
            if not store.analysis.result_done(f, path):
                continue
            _, arrays, skipped = store.analysis.read_result(f, path)
            if not skipped:
                out[layer] = {name: arrays[name] for name in names if name in arrays}
    return out


def trees(run: Path, condition: str, layers: list[int], labels: np.ndarray) -> dict[int, TreeLayer]:
    """The peak dendrogram of each layer, leaves named by their dominant label (first grouping field).

    ``labels`` (n,) are the labels of the split's rows, in the order of the stored results.
    """
    out = {}
    stored = layer_arrays(run, condition, layers, ("cluster", "cluster_compared", "tree_clusters", "tree_linkage"))
    for layer, arrays in stored.items():
        clusters = arrays.get("cluster_compared", arrays["cluster"])  # the clustering the tree was built on
        leaf_labels = []
        for cluster in arrays["tree_clusters"]:
            members = labels[clusters == cluster]
            names, counts = np.unique(members, return_counts=True)
            top = counts.argmax()
            leaf_labels.append(f"{names[top]} {100 * counts[top] / len(members):.0f}% (n={len(members)})")
        out[layer] = TreeLayer(
            linkage=arrays["tree_linkage"],
            leaf_labels=leaf_labels,
            n_clusters=int(clusters.max()) + 1 if len(clusters) else 0,
        )
    return out


def question_texts(data: RunData, data_path: str | None = None, *, width: int = 160) -> list[str] | None:
    """The question text of each /examples row (shortened), or None when the dataset is not at hand.

    The run records its task file and the data file's sha256; text is shown only from that very file.
    """
    try:
        _, items, _ = tasks.from_run(data.info, data_path)
    except tasks.TaskError:
        return None
    by_id = {item.id: item.question for item in items}
    texts = []
    for i in data.examples.ids:
        text = " ".join(by_id.get(tasks.id_key(i), "").split())
        texts.append(text if len(text) <= width else text[: width - 1] + "…")
    return texts
