"""The label overlap of large classes, exact against sampled (issue 30): its time and its error.

    .venv/bin/python bench/bench_label_overlap.py [--sizes 9181x576,20000x576] [--samples 500,1000,2000]

The answer's 4 classes need k = 0.3 x (N / 4) neighbours a point (689 at the paper's N = 9,181),
far past the layer's maxk = 100: exactly, ``analyze_layer`` builds one graph that long and takes
the layer's as its start. ``--label-overlap-sample M`` builds the maxk graph alone and reads the
long neighbour lists of M points stratified by label (``knn.neighbours_of``: M x N x d).
Synthetic layers: 4 classes of planted clusters that overlap (``synthetic.planted_clusters`` with
close centres), so the overlap is well inside (0, 1). For each size, in this one run: the exact
route's graph, the sampled route's graph + sample, each one's overlap, the difference, the
sample's standard error, and how many standard errors the difference is. ``--layer
RUN:CONDITION:LAYER`` adds a stored layer with its answers (bench_paper_shape's synthetic file:
there every row's neighbours are recomputed from differences, the float32 GEMM being too coarse
for them, which is what a longer graph costs most).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from synthetic import planted_clusters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="9181x576,20000x576")
    parser.add_argument("--samples", default="500,1000,2000")
    parser.add_argument("--maxk", type=int, default=100)
    parser.add_argument(
        "--layer",
        default=None,
        metavar="RUN:CONDITION:LAYER",
        help="also a stored layer's eval rows with their answers (e.g. bench_paper_shape's file)",
    )
    args = parser.parse_args()
    from landscape import geometry
    from landscape.knn import knn_graph, neighbours_of

    knn_graph(np.random.default_rng(0).normal(size=(300, 8)), 10)  # compile and warm before timing
    print(
        f"{'N':>6} {'d':>5} {'k':>5} {'route':>16} {'seconds':>8} {'x exact':>8} {'overlap':>8} {'diff':>8} {'se':>7} {'diff/se':>7}"
    )
    for X, labels in _layers(args):
        n, d = X.shape
        k = int(0.3 * np.bincount(labels).max())
        start = time.perf_counter()
        graph = knn_graph(X, k)
        exact = geometry.label_overlap(graph, labels[graph.keep], class_fraction=0.3)
        exact_s = time.perf_counter() - start
        print(f"{n:6d} {d:5d} {k:5d} {'exact (k graph)':>16} {exact_s:8.1f} {1:8.2f} {exact:8.4f}")
        start = time.perf_counter()
        knn_graph(X, args.maxk)
        base_s = time.perf_counter() - start
        print(f"{n:6d} {d:5d} {args.maxk:5d} {'maxk graph alone':>16} {base_s:8.1f} {base_s / exact_s:8.2f}")
        for m in (int(v) for v in args.samples.split(",")):
            start = time.perf_counter()
            rows = geometry.stratified_rows(labels, m)
            value, error = geometry.label_overlap_sampled(neighbours_of(X, rows, k), rows, labels, class_fraction=0.3)
            seconds = base_s + time.perf_counter() - start
            print(
                f"{n:6d} {d:5d} {k:5d} {f'+ sample of {m}':>16} {seconds:8.1f} {seconds / exact_s:8.2f} {value:8.4f} "
                f"{value - exact:+8.4f} {error:7.4f} " + (f"{(value - exact) / error:+7.2f}" if error else f"{'-':>7}")
            )


def _layers(args):
    """(X, labels) of each size asked for, then of the stored layer."""
    for size in args.sizes.split(","):
        n, d = (int(v) for v in size.split("x"))
        yield planted_clusters(n, d, clusters=4, separation=0.05, seed=n)
    if args.layer:
        import h5py

        from landscape import store

        run, condition, layer = args.layer.rsplit(":", 2)
        with h5py.File(Path(run) / store.HIDDEN_FILE, "r") as f:
            examples = store.hidden.read_examples(f)
            rows = np.flatnonzero(examples.splits == "eval")
            yield store.hidden.read_layer(f, condition, int(layer))[rows], examples.answers[rows]


if __name__ == "__main__":
    main()
