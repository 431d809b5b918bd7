"""2-D maps of one layer's representations (UMAP, seeded; PCA fallback) and how to colour them.

``embed_2d`` is the math; ``layer_maps`` caches its results in RUN/maps.h5 (UMAP takes seconds a
layer); ``marker`` turns a colouring into the plotly marker the page and the PNG both use.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from figures.style import discrete_colorscale
from landscape import reader, store


def embed_2d(X: np.ndarray, *, method: str = "umap", seed: int = 0, n_neighbors: int = 15) -> np.ndarray:
    """(N, d) -> (N, 2) float32. UMAP with a fixed ``random_state`` is deterministic (and single-threaded).

    Example:
        >>> X = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
        >>> embed_2d(X, method="pca").shape
        (50, 2)
    """
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or len(X) < 3:
        raise ValueError(f"a 2-D map needs an (N >= 3, d) array, got shape {X.shape}")
    if method == "umap":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap warns that a random_state disables parallelism
            import umap

            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=min(n_neighbors, len(X) - 1),
                random_state=seed,
                n_jobs=1,
                init="spectral" if len(X) > n_neighbors + 2 else "random",
            )
            return reducer.fit_transform(X).astype(np.float32)
    if method == "pca":
        centred = X - X.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        components = vt[:2]
        components *= np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])[:, None]
        xy = centred @ components.T
        return np.pad(xy, ((0, 0), (0, 2 - xy.shape[1]))).astype(np.float32)
    raise ValueError(f"unknown map method {method!r}: use umap or pca")


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def layer_maps(
    run: Path,
    keys: list[tuple[str, int]],
    rows: np.ndarray,
    *,
    method: str,
    seed: int,
    n_neighbors: int,
    states: str = "residual",
    progress=None,
) -> dict[tuple[str, int], np.ndarray]:
    """Maps of ``rows`` for each (condition, layer) of the ``states`` the analysis measured, read
    from RUN/maps.h5 when made the same way."""
    run = Path(run)
    hidden = reader.hidden_path(run)
    cache = hidden.with_name(store.MAPS_FILE)
    info = reader.info(run)
    out = {}
    with h5py.File(cache, "a") as f:
        for condition, layer in keys:
            fingerprint = hashlib.sha256(
                json.dumps(info["conditions"][condition], sort_keys=True, default=str).encode()
            ).hexdigest()
            key = {
                "method": method,
                "seed": seed,
                "n_neighbors": n_neighbors,
                "rows": len(rows),
                "states": states,
                "condition": fingerprint[:16],
                "created_at": info.get("created_at", ""),
            }
            path = store.maps.map_path(condition, layer, split="eval")
            xy = store.maps.read_map(f, path, key)
            if xy is None:
                X = landscape_layer(hidden, condition, layer, states)[rows]
                xy = embed_2d(X, method=method, seed=seed, n_neighbors=n_neighbors)
                store.maps.write_map(f, path, xy, key)
                f.flush()
            out[(condition, layer)] = xy
            if progress is not None:
                progress.update(1)
    return out


def landscape_layer(hidden: Path, condition: str, layer: int, states: str = "residual") -> np.ndarray:
    with reader.open_run_file(hidden) as f:
        return store.hidden.read_layer(f, condition, layer, states)


@dataclass(frozen=True)
class Colouring:
    """Values to colour points by: category codes with their names, or numbers (``names`` empty)."""

    label: str
    values: np.ndarray
    names: tuple[str, ...] = ()

    @staticmethod
    def categories(label: str, labels: np.ndarray, order: list[str] | None = None) -> Colouring:
        names = list(order) if order is not None else sorted({str(v) for v in labels})
        index = {name: i for i, name in enumerate(names)}
        return Colouring(label, np.array([index[str(v)] for v in labels], dtype=np.int32), tuple(names))


def marker(colouring: Colouring) -> dict:
    """The plotly marker dict of a colouring (categorical: a stepwise scale with a named colour bar)."""
    base = {"size": 5, "opacity": 0.8, "line": {"width": 0}}
    if colouring.names:
        n = len(colouring.names)
        tick_step = max(1, n // 25)  # colour bars stay legible with 100 clusters
        ticks = list(range(0, n, tick_step))
        return {
            **base,
            "color": colouring.values.tolist(),
            "colorscale": discrete_colorscale(n),
            "cmin": -0.5,
            "cmax": n - 0.5,
            "showscale": True,
            "colorbar": {
                "title": {"text": colouring.label},
                "tickvals": ticks,
                "ticktext": [colouring.names[i] for i in ticks],
                "len": 0.9,
            },
        }
    values = np.asarray(colouring.values, dtype=float)
    limit = float(np.nanpercentile(np.abs(values), 98)) or 1.0
    return {
        **base,
        "color": np.round(values, 4).tolist(),
        "colorscale": "RdBu",
        "cmin": -limit,
        "cmax": limit,
        "showscale": True,
        "colorbar": {"title": {"text": colouring.label}, "len": 0.9},
    }
