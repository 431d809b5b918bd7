"""One step of bench/bench_scale.py, run in a fresh process so that its peak RSS is its own:
the kNN graph, the IDs, ADP, the other ID estimators, or ``analyze_layer`` end to end with its
parts timed (``measure.timed``) on synthetic layers (``synthetic``) kept in a work folder."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import time
from pathlib import Path

import measure
import numpy as np
from measure import RssSampler, cpu_s, peak_mib, rss_mib
from synthetic import flat_density, planted_clusters

MAXK = 100
STEPS = ("knn", "id", "adp", "ids", "layer")


def step_paths(workdir: Path, n: int, d: int, maxk: int | None = None, kind: str = "planted") -> dict[str, Path]:
    stem = workdir / f"{kind}-{n}x{d}"
    out = {"X": Path(f"{stem}-X.npy"), "labels": Path(f"{stem}-labels.npy")}
    if maxk is not None:
        for part in ("distances", "indices", "keep", "inverse"):
            out[part] = Path(f"{stem}-k{maxk}-{part}.npy")
    return out


def _load_graph(paths: dict[str, Path]):
    from landscape.knn import KnnGraph

    return KnnGraph(**{part: np.load(paths[part]) for part in ("distances", "indices", "keep", "inverse")})


def _putative_centres(log_density: np.ndarray, log_density_err: np.ndarray, indices: np.ndarray, k: int) -> int:
    """The preliminary cluster count of DADApy's ADP (before its merging): points whose
    g = log density - error is not below any of their k neighbours', less those in the
    neighbourhood of a point of higher g. Its (N_c x N_c) saddle matrices and merging loops scale with it."""
    g = log_density - log_density_err
    neighbours = indices[:, 1 : k + 1]
    peak = (g[neighbours] <= g[:, None]).all(axis=1)
    dominated = np.zeros(len(g), dtype=bool)
    dominated[neighbours[g[neighbours] < g[:, None]]] = True
    return int((peak & ~dominated).sum())


def run_step(
    step: str,
    workdir: Path,
    n: int,
    d: int,
    maxk: int,
    intrinsic_dim: float | None,
    profile: int,
    kind: str = "planted",
) -> dict:
    """One measured step, in this (fresh) process; returns its numbers."""
    import torch  # imported before the baseline: imports are not the step's memory

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

    from landscape import geometry
    from landscape.knn import knn_graph

    paths = step_paths(workdir, n, d, maxk, kind)
    if step == "data":
        X, labels = (flat_density if kind == "flat" else planted_clusters)(n, d)
        np.save(paths["X"], X)
        np.save(paths["labels"], labels)
        return {"seconds": 0.0}
    warm = planted_clusters(300, min(d, 64), seed=1)[0]  # first-call costs are not the step's
    warm_graph = knn_graph(warm, 30)
    info: dict = {}
    labels = np.load(paths["labels"])
    if step in ("knn", "ids", "layer"):
        X = np.load(paths["X"])
    if step in ("id", "adp", "ids"):
        graph = _load_graph(paths)
    if step in ("id", "adp", "layer"):
        import dadapy  # noqa: F401  (pulls in its own dependencies)

        geometry.intrinsic_dimension_2nn(warm_graph)
        geometry.density_peaks(warm_graph, 5.0)
    if step in ("ids", "layer"):
        from landscape.estimators import estimate_ids

        estimate_ids(warm, warm_graph)
    if step == "layer":
        from analyses.layer import AnalysisConfig, analyze_layer

        config = AnalysisConfig(maxk=maxk, readouts=False, similarity=False)
        parts: dict[str, float] = {}
        sampler = RssSampler()
        measure.instrument_layer(parts, sampler, MAXK)
    base_rss, base_peak, cpu0 = rss_mib(), peak_mib(), cpu_s()
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    if step == "knn":
        graph = knn_graph(X, maxk)
    elif step == "id":
        gride = geometry.intrinsic_dimension_gride(graph, min(100, maxk))
        id_2nn, _ = geometry.intrinsic_dimension_2nn(graph)
    elif step == "adp":
        peaks = geometry.density_peaks(graph, intrinsic_dim)
    elif step == "ids":
        ids = estimate_ids(X, graph)
    elif step == "layer":
        result = analyze_layer(X, {"planted": labels}, config)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    cpu, peak = cpu_s() - cpu0, peak_mib()
    if step == "knn":
        for part in ("distances", "indices", "keep", "inverse"):
            np.save(paths[part], getattr(graph, part))
        info = {"graph_mib": (graph.distances.nbytes + graph.indices.nbytes) / 2**20, "duplicates": graph.n_duplicates}
    elif step == "id":
        info = {"id_gride": gride.at(16), "id_2nn": id_2nn, "gride": [round(float(v), 1) for v in gride.ids]}
    elif step == "adp":
        info = {
            "clusters": peaks.n_clusters,
            "ari": geometry.ari(peaks.labels, labels[graph.keep]),
            "putative": _putative_centres(peaks.log_density, peaks.log_density_err, graph.indices, 16),
        }
    elif step == "ids":
        info = {name: round(value, 1) for name, value in ids.items()}
    elif step == "layer":
        sampler.stop()
        info = {
            "parts": parts,
            "part_mib": {k: v - base_rss for k, v in sampler.high.items()},
            "ari": result.scalars.get("ari[planted]", float("nan")),
            "clusters": result.scalars.get("n_clusters", float("nan")),
            "skipped": result.skipped,
            "states_mib": X.nbytes / 2**20,
        }
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(profile)
        info["profile"] = text.getvalue()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "base": base_rss,
        "base_peak": base_peak,
        "peak": peak,
        "kind": kind,
        **info,
    }
