"""How alike the representations of a split are: every layer of a condition against its other
layers, and every condition against the others at each layer, by linear CKA (and debiased),
mutual kNN (Huh et al.'s, and on Euclidean neighbours), CKNNA and information imbalance
(``landscape.similarity``).

One task per condition (its layers) and one per layer (its conditions), each one pass of blocked
Gram matrices over its representations (``similarity_matrices``): memory is one condition's
layers, L x N x d x 16 bytes (float64, and Huh et al.'s normalised copy), not the whole run.
Layers without a geometry (every point identical, e.g. layer 0) are left out; rows duplicated
in any of a task's representations are dropped from all of them (neighbours among copies are
undefined; ``n_dropped``). A group is redone when the layers or conditions it should cover, or
``k``, or the measures (a run analysed before a measure existed), change.
"""

from __future__ import annotations

import h5py
import numpy as np

from landscape import store
from landscape.knn import distinct_rows
from landscape.similarity import MEASURES, similarity_matrices


def similarity_tasks(f: h5py.File, hidden: str, split: str, conditions: list[str], stored: dict[str, list[int]], *,
                     states: str, k: int, device: str):
    """(group path, similarity_task, args) of every condition's layers and every layer's
    conditions whose stored group is missing or covers another set; ``f``: analysis.h5;
    ``stored``: each condition's stored layers (those with a geometry in ``f`` are compared)."""
    usable = {c: [l for l in stored[c] if _has_geometry(f, c, l, split)] for c in conditions}
    groups = [(store.analysis.similarity_path(split, condition=c), "layer", [(c, l) for l in usable[c]]) for c in conditions]
    for layer in sorted({l for ls in usable.values() for l in ls}):
        groups.append((store.analysis.similarity_path(split, layer=layer), "condition",
                       [(c, layer) for c in conditions if layer in usable[c]]))
    for path, compared, representations in groups:
        if len(representations) < 2:
            continue
        over = [l if compared == "layer" else c for c, l in representations]
        stored = store.analysis.read_similarity(f, path)
        if (stored is not None and stored[0].tolist() == over and stored[2].get("k") == k
                and list(stored[2].get("measures", [])) == list(MEASURES)):
            continue
        yield path, similarity_task, (hidden, split, representations, {compared: np.array(over)}, states, k, device)


def similarity_task(hidden: str, split: str, representations: list[tuple[str, int]], over: dict[str, np.ndarray],
                    states: str, k: int, device: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """Read the representations' states of the split's rows and compare every two (runs in a
    worker); ``over``: ``{"layer": ...}`` or ``{"condition": ...}``, what the group is indexed by;
    None when too few rows are left after dropping duplicates."""
    with h5py.File(hidden, "r") as f:
        rows = np.flatnonzero(store.hidden.read_examples(f).splits == split)
        layers = [store.hidden.read_layer(f, c, l, states)[rows] for c, l in representations]
    duplicated = np.zeros(len(rows), dtype=bool)
    for X in layers:
        _, inverse = distinct_rows(X)
        duplicated |= np.bincount(inverse)[inverse] > 1
    kept = np.flatnonzero(~duplicated)
    if len(kept) <= max(k, 3):
        return None
    matrices = similarity_matrices([X[kept] for X in layers], k=k, cknna_k=k, device=device)
    return {**over, **matrices.as_dict()}, {"k": k, "n_rows": len(kept), "n_dropped": len(rows) - len(kept), "measures": list(MEASURES)}


def _has_geometry(f: h5py.File, condition: str, layer: int, split: str) -> bool:
    path = store.analysis.result_path(condition, layer, split=split)
    return store.analysis.result_done(f, path) and not store.analysis.read_result(f, path, arrays=())[2]
