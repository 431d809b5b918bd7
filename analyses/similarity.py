"""How alike the representations of a split are: every layer of a condition against its other
layers, and every condition against the others at each layer, by linear CKA (and debiased),
mutual kNN (Huh et al.'s, and on Euclidean neighbours), CKNNA and information imbalance
(``landscape.similarity``).

One task per condition (its layers) and one per layer (its conditions), each one pass of blocked
Gram matrices over its representations (``similarity_matrices``), read from hidden.h5 one layer
at a time. Mutual kNN and CKNNA read each layer's Huh et al. neighbours as the layer's own task
found them (``HUH_KNN``), so a layer's prepared features are multiplied once, not once a group;
a group with a duplicated row, or an analysis made before they were kept, finds its own.
Memory: a task's budget (``--similarity-memory``, 6 GiB: a condition's layers are kept when
their float64 copies fit, L x N x d x 8 bytes, 16 where the group finds its own neighbours, and
read again block by block when not) plus one layer's copies, not the whole run.
Layers without a geometry (every point identical, e.g. layer 0) are left out; rows duplicated
in any of a task's representations are dropped from all of them (neighbours among copies are
undefined; ``n_dropped``). A group is redone when the layers or conditions it should cover, or
``k``, or the measures (a run analysed before a measure existed), or the chance levels' draws or
seed (``null_draws``, ``null_seed``: a group analysed before the nulls existed) change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import h5py
import numpy as np

from landscape import store
from landscape.knn import distinct_rows
from landscape.similarity import MEMORY_BYTES, measure_names, similarity_matrices

# A layer task's per-row arrays that a group reads instead of multiplying Huh et al.'s features
# again (``analyses.run``: ``huh_neighbours`` of the layer's eval rows, when it has no duplicated row)
HUH_KNN, HUH_VALUES = "huh_knn", "huh_values"


def similarity_tasks(
    f: h5py.File,
    hidden: str,
    split: str,
    conditions: list[str],
    stored: dict[str, list[int]],
    *,
    states: str,
    k: int,
    device: str,
    memory_bytes: int = MEMORY_BYTES,
    null_draws: int = 0,
    null_seed: int = 0,
):
    """(group path, similarity_task, args) of every condition's layers and every layer's
    conditions whose stored group is missing or covers another set (or was made with other
    settings); ``f``: analysis.h5; ``stored``: each condition's stored layers (those with a
    geometry in ``f`` are compared); ``memory_bytes``: each task's budget; ``null_draws``,
    ``null_seed``: the chance levels' permutations (``similarity_matrices``)."""
    usable = {c: [layer for layer in stored[c] if _has_geometry(f, c, layer, split)] for c in conditions}
    groups = [
        (store.analysis.similarity_path(split, condition=c), "layer", [(c, layer) for layer in usable[c]])
        for c in conditions
    ]
    groups.extend(
        (
            store.analysis.similarity_path(split, layer=layer),
            "condition",
            [(c, layer) for c in conditions if layer in usable[c]],
        )
        for layer in sorted({layer for ls in usable.values() for layer in ls})
    )
    for path, compared, representations in groups:
        if len(representations) < 2:
            continue
        over = [layer if compared == "layer" else c for c, layer in representations]
        found = store.analysis.read_similarity(f, path)
        if found is not None and found[0].tolist() == over and _same_settings(found[2], k, null_draws, null_seed):
            continue
        distinct = all(_known_distinct(f, c, layer, split) for c, layer in representations)
        yield (
            path,
            similarity_task,
            (
                hidden,
                split,
                representations,
                {compared: np.array(over)},
                states,
                k,
                device,
                memory_bytes,
                null_draws,
                null_seed,
                distinct,
                _stored_huh_lists(f, representations, split, k) if distinct else None,
            ),
        )


def _same_settings(attrs: dict, k: int, null_draws: int, null_seed: int) -> bool:
    """Whether a stored group's attrs are those these settings give (a group analysed before the
    nulls existed has no ``null_draws``: 0)."""
    return (
        attrs.get("k") == k
        and list(attrs.get("measures", [])) == measure_names(null_draws)
        and attrs.get("null_draws", 0) == null_draws
        and (not null_draws or attrs.get("null_seed") == null_seed)
    )


def similarity_task(
    hidden: str,
    split: str,
    representations: list[tuple[str, int]],
    over: dict[str, np.ndarray],
    states: str,
    k: int,
    device: str,
    memory_bytes: int = MEMORY_BYTES,
    null_draws: int = 0,
    null_seed: int = 0,
    known_distinct: bool = False,
    huh_lists: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict[str, np.ndarray], dict] | None:
    """Compare every two of the representations' states of the split's rows (runs in a worker),
    reading them from ``hidden`` one layer at a time (``StoredStates``); ``over``: ``{"layer":
    ...}`` or ``{"condition": ...}``, what the group is indexed by; None when too few rows are
    left after dropping duplicates. ``null_draws`` > 0: each measure's permutation null too, on
    the same rows (attrs ``null_draws``, ``null_seed``, ``null_route``, where needed ``null_note``).
    ``known_distinct``: the layer tasks found no duplicated row in any representation, so they
    are not read and hashed once more to look for them; ``huh_lists``: then, each
    representation's Huh et al. neighbours as its layer task found them (``HUH_KNN``), so the pass
    multiplies only the centred rows."""
    with h5py.File(hidden, "r") as f:
        rows = np.flatnonzero(store.hidden.read_examples(f).splits == split)
        duplicated = np.zeros(len(rows), dtype=bool)
        for condition, layer in [] if known_distinct else representations:
            _, inverse = distinct_rows(store.hidden.read_layer(f, condition, layer, states)[rows])
            duplicated |= np.bincount(inverse)[inverse] > 1
        kept = rows[~duplicated]
        if len(kept) <= max(k, 3):
            return None
        matrices = similarity_matrices(
            StoredStates(f, representations, kept, states),
            k=k,
            cknna_k=k,
            device=device,
            memory_bytes=memory_bytes,
            null_draws=null_draws,
            null_seed=null_seed,
            huh_lists=huh_lists if known_distinct else None,
        )
    return {**over, **matrices.as_dict()}, {
        "k": k,
        "n_rows": len(kept),
        "n_dropped": len(rows) - len(kept),
        "measures": measure_names(null_draws),
        **matrices.null_attrs,
    }


class StoredStates(Sequence[np.ndarray]):
    """(condition, layer) representations of some rows, each read from an open hidden.h5 when
    asked for, so that ``similarity_matrices`` holds no more of them than its memory allows."""

    def __init__(self, f: h5py.File, representations: list[tuple[str, int]], rows: np.ndarray, states: str):
        self._f, self._representations, self._rows, self._states = f, representations, rows, states

    def __len__(self) -> int:
        return len(self._representations)

    @overload
    def __getitem__(self, r: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, r: slice) -> list[np.ndarray]: ...

    def __getitem__(self, r: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(r, slice):  # (Sequence's contract; similarity_matrices reads one at a time)
            return [self[i] for i in range(len(self))[r]]
        condition, layer = self._representations[r]
        return store.hidden.read_layer(self._f, condition, layer, self._states)[self._rows]


def _stored_huh_lists(
    f: h5py.File, representations: list[tuple[str, int]], split: str, k: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Each representation's Huh et al. neighbours at ``k`` as its layer task stored them, or None
    when one lacks them (an analysis made before they were stored, or at another k)."""
    lists = []
    for condition, layer in representations:
        path = store.analysis.result_path(condition, layer, split=split)
        arrays = store.analysis.read_result(f, path, arrays=(HUH_KNN, HUH_VALUES))[1]
        if HUH_KNN not in arrays or arrays[HUH_KNN].shape[1:] != (k,):
            return None
        lists.append((arrays[HUH_KNN], arrays[HUH_VALUES]))
    return lists


def _known_distinct(f: h5py.File, condition: str, layer: int, split: str) -> bool:
    """Whether the layer's task counted its duplicated rows and found none (``n_duplicates``; an
    analysis made before it was stored: not known)."""
    scalars = store.analysis.read_result(f, store.analysis.result_path(condition, layer, split=split), arrays=())[0]
    return scalars.get("n_duplicates") == 0


def _has_geometry(f: h5py.File, condition: str, layer: int, split: str) -> bool:
    path = store.analysis.result_path(condition, layer, split=split)
    return store.analysis.result_done(f, path) and not store.analysis.read_result(f, path, arrays=())[2]
