"""Non-identifiability (arXiv 2405.01964): fine-tunes with equal loss, different landscapes?

Fine-tunes that differ only in their seed (``sft``, ``sft-seed1``, ``sft-seed2``, made by
``landscape finetune --seeds 0,1,2``) reach nearly the same loss. Per layer, this compares their
landscapes (neighbourhood overlap and clustering ARI of every pair, spread of the intrinsic
dimension and of the number of clusters) next to how close their losses and accuracies are.

Example:
    >>> seed_families(["sft", "sft-seed1", "sft-seed2", "sft-random"])
    {'sft': ['sft', 'sft-seed1', 'sft-seed2']}
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from landscape.names import parse_seed


def seed_families(names: list[str]) -> dict[str, list[str]]:
    """base -> [base, base-seed<k>, ...] for every base with at least one other seed."""
    families: dict[str, list[str]] = {}
    for name in names:
        base = (parse_seed(name) or ("", 0))[0]
        if base in names:
            families.setdefault(base, [base]).append(name)
    return {base: sorted(members, key=lambda n: (n != base, n)) for base, members in families.items()}


def compare_seeds(
    layer_scalars: dict[str, dict[str, float]],
    pair_scalars: dict[tuple[str, str], dict[str, float]],
    eval_bits: dict[str, float],
    accuracy: dict[str, float],
) -> dict[str, float]:
    """Spread of one layer's landscape across seeds, beside the spread of their loss.

    ``layer_scalars[name]``: that condition's metrics at this layer; ``pair_scalars[(a, b)]``: the
    pair's (data_overlap, ari_clusters); ``eval_bits[name]``: mean code length of the true eval
    answers (bits, the eval loss); ``accuracy[name]``: eval accuracy.
    """
    names = list(layer_scalars)
    overlaps = [pair_scalars[p]["data_overlap"] for p in combinations(names, 2) if p in pair_scalars]
    aris = [pair_scalars[p]["ari_clusters"] for p in combinations(names, 2) if p in pair_scalars]
    ids = np.array([layer_scalars[n].get("id_gride", np.nan) for n in names])
    clusters = np.array([layer_scalars[n].get("n_clusters", np.nan) for n in names])
    bits = np.array([eval_bits[n] for n in names])
    acc = np.array([accuracy[n] for n in names])
    return {
        "n_seeds": float(len(names)),
        "overlap_mean": float(np.mean(overlaps)) if overlaps else np.nan,
        "overlap_min": float(np.min(overlaps)) if overlaps else np.nan,
        "ari_clusters_mean": float(np.mean(aris)) if aris else np.nan,
        "id_gride_mean": float(np.mean(ids)),
        "id_gride_range": float(np.ptp(ids)),
        "n_clusters_range": float(np.ptp(clusters)),
        "eval_bits_mean": float(bits.mean()),
        "eval_bits_range": float(np.ptp(bits)),
        "accuracy_mean": float(acc.mean()),
        "accuracy_range": float(np.ptp(acc)),
    }
