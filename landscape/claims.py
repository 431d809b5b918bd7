"""The math behind ``landscape claims``: verdicts from intervals, the adjusted Rand index of
bootstrap resamples, and the statistics of a layer profile (means over a span of relative depth,
the sharpest fall within a span of depth and where it happens).

A claim says a statistic lies in a region fixed before any run is looked at (``Region``). Its
95 % interval decides the verdict: *holds* when the whole interval lies inside the region, *fails*
when none of it does, *cannot tell* when it straddles the region's edge (``verdict``).

Bootstrap over rows: the clusters and labels stay as the analysis found them and the rows are
drawn again with replacement, as counts (B, N) (``row_counts``); the ARI of each draw is computed
from its weighted contingency table over pairs of distinct rows (``weighted_ari``).

Example:
    >>> Region(above=0.05).contains(0.1), verdict(0.07, 0.2, Region(above=0.05)), verdict(-0.1, 0.2, Region(above=0.05))
    (True, 'holds', 'cannot tell')
    >>> import numpy as np
    >>> a, b = np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])
    >>> float(weighted_ari(a, b, np.ones((1, 4)))[0])
    1.0
    >>> depths = np.arange(1, 7) / 6
    >>> spans = fall_spans(depths, 0.2)  # falls within a fifth of the depth: one step here
    >>> best, fall = sharpest_falls(np.array([[0.9, 0.9, 0.8, 0.2, 0.1, 0.1]]), spans)
    >>> spans[best].tolist(), fall.round(2).tolist()
    ([[2, 3]], [0.6])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, CANNOT_TELL = "holds", "fails", "cannot tell"
CONFIDENCE = 0.95
N_BOOT = 1000


@dataclass(frozen=True)
class Region:
    """Where a claim's statistic must lie: above a bound, below one (both strict), or between two
    (inclusive: a depth exactly at 1/3 lies in the middle third)."""

    above: float = -np.inf
    below: float = np.inf

    @property
    def closed(self) -> bool:
        return bool(np.isfinite(self.above) and np.isfinite(self.below))

    def contains(self, value: float) -> bool:
        return self.above <= value <= self.below if self.closed else self.above < value < self.below

    def meets(self, low: float, high: float) -> bool:
        """Whether any point of [low, high] lies in the region."""
        start, end = max(low, self.above), min(high, self.below)
        return start < end or (start == end and self.contains(start))

    def describe(self) -> str:
        if np.isinf(self.below):
            return f"> {self.above:.3g}"
        if np.isinf(self.above):
            return f"< {self.below:.3g}"
        return f"in [{self.above:.3g}, {self.below:.3g}]"


def verdict(low: float, high: float, region: Region) -> str:
    """holds: [low, high] inside ``region``; fails: no point of [low, high] in it; else cannot tell.

    >>> middle = Region(1 / 3, 2 / 3)
    >>> verdict(0.2, 1 / 3, middle), verdict(0.2, 0.3, middle), verdict(1 / 3, 0.5, middle)
    ('cannot tell', 'fails', 'holds')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return CANNOT_TELL
    if region.contains(low) and region.contains(high):
        return HOLDS
    if not region.meets(low, high):
        return FAILS
    return CANNOT_TELL


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of bootstrap draws (NaN draws left out; NaN when all are)."""
    draws = np.asarray(draws, dtype=float)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return np.nan, np.nan
    alpha = (1 - confidence) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    return float(low), float(high)


def row_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(1 + n_boot, n) how often each row is drawn: row 0 the data itself (all ones), then
    ``n_boot`` resamples with replacement. Every statistic of one claim uses the same draws, so
    differences between conditions and layers are paired."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.repeat(np.arange(n_boot), n), draws.ravel()), 1)
    return np.vstack([np.ones((1, n)), counts])


def weighted_ari(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) adjusted Rand index of labellings ``a`` and ``b`` (N,) with rows drawn ``counts``
    (B, N) times: Hubert and Arabie's formula over the pairs of *distinct* rows, a pair (r, s)
    weighted by counts[r] x counts[s].

    A row drawn twice is not paired with its own copy: such a pair always agrees, and counting it
    (as the ARI of the rows repeated would) lifts the ARI of unrelated labellings above 0 by about
    1 / (N - 1) x the share of repeated rows. With counts of 0 and 1 it is the ARI of the rows drawn.

    >>> import numpy as np
    >>> from sklearn.metrics import adjusted_rand_score
    >>> a, b = np.array([0, 0, 1, 1, 2, 2, 0]), np.array([0, 0, 1, 2, 2, 2, 1])
    >>> counts = np.array([[1, 1, 0, 1, 1, 1, 0]])
    >>> kept = counts[0] == 1
    >>> bool(np.isclose(weighted_ari(a, b, counts)[0], adjusted_rand_score(a[kept], b[kept])))
    True
    """
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    ka, kb = a.max() + 1, b.max() + 1
    counts = np.atleast_2d(counts).astype(float)
    n_draws = len(counts)
    cell = (a * kb + b)[None, :] + (np.arange(n_draws) * ka * kb)[:, None]

    def table(weights: np.ndarray) -> np.ndarray:
        return np.bincount(cell.ravel(), weights=weights.ravel(), minlength=n_draws * ka * kb).reshape(n_draws, ka, kb)

    drawn, squares = table(counts), table(counts**2)

    def pairs(s: np.ndarray, q: np.ndarray) -> np.ndarray:  # sum over r < s of c_r c_s within a group
        return (s * s - q) / 2

    index = pairs(drawn, squares).sum(axis=(1, 2))
    rows = pairs(drawn.sum(axis=2), squares.sum(axis=2)).sum(axis=1)
    cols = pairs(drawn.sum(axis=1), squares.sum(axis=1)).sum(axis=1)
    total = pairs(counts.sum(axis=1), (counts**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = rows * cols / total
        best = (rows + cols) / 2
        ari = (index - expected) / (best - expected)
    # one cluster and one label (or every row alone in both): the labellings agree perfectly
    return np.where(best == expected, 1.0, ari)


def weighted_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(B,) mean of ``values`` (N,) with rows repeated ``counts`` (B, N) times; NaN rows left out."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    counts = np.atleast_2d(counts)[:, finite]
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts @ values[finite] / counts.sum(axis=1)


def span_mask(layers: np.ndarray, last_layer: int, low: float, high: float) -> np.ndarray:
    """Which ``layers`` lie in the span (low, high] of relative depth layer / last_layer."""
    depth = np.asarray(layers) / last_layer
    return (depth > low) & (depth <= high)


def fall_spans(depths: np.ndarray, window: float) -> np.ndarray:
    """(P, 2) the spans (i, j), i < j, of positions in a profile at ``depths`` (ascending) that a
    fall may take: at most ``window`` of relative depth apart, or one step where the analysed
    layers lie further apart than that (``every:4`` of 32 layers: steps of 0.125). Ordered
    shortest first, so that of equal falls the most concentrated one is taken."""
    depths = np.asarray(depths, dtype=float)
    reach = max(window, float(np.diff(depths).min())) if len(depths) > 1 else window
    spans = [
        (i, j) for i in range(len(depths)) for j in range(i + 1, len(depths)) if depths[j] - depths[i] <= reach + 1e-9
    ]
    spans.sort(key=lambda span: (span[1] - span[0], span[0]))
    return np.array(spans, dtype=int).reshape(-1, 2)


def sharpest_falls(profiles: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of each row of ``profiles`` (B, L): (the index into ``spans`` of its largest fall
    profile[i] - profile[j] (B,), that fall (B,)); a row without any finite fall gives NaN."""
    profiles = np.asarray(profiles, dtype=float)
    if not len(spans):
        return np.zeros(len(profiles), dtype=int), np.full(len(profiles), np.nan)
    falls = profiles[:, spans[:, 0]] - profiles[:, spans[:, 1]]
    falls = np.where(np.isfinite(falls), falls, -np.inf)
    best = falls.argmax(axis=1)
    fall = falls[np.arange(len(falls)), best]
    return best, np.where(np.isfinite(fall), fall, np.nan)


def fall_place(profiles: np.ndarray, depths: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """(B,) where each row's fall from position ``start`` to ``end`` happens, on the scale of
    ``depths`` (give layer numbers and divide after, so that a cliff from layer 7 to 9 of 24 is
    8 / 24, exactly the edge of the middle third): the mean of its
    steps inside the span, each step (at the middle of its two layers) weighted by how much the
    profile falls there (rises count 0). A one-step cliff is placed at its step, an even fall at
    its middle, with no rule for ties: the data put it there.

    >>> import numpy as np
    >>> depths = np.arange(1, 9) / 8
    >>> fall_place(np.array([[.9, .9, .9, .9, .2, .2, .2, .2]]), depths, np.array([2]), np.array([5])).tolist()
    [0.5625]
    """
    profiles = np.asarray(profiles, dtype=float)
    depths = np.asarray(depths, dtype=float)
    steps = np.clip(profiles[:, :-1] - profiles[:, 1:], 0, None)  # (B, L-1) falls of single steps
    middles = (depths[:-1] + depths[1:]) / 2
    position = np.arange(len(middles))[None, :]
    inside = (position >= np.asarray(start)[:, None]) & (position < np.asarray(end)[:, None])
    weights = np.where(inside & np.isfinite(steps), steps, 0.0)
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weights @ middles / total, np.nan)
