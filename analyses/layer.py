"""Everything measured on one layer of one condition: a pure function of (X, labels, settings).

``analyze_layer`` builds the kNN graph once and hands it to every estimator; results are mapped
back from distinct points to all N rows (duplicates take their representative's values).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from typing import Mapping

from landscape import geometry
from landscape.knn import GeometryError, knn_graph
from landscape.names import grouped


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the per-layer analysis (defaults: Doimo et al. 2024)."""

    maxk: int = 100  # neighbours in the graph
    gride_range: int = 100  # GRIDE up to this rank: scales 1, 2, ..., 32
    id_scale: int = 16  # the GRIDE scale whose ID feeds the density
    density_k: int = 16
    Z: float = 1.6
    class_fraction: float = 0.3  # label overlap: k_i = 0.3 x size of i's class
    overlap_k: int = 30  # data overlap between conditions
    tree_min_size: int = 30  # dendrogram leaves: clusters with more points than this
    exact_knn: bool = False  # recompute every neighbour distance from differences (see knn_graph)
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        for name in ("maxk", "gride_range", "id_scale", "density_k", "overlap_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("gride_range", "density_k", "overlap_k"):
            if getattr(self, name) > self.maxk:
                raise ValueError(f"{name}={getattr(self, name)} exceeds maxk={self.maxk}")
        if not 0 < self.class_fraction <= 1:
            raise ValueError(f"class_fraction must be in (0, 1], got {self.class_fraction}")
        if self.Z <= 0:
            raise ValueError(f"Z must be positive, got {self.Z}")


@dataclass
class LayerResult:
    """Scalars (for metrics.csv) and arrays (for analysis.h5) of one layer; arrays have N rows."""

    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: str = ""  # why the geometry is undefined here (e.g. every point identical)


def analyze_layer(X: np.ndarray, groupings: Mapping[str, np.ndarray], config: AnalysisConfig,
                  demo_sets: np.ndarray | None = None) -> LayerResult:
    """kNN graph -> GRIDE and 2NN IDs -> kNN density + ADP -> ARI, label overlaps, per-point features.

    ``groupings``: name -> (N,) labels, each analysed alike (the task's grouping fields and the
    answer): ``ari[<name>]``, ``ari_core[<name>]``, ``label_overlap[<name>]`` (and the class fraction
    it used), and the per-row array ``purity[<name>]``. ``demo_sets`` (N,), for ICL conditions
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
    try:
        graph = knn_graph(X, config.maxk, device=config.device, exact=config.exact_knn)
    except GeometryError as error:
        result.skipped = str(error)
        result.scalars = {"n_distinct": float(len(np.unique(X, axis=0)))}
        return result

    gride = geometry.intrinsic_dimension_gride(graph, config.gride_range)
    id_2nn, _ = geometry.intrinsic_dimension_2nn(graph)
    id_density = gride.at(config.id_scale)
    peaks = geometry.density_peaks(graph, id_density, k=config.density_k, Z=config.Z)
    tree = geometry.peak_tree(peaks, min_size=config.tree_min_size)
    clusters = peaks.labels[graph.inverse]
    core = peaks.core[graph.inverse]

    result.scalars = {
        "n_distinct": float(graph.n_points),
        "n_duplicates": float(graph.n_duplicates),
        "id_2nn": id_2nn,
        "id_gride": id_density,
        **{f"id_gride_{int(s)}": float(v) for s, v in zip(gride.scales, gride.ids)},
        "n_clusters": float(peaks.n_clusters),
        "core_fraction": float(core.mean()),
    }
    purity = {}
    for name, labels in groupings.items():
        labels = np.asarray(labels)
        result.scalars[grouped("ari", name)] = geometry.ari(clusters, labels)
        result.scalars[grouped("ari_core", name)] = geometry.ari(clusters[core], labels[core])
        # k_i = fraction x class size may not exceed the graph's maxk: large classes lower the
        # fraction (recorded), the same for every class of that labeling.
        distinct = labels[graph.keep]
        largest = np.unique(distinct, return_counts=True)[1].max()
        fraction = min(config.class_fraction, config.maxk / largest)
        result.scalars[grouped("label_overlap", name)] = geometry.label_overlap(graph, distinct, class_fraction=fraction)
        result.scalars[grouped("label_overlap_fraction", name)] = fraction
        purity[grouped("purity", name)] = geometry.cluster_purity(clusters, labels)
    if demo_sets is not None:
        result.scalars["ari_demo_set"] = geometry.ari(clusters, demo_sets)
        result.scalars["n_demo_sets"] = float(len(np.unique(demo_sets)))
    result.arrays = {
        "cluster": clusters.astype(np.int32),
        "core": core,
        "log_density": peaks.log_density[graph.inverse],
        **purity,
        "knn": graph.indices[:, : config.overlap_k + 1].astype(np.int32) if graph.n_duplicates == 0 else np.zeros((0, 0), np.int32),
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


def compare_layers(result_a: LayerResult, result_b: LayerResult, config: AnalysisConfig) -> LayerResult:
    """Neighbourhood overlap and cluster agreement of the same examples in two conditions."""
    out = LayerResult()
    if result_a.skipped or result_b.skipped:
        out.skipped = result_a.skipped or result_b.skipped
        return out
    knn_a, knn_b = result_a.arrays["knn"], result_b.arrays["knn"]
    if knn_a.size == 0 or knn_b.size == 0:
        out.skipped = "duplicate points: neighbourhoods are not comparable row by row"
        return out
    overlap = geometry.data_overlap(knn_a, knn_b, k=config.overlap_k)
    out.scalars = {
        "data_overlap": float(overlap.mean()),
        "ari_clusters": geometry.ari(result_a.arrays["cluster"], result_b.arrays["cluster"]),
    }
    out.arrays = {"data_overlap": overlap}
    return out
