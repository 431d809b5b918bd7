"""How alike two representations of the same N examples are: ``(N, d1)`` and ``(N, d2)`` in, a number out.

- **Linear CKA** (Kornblith et al. 2019) and its **debiased** form (the unbiased HSIC estimator of
  Song et al. 2012): 1 for representations equal up to rotation and isotropic scale; the biased
  form is inflated for unrelated high-dimensional data at small N, the debiased one is near 0.
- **Mutual k-nearest-neighbour alignment** (Huh et al. 2024, "platonic representation"): the
  mean share of each example's k nearest neighbours that both representations agree on, as
  their ``compute_nearest_neighbors`` finds them after their feature preparation (values clamped
  at the 95th percentile of |value|, rows L2-normalised, inner-product neighbours): blind to
  each row's scale. ``mutual_knn_euclidean`` is the same share on Euclidean neighbours of the
  raw centred features, the quantity of DADApy's data overlap (``geometry.data_overlap``).
- **CKNNA** (Huh et al. 2024): CKA restricted to the pairs of examples that are among each
  other's k nearest neighbours in both representations (their ``cknna``, unbiased HSIC), on
  the same prepared features and neighbours.
- **Information imbalance** (Glielmo et al. 2022, DADApy): Delta(A -> B) = 2/N x the mean rank,
  in B, of each point's nearest neighbour in A; ~0 when A's neighbourhoods predict B's, ~1 when
  they say nothing about them. Asymmetric: report both directions.

The functions of two representations are the definitions (tested against closed forms and
DADApy); ``similarity_matrices`` computes all of them for R representations at once (every
layer of a condition, or every condition at a layer) from one pass of blocked Gram matrices:
each N x N Gram row block serves CKA, the distances of the imbalance and the neighbours of
mutual kNN, on the GPU when present. Memory is bounded by ``memory_bytes``, never R x N x N nor
(at scale) R x N x d: the prepared representations (float64, and Huh et al.'s normalised copy)
are kept while they fit, and a larger set is read again block by block, one representation at
a time (the paper's 81 layers x 9,181 rows x 8,192 would be 97 GB). ``analyses.similarity``
applies it.

**Chance levels** (``null_draws`` > 0): each measure but the imbalance between a and b with b's
rows shuffled, drawn exactly from the pass's own neighbour lists and (where they fit) Grams, or
for CKA from its exact permutation moments (``landscape.similarity_nulls``).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 10))
    >>> Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    >>> round(linear_cka(X, 3 * X @ Q), 6), round(linear_cka(X, X @ Q, debiased=True), 6)
    (1.0, 1.0)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from landscape.devices import pick_device
from landscape.hsic import masked_hsic_pairs, unbiased_hsic
from landscape.huh import huh_bound, huh_features, huh_top
from landscape.similarity_nulls import NULL_MEASURES, null_permutations, permutation_nulls

MEASURES = ("cka", "cka_debiased", "mutual_knn", "mutual_knn_euclidean", "cknna", "imbalance")
# Bytes of the per-block work arrays (Gram rows of every representation) when every
# representation is kept in memory; a streamed pass takes half of MEMORY_BYTES for them instead.
_BLOCK_BYTES = 1 << 27
MEMORY_BYTES = 6 << 30  # similarity_matrices' default budget (landscape analyze --similarity-memory)


def measure_names(null_draws: int = 0) -> list[str]:
    """The (R, R) matrices ``similarity_matrices`` gives (``SimilarityMatrices.as_dict``): the
    measures, then with ``null_draws`` each null's mean, low and high (``<measure>_null``, ``_low``, ``_high``)."""
    nulls = [f"{m}_null{end}" for m in NULL_MEASURES for end in ("", "_low", "_high")] if null_draws else []
    return [*MEASURES, *nulls]


def _centred(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X - X.mean(axis=0)


def linear_cka(X: np.ndarray, Y: np.ndarray, *, debiased: bool = False) -> float:
    """Linear CKA of ``X`` (N, d1) and ``Y`` (N, d2); ``debiased``: from the unbiased HSIC."""
    X, Y = _centred(X), _centred(Y)
    if len(X) != len(Y):
        raise ValueError(f"{len(X)} and {len(Y)} rows: CKA compares the same examples")
    if not debiased:  # feature-space form: no N x N matrix
        cross = np.linalg.norm(Y.T @ X) ** 2
        return float(cross / (np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)))
    K, L = X @ X.T, Y @ Y.T
    return float(hsic_unbiased(K, L) / np.sqrt(hsic_unbiased(K, K) * hsic_unbiased(L, L)))


def hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC of two (N, N) Gram matrices (N > 3)."""
    n = len(K)
    if n < 4:
        raise ValueError("the unbiased HSIC needs at least 4 examples")
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    ones_K, ones_L = K.sum(axis=0), L.sum(axis=0)
    value = np.sum(K * L) + ones_K.sum() * ones_L.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_K @ ones_L
    return float(value / (n * (n - 3)))


def mutual_knn(X_a: np.ndarray, X_b: np.ndarray, k: int = 10) -> float:
    """Huh et al. 2024's mutual kNN of two representations (``similarity_matrices`` of the pair):
    the mean share of the k nearest neighbours they agree on, inner-product neighbours of
    ``huh_features``.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 16))
    >>> scaled = X * rng.uniform(0.2, 5, size=(200, 1))  # each row rescaled: the same directions
    >>> from landscape.knn import knn_graph
    >>> euclidean = mutual_knn_euclidean(knn_graph(X, 10).indices, knn_graph(scaled, 10).indices, 10)
    >>> mutual_knn(X, scaled, 10), round(euclidean, 2)  # their clamp moves a few neighbours
    (0.8465, 0.4)
    """
    return float(similarity_matrices([X_a, X_b], k=k, cknna_k=max(k, 2)).mutual_knn[0, 1])


def mutual_knn_euclidean(indices_a: np.ndarray, indices_b: np.ndarray, k: int) -> float:
    """Mean share of the k nearest Euclidean neighbours two representations agree on, from kNN
    index arrays (N, >= k+1) with each point itself in column 0 (``KnnGraph.indices``)."""
    from landscape.geometry import data_overlap

    return float(data_overlap(indices_a, indices_b, k=k).mean())


def information_imbalance(X_a: np.ndarray, X_b: np.ndarray, *, block: int = 1024) -> tuple[float, float]:
    """(Delta(A -> B), Delta(B -> A)) with k = 1, Euclidean distances, exact ranks (blocks of rows).

    Delta(A -> B) = 2/N x mean over i of the rank in B (1 = nearest) of i's nearest neighbour in A.
    """
    A, B = (np.asarray(Z, dtype=np.float64) for Z in (X_a, X_b))
    if len(A) != len(B):
        raise ValueError(f"{len(A)} and {len(B)} rows: information imbalance compares the same examples")
    n = len(A)
    ranks_ab, ranks_ba = np.empty(n), np.empty(n)
    sq_a, sq_b = (A**2).sum(axis=1), (B**2).sum(axis=1)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        d_a = sq_a[rows, None] + sq_a[None, :] - 2 * A[rows] @ A.T
        d_b = sq_b[rows, None] + sq_b[None, :] - 2 * B[rows] @ B.T
        for d in (d_a, d_b):
            d[np.arange(len(rows)), rows] = np.inf  # a point is not its own neighbour
        nn_a, nn_b = d_a.argmin(axis=1), d_b.argmin(axis=1)
        # rank = 1 + how many points are strictly closer than the neighbour (ties share the rank)
        ranks_ab[rows] = 1 + (d_b < d_b[np.arange(len(rows)), nn_a][:, None]).sum(axis=1)
        ranks_ba[rows] = 1 + (d_a < d_a[np.arange(len(rows)), nn_b][:, None]).sum(axis=1)
    return float(2.0 / n * ranks_ab.mean()), float(2.0 / n * ranks_ba.mean())


@dataclass(frozen=True)
class SimilarityMatrices:
    """(R, R) matrices of R representations of the same rows; ``imbalance[a, b]`` = Delta(a -> b)
    and ``cknna[a, b]`` = Huh et al.'s cknna(a, b) (which differs from (b, a) in the last digits);
    the diagonal holds each one's similarity to itself."""

    cka: np.ndarray
    cka_debiased: np.ndarray
    mutual_knn: np.ndarray  # Huh et al.'s: prepared features, inner-product neighbours
    mutual_knn_euclidean: np.ndarray
    cknna: np.ndarray
    imbalance: np.ndarray
    # with null_draws: '<measure>_null', '_null_low', '_null_high' (R, R), NaN on the diagonal
    nulls: dict[str, np.ndarray] = field(default_factory=dict)
    # the draws of each measure drawn (not those from moments): (null_draws, R, R), [d, a, b] =
    # the measure of a and b with b's rows in the order null_permutations(...)[d] (NaN diagonal)
    null_samples: dict[str, np.ndarray] = field(default_factory=dict)
    null_attrs: dict[str, Any] = field(default_factory=dict)  # null_draws, null_seed, null_route, null_note

    def as_dict(self) -> dict[str, np.ndarray]:
        return {**{name: getattr(self, name) for name in MEASURES}, **self.nulls}


def similarity_matrices(
    representations: Sequence[np.ndarray],
    *,
    k: int = 10,
    cknna_k: int = 10,
    device: str | None = None,
    memory_bytes: int = MEMORY_BYTES,
    null_draws: int = 0,
    null_seed: int = 0,
    cka_null: str = "moments",
    huh_lists: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> SimilarityMatrices:
    """Every measure between every two of R representations (each (N, d_r), the same N rows,
    no duplicated rows within any: neighbours among copies are undefined).

    ``huh_lists``: each representation's ``landscape.huh.huh_neighbours`` at ``max(k, cknna_k)``, computed where
    its states were at hand (the layer's own task, ``analyses.run``): the pass then multiplies
    only the centred rows, and keeps only their copies, instead of Huh et al.'s prepared ones too.

    ``null_draws`` > 0: each measure's chance level too (``nulls``: ``landscape.similarity_nulls``),
    from ``null_permutations(N, null_draws, null_seed)``; the route of each is in
    ``null_attrs["null_route"]``: "draws" (exact permutation draws) or "moments" (CKA's exact
    permutation mean and variance, range mean -/+ 1.96 sd). CKA's null takes the moments route by
    default (``cka_null="moments"``): its exact draws cost about as much as the whole pass (R N^2
    memory-bound products a draw, measured ~120 % of the pass at N 2,000, d 1,536), where the
    moments are free and exact in mean and variance; ``cka_null="draws"`` draws it where the Grams
    fit (else moments, with a ``null_note``), as the tests do to check the moments.

    ``representations`` may read each item on access (``analyses.similarity`` reads them from
    hidden.h5): when their prepared copies (float64 centred and Huh et al.'s: R x N x d x 16
    bytes; 8 with ``huh_lists``) fit in ``memory_bytes`` each is read once and kept; otherwise each block of rows
    reads them again one at a time (``_Prepared``), so memory is ``memory_bytes`` (half for the
    R x block x N Gram rows, half for the copies that fit) plus one representation's working copies.
    With nulls, the R centred Grams (R x N^2 x 8 bytes) are held in the copies' half when they fit
    in it (the copies get what they leave), and the kNN draws use one N x N byte table.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(100, 8))
        >>> m = similarity_matrices([X, 2 * X, rng.normal(size=(100, 8))], k=5)
        >>> m.cka.round(2)[0].tolist(), float(m.mutual_knn_euclidean[0, 1]), round(float(m.imbalance[0, 1]), 2)
        ([1.0, 1.0, 0.07], 1.0, 0.02)
    """
    R = len(representations)
    dev = pick_device(device)
    if null_draws < 0:
        raise ValueError(f"null_draws must be >= 0, got {null_draws}")
    if cka_null not in ("moments", "draws"):
        raise ValueError(f"cka_null must be moments or draws, got {cka_null!r}")
    huh_k = max(k, cknna_k)  # one top-k serves both: mutual kNN takes the first k, CKNNA the first cknna_k
    if huh_lists is not None and (
        len(huh_lists) != R or any(np.shape(indices)[1:] != (huh_k,) for indices, _ in huh_lists)
    ):
        raise ValueError(f"huh_lists: one (N, {huh_k}) neighbour list and its values per representation")
    prepared = _Prepared(
        representations,
        dev,
        cache_bytes=memory_bytes // 2,
        hold_grams=null_draws > 0 and cka_null == "draws",
        huh=huh_lists is None,
    )
    n = prepared.n
    if n < 4 or not 1 <= k < n or not 2 <= cknna_k < n:
        raise ValueError(f"{n} rows, k={k}, cknna_k={cknna_k}: need n >= 4, 1 <= k < n and 2 <= cknna_k < n")
    sq = prepared.squared_norms  # (R, N): the centred Grams' diagonals
    inner = torch.zeros(R, R, dtype=torch.float64, device=dev)  # <K_a, K_b> = sum of K_a * K_b
    knn = torch.empty(R, n, k, dtype=torch.long, device=dev)
    if huh_lists is None:
        huh_knn = torch.empty(R, n, huh_k, dtype=torch.long, device=dev)
        huh_values = torch.empty(R, n, huh_k, dtype=torch.float64, device=dev)
    else:
        huh_knn = torch.stack([torch.as_tensor(np.asarray(i, dtype=np.int64), device=dev) for i, _ in huh_lists])
        huh_values = torch.stack([torch.as_tensor(np.asarray(v, dtype=np.float64), device=dev) for _, v in huh_lists])
        if huh_knn.shape[1] != n:
            raise ValueError(f"huh_lists hold {huh_knn.shape[1]} rows, the representations {n}")
    ranks = torch.zeros(R, R, dtype=torch.float64, device=dev)  # ranks[a, b]: sum over i of rank_b(nn_a(i))
    block = block_rows(n, R, all_kept=prepared.all_kept, memory_bytes=memory_bytes)
    grams = torch.empty(R, n, n, dtype=torch.float64, device=dev) if prepared.grams_held else None
    for start in range(0, n, block):
        rows = torch.arange(start, min(n, start + block), device=dev)
        distances = torch.empty(R, len(rows), n, dtype=torch.float64, device=dev)  # Gram rows first
        for r in range(R):
            centred, huh = prepared[r]
            distances[r] = centred[rows] @ centred.T
            if huh is not None:
                huh_knn[r, rows], huh_values[r, rows] = huh_top(huh, rows, huh_k)
            del centred, huh
        flat = distances.reshape(R, -1)
        inner += flat @ flat.T
        if grams is not None:  # held for the CKA nulls' draws
            grams[:, start : start + len(rows)] = distances
        for r in range(R):  # the Gram rows become distances in place, one representation at a time
            distances[r] = sq[r, rows, None] + sq[r, None, :] - 2 * distances[r]
        distances[:, torch.arange(len(rows), device=dev), rows] = torch.inf  # a point is not its own neighbour
        knn[:, rows] = torch.topk(distances, k, dim=2, largest=False).indices
        nearest = distances.argmin(dim=2)  # (R, b)
        for b in range(R):
            threshold = distances[b].gather(1, nearest.T)  # (b, R): distance in b to each a's nearest neighbour
            closer = torch.searchsorted(_sorted_rows(distances[b]), threshold.contiguous())  # strictly closer
            ranks[:, b] += len(rows) + closer.sum(dim=0)  # rank = 1 + how many are strictly closer
        del distances, flat
    diagonal = sq.T  # (N, R)
    cka = inner / torch.sqrt(torch.outer(inner.diagonal(), inner.diagonal()))
    unbiased = _unbiased_hsic_matrix(inner, diagonal, n)
    cka_debiased = unbiased / torch.sqrt(torch.outer(unbiased.diagonal(), unbiased.diagonal()))
    cknna_lists, cknna_values = huh_knn[:, :, :cknna_k].cpu().numpy(), huh_values[:, :, :cknna_k].cpu().numpy()
    own = _cknna_own(cknna_lists, cknna_values)
    nulls: dict[str, np.ndarray] = {}
    samples: dict[str, np.ndarray] = {}
    null_attrs: dict = {}
    if null_draws:
        nulls, samples, null_attrs = permutation_nulls(
            null_permutations(n, null_draws, null_seed),
            knn=knn,
            huh_knn=huh_knn,
            huh_values=huh_values,
            own=own,
            k=k,
            cknna_k=cknna_k,
            grams=grams,
            inner=inner,
            sq=sq,
            unbiased=unbiased,
            block_bytes=_BLOCK_BYTES,
        )
        null_attrs.update(null_seed=int(null_seed))
        del grams
    return SimilarityMatrices(
        cka=cka.cpu().numpy(),
        cka_debiased=cka_debiased.cpu().numpy(),
        mutual_knn=_mutual_knn_matrix(huh_knn[:, :, :k].cpu().numpy(), k),
        mutual_knn_euclidean=_mutual_knn_matrix(knn.cpu().numpy(), k),
        cknna=_cknna_matrix(cknna_lists, cknna_values, own),
        imbalance=(2.0 / n * ranks / n).cpu().numpy(),
        nulls=nulls,
        null_samples=samples,
        null_attrs=null_attrs,
    )


def block_rows(n: int, R: int, *, all_kept: bool, memory_bytes: int = MEMORY_BYTES) -> int:
    """Rows of a block of ``similarity_matrices``: every representation kept, the work arrays'
    budget; streamed, half the memory (each block reads every representation not kept once
    more: fewer, larger blocks)."""
    block_bytes = _BLOCK_BYTES if all_kept else max(_BLOCK_BYTES, memory_bytes // 2)
    return max(1, min(n, block_bytes // (8 * n * max(R, 2))))


class _Prepared:
    """The representations as the blocks use them: ``self[r]`` = (centred, Huh-prepared) float64
    tensors of representation r (``huh`` False: (centred, None), their neighbours given). A first pass reads each once (its mean, clamp bound and the
    centred rows' squared norms, which every block needs) and keeps the prepared copies while
    they fit in ``cache_bytes``; the others are read and prepared again on each access, with the
    same mean and bound, so every block sees the same numbers. ``hold_grams``: the R centred
    N x N Grams are to be held too (the nulls' CKA draws) where they fit in ``cache_bytes``
    (``grams_held``), leaving the rest of it to the copies."""

    def __init__(
        self,
        representations: Sequence[np.ndarray],
        device: torch.device,
        *,
        cache_bytes: int,
        hold_grams: bool = False,
        huh: bool = True,
    ):
        self._representations, self._device, self._huh = representations, device, huh
        self._means: list[np.ndarray] = []
        self._bounds: list[float] = []
        self._kept: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        norms, held, n, self.grams_held = [], 0, None, False
        R = len(representations)
        for r in range(R):
            X = np.asarray(representations[r], dtype=np.float64)
            if n is None:
                n = len(X)
                self.grams_held = hold_grams and R * n * n * 8 <= cache_bytes
                if self.grams_held:
                    cache_bytes -= R * n * n * 8
            elif len(X) != n:
                raise ValueError("similarity_matrices compares the same rows: representations differ in length")
            self._means.append(X.mean(axis=0))
            self._bounds.append(huh_bound(X) if huh else float("nan"))
            centred, prepared = self._prepare(r, X)
            norms.append((centred**2).sum(dim=1))
            held += (2 if huh else 1) * centred.numel() * centred.element_size()
            if held <= cache_bytes:
                self._kept[r] = centred, prepared
            del X, centred, prepared
        self.squared_norms = torch.stack(norms)  # none (R = 0): refused here
        assert n is not None
        self.n: int = n
        self.all_kept = len(self._kept) == len(representations)

    def _prepare(self, r: int, X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        huh = torch.as_tensor(huh_features(X, bound=self._bounds[r]), device=self._device) if self._huh else None
        return torch.as_tensor(X - self._means[r], device=self._device), huh

    def __getitem__(self, r: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if r in self._kept:
            return self._kept[r]
        return self._prepare(r, np.asarray(self._representations[r], dtype=np.float64))


def _sorted_rows(D: torch.Tensor) -> torch.Tensor:
    """Each row sorted ascending; on the CPU by numpy, whose SIMD sort is ~3x torch's here."""
    if D.device.type == "cpu":
        return torch.from_numpy(np.sort(D.numpy(), axis=1))
    return torch.sort(D, dim=1).values


def _unbiased_hsic_matrix(inner: torch.Tensor, diagonal: torch.Tensor, n: int) -> torch.Tensor:
    """Song et al.'s unbiased HSIC between every two centred linear Grams, from their Frobenius
    inner products and diagonals alone: with centred features every row of K sums to 0, so the
    zero-diagonal K~ has row sums -diag(K) and total -trace(K)."""
    return unbiased_hsic(inner, diagonal.T @ diagonal, diagonal.sum(dim=0), n)


def _mutual_knn_matrix(knn: np.ndarray, k: int) -> np.ndarray:
    """(R, R) mean share of shared neighbours from (R, N, k) neighbour lists."""
    R, n, _ = knn.shape
    out = np.eye(R)
    for a, b in itertools.combinations(range(R), 2):
        out[a, b] = out[b, a] = (knn[a][:, :, None] == knn[b][:, None, :]).sum() / (n * k)
    return out


def _cknna_own(knn: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(R,) each representation's masked kernel's unbiased HSIC with itself (CKNNA's denominators)."""
    return np.array([_masked_hsic(knn[r], values[r], values[r])[0] for r in range(len(knn))])


def _cknna_matrix(knn: np.ndarray, values: np.ndarray, own: np.ndarray | None = None) -> np.ndarray:
    """(R, R) CKNNA (Huh et al.'s ``cknna(a, b)``, unbiased) from each representation's (N, k) inner-
    product neighbours and their inner products. Their kernels masked by the shared neighbours
    have <= k entries a row, so every term of the unbiased HSIC is a sum over those entries."""
    R, _, _ = knn.shape
    own = _cknna_own(knn, values) if own is None else own
    out = np.eye(R)
    for a, b in itertools.combinations(range(R), 2):  # their 1e-6; not quite symmetric: the masked kernels are not
        shared = knn[a][:, :, None] == knn[b][:, None, :]  # (N, k, k): a's slot s holds b's slot t
        forward, backward = _masked_hsic(
            np.where(shared.any(axis=2), knn[a], -1), values[a], (shared * values[b][:, None, :]).sum(axis=2)
        )
        out[a, b] = forward / (np.sqrt(own[a] * own[b]) + 1e-6)
        out[b, a] = backward / (np.sqrt(own[a] * own[b]) + 1e-6)
    return out


def _masked_hsic(columns: np.ndarray, k_values: np.ndarray, l_values: np.ndarray) -> tuple[float, float]:
    """Unbiased HSIC (K~, L~) and (L~, K~) of two N x N kernels with the same support: entry
    (i, columns[i, s]) holds k_values[i, s] and l_values[i, s]; column -1 = no entry."""
    n = len(columns)
    kept = columns >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], columns.shape)[kept]
    forward, backward = masked_hsic_pairs(
        np.zeros(len(rows), dtype=np.int64), rows, columns[kept], k_values[kept], l_values[kept], n=n, n_pairs=1
    )
    return float(forward[0]), float(backward[0])


def cknna(X_a: np.ndarray, X_b: np.ndarray, k: int = 10) -> float:
    """CKNNA of two representations (``similarity_matrices`` of the pair)."""
    return float(similarity_matrices([X_a, X_b], k=min(k, len(X_a) - 1), cknna_k=k).cknna[0, 1])
