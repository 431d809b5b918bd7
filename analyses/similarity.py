"""How alike the representations of a split are: every layer of a condition against its other
layers, and every condition against the others at each layer, by linear CKA (and debiased),
mutual kNN, CKNNA and information imbalance (``landscape.similarity``).

One pass over all (condition, layer) representations of the split's rows: each N x N Gram row
block is computed once and serves every measure and both kinds of comparison. Layers without a
geometry (every point identical, e.g. layer 0) are left out; rows duplicated in any other
representation are dropped from all (neighbours among copies are undefined; ``n_dropped``).
The result is one group of analysis.h5 (``schema.write_similarity``), redone when the
conditions or layers it should cover change.
"""

from __future__ import annotations

import sys

import h5py
import numpy as np

from landscape import schema
from landscape.knn import distinct_rows
from landscape.similarity import MEASURES, similarity_matrices


def write_similarity(f: h5py.File, hidden: str, split: str, conditions: list[str], layers: dict[str, list[int]],
                     *, states: str, k: int, device: str, progress: bool = False) -> bool:
    """Compute and write the split's similarity group unless the stored one covers the same
    (condition, layer) set with the same ``k``; returns whether it computed."""
    covered = [(c, l) for c in conditions for l in layers[c]
               if schema.result_done(f, schema.result_path(c, l, split=split))
               and not schema.read_result(f, schema.result_path(c, l, split=split), arrays=())[2]]
    stored = schema.read_similarity(f, split)
    if stored is not None:
        names, stored_layers, _, attrs = stored
        if list(zip(names.tolist(), stored_layers.tolist())) == covered and attrs.get("k") == k:
            return False
    if len(covered) < 2:
        return False
    with h5py.File(hidden, "r") as h:
        rows = np.flatnonzero(schema.read_examples(h).splits == split)
        states_by_rep = [schema.read_layer(h, c, l, states)[rows] for c, l in covered]
    duplicated = np.zeros(len(rows), dtype=bool)
    for X in states_by_rep:
        _, inverse = distinct_rows(X)
        duplicated |= np.bincount(inverse)[inverse] > 1
    kept = np.flatnonzero(~duplicated)
    if len(kept) <= max(k, 3):
        return False
    if progress:
        print(f"similarity: {len(covered)} (condition, layer) representations of {len(kept)} {split} rows", file=sys.stderr)
    names = np.array([c for c, _ in covered])
    numbers = np.array([l for _, l in covered])
    wanted = (names[:, None] == names[None, :]) | (numbers[:, None] == numbers[None, :])
    matrices = similarity_matrices([X[kept] for X in states_by_rep], k=k, cknna_k=k, wanted=wanted, device=device)
    schema.write_similarity(f, split, names, numbers, matrices.as_dict(),
                            {"k": k, "n_rows": len(kept), "n_dropped": len(rows) - len(kept), "measures": list(MEASURES)})
    return True
