"""Storage benchmark: how to keep the states (dtype, chunking, compression), and whether float16 is safe.

    .venv/bin/python bench/bench_storage.py [--run runs/default] [--synthetic 10000x4096x5] [--batch-shape 33x1800x4096x8]
        [--writes-only]

Prints three tables, each measured in this one run:

1. Size and time of one condition's states (layers x N x d) written as each storage variant
   (float32 / float16 / bfloat16 as the suite stores them, chunk = ~256 rows x one layer, with no
   compression, gzip level 4 + shuffle, lzf + shuffle, and blosc-zstd + bit shuffle when
   hdf5plugin installs): bytes per state, write time, and the time to read one whole layer (what
   the analysis does), relative to float32 uncompressed. For the run's 0shot condition and for
   synthetic states of the given N x d x layers (float32 noise around low-rank structure, like a
   hidden-state layer; per-layer numbers scale to any layer count).
2. Float16 and bfloat16 against float32 on the run's eval rows, every condition and layer:
   the share of each point's 30 nearest neighbours that stay the same, and the change in 2NN ID,
   GRIDE ID, ADP cluster count, the ARI of the two clusterings with each other, and the subject
   ARI (``analyze_layer``, the suite's defaults).
3. Extraction's writes: batches of B rows scattered over a condition (the length sort scatters
   them) written by ``store.hidden.write_rows`` and flushed, at an 8B model's shape (33 states x
   1,800 rows x 4,096), into the condition as the store lays it out (contiguous) and into the
   chunked layout it had before (one layer x ~256 rows a chunk): ms a batch.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from analyses.layer import AnalysisConfig, analyze_layer
from landscape import geometry, reader, store
from landscape.store.encoding import decode_states, encode_states  # the suite's own encoding, measured as stored


def _filters() -> dict[str, dict]:
    filters = {
        "none": {},
        "gzip4+shuffle": dict(compression="gzip", compression_opts=4, shuffle=True),
        "lzf+shuffle": dict(compression="lzf", shuffle=True),
    }
    try:
        import hdf5plugin

        filters["blosc-zstd+bitshuffle"] = dict(
            **hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.BITSHUFFLE)
        )
    except ImportError:
        pass
    return filters


def storage_table(states: np.ndarray, label: str, folder: Path) -> None:
    """states: (L, N, d) float32."""
    L, n, d = states.shape
    print(f"\n{label}: {L} layers x {n} rows x {d} dims ({states.nbytes / 2**20:.0f} MiB as float32)")
    print(
        f"{'dtype':9} {'filter':22} {'bytes/value':>11} {'size x':>7} {'write s':>8} {'read layer s':>12} {'read x':>7}"
    )
    base = None
    for dtype in store.encoding.STORE_DTYPES:
        for name, options in _filters().items():
            path = folder / f"{dtype}-{name}.h5"
            start = time.perf_counter()
            with h5py.File(path, "w") as f:
                ds = f.create_dataset(
                    "hidden",
                    shape=states.shape,
                    dtype=store.encoding.storage_dtype(dtype),
                    chunks=(1, store.hidden.chunk_rows(n), d),
                    **options,
                )
                for layer in range(L):
                    ds[layer] = encode_states(states[layer], dtype)
            write = time.perf_counter() - start
            size = os.path.getsize(path)
            reads = []
            for layer in range(L):
                start = time.perf_counter()
                with h5py.File(path, "r") as f:
                    decode_states(f["hidden"][layer], dtype)
                reads.append(time.perf_counter() - start)
            read = float(np.median(reads))
            base = base or (size, read)
            print(
                f"{dtype:9} {name:22} {size / states.size:11.2f} {size / base[0]:7.2f} {write:8.2f} {read:12.4f} {read / base[1]:7.2f}"
            )
            path.unlink()


def synthetic_states(n: int, d: int, layers: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((layers, n, d), dtype=np.float32)
    for layer in range(layers):
        basis = rng.normal(size=(32, d)).astype(np.float32)
        out[layer] = rng.normal(size=(n, 32)).astype(np.float32) @ basis + rng.normal(size=(n, d)).astype(np.float32)
        out[layer, :, rng.integers(0, d, 4)] *= 30  # a few massive dimensions, as residual streams have
    return out


def precision_table(run: Path) -> None:
    config = AnalysisConfig(readouts=False, similarity=False, id_estimators=False)
    with reader.open_run_file(run) as f:
        examples = store.hidden.read_examples(f)
        rows = np.flatnonzero(examples.splits == "eval")
        subjects = examples.groups[examples.group_names[0]][rows]
        names = [n for n in store.hidden.condition_names(f) if store.hidden.get_condition(f, n).attrs["complete"]]
        print(
            f"\nHalf precision vs float32 on {run} ({len(rows)} eval rows; per condition: mean [worst] over layers 1..L)"
        )
        print(
            f"{'condition':12} {'dtype':9} {'kNN kept':>14} {'|d id_2nn|':>14} {'|d id_gride|':>14} "
            f"{'|d clusters|':>12} {'ARI 32 vs 16':>14} {'|d ARI subj|':>14}"
        )
        for name in names:
            per_dtype = {dtype: [] for dtype in ("float16", "bfloat16")}
            for layer in range(1, store.hidden.n_layers(f, name)):
                X = store.hidden.read_layer(f, name, layer)[rows]
                full = analyze_layer(X, {"subject": subjects}, config)
                if full.skipped:
                    continue
                for dtype in per_dtype:
                    half = analyze_layer(decode_states(encode_states(X, dtype), dtype), {"subject": subjects}, config)
                    kept = (
                        geometry.data_overlap(full.arrays["knn"], half.arrays["knn"], k=30).mean()
                        if half.arrays["knn"].size
                        else np.nan
                    )
                    per_dtype[dtype].append(
                        (
                            kept,
                            abs(half.scalars["id_2nn"] - full.scalars["id_2nn"]),
                            abs(half.scalars["id_gride"] - full.scalars["id_gride"]),
                            abs(half.scalars["n_clusters"] - full.scalars["n_clusters"]),
                            geometry.ari(full.arrays["cluster"], half.arrays["cluster"]),
                            abs(half.scalars["ari[subject]"] - full.scalars["ari[subject]"]),
                        )
                    )
            for dtype, values in per_dtype.items():
                v = np.array(values)
                worst = [v[:, 0].min(), *v[:, 1:4].max(axis=0), v[:, 4].min(), v[:, 5].max()]
                cells = [f"{m:.4f} [{w:.4f}]" for m, w in zip(v.mean(axis=0), worst, strict=True)]
                cells[3] = f"{v[:, 3].mean():.2f} [{worst[3]:.0f}]"
                print(
                    f"{name:12} {dtype:9} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14} {cells[3]:>12} {cells[4]:>14} {cells[5]:>14}"
                )


def batch_write_table(layers: int, n: int, d: int, batch: int, batches: int = 40) -> None:
    """Table 3: ms a batch of ``batch`` scattered rows, as the store writes them, per layout and dtype."""
    rng = np.random.default_rng(0)
    batches = min(batches, n // batch)
    hidden = rng.standard_normal((layers, batch, d), dtype=np.float32)
    logits = rng.standard_normal((batch, 4), dtype=np.float32)
    print(
        f"\nwrites of {batch} scattered rows a batch into {layers} states x {n} rows x {d} ({batches} batches, flushed)"
    )
    print(f"{'dtype':9} {'layout':12} {'ms a batch':>10} {'x':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            base = None
            for layout in ("contiguous", "chunked"):
                path = Path(tmp) / f"{dtype}-{layout}.h5"
                with h5py.File(path, "w") as f:
                    group = store.hidden.create_condition(
                        f, "0shot", n_layers=layers - 1, n_rows=n, width=d, n_choices=4, attrs={}, store_dtype=dtype
                    )
                    if layout == "chunked":  # the layout before: the same dataset, in chunks
                        encoding = group["hidden"].attrs["encoding"]
                        del group["hidden"]
                        group.create_dataset(
                            "hidden",
                            shape=(layers, n, d),
                            dtype=store.encoding.storage_dtype(dtype),
                            chunks=(1, store.hidden.chunk_rows(n), d),
                        ).attrs["encoding"] = encoding
                    order = rng.permutation(n)
                    start = time.perf_counter()
                    for b in range(batches):
                        store.hidden.write_rows(
                            group, order[b * batch : (b + 1) * batch], hidden, logits, np.zeros(batch, np.float32)
                        )
                        f.flush()
                    ms = (time.perf_counter() - start) / batches * 1e3
                base = base or ms
                print(f"{dtype:9} {layout:12} {ms:10.1f} {ms / base:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"))
    parser.add_argument("--synthetic", default="10000x4096x5", help="N x d x layers of the synthetic states")
    parser.add_argument("--batch-shape", default="33x1800x4096x8", help="states x rows x d x batch of the write table")
    parser.add_argument("--writes-only", action="store_true", help="table 3 alone")
    args = parser.parse_args()
    batch_write_table(*(int(v) for v in args.batch_shape.split("x")))
    if args.writes_only:
        return
    n, d, layers = (int(v) for v in args.synthetic.split("x"))
    with tempfile.TemporaryDirectory(dir=args.run if args.run.is_dir() else None) as tmp:
        if args.run.is_dir():
            with reader.open_run_file(args.run) as f:
                states = np.stack(
                    [store.hidden.read_layer(f, "0shot", layer) for layer in range(store.hidden.n_layers(f, "0shot"))]
                )
            storage_table(states, f"{args.run} 0shot", Path(tmp))
        storage_table(synthetic_states(n, d, layers), "synthetic", Path(tmp))
    if args.run.is_dir():
        precision_table(args.run)


if __name__ == "__main__":
    main()
