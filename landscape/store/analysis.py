"""The layout of ``RUN/analysis.h5``: every result of ``landscape analyze``::

    /                                          attrs: schema_version, settings (JSON), source_hidden,
                                               instances (JSON: condition -> the instance analysed)
    /layers/<split>/<condition>/<layer:03d>/   attrs: complete, skipped, <scalar metrics>
         rows, cluster, core, log_density, purity[<grouping>], knn, gride_*, centers,
         saddle_log_density, tree_clusters, tree_linkage   (per-row arrays: the split's rows)
         label_overlap_rows[<grouping>] (each row's share of same-label neighbours: their class-weighted
         mean is the label overlap; NaN where not measured); attrs also <measure>_null, _null_low,
         _null_high[<grouping>]: the ARI's and label overlap's permutation nulls (landscape.nulls)
         lens_pred (the logit lens's argmax; analyses.readouts)
         huh_knn (n, similarity_k) int32, huh_values (n, similarity_k) float64: each eval row's nearest
         others by Huh et al.'s prepared features and their inner products (landscape.huh
         huh_neighbours; layers without duplicated rows), which the similarity groups read
    /decisions/<split>/<condition>/<layer:03d>/  attrs: lens_decided (share of rows whose lens answer
         is final from this layer on); the last layer's group: decision_layer (n,)
    /pairs/<split>/<a>~<b>/<layer:03d>/        attrs: complete, skipped, data_overlap, ari_clusters,
         data_overlap_null, ari_clusters_null (+ _low, _high: b's rows shuffled)
         data_overlap (n,)
    /similarity/<split>/layers/<condition>/     attrs: complete, k, n_rows, n_dropped (rows duplicated
         in some layer, left out), measures (the matrices' names)   layer (R,) int: the condition's layers
         with a geometry; cka, cka_debiased, mutual_knn, mutual_knn_euclidean, cknna, imbalance (R, R) float64,
         layer i against layer j (imbalance[i, j] = Delta(i -> j)); metrics.csv rows: '<condition>' at layer i,
         '<measure>[layer:<j>]'
         chance levels (analyze's null_draws > 0; attrs null_draws, null_seed, null_route: measure -> 'draws'
         or 'moments', null_note where CKA's come from moments): <measure>_null, <measure>_null_low,
         <measure>_null_high (R, R) float64, NaN diagonal, for cka, cka_debiased, mutual_knn,
         mutual_knn_euclidean, cknna: [i, j] = the measure of i and j with j's rows shuffled: the mean and
         95 % range of the permutations (draws: their 2.5 / 97.5 percentiles; moments: mean -/+ 1.96 sd;
         landscape.similarity_nulls); metrics.csv: one row '<measure>_null[layer:<j>]', low and high its range
    /similarity/<split>/conditions/<layer:03d>/  the same over condition (R,) str: the conditions at a
         layer; metrics.csv rows: pairs 'a~b' with cka, ..., imbalance_a_to_b, imbalance_b_to_a, cka_null, ...
    /correlations/<split>/<target>/<layer:03d>/  attrs: complete, skipped, <feature>_{rho,low,high}
    /seeds/<split>/<base>/<layer:03d>/         attrs: how far apart the landscapes of fine-tunes that
         differ only in their seed are (overlap, ARI, ID range) next to their loss and accuracy spread
    /complexity/                               attrs: baseline_accuracy, target_accuracy, smallest_bits,
         bits_per_parameter; strategy, label, bits, accuracy, on_front (P,)   (task complexity)

Every group is written whole (``complete`` set last), so an interrupted analysis redoes it.

Example:
    >>> result_path("5shot", 3), result_path("0shot", 3, other="5shot", split="train")
    ('layers/eval/5shot/003', 'pairs/train/0shot~5shot/003')
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from landscape.names import (
    ZERO_SHOT,
    correlation_key,
    grouped,
    pair_name,
    seeds_key,
    split_pair,
    target_condition,
    versus_layer,
)
from landscape.store.layout import (
    SCHEMA_VERSION,
    SchemaError,
    decode_attr,
    decoded_attrs,
    encode_attr,
    group_done,
    set_attrs,
    write_group,
)

_LAYERS = "layers"
_PAIRS = "pairs"
_SIMILARITY = "similarity"
_CORRELATIONS = "correlations"
_DECISIONS = "decisions"
_SEEDS = "seeds"
_COMPLEXITY = "complexity"


def write_analysis_header(f: h5py.File, settings: Mapping[str, Any], source: str, stamp: Mapping[str, Any]) -> None:
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["settings"] = encode_attr(dict(settings))
    f.attrs["source_hidden"] = source
    set_attrs(f, stamp)  # command, created_at, versions


def analysis_attrs(f: h5py.File) -> dict[str, Any]:
    return decoded_attrs(f)


def analysis_settings(f: h5py.File) -> dict[str, Any]:
    if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
        raise SchemaError(f"{f.filename} is not an analysis file of schema version {SCHEMA_VERSION}")
    return decode_attr(f.attrs["settings"])


def analyzed_instances(f: h5py.File) -> dict[str, str]:
    """condition -> the ``instance`` of it whose results analysis.h5 holds (root attr ``instances``)."""
    return dict(decode_attr(f.attrs["instances"])) if "instances" in f.attrs else {}


def record_instances(f: h5py.File, instances: Mapping[str, str]) -> None:
    f.attrs["instances"] = encode_attr({**analyzed_instances(f), **instances})


def result_path(condition: str, layer: int, other: str | None = None, *, split: str = "eval") -> str:
    """Group of one layer's results on one split: of a condition, or of the pair (condition, other)."""
    if other is None:
        return f"{_LAYERS}/{split}/{condition}/{layer:03d}"
    return f"{_PAIRS}/{split}/{pair_name(condition, other)}/{layer:03d}"


def decision_path(condition: str, layer: int, *, split: str) -> str:
    """Group of the logit lens's decisions of a condition up to a layer (``lens_decided``)."""
    return f"{_DECISIONS}/{split}/{condition}/{layer:03d}"


def correlation_path(target: str, layer: int, *, split: str) -> str:
    """Group of the correlations of a per-example target (e.g. EDL of a condition) with features."""
    return f"{_CORRELATIONS}/{split}/{target}/{layer:03d}"


def seeds_path(base: str, layer: int, *, split: str) -> str:
    """Group of the seed-to-seed comparison of the fine-tunes ``base``, ``base-seed<k>``, ..."""
    return f"{_SEEDS}/{split}/{base}/{layer:03d}"


def result_done(f: h5py.File, path: str) -> bool:
    """Whether a result group was written whole."""
    return group_done(f, path)


def write_result(
    f: h5py.File, path: str, scalars: Mapping[str, float], arrays: Mapping[str, np.ndarray], skipped: str
) -> None:
    """Write one result group: scalar metrics as attrs, arrays as datasets."""
    write_group(f, path, arrays, {**{k: float(v) for k, v in scalars.items()}, "skipped": skipped})


def read_result(
    f: h5py.File, path: str, arrays: tuple[str, ...] | None = None
) -> tuple[dict[str, float], dict[str, np.ndarray], str]:
    """(scalars, arrays, skipped) of one result group; ``arrays`` names the ones to read (default: all)."""
    if path not in f:
        raise SchemaError(f"no result {path} in {f.filename}: run `landscape analyze` first")
    group = f[path]
    scalars = _result_scalars(group)
    names = [name for name in group if arrays is None or name in arrays]
    return scalars, {name: group[name][()] for name in names}, str(group.attrs.get("skipped", ""))


def _result_scalars(group: h5py.Group) -> dict[str, float]:
    """The metric attrs of a result group (all but its bookkeeping)."""
    return {k: float(v) for k, v in group.attrs.items() if k not in ("complete", "skipped")}


def iter_results(f: h5py.File):
    """Yield (split, condition, layer, scalars, skipped) for every complete result.

    Pairs of conditions are named 'a~b', correlations 'corr:<target>', seed comparisons 'seeds:<base>'
    (``landscape.names``);
    the similarity matrices come as rows of their conditions and pairs (``_similarity_rows``).
    """
    result_name = {_CORRELATIONS: correlation_key, _SEEDS: seeds_key}
    for top in (_LAYERS, _DECISIONS, _PAIRS, _CORRELATIONS, _SEEDS):
        if top not in f:
            continue
        for split, by_split in f[top].items():
            for name, group in by_split.items():
                label = result_name.get(top, str)(name)
                for layer_name, result in group.items():
                    if result.attrs.get("complete", False):
                        yield (
                            split,
                            label,
                            int(layer_name),
                            _result_scalars(result),
                            str(result.attrs.get("skipped", "")),
                        )
    for split in f.get(_SIMILARITY, {}):
        for label, layer, scalars in _similarity_rows(f, split):
            yield split, label, layer, scalars, ""


def delete_results_of(f: h5py.File, condition: str) -> int:
    """Delete every result computed from ``condition`` (its layers, its pairs, the correlations
    that read it); returns how many groups went. Seeds and complexity are rewritten by every run."""
    uses = {
        _LAYERS: lambda name: name == condition,
        _DECISIONS: lambda name: name == condition,
        _PAIRS: lambda name: condition in (split_pair(name) or ()),
        # targets are edl:<fine-tune> / gain:<fine-tune>; their features come from 0shot too
        _CORRELATIONS: lambda name: target_condition(name) == condition or condition == ZERO_SHOT,
    }
    doomed = [
        f"{top}/{split}/{name}"
        for top, used in uses.items()
        for split, by_split in f.get(top, {}).items()
        for name in by_split
        if used(name)
    ]
    for split, by_split in f.get(_SIMILARITY, {}).items():
        if condition in by_split.get("layers", {}):
            doomed.append(f"{_SIMILARITY}/{split}/layers/{condition}")
        for layer_name, group in by_split.get("conditions", {}).items():  # every condition at a layer
            if "condition" not in group or condition in group["condition"].asstr()[()]:
                doomed.append(f"{_SIMILARITY}/{split}/conditions/{layer_name}")
    for path in doomed:
        del f[path]
    return len(doomed)


def similarity_path(split: str, *, condition: str | None = None, layer: int | None = None) -> str:
    """Group of the similarity of a condition's layers (``condition``) or of the conditions at a ``layer``."""
    if (condition is None) == (layer is None):
        raise ValueError("a similarity group is of one condition or of one layer")
    return (
        f"{_SIMILARITY}/{split}/layers/{condition}"
        if layer is None
        else f"{_SIMILARITY}/{split}/conditions/{layer:03d}"
    )


def write_similarity(f: h5py.File, path: str, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """(Re)write a similarity group: ``arrays`` holds ``layer`` (R,) int or ``condition`` (R,) str,
    the representations compared, and each measure's (R, R) matrix, with its chance level's where
    computed (``similarity_matrices``)."""
    write_group(f, path, arrays, attrs)


def read_similarity(f: h5py.File, path: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]] | None:
    """(over (R,), matrices, attrs) of a similarity group, or None when it is not complete."""
    if not result_done(f, path):
        return None
    group = f[path]
    key = "layer" if "layer" in group else "condition"
    over = group[key][()] if key == "layer" else group[key].asstr()[()].astype(str)
    return over, {name: group[name][()] for name in group if name != key}, decoded_attrs(group)


def _similarity_rows(f: h5py.File, split: str):
    """(label, layer, scalars) rows of a split's similarity groups (see the layout above); a
    null's ``<m>_null_low`` / ``_high`` beside ``<m>_null`` become that row's low and high in
    metrics.csv (``analyses.metrics``)."""
    for name in f.get(f"{_SIMILARITY}/{split}/layers", {}):
        found = read_similarity(f, similarity_path(split, condition=name))
        if found is not None:
            layers, matrices, _ = found
            for i, j in itertools.permutations(range(len(layers)), 2):
                yield (
                    name,
                    int(layers[i]),
                    {
                        grouped("imbalance_a_to_b" if m == "imbalance" else m, versus_layer(int(layers[j]))): float(
                            v[i, j]
                        )
                        for m, v in matrices.items()
                    },
                )
    for layer_name in f.get(f"{_SIMILARITY}/{split}/conditions", {}):
        found = read_similarity(f, similarity_path(split, layer=int(layer_name)))
        if found is not None:
            conditions, matrices, _ = found
            for i, j in itertools.combinations(
                range(len(conditions)), 2
            ):  # the analysed order: pairs named (earlier, later)
                scalars = {m: float(v[i, j]) for m, v in matrices.items() if m != "imbalance"}
                scalars.update(
                    imbalance_a_to_b=float(matrices["imbalance"][i, j]),
                    imbalance_b_to_a=float(matrices["imbalance"][j, i]),
                )
                yield pair_name(conditions[i], conditions[j]), int(layer_name), scalars


def write_complexity(f: h5py.File, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    write_group(f, _COMPLEXITY, arrays, attrs)


def read_complexity(f: h5py.File) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    if not result_done(f, _COMPLEXITY):
        return None
    group = f[_COMPLEXITY]
    arrays = {name: group[name][()] for name in group}
    for name in ("strategy", "label"):
        arrays[name] = group[name].asstr()[()].astype(str)
    return arrays, decoded_attrs(group)
