"""Everything measured on one layer of one condition: a pure function of (X, labels, settings).

``analyze_layer`` computes the layer's float64 Gram once (``landscape.gram``), builds the kNN
graph from it and hands both to every estimator; results are mapped back from distinct points to
all N rows (duplicates take their representative's values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from landscape import geometry, nulls
from landscape.estimators import estimate_ids
from landscape.gram import LayerGram
from landscape.knn import GeometryError, KnnGraph, distinct_gram, distinct_rows, knn_graph, neighbours_of, truncate
from landscape.names import ANSWER, grouped
from landscape.normed import STATES


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the per-layer analysis; ``RECIPES`` holds the named presets (``suite``, the
    default, and ``doimo2024``, the paper's figure scripts)."""

    recipe: str = "suite"  # the preset these settings started from (recorded; overrides listed apart)
    states: str = "residual"  # residual stream as stored, or "normed": after the norm that reads it
    maxk: int = 100  # neighbours in the graph (ID, density, ADP, ARI with labels)
    cluster_maxk: int | None = None  # neighbours of the clustering compared between conditions and
    #                                   drawn as dendrograms (None: the same clustering, maxk)
    gride_range: int = 100  # GRIDE up to this rank: scales 1, 2, ..., 32
    id_scale: int = 16  # the GRIDE scale whose ID feeds the density: ranks 16 -> 32
    density_k: int = 16
    Z: float = 1.6
    class_fraction: float = 0.3  # label overlap of a grouping field: k_i = 0.3 x size of i's class
    answer_class_fraction: float = 0.3  # the same for the answer
    label_overlap_sample: int | None = None  # a label overlap needing more than maxk neighbours: estimated from
    #                                         this many points (stratified by label), no longer graph (None: exact)
    overlap_k: int = 30  # data overlap between conditions
    tree_min_size: int = 30  # dendrogram leaves: clusters with more points than this
    tree_max_log_density: float | None = None  # and (when set) no denser peak than this
    exact_knn: bool = False  # recompute every neighbour distance from differences (see knn_graph)
    readouts: bool = True  # the logit lens and linear probes beside the geometry (analyses.readouts)
    # CKA, mutual kNN, CKNNA, information imbalance: layer x layer and condition x condition (eval rows)
    similarity: bool = True
    similarity_k: int = 10  # neighbours of mutual kNN and CKNNA (Huh et al. 2024's)
    similarity_memory: float = 6.0  # GiB a similarity task may hold (landscape.similarity.similarity_matrices)
    id_estimators: bool = True  # MLE, TLE, local PCA and DANCo IDs beside GRIDE / 2NN (eval rows; landscape.estimators)
    id_k: int = 20  # neighbours of MLE, TLE and local PCA, at most maxk (DANCo: its calibration's 10)
    # permutation draws of each measure's chance level (labels or one side's rows shuffled; 0: none)
    null_draws: int = 40
    null_seed: int = 0  # seeds those draws
    probe_fit: str = "auto"  # probes fit on: train rows, eval-halves (cross-fit), auto (train when the run has them)
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; known: {', '.join(RECIPES)}")
        if self.states not in STATES:
            raise ValueError(f"unknown states {self.states!r}; known: {', '.join(STATES)}")
        for name in ("maxk", "gride_range", "id_scale", "density_k", "overlap_k", "similarity_k", "id_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("gride_range", "density_k", "overlap_k", "cluster_maxk"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= self.maxk:
                raise ValueError(f"{name}={value} must be in 1..maxk={self.maxk}")
        if self.cluster_maxk is not None and self.cluster_maxk < self.density_k:
            raise ValueError(f"cluster_maxk={self.cluster_maxk} must be >= density_k={self.density_k}")
        for name in ("class_fraction", "answer_class_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.Z <= 0:
            raise ValueError(f"Z must be positive, got {self.Z}")
        if self.label_overlap_sample is not None and self.label_overlap_sample < 2:
            raise ValueError(f"label_overlap_sample must be at least 2 points, got {self.label_overlap_sample}")
        if not self.similarity_memory > 0:
            raise ValueError(f"similarity_memory must be a positive number of GiB, got {self.similarity_memory}")
        if self.null_draws < 0 or self.null_draws == 1:
            raise ValueError(f"null_draws must be 0 (no chance levels) or at least 2, got {self.null_draws}")
        if self.probe_fit not in ("auto", "train", "eval-halves"):
            raise ValueError(f"probe_fit must be auto, train or eval-halves, got {self.probe_fit!r}")


# The paper's choices as its figure scripts made them (GeometricLens; shared/DESIGN.md "Paper A
# recipe"): normed states, 1000 neighbours (300 for the clustering compared between conditions
# and drawn as dendrograms), the density's ID at ranks 8 -> 16, label overlap of answers at 0.1
# and of subjects at 0.3. Pair duplicates are dropped in every recipe (compare_states). The rows
# (57 subjects x <= 200) are the extraction's: `make ... RECIPE=doimo2024`.
RECIPES: dict[str, AnalysisConfig] = {}
# Settings a recipe does not choose: where it runs and what else is measured beside the geometry.
NOT_RECIPE = (
    "recipe",
    "device",
    "similarity_memory",
    "label_overlap_sample",
    "readouts",
    "similarity",
    "similarity_k",
    "probe_fit",
    "id_estimators",
    "id_k",
    "null_draws",
    "null_seed",
)
RECIPES["suite"] = AnalysisConfig()
RECIPES["doimo2024"] = AnalysisConfig(
    recipe="doimo2024",
    states="normed",
    maxk=1000,
    cluster_maxk=300,
    id_scale=8,
    class_fraction=0.3,
    answer_class_fraction=0.1,
)


def recipe_config(name: str, **overrides) -> AnalysisConfig:
    """The preset ``name`` with some settings changed (each recorded with the run's settings)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    config = replace(RECIPES[name], **overrides)
    config.validate()
    return config


@dataclass
class LayerResult:
    """Scalars (for metrics.csv) and arrays (for analysis.h5) of one layer; arrays have N rows."""

    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: str = ""  # why the geometry is undefined here (e.g. every point identical)


def analyze_layer(
    X: np.ndarray,
    groupings: Mapping[str, np.ndarray],
    config: AnalysisConfig,
    demo_sets: np.ndarray | None = None,
    *,
    id_estimators: bool | None = None,
) -> LayerResult:
    """kNN graph -> GRIDE and 2NN IDs (and, with ``id_estimators`` (default: the config's), MLE,
    TLE, local PCA and DANCo: ``landscape.estimators``) -> kNN density + ADP -> ARI, label
    overlaps, per-point features.

    ``groupings``: name -> (N,) labels, each analysed alike (the task's grouping fields and the
    answer): ``ari[<name>]``, ``ari_core[<name>]``, ``label_overlap[<name>]`` (and the class fraction
    it used), and the per-row arrays ``purity[<name>]`` and ``label_overlap_rows[<name>]`` (each
    row's share of same-label neighbours); with ``config.null_draws``, the chance levels
    ``ari_null[<name>]`` and ``label_overlap_null[<name>]`` (with ``_low``, ``_high``:
    ``landscape.nulls``). ``demo_sets`` (N,), for ICL conditions
    with demonstrations: which demo set precedes each row; its ARI with the clusters, beside a
    grouping's, tells shared-prefix identity from the grouping.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> X = np.concatenate([rng.normal(0, 1, (60, 5)), rng.normal(20, 1, (60, 5))])
        >>> labels = np.repeat(["a", "b"], 60)
        >>> r = analyze_layer(X, {"topic": labels}, AnalysisConfig(maxk=30, gride_range=30, overlap_k=10))
        >>> round(r.scalars["ari[topic]"], 2), r.arrays["purity[topic]"].shape
        (1.0, (120,))
    """
    result = LayerResult()
    more_ids = config.id_estimators if id_estimators is None else id_estimators
    try:
        # The layer's one float64 Gram: every neighbour list and the ID estimators read it.
        gram = None if config.exact_knn else distinct_gram(X, device=config.device)
        graph, overlap_graph = _graphs(X, groupings, config, gram)
    except GeometryError as error:
        result.skipped = str(error)
        result.scalars = {"n_distinct": float(len(np.unique(X, axis=0)))}
        return result
    gride, ids = _dimensions(X, graph, config, more_ids, gram)
    peaks, compared, tree = _clusterings(graph, ids["id_gride"], config)
    clusters, core = peaks.labels[graph.inverse], peaks.core[graph.inverse]
    agreement, per_row = _agreement_with_labels(X, graph, overlap_graph, clusters, core, groupings, demo_sets, config)
    result.scalars = {
        "n_distinct": float(graph.n_points),
        "n_duplicates": float(graph.n_duplicates),
        **ids,
        "n_clusters": float(peaks.n_clusters),
        "core_fraction": float(core.mean()),
        **({"n_clusters_compared": float(compared.n_clusters)} if compared is not peaks else {}),
        **agreement,
    }
    result.arrays = {
        "cluster": clusters.astype(np.int32),
        "cluster_compared": compared.labels[graph.inverse].astype(np.int32),
        "core": core,
        "log_density": peaks.log_density[graph.inverse],
        **per_row,
        "knn": graph.indices[:, : config.overlap_k + 1].astype(np.int32)
        if graph.n_duplicates == 0
        else np.zeros((0, 0), np.int32),
        "gride_scales": gride.scales,
        "gride_ids": gride.ids,
        "gride_errors": gride.errors,
        "gride_radii": gride.radii,
        "centers": graph.keep[peaks.centers],
        "saddle_log_density": peaks.saddle_log_density,
        "tree_clusters": tree.clusters,
        "tree_linkage": tree.linkage,
    }
    return result


def _dimensions(X: np.ndarray, graph: KnnGraph, config: AnalysisConfig, more_ids: bool, gram: LayerGram | None):
    """GRIDE at every scale (and the ID the density uses), 2NN, and the other estimators if asked."""
    gride = geometry.intrinsic_dimension_gride(graph, config.gride_range)
    id_2nn, _ = geometry.intrinsic_dimension_2nn(graph)
    ids = {
        "id_2nn": id_2nn,
        "id_gride": gride.at(config.id_scale),
        **{f"id_gride_{int(s)}": float(v) for s, v in zip(gride.scales, gride.ids, strict=True)},
        **(estimate_ids(X, graph, k=min(config.id_k, graph.maxk), gram=gram) if more_ids else {}),
    }
    return gride, ids


def _clusterings(graph: KnnGraph, id_density: float, config: AnalysisConfig):
    """ADP on the layer's graph, the clustering compared between conditions, and its dendrogram."""
    peaks = geometry.density_peaks(graph, id_density, k=config.density_k, Z=config.Z)
    # The paper compares conditions' clusterings, and draws dendrograms, from ADP on a shorter
    # neighbour list: the same density, fewer neighbours. (With the kNN density DADApy's ADP reads
    # only each point's k* = density_k neighbours, so the two agree: measured, docs/findings.md.)
    compared = peaks
    if config.cluster_maxk is not None and config.cluster_maxk != config.maxk:
        compared = geometry.density_peaks(
            truncate(graph, config.cluster_maxk), id_density, k=config.density_k, Z=config.Z
        )
    tree = geometry.peak_tree(compared, min_size=config.tree_min_size, max_log_density=config.tree_max_log_density)
    return peaks, compared, tree


def _agreement_with_labels(
    X: np.ndarray,
    graph: KnnGraph,
    overlap_graph: KnnGraph,
    clusters: np.ndarray,
    core: np.ndarray,
    groupings: Mapping[str, np.ndarray],
    demo_sets: np.ndarray | None,
    config: AnalysisConfig,
):
    """Per grouping: ARI of the clusters (all points, core points), label overlap (on
    ``overlap_graph``: ``_graphs``; or, past it with ``label_overlap_sample``, estimated from a
    stratified sample's neighbours, with its standard error) and its per-row shares, purity per
    row, and with ``null_draws`` the chance levels of the ARI and the overlap (labels shuffled);
    and the clusters' ARI with the demo sets."""
    scalars, per_row = {}, {}
    for name, given in groupings.items():
        labels = np.asarray(given)
        scalars[grouped("ari", name)] = geometry.ari(clusters, labels)
        scalars[grouped("ari_core", name)] = geometry.ari(clusters[core], labels[core])
        fraction = _class_fraction(name, config)
        distinct = labels[graph.keep]
        needed = _overlap_neighbours(distinct, fraction)
        # The fraction asked for, always: the graph grows to the neighbours it needs (recorded).
        neighbours = float(overlap_graph.maxk)
        # Each point's share of same-label neighbours is kept per row (NaN where it was not
        # measured), so that the claims resample questions, not layers (analyses.claims).
        shares = np.full(graph.n_points, np.nan)
        sampled = None
        if needed <= overlap_graph.maxk:
            overlap = geometry.label_overlap(overlap_graph, distinct, class_fraction=fraction)
            found = overlap_graph.indices
            shares = geometry.label_overlap_rows(found, distinct, class_fraction=fraction)
        elif config.label_overlap_sample is not None and needed < graph.n_points:
            sampled = geometry.stratified_rows(distinct, config.label_overlap_sample)
            found = neighbours_of(X[graph.keep], sampled, needed, device=config.device, exact=config.exact_knn)
            overlap, error = geometry.label_overlap_sampled(found, sampled, distinct, class_fraction=fraction)
            found = np.column_stack([sampled, found])  # the point itself first, as in a graph's indices
            shares[sampled] = geometry.label_overlap_rows(found, distinct, class_fraction=fraction, rows=sampled)
            scalars[grouped("label_overlap_se", name)] = error
            scalars[grouped("label_overlap_sample", name)] = float(len(sampled))
            neighbours = float(needed)
        else:
            overlap, found = np.nan, None
        scalars[grouped("label_overlap", name)] = overlap
        per_row[grouped("label_overlap_rows", name)] = shares[graph.inverse]
        if config.null_draws:
            scalars.update(
                nulls.ari_null(clusters, labels, draws=config.null_draws, seed=config.null_seed).scalars(
                    grouped("ari", name)
                )
            )
            if found is not None:
                scalars.update(
                    nulls.label_overlap_null(
                        found,
                        distinct,
                        class_fraction=fraction,
                        draws=config.null_draws,
                        seed=config.null_seed,
                        rows=sampled,
                    ).scalars(grouped("label_overlap", name))
                )
        scalars[grouped("label_overlap_fraction", name)] = fraction
        scalars[grouped("label_overlap_maxk", name)] = neighbours
        per_row[grouped("purity", name)] = geometry.cluster_purity(clusters, labels)
    if demo_sets is not None:
        scalars["ari_demo_set"] = geometry.ari(clusters, demo_sets)
        scalars["n_demo_sets"] = float(len(np.unique(demo_sets)))
    return scalars, per_row


def _class_fraction(name: str, config: AnalysisConfig) -> float:
    return config.answer_class_fraction if name == ANSWER else config.class_fraction


def _overlap_neighbours(labels: np.ndarray, fraction: float) -> int:
    """Neighbours DADApy's label overlap reads: int(fraction x the largest class)."""
    return int(fraction * np.unique(labels, return_counts=True)[1].max())


def _graphs(
    X: np.ndarray, groupings: Mapping[str, np.ndarray], config: AnalysisConfig, gram: LayerGram | None
) -> tuple[KnnGraph, KnnGraph]:
    """(the layer's graph at ``maxk``, the label overlap's graph). When a labeling's class fraction
    reaches past maxk, one longer graph is built (capped at every other distinct point; a fraction
    needing more gets NaN) and the layer's graph is its first maxk neighbours (``truncate``: the
    same graph up to the order of exactly tied neighbours), instead of building both."""
    if config.label_overlap_sample is not None:  # longer neighbour lists only for a sample (_agreement_with_labels)
        graph = knn_graph(X, config.maxk, device=config.device, exact=config.exact_knn, gram=gram)
        return graph, graph
    keep = gram.keep if gram is not None else distinct_rows(X)[0]
    needed = max(
        (
            _overlap_neighbours(np.asarray(labels)[keep], _class_fraction(name, config))
            for name, labels in groupings.items()
        ),
        default=0,
    )
    longest = min(needed, len(keep) - 1)
    if longest <= config.maxk:
        graph = knn_graph(X, config.maxk, device=config.device, exact=config.exact_knn, gram=gram)
        return graph, graph
    overlap_graph = knn_graph(X, longest, device=config.device, exact=config.exact_knn, gram=gram)
    return truncate(overlap_graph, config.maxk), overlap_graph


def compare_layers(result_a: LayerResult, result_b: LayerResult, config: AnalysisConfig) -> LayerResult:
    """Neighbourhood overlap and cluster agreement of the same examples in two conditions, from
    their stored neighbour lists (layers without duplicate points; see ``compare_states``)."""
    out = LayerResult()
    if result_a.skipped or result_b.skipped:
        out.skipped = result_a.skipped or result_b.skipped
        return out
    knn_a, knn_b = result_a.arrays["knn"], result_b.arrays["knn"]
    if knn_a.size == 0 or knn_b.size == 0:
        raise ValueError("duplicate points: compare these layers' states with compare_states")
    overlap = geometry.data_overlap(knn_a, knn_b, k=config.overlap_k)
    out.scalars = {
        "data_overlap": float(overlap.mean()),
        "ari_clusters": geometry.ari(_compared(result_a), _compared(result_b)),
        "n_pair_dropped": 0.0,
        **_pair_nulls(knn_a, knn_b, _compared(result_a), _compared(result_b), config),
    }
    out.arrays = {"data_overlap": overlap}
    return out


def _pair_nulls(
    knn_a: np.ndarray, knn_b: np.ndarray, clusters_a: np.ndarray, clusters_b: np.ndarray, config: AnalysisConfig
) -> dict[str, float]:
    """The data overlap and the clusters' ARI of two conditions with b's rows shuffled."""
    if not config.null_draws:
        return {}
    draws, seed = config.null_draws, config.null_seed
    return {
        **nulls.data_overlap_null(knn_a, knn_b, k=config.overlap_k, draws=draws, seed=seed).scalars("data_overlap"),
        **nulls.ari_null(np.asarray(clusters_a), np.asarray(clusters_b), draws=draws, seed=seed).scalars(
            "ari_clusters"
        ),
    }


def compare_states(
    X_a: np.ndarray, X_b: np.ndarray, clusters_a: np.ndarray, clusters_b: np.ndarray, config: AnalysisConfig
) -> LayerResult:
    """``compare_layers`` for a layer holding duplicate points, as the paper does it: every row
    duplicated in either condition is dropped (``n_pair_dropped``) and each condition's neighbours
    are found among the rest. Dropped rows get NaN overlap; ARI is over the kept rows.

    Example:
        >>> X = np.random.default_rng(0).normal(size=(50, 4)); X[1] = X[0]
        >>> r = compare_states(X, X * 2, np.zeros(50), np.zeros(50), AnalysisConfig(maxk=30, gride_range=30, overlap_k=10))
        >>> r.scalars["n_pair_dropped"], r.scalars["data_overlap"]
        (2.0, 1.0)
    """
    out = LayerResult()
    kept = np.flatnonzero(~(_duplicated(X_a) | _duplicated(X_b)))
    if len(kept) < config.overlap_k + 1:
        out.skipped = f"only {len(kept)} of {len(X_a)} rows are not duplicated in either condition; overlap k={config.overlap_k} needs {config.overlap_k + 1}"
        return out
    graphs = [knn_graph(X[kept], config.overlap_k, device=config.device, exact=config.exact_knn) for X in (X_a, X_b)]
    overlap = np.full(len(X_a), np.nan)
    overlap[kept] = geometry.data_overlap(graphs[0].indices, graphs[1].indices, k=config.overlap_k)
    out.scalars = {
        "data_overlap": float(np.nanmean(overlap)),
        "ari_clusters": geometry.ari(np.asarray(clusters_a)[kept], np.asarray(clusters_b)[kept]),
        "n_pair_dropped": float(len(X_a) - len(kept)),
        **_pair_nulls(
            graphs[0].indices, graphs[1].indices, np.asarray(clusters_a)[kept], np.asarray(clusters_b)[kept], config
        ),
    }
    out.arrays = {"data_overlap": overlap}
    return out


def _compared(result: LayerResult) -> np.ndarray:
    """The clustering compared between conditions (analyses made before it was stored: ``cluster``)."""
    return result.arrays.get("cluster_compared", result.arrays["cluster"])


def _duplicated(X: np.ndarray) -> np.ndarray:
    """(N,) bool: rows whose vector occurs more than once."""
    _, inverse = distinct_rows(np.asarray(X))
    return np.bincount(inverse)[inverse] > 1
