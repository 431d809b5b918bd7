"""Synthetic layers for the benchmarks: planted clusters (structure for ADP to find) and a flat
density (the case that makes ADP's putative centres grow), seeded, float32; and whole run files
of them (``write_synthetic_run``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np


def planted_clusters(
    n: int,
    d: int,
    *,
    clusters: int = 20,
    sub: int = 8,
    spread: float = 3.0,
    separation: float = 4.0,
    noise: float = 3.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float32, labels (n,) int64): ``clusters`` Gaussian clusters, each a standard
    normal of scale ``spread`` on its own random ``sub``-dimensional subspace, around a centre
    drawn N(0, separation^2 I_d); plus isotropic noise of root-mean-square norm ``noise`` (each
    coordinate noise / sqrt(d): the same geometry at every d). Seeded; made in blocks of rows,
    so making it needs little beyond X itself."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    X = clusters_of(labels, d, sub=sub, spread=spread, separation=separation, rng=rng)
    add_noise(X, noise, rng)
    return X, labels.astype(np.int64)


def clusters_of(
    labels: np.ndarray, d: int, *, sub: int = 8, spread: float = 3.0, separation: float = 4.0, rng: np.random.Generator
) -> np.ndarray:
    """(n, d) float32: each label's rows a Gaussian of scale ``spread`` on its own random
    ``sub``-dimensional subspace around its own centre, drawn N(0, separation^2 I_d)."""
    X = np.empty((len(labels), d), dtype=np.float32)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        basis = np.linalg.qr(rng.normal(size=(d, sub)))[0]
        centre = rng.normal(size=d) * separation
        for s in range(0, len(rows), 4096):
            block = rows[s : s + 4096]
            X[block] = centre + (rng.normal(size=(len(block), sub)) * spread) @ basis.T
    return X


def add_noise(X: np.ndarray, noise: float, rng: np.random.Generator) -> None:
    """Add isotropic noise of root-mean-square norm ``noise`` to the rows of ``X`` (float32, in place)."""
    n, d = X.shape
    sigma = np.float32(noise / math.sqrt(d))
    for s in range(0, n, 4096):
        X[s : s + 4096] += rng.standard_normal(size=(min(n, s + 4096) - s, d), dtype=np.float32) * sigma


def flat_density(n: int, d: int = 64, *, dims: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float32, labels (n,) zeros): uniform in a unit ``dims``-cube, isometrically in R^d
    (a random orthonormal basis): no clusters, a flat density whose kNN estimate has many local
    maxima, the case that makes ADP's putative centres (and its merging) grow with N."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, dims)))[0]
    return (rng.uniform(size=(n, dims)) @ basis.T).astype(np.float32), np.zeros(n, dtype=np.int64)


def write_synthetic_run(
    path: Path,
    *,
    layers: int,
    n: int,
    d: int,
    conditions: Sequence[str] = ("0shot", "5shot"),
    subjects: int = 57,
    store_dtype: str = "float16",
    batch: int = 256,
    seed: int = 0,
) -> None:
    """A run file (hidden.h5, through ``landscape.store``) of ``layers`` layer states (layer 0
    included) of ``n`` eval questions x ``d`` for each condition, the shape of an extraction but
    synthetic: questions fall in ``subjects`` subjects and 4 answers, and layer l of relative
    depth t is ``(1 - t) x subject clusters + t x answer clusters + noise`` (each condition its
    own clusters): subject structure early, answer structure late, for ADP to find. The norms
    (RMS, weight 1) and a random choice head make the readouts run. Rows are written in batches
    of ``batch`` across every layer, as extraction writes them."""
    from landscape import store
    from landscape.normed import NormParameters
    from landscape.readouts import Unembedding

    rng = np.random.default_rng(seed)
    subject = np.arange(n) % subjects
    answer = rng.integers(0, 4, n)
    examples = store.hidden.Examples(
        ids=np.arange(n),
        answers=answer,
        splits=np.array(["eval"] * n),
        groups={"subject": np.array([f"subject{s:02d}" for s in subject])},
    )
    depth = np.linspace(0.0, 1.0, layers, dtype=np.float32)
    with h5py.File(path, "w") as f:
        store.hidden.write_header(
            f, {"model": f"synthetic {layers}x{n}x{d}", "task": "synthetic", "partition": {"seed": seed}}, examples, {}
        )
        for name in conditions:
            group = store.hidden.create_condition(
                f,
                name,
                n_layers=layers - 1,
                n_rows=n,
                width=d,
                n_choices=4,
                attrs={"kind": "icl", "shots": int(name.split("shot")[0])},
                store_dtype=store_dtype,
            )
            by_subject = clusters_of(subject, d, rng=rng)
            by_answer = clusters_of(answer, d, separation=6.0, rng=rng)
            for start in range(0, n, batch):
                rows = np.arange(start, min(n, start + batch))
                states = np.empty((layers, len(rows), d), dtype=np.float32)
                for layer, t in enumerate(depth):
                    states[layer] = (1 - t) * by_subject[rows] + t * by_answer[rows]
                    add_noise(states[layer], 3.0, rng)
                logits = rng.normal(size=(len(rows), 4)).astype(np.float32)
                store.hidden.write_rows(group, rows, states, logits, np.zeros(len(rows), dtype=np.float32))
            del by_subject, by_answer
            store.readout.write_norms(
                group, NormParameters("rms", np.ones((layers, d), np.float32), np.full(layers, 1e-6))
            )
            store.readout.write_head(group, Unembedding(rng.normal(size=(4, d)).astype(np.float32)))
            store.hidden.finish_condition(group, {})
