"""One similarity group's pass against its bound: finding Huh et al.'s neighbours itself, or given
them by the layers' own tasks (issue 37, item 2).

    .venv/bin/python bench/bench_similarity.py [--shape 4590x4096] [--groups 2,8] [--null-draws 40]

A group of R synthetic layers (a shared base, each layer a noisy linear map of the one before,
float16 values as stored) compared by ``similarity_matrices`` as ``landscape analyze`` does:
once finding every layer's Huh et al. neighbours in the pass (before), once given them
(``huh_lists``), each list timed apart (``landscape.huh.huh_neighbours``: a layer's task finds it
once for both of its groups). The bound is one float64 Gram a layer, ``X @ X.T`` by torch, timed
on the same data. Per layer and group: before = pass / R; after = pass given / R + list / 2 (each
layer sits in two groups, its condition's and its layer's). The matrices of both must agree.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="4590x4096", help="ROWSxWIDTH (default: %(default)s)")
    parser.add_argument("--groups", default="2,8", help="layers a group compares (default: %(default)s)")
    parser.add_argument("--null-draws", type=int, default=40, help="chance levels' draws (default: %(default)s)")
    args = parser.parse_args()
    import numpy as np
    import torch

    from landscape.huh import huh_neighbours
    from landscape.similarity import similarity_matrices

    n, d = (int(v) for v in args.shape.split("x"))
    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(n, d))]
    for _ in range(max(int(r) for r in args.groups.split(",")) - 1):
        mixed = layers[-1] @ (np.eye(d) + rng.normal(scale=0.3 / np.sqrt(d), size=(d, d)))
        layers.append(mixed + 0.5 * rng.normal(size=(n, d)))
    layers = [X.astype(np.float16).astype(np.float32) for X in layers]
    points = torch.from_numpy(layers[0]).double()
    start = time.perf_counter()
    points @ points.T
    gram_s = time.perf_counter() - start
    print(f"layers {n} x {d}; one float64 Gram (torch): {gram_s:.2f} s; null draws {args.null_draws}\n")
    header = ("R", "pass s", "lists s", "pass given s", "before / layer", "after / layer", "x Gram", "largest diff")
    print(" | ".join(header))
    for R in (int(r) for r in args.groups.split(",")):
        group = layers[:R]
        settings = dict(k=10, cknna_k=10, null_draws=args.null_draws)
        start = time.perf_counter()
        found = similarity_matrices(group, **settings)
        pass_s = time.perf_counter() - start
        start = time.perf_counter()
        lists = [huh_neighbours(X, 10) for X in group]
        lists_s = time.perf_counter() - start
        start = time.perf_counter()
        given = similarity_matrices(group, **settings, huh_lists=lists)
        given_s = time.perf_counter() - start
        before, after = pass_s / R, given_s / R + lists_s / R / 2
        diff = max(float(np.nanmax(np.abs(found.as_dict()[m] - given.as_dict()[m]))) for m in found.as_dict())
        cells = (R, pass_s, lists_s, given_s, before, after)
        print(" | ".join(f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells), end=" | ")
        print(f"{before / gram_s:.2f} -> {after / gram_s:.2f} | {diff:.1e}")


if __name__ == "__main__":
    main()
