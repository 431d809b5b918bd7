"""Which examples does fine-tuning spend its bits on? Spearman correlations (bootstrap CIs) of
per-example targets with the landscape's per-example features, per layer:

- ``edl:<fine-tune>`` (train rows): the bits the fine-tune saved on each training example's label
  (its online code minus its final code: ``landscape.edl``);
- ``gain:<fine-tune>`` (eval rows): the bits the fine-tune saved on each held-out example.

Features: log density, core membership and purity of the first grouping field at the example,
in the base model (``0shot``) and in the fine-tuned condition, and the data overlap between the
two. Stored as ``/correlations/<split>/<target>/<layer>`` (``landscape.store.analysis``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from landscape import store
from landscape.names import ZERO_SHOT, correlation_target, feature_name, grouped
from landscape.stats import spearman_bootstrap

# Per-example landscape features that EDL (train rows) and the generalisation gain (eval rows)
# are correlated with, each taken in the base model (0shot) and in the fine-tuned condition.
# Purity is that of the first grouping field (the one demos are drawn by).
EDL_FEATURES = ("log_density", "core", "purity")


def correlation_tasks(
    f: h5py.File,
    hidden: Path,
    targets: list[str],
    split_rows: dict[str, np.ndarray],
    layers_of: dict[str, list[int]],
    first: str,
):
    """(path, correlations, (values, features, seed)) per fine-tune, split and layer not yet done:
    Spearman (bootstrap CI) of per-example EDL / eval gain with landscape features.

    ``split_rows[split]`` are the /examples rows behind every result of that split, in order;
    ``first`` is the task's first grouping field (whose purity is a feature)."""
    stored = {feat: grouped(feat, first) if feat == "purity" else feat for feat in EDL_FEATURES}
    for name in targets:
        with h5py.File(hidden, "r") as h:
            edl, _ = store.edl.read_edl(h, name)
        by_split = {
            "train": ("edl", edl["rows"], edl["online_bits"] - edl["final_bits"]),
            "eval": ("gain", edl["eval_rows"], edl["eval_gain_bits"]),
        }
        for split, result_rows in split_rows.items():
            kind, rows, values = by_split[split]
            positions = np.searchsorted(result_rows, rows)  # target rows within the split's results
            for layer in layers_of[name]:
                path = store.analysis.correlation_path(correlation_target(kind, name), layer, split=split)
                if store.analysis.result_done(f, path):
                    continue
                features = {}
                for condition in (ZERO_SHOT, name):
                    _, arrays, skipped = store.analysis.read_result(
                        f, store.analysis.result_path(condition, layer, split=split), arrays=tuple(stored.values())
                    )
                    if not skipped:
                        features.update(
                            {
                                feature_name(condition, f"{feat}_{first}" if feat == "purity" else feat): arrays[
                                    stored[feat]
                                ][positions]
                                for feat in EDL_FEATURES
                            }
                        )
                _, pair, skipped = store.analysis.read_result(
                    f, store.analysis.result_path(ZERO_SHOT, layer, other=name, split=split)
                )
                if not skipped:
                    features["data_overlap"] = pair["data_overlap"][positions]
                yield path, correlations, (values, features, layer)


def correlations(values: np.ndarray, features: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    scalars = {}
    for feature, x in features.items():
        corr = spearman_bootstrap(values, x.astype(float), n_boot=1000, seed=seed)
        scalars.update({f"{feature}_rho": corr.rho, f"{feature}_low": corr.low, f"{feature}_high": corr.high})
    return scalars
