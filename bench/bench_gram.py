"""The layer's kNN graph against its bound, one float64 Gram, and against exact ranks (issue 37).

    .venv/bin/python bench/bench_gram.py [--shape 9181x4096] [--maxk 699,100] [--code DIR]

A synthetic layer shaped like a paper-scale one (57 subject clusters, a shared offset, float16
values): ``knn_graph`` timed, the float64 Gram ``X @ X.T`` by torch timed on the same data (the
bound), and the neighbour lists of 20 evenly spaced rows checked against a float64 search from
coordinate differences. ``--code DIR`` imports ``landscape`` from another checkout (e.g. a
``git worktree`` of an older commit) to compare its graph on the same data: each run saves its
lists under /tmp so that a second run prints how many rows agree with the first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="9181x4096", help="ROWSxWIDTH (default: %(default)s)")
    parser.add_argument("--maxk", default="699,100", help="neighbour counts (default: %(default)s)")
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parents[1], help="checkout to import")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    import numpy as np
    import torch

    from landscape import knn

    n, d = (int(v) for v in args.shape.split("x"))
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(57, d)) * 4
    X = 30 * rng.normal(size=d) + centres[np.arange(n) % 57] + rng.normal(size=(n, d))
    X = X.astype(np.float16).astype(np.float32)  # stored states' precision
    knn.knn_graph(X[:500], 50)  # warm-up (numba, threads)
    points = torch.from_numpy(X).double()
    start = time.perf_counter()
    points @ points.T
    gram_s = time.perf_counter() - start
    rows = np.linspace(0, n - 1, 20).astype(int)
    exact = X.astype(np.float64)
    print(f"code: {args.code}\nlayer {n} x {d}; one float64 Gram (torch): {gram_s:.1f} s\n")
    print(f"{'maxk':>5} {'knn_graph s':>12} {'x Gram':>7} {'exact lists of 20':>18} {'rows as the last run':>21}")
    for maxk in (int(v) for v in args.maxk.split(",")):
        start = time.perf_counter()
        graph = knn.knn_graph(X, maxk)
        seconds = time.perf_counter() - start
        right = 0
        for r in rows:
            distances = np.sqrt(((exact - exact[r]) ** 2).sum(1))
            distances[r] = np.inf
            right += np.array_equal(graph.indices[r, 1:], np.argsort(distances, kind="stable")[:maxk])
        saved = Path(f"/tmp/bench_gram_{n}x{d}_{maxk}.npy")
        same = f"{(np.load(saved) == graph.indices).all(1).mean():.3f}" if saved.exists() else "-"
        np.save(saved, graph.indices)
        print(f"{maxk:5d} {seconds:12.1f} {seconds / gram_s:7.2f} {right:18d} {same:>21}")


if __name__ == "__main__":
    main()
