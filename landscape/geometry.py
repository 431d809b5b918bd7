"""Geometry of one layer from its kNN graph: intrinsic dimension, density peaks, overlaps.

Thin wrappers over DADApy, for two reasons: DADApy is stateful (results are left as attributes
of a ``Data`` object and each method silently depends on earlier calls) and it recomputes
neighbours from coordinates; here each function takes the precomputed ``KnnGraph`` and returns
values. DADApy sees ``Data(distances=(distances, indices))``, so it never computes distances.

Defaults follow Doimo et al. 2024: GRIDE up to rank 100 (IDs at scales 1, 2, 4, ..., 32), the ID
at scale 16 for the kNN density with k = 16, ADP with Z = 1.6, label overlap with k_i = 0.3 x
the size of i's class, data overlap with k = 30.

Example:
    >>> import numpy as np
    >>> from landscape.knn import knn_graph
    >>> X = np.random.default_rng(0).normal(size=(500, 3))
    >>> g = knn_graph(X, maxk=64)
    >>> round(float(intrinsic_dimension_2nn(g)[0]))
    3
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score

from landscape.knn import GeometryError, KnnGraph


def _dadapy_data(graph: KnnGraph):
    from dadapy import Data  # imported lazily: it pulls in jax

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Data(distances=(graph.distances, graph.indices), maxk=graph.maxk, verbose=False, n_jobs=1)


# ---------------------------------------------------------------- intrinsic dimension


@dataclass(frozen=True)
class GrideCurve:
    """GRIDE IDs at doubling neighbour ranks: ``ids[j]`` uses the ranks ``scales[j]`` and 2x that."""

    scales: np.ndarray  # (S,) int: 1, 2, 4, ...
    ids: np.ndarray  # (S,)
    errors: np.ndarray  # (S,)
    radii: np.ndarray  # (S,) mean distance of the neighbours involved

    def at(self, scale: int) -> float:
        """The ID at a rank ``scale`` (the largest available at or below it)."""
        usable = np.flatnonzero(self.scales <= scale)
        return float(self.ids[usable[-1]]) if len(usable) else float(self.ids[0])


def intrinsic_dimension_gride(graph: KnnGraph, range_max: int = 100) -> GrideCurve:
    """Multiscale GRIDE (Denti et al. 2022) over neighbour ranks up to ``range_max``."""
    if range_max > graph.maxk:
        raise GeometryError(f"GRIDE range_max={range_max} needs maxk >= {range_max}, the graph has {graph.maxk}")
    data = _dadapy_data(graph)
    ids, errors, radii = data.return_id_scaling_gride(range_max=range_max)
    scales = 2 ** np.arange(len(ids))
    return GrideCurve(
        scales=scales, ids=np.asarray(ids, float), errors=np.asarray(errors, float), radii=np.asarray(radii, float)
    )


def intrinsic_dimension_2nn(graph: KnnGraph, mu_fraction: float = 0.9) -> tuple[float, float]:
    """(ID, standard error) by 2NN (Facco et al. 2017), discarding the largest 10 % of ratios."""
    data = _dadapy_data(graph)
    intrinsic_dim, error, _ = data.compute_id_2NN(mu_fraction=mu_fraction)
    return float(intrinsic_dim), float(error)


# ---------------------------------------------------------------- density peaks


@dataclass(frozen=True)
class DensityPeaks:
    """ADP clustering of the distinct points of a layer.

    labels: (M,) cluster of each point, 0..n_clusters-1 (halo not removed).
    core:   (M,) True where a point's density is above its cluster's highest saddle (not halo).
    log_density, log_density_err: (M,) kNN log-density and its error.
    centers: (C,) point index of each cluster's peak.
    saddle_log_density: (C, C) log-density at the saddle between two clusters
        (DADApy's ``log_den_bord``; pairs with no border hold the minimum density minus 1).
    """

    labels: np.ndarray
    core: np.ndarray
    log_density: np.ndarray
    log_density_err: np.ndarray
    centers: np.ndarray
    saddle_log_density: np.ndarray

    @property
    def n_clusters(self) -> int:
        return len(self.centers)


def density_peaks(graph: KnnGraph, intrinsic_dim: float, *, k: int = 16, Z: float = 1.6) -> DensityPeaks:
    """kNN density with ``k`` neighbours at ``intrinsic_dim``, then Advanced Density Peaks (d'Errico et al. 2021)."""
    if k > graph.maxk:
        raise GeometryError(f"density k={k} needs maxk >= {k}, the graph has {graph.maxk}")
    if not np.isfinite(intrinsic_dim) or intrinsic_dim <= 0:
        raise GeometryError(f"intrinsic dimension {intrinsic_dim} is not a positive number")
    data = _dadapy_data(graph)
    data.set_id(float(intrinsic_dim))
    data.compute_density_kNN(k=k)
    # ADP reads the density and leaves it unchanged: the halo run reuses it; the halo=False run
    # goes last so the attributes read below (centres, saddles) are those of the full clustering.
    labels_halo = np.asarray(data.compute_clustering_ADP(Z=Z, halo=True)).copy()
    labels = np.asarray(data.compute_clustering_ADP(Z=Z, halo=False)).copy()
    n_clusters = int(data.N_clusters)
    for name, assignment, low in (("labels", labels, 0), ("halo labels", labels_halo, -1)):
        # DADApy issue #165: assignments can hold garbage in rare cases.
        if assignment.shape != (graph.n_points,) or assignment.min() < low or assignment.max() >= n_clusters:
            raise GeometryError(
                f"ADP returned invalid {name} (range {assignment.min()}..{assignment.max()}, {n_clusters} clusters)"
            )
    return DensityPeaks(
        labels=labels.astype(np.int64),
        core=labels_halo >= 0,
        log_density=np.asarray(data.log_den, float),
        log_density_err=np.asarray(data.log_den_err, float),
        centers=np.asarray(data.cluster_centers, dtype=np.int64),
        saddle_log_density=np.asarray(data.log_den_bord, float).reshape(n_clusters, n_clusters),
    )


# ---------------------------------------------------------------- agreement with labels


def ari(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings of the same points."""
    return float(adjusted_rand_score(np.asarray(labels_a), np.asarray(labels_b)))


def label_overlap(
    graph: KnnGraph, labels: np.ndarray, *, k: int | None = None, class_fraction: float | None = None
) -> float:
    """Mean fraction of a point's neighbours sharing its label (DADApy ``return_label_overlap``).

    ``labels`` are given per distinct point (M,). With ``class_fraction``, point i looks at
    ``int(class_fraction x size of its class)`` neighbours, and points are weighted by 1/class size.
    """
    labels = _as_int_labels(labels)
    if len(labels) != graph.n_points:
        raise GeometryError(f"{len(labels)} labels for {graph.n_points} points")
    if class_fraction is not None:
        needed = int(class_fraction * np.bincount(labels).max())
    elif k is not None:
        needed = k
    else:
        raise GeometryError("label overlap needs k or class_fraction")
    if needed > graph.maxk:
        raise GeometryError(f"label overlap needs {needed} neighbours but the graph has maxk={graph.maxk}")
    data = _dadapy_data(graph)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(data.return_label_overlap(labels, k=k, class_fraction=class_fraction))


def label_overlap_rows(
    neighbours: np.ndarray, labels: np.ndarray, *, class_fraction: float, rows: np.ndarray | None = None
) -> np.ndarray:
    """(m,) each point's share of same-label neighbours among its k_i nearest (k_i =
    int(class_fraction x size of its class), at least 1: DADApy's rule), from ``neighbours``
    (m, >= k_max + 1) of the points ``rows`` (None: every point), column 0 the point itself.
    Their class-weighted mean (``nulls.class_weighted_mean``) is ``label_overlap``; kept per point
    so that a bootstrap of the rows can resample it.

    >>> import numpy as np
    >>> neighbours = np.array([[0, 1, 2], [1, 0, 2], [2, 3, 1], [3, 2, 0]])
    >>> label_overlap_rows(neighbours, np.array([0, 0, 1, 1]), class_fraction=1.0).tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    labels = _as_int_labels(labels)
    rows = np.arange(len(labels)) if rows is None else np.asarray(rows)
    counts = np.bincount(labels)
    k_of_class = np.maximum(1, (counts * class_fraction).astype(int))
    k = k_of_class[labels[rows]]
    neighbours = np.asarray(neighbours)
    if neighbours.shape[0] != len(rows) or neighbours.shape[1] < k.max() + 1:
        raise GeometryError(
            f"label overlap needs {k.max()} neighbours of each of {len(rows)} points, got {neighbours.shape}"
        )
    found = neighbours[:, 1 : k.max() + 1]
    same = (labels[found] == labels[rows][:, None]) & (np.arange(found.shape[1])[None, :] < k[:, None])
    return same.sum(axis=1) / k


def stratified_rows(labels: np.ndarray, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted rows, about ``size`` in all: the same number from each label (all of a smaller
    class's rows), drawn without replacement (seeded): the sample ``label_overlap_sampled`` reads."""
    labels = _as_int_labels(labels)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = max(1, size // len(classes))
    picked = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(picked))


def label_overlap_sampled(
    neighbours: np.ndarray, rows: np.ndarray, labels: np.ndarray, *, class_fraction: float
) -> tuple[float, float]:
    """(estimate, standard error) of ``label_overlap(graph, labels, class_fraction=...)`` from some
    points' neighbours: ``neighbours`` (m, >= k_max) of the points ``rows`` (``knn.neighbours_of``),
    nearest first, without the point itself. The overlap is the mean over classes of each class's
    mean share of same-label neighbours (DADApy weights points by 1/class size); each class's mean
    is taken over its sampled points, its error with the finite-population correction (every
    point of a class sampled: no error). With every point, it is ``label_overlap``.
    """
    labels = _as_int_labels(labels)
    rows = np.asarray(rows)
    counts = np.bincount(labels)
    k_of_class = np.maximum(1, (counts * class_fraction).astype(int))  # DADApy's int(count x fraction), at least 1
    k = k_of_class[labels[rows]]
    if neighbours.shape != (len(rows), neighbours.shape[1]) or neighbours.shape[1] < k.max():
        raise GeometryError(
            f"label overlap needs {k.max()} neighbours of each of {len(rows)} points, got {neighbours.shape}"
        )
    same = (labels[neighbours] == labels[rows][:, None]) & (np.arange(neighbours.shape[1])[None, :] < k[:, None])
    share = same.sum(axis=1) / k
    classes = np.flatnonzero(counts)
    means, variances = np.empty(len(classes)), np.empty(len(classes))
    for j, c in enumerate(classes):
        sampled = share[labels[rows] == c]
        if not len(sampled):
            raise GeometryError(f"no sampled point of label {c}: every class needs one")
        means[j] = sampled.mean()
        spread = sampled.var(ddof=1) if len(sampled) > 1 else 0.0
        variances[j] = spread / len(sampled) * (1 - len(sampled) / counts[c])
    return float(means.mean()), float(np.sqrt(variances.sum()) / len(classes))


def data_overlap(indices_a: np.ndarray, indices_b: np.ndarray, *, k: int = 30) -> np.ndarray:
    """(N,) fraction of each point's k nearest neighbours shared by two representations.

    ``indices_*`` are kNN index arrays (N, >= k+1) of the same N points (column 0 the point
    itself, no index twice in a row), e.g. ``KnnGraph.indices`` of graphs without removed
    duplicates. Equals DADApy's
    ``return_data_overlap(..., avg=False)``; vectorised here because only indices are needed.
    """
    a, b = np.asarray(indices_a), np.asarray(indices_b)
    if a.shape[0] != b.shape[0]:
        raise GeometryError(f"neighbour lists of {a.shape[0]} and {b.shape[0]} points")
    if min(a.shape[1], b.shape[1]) < k + 1:
        raise GeometryError(f"data overlap k={k} needs {k + 1} columns of neighbours")
    both = np.sort(np.concatenate([a[:, 1 : k + 1], b[:, 1 : k + 1]], axis=1), axis=1)
    return (both[:, 1:] == both[:, :-1]).sum(axis=1) / k


def cluster_purity(clusters: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) share of the point's cluster that carries the cluster's most common label."""
    clusters, labels = np.asarray(clusters), _as_int_labels(labels)
    purity = np.zeros(len(clusters))
    for c in np.unique(clusters):
        members = clusters == c
        purity[members] = np.bincount(labels[members]).max() / members.sum()
    return purity


def _as_int_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    return np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64)


# ---------------------------------------------------------------- density-peak hierarchy


@dataclass(frozen=True)
class PeakTree:
    """Hierarchy of the larger density peaks, as a scipy linkage matrix.

    clusters: (C',) ADP cluster ids that are leaves (those with more than ``min_size`` points).
    linkage:  (C'-1, 4) scipy linkage over dissimilarity F_max - saddle log-density, "weighted".
    """

    clusters: np.ndarray
    linkage: np.ndarray


def peak_tree(peaks: DensityPeaks, *, min_size: int = 30, max_log_density: float | None = None) -> PeakTree:
    """The dendrogram of Doimo et al.: clusters of > ``min_size`` points joined by saddle density;
    with ``max_log_density``, peaks denser than it are left out too (the paper's figures did so
    with a threshold chosen per figure, e.g. -10 or -14)."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    sizes = np.bincount(peaks.labels, minlength=peaks.n_clusters)
    dense_enough = sizes > min_size
    if max_log_density is not None:
        dense_enough &= peaks.log_density[peaks.centers] <= max_log_density
    chosen = np.flatnonzero(dense_enough)
    if len(chosen) < 2:
        return PeakTree(clusters=chosen, linkage=np.zeros((0, 4)))
    f_max = peaks.log_density[peaks.centers].max()
    saddle = peaks.saddle_log_density[np.ix_(chosen, chosen)]
    dissimilarity = f_max - np.maximum(saddle, saddle.T)
    np.fill_diagonal(dissimilarity, 0.0)
    return PeakTree(clusters=chosen, linkage=linkage(squareform(dissimilarity, checks=False), method="weighted"))
