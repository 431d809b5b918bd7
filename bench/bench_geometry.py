"""Per-layer analysis benchmark: our kNN-once path against DADApy's own path. Prints one table.

    .venv/bin/python bench/bench_geometry.py [--sizes 5000x576,14000x4096]

For each synthetic layer (a Gaussian mixture on low-dimensional subspaces plus isotropic noise,
float32, like a hidden-state layer), measured in one run:
- ours: ``analyze_layer`` without the further ID estimators (kNN graph once; GRIDE, 2NN, kNN
  density, ADP with and without halo, ARI x2, label overlap x2 at their class fractions, peak
  tree) against DADApy's own path from coordinates (``Data(coordinates=X)``;
  ``compute_distances(maxk)`` then the same analyses on that object, and distances to more
  neighbours where a class fraction needs them); target: >= 2x faster;
- the kNN graph alone against the GEMM bound: N^2 d flops (the symmetric half of X @ X.T, which
  it cannot avoid) at the float32 matmul rate measured here on the full X @ X.T; target: <= 1.5x.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from analyses.layer import AnalysisConfig, analyze_layer
from landscape.knn import knn_graph


def synthetic_layer(n: int, d: int, classes: int = 20, sub: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    X = np.empty((n, d), dtype=np.float32)
    for c in range(classes):
        rows = labels == c
        basis = np.linalg.qr(rng.normal(size=(d, sub)))[0]
        X[rows] = rng.normal(size=d) * 4 + rng.normal(size=(rows.sum(), sub)) @ basis.T * 3
    X += rng.normal(size=(n, d)).astype(np.float32) * 0.3
    return X, labels.astype(str), rng.integers(0, 4, n)


def dadapy_path(X, subjects, answers, config: AnalysisConfig) -> None:
    from dadapy import Data
    from sklearn.metrics import adjusted_rand_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = Data(coordinates=X, maxk=config.maxk, verbose=False)
        data.compute_distances(maxk=config.maxk)
        ids, _, _ = data.return_id_scaling_gride(range_max=config.gride_range)
        data.compute_id_2NN()
        for halo in (False, True):
            data.set_id(ids[4])
            data.compute_density_kNN(k=config.density_k)
            labels = data.compute_clustering_ADP(Z=config.Z, halo=halo)
        adjusted_rand_score(labels, subjects)
        adjusted_rand_score(labels, answers)
        # The label overlap at the fraction asked for, as analyze_layer computes it: past maxk
        # neighbours, DADApy needs distances to that many (a second Data, as ours builds a second graph).
        for lab, fraction in (
            (np.unique(subjects, return_inverse=True)[1], config.class_fraction),
            (answers, config.answer_class_fraction),
        ):
            needed = int(fraction * np.bincount(lab).max())
            if needed > config.maxk:
                longer = Data(coordinates=X, maxk=needed, verbose=False)
                longer.compute_distances(maxk=needed)
                longer.return_label_overlap(lab, class_fraction=fraction)
            else:
                data.return_label_overlap(lab, class_fraction=fraction)


def gemm_seconds(X: np.ndarray) -> float:
    t = torch.from_numpy(X)
    t @ t[:64].T  # warm-up
    start = time.perf_counter()
    t @ t.T
    return time.perf_counter() - start


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000x576,14000x4096")
    args = parser.parse_args()
    # Like for like: DADApy's path has no MLE / TLE / local PCA / DANCo (those cost 0.8x more here).
    config = AnalysisConfig(id_estimators=False)
    rows = []
    for size in args.sizes.split(","):
        n, d = (int(v) for v in size.split("x"))
        X, subjects, answers = synthetic_layer(n, d)
        if not rows:  # warm-up: imports (DADApy pulls in jax) and first-call costs
            analyze_layer(X[:500], {"subject": subjects[:500], "answer": answers[:500]}, config)
            dadapy_path(X[:500], subjects[:500], answers[:500], config)
        gemm = gemm_seconds(X)
        knn = timed(knn_graph, X, config.maxk)
        ours = timed(analyze_layer, X, {"subject": subjects, "answer": answers}, config)
        theirs = timed(dadapy_path, X, subjects, answers, config)
        rows.append((n, d, ours, theirs, knn, gemm))
    print(f"\nper-layer analysis benchmark, maxk={config.maxk}, {torch.get_num_threads()} threads\n")
    print(
        f"{'N x d':>12s} {'ours s':>8s} {'DADApy s':>9s} {'speed-up':>9s} {'kNN s':>7s} {'bound s':>8s} "
        f"{'GFLOP/s':>8s} {'kNN/bound':>10s}"
    )
    for n, d, ours, theirs, knn, gemm in rows:
        bound = gemm / 2  # N^2 d flops at the rate of the full 2 N^2 d product
        print(
            f"{n:>6d} x {d:<4d} {ours:8.2f} {theirs:9.2f} {theirs / ours:8.2f}x {knn:7.2f} {bound:8.2f} "
            f"{2 * n * n * d / gemm / 1e9:8.1f} {knn / bound:9.2f}x"
        )
    print("targets: speed-up >= 2x; kNN/GEMM <= 1.5x")


if __name__ == "__main__":
    main()
