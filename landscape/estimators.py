"""Intrinsic dimension by four more estimators, beside GRIDE / 2NN (``geometry``), from the same kNN graph.

The ID literature compares estimators because they disagree on curved, noisy data; each here is
scikit-dimension's (``skdim``, the maintained library of them), fed the layer's kNN graph
instead of searching neighbours again:

- **MLE** (Levina & Bickel 2004) per point from its k neighbour distances, combined over points
  by averaging the inverses (MacKay & Ghahramani's correction): ``skdim.id.MLE`` with ``comb="mle"``.
- **TLE** (Amsaleg et al. 2019, tight local estimator with central measurements and reflections),
  mean of the pointwise estimates: ``skdim.id.TLE``'s formula evaluated for all points at once
  (``tight_local_ids``: skdim loops over points in Python, 0.4 s a layer at N=1,200; this is the
  same arithmetic batched, tested equal to skdim's).
- **local PCA** (Fukunaga & Olsen): per point, the eigenvalues of its neighbourhood's (the point
  and its k neighbours) covariance above ``alpha`` x the largest, mean over points; skdim's
  ``lPCA(ver="FO")`` rule on spectra computed for all neighbourhoods at once (skdim fits one
  sklearn PCA per point: 2.8 s a layer at N=1,200), tested equal to skdim's ``fit_pw``. It
  cannot exceed k (k + 1 points span k dimensions): at k, read "at least k".
- **DANCo** (Ceruti et al. 2014): ``skdim.id.DANCo(ver="DANCoFit")``, whose calibration is a
  precomputed table (k = 10, dimensions <= 100, 20..5,000 points) instead of simulating random
  balls at every dimension up to d (95 s a layer at d=576). Larger sets are subsampled to 5,000
  points (seeded); an ID at the table's ceiling (100) means "100 or more".

Every estimator works on the distinct points of the graph (``KnnGraph.keep``); TLE and local PCA read
the neighbourhoods' Grams, gathered from the layer's float64 Gram when it is given.

Example:
    >>> import numpy as np
    >>> from landscape.knn import knn_graph
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 3)) @ rng.normal(size=(3, 20))  # a 3-dim plane in 20 dims
    >>> ids = estimate_ids(X, knn_graph(X, 30))
    >>> {name: round(value) for name, value in ids.items()}
    {'id_mle': 3, 'id_tle': 3, 'id_lpca': 3, 'id_danco': 3}
"""

from __future__ import annotations

import warnings

import numpy as np

from landscape.gram import LayerGram
from landscape.gram import neighbourhood_grams as gram_neighbourhoods
from landscape.knn import KnnGraph

ESTIMATORS = ("id_mle", "id_tle", "id_lpca", "id_danco")
DANCO_K = 10  # the neighbours DANCoFit's calibration table was made with
DANCO_MAX_DIM = 100  # the largest dimension in that table
DANCO_MAX_POINTS = 5000  # and the largest set size


def estimate_ids(
    X: np.ndarray, graph: KnnGraph, *, k: int = 20, seed: int = 0, gram: LayerGram | None = None
) -> dict[str, float]:
    """MLE, TLE and local PCA at ``k`` neighbours, DANCo at its own 10, of the (N, d) points
    ``X`` whose kNN graph is ``graph`` (at least ``k`` neighbours per point). With the layer's
    ``gram`` (``knn.distinct_gram``) the neighbourhoods' Grams are gathered from it (float64)
    instead of computed from the points (float32)."""
    if graph.maxk < k:
        raise ValueError(f"the graph has {graph.maxk} neighbours per point; the estimators need k={k}")
    hoods = graph.indices[:, : k + 1]
    if gram is not None:
        grams = gram_neighbourhoods(gram, hoods)
    else:
        grams = neighbourhood_grams(np.asarray(X)[graph.keep], hoods)  # shared by TLE and local PCA
    return {
        "id_mle": maximum_likelihood_id(graph.distances[:, 1 : k + 1]),
        "id_tle": float(tight_local_ids(grams, graph.distances[:, 1 : k + 1]).mean()),
        "id_lpca": float(local_pca_ids(grams).mean()),
        "id_danco": danco_id(np.asarray(X), seed=seed, rows=graph.keep),
    }


def neighbourhood_grams(points: np.ndarray, neighbourhoods: np.ndarray, *, block: int = 512) -> np.ndarray:
    """(N, k+1, k+1) Gram matrices of each neighbourhood (``neighbourhoods`` (N, k+1): the point,
    then its k neighbours), centred on the point (translation does not change either estimator),
    computed in float32 (relative error ~1e-6 of the estimates against float64); the layer's
    float64 Gram gives them without the points (``landscape.gram.neighbourhood_grams``)."""
    n, size = neighbourhoods.shape
    out = np.empty((n, size, size))
    points = np.asarray(points, dtype=np.float32)  # centred on the point: no cancellation; 2x the float64 speed
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        local = points[neighbourhoods[rows]] - points[neighbourhoods[rows, :1]]
        out[rows] = np.matmul(local, local.transpose(0, 2, 1))
    return out


def maximum_likelihood_id(distances: np.ndarray) -> float:
    """Levina-Bickel MLE from (N, k) neighbour distances (self excluded, ascending), combined
    MacKay-Ghahramani style: 1 / mean(1 / pointwise)."""
    import skdim

    with warnings.catch_warnings():  # skdim warns about its own sklearn tags
        warnings.simplefilter("ignore")
        mle = skdim.id.MLE().fit(np.zeros((len(distances), 2)), precomputed_knn_arrays=(distances, None), comb="mle")
    return float(mle.dimension_)


def tight_local_ids(grams: np.ndarray, distances: np.ndarray, *, epsilon: float = 1e-4, block: int = 256) -> np.ndarray:
    """(N,) TLE estimates: skdim's ``TLE._idtle`` (``idtlec.m``) for every point, in blocks of points.

    ``grams``: ``neighbourhood_grams`` of each point and its k neighbours; ``distances`` (N, k):
    the neighbours' distances, self excluded, ascending. Distinct points (no zero distances: the
    boundary cases of coincident points never arise)."""
    n, k = distances.shape
    out = np.empty(n)
    for start in range(0, n, block):
        rows = slice(start, min(n, start + block))
        gram = grams[rows, 1:, 1:]
        sq = np.einsum("bii->bi", gram)
        V2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * gram, 0.0)  # squared distances among neighbours
        dist = distances[rows]
        r = dist[:, -1][:, None, None]
        Di = np.repeat(dist[:, :, None], k, axis=2)
        Dj = np.swapaxes(Di, 1, 2)
        Di2, Dj2 = Di**2, Dj**2
        Z2 = 2 * Di2 + 2 * Dj2 - V2
        with np.errstate(divide="ignore", invalid="ignore"):
            S = r * (np.sqrt((Di2 + V2 - Dj2) ** 2 + 4 * V2 * (r**2 - Di2)) - (Di2 + V2 - Dj2)) / (2 * (r**2 - Di2))
            T = r * (np.sqrt((Di2 + Z2 - Dj2) ** 2 + 4 * Z2 * (r**2 - Di2)) - (Di2 + Z2 - Dj2)) / (2 * (r**2 - Di2))
            at_r = np.broadcast_to(dist[:, :, None] == dist[:, -1][:, None, None], S.shape)  # neighbours at distance r
            S = np.where(at_r, r * V2 / (r**2 + V2 - Dj2), S)
            T = np.where(at_r, r * Z2 / (r**2 + Z2 - Dj2), T)
            dropped = (epsilon > T) | (epsilon > S) | np.isnan(T) | np.isnan(S)
            diagonal = np.eye(k, dtype=bool)[None]
            dropped &= ~diagonal
            T = np.where(dropped | diagonal, 0.0, np.log(np.where(dropped, r, T) / r))
            S = np.where(dropped | diagonal, 0.0, np.log(np.where(dropped, r, S) / r))
            s1 = T.sum(axis=(1, 2)) + S.sum(axis=(1, 2))
            kept = dist >= epsilon
            s2 = np.where(kept, np.log(dist / dist[:, -1:]), 0.0).sum(axis=1)
        measurements = k**2 - dropped.sum(axis=(1, 2)) - (~kept).sum(axis=1)
        out[rows] = np.where(s1 > -epsilon, 0.0, -2 * measurements / (s1 + 2 * s2))
    return out


def local_pca_ids(grams: np.ndarray, *, alpha: float = 0.05) -> np.ndarray:
    """(N,) local PCA dimensions (Fukunaga-Olsen): eigenvalues of each neighbourhood's covariance
    above ``alpha`` x its largest, from ``neighbourhood_grams`` (the point and its k neighbours):
    the Gram matrix centred on the neighbourhood's mean, H G H, has the covariance's non-zero
    eigenvalues (times k)."""
    size = grams.shape[1]
    H = np.eye(size) - 1.0 / size
    spectra = np.linalg.eigvalsh(H @ grams @ H)  # ascending
    return (spectra > alpha * spectra[:, -1:]).sum(axis=1).astype(np.float64)


def danco_id(points: np.ndarray, *, seed: int = 0, rows: np.ndarray | None = None) -> float:
    """skdim's DANCo with the precomputed calibration (k = 10, ID <= 100, <= 5,000 points: a larger
    set is subsampled, seeded; fewer than 20 points gives NaN). ``rows``: the points to use (default
    all); only the sample is copied to float64, never the whole layer."""
    import skdim

    rows = np.arange(len(points)) if rows is None else np.asarray(rows)
    if len(rows) < 20:
        return float("nan")
    if len(rows) > DANCO_MAX_POINTS:
        rows = rows[np.sort(np.random.default_rng(seed).choice(len(rows), DANCO_MAX_POINTS, replace=False))]
    sample = np.asarray(points[rows], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        danco = skdim.id.DANCo(k=DANCO_K, D=min(DANCO_MAX_DIM, sample.shape[1]), ver="DANCoFit", random_state=seed)
        return float(danco.fit(sample).dimension_)
