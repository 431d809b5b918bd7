"""GPU checks and benchmark: the kNN graph on the GPU, and a model split over GPU, CPU and disk.

    python bench/bench_gpu.py [--sizes 5000x576,14000x4096,50000x4096,100000x576] [--json FILE]

Needs a CUDA device (says so and exits 0 without one). Measured in one run:
- **the kNN graph on the GPU** (``knn_graph(device="cuda")``: blocks of whole rows, one top-k
  per row) against the GEMM bound there (N^2 d flops at the rate of the full float32
  X @ X.T, TF32 off as in the graph), at maxk 100 and at the paper's maxk 1000 (N = 9,181); its
  GEMMs and top-k's alone, on points already on the GPU (the rest is the host's part);
  its neighbours against the CPU path's (reservoirs, ``landscape.selection``) on the same data,
  and the CPU path's time with every core of the machine;
- **a device map** (``--device-map``): the tiny Llama extracted on the GPU whole, and split with
  its blocks on GPU 0, the CPU and disk (accelerate's big-model loading), float32: the states of
  every layer must agree to float tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from bench_geometry import synthetic_layer  # noqa: E402
from landscape.knn import knn_graph  # noqa: E402


DEVICE = "cuda"  # --smoke-cpu: "cpu", to check this script where there is no GPU


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def cuda_seconds(fn, repeat: int = 1) -> float:
    """Best wall time of ``fn()`` over ``repeat`` runs, the GPU synchronised around each."""
    best = float("inf")
    for _ in range(repeat):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - start)
    return best


def product_seconds(X: np.ndarray) -> float:
    """Best time of the full float32 X @ X.T on the device (2 N^2 d flops)."""
    on_device = torch.from_numpy(X).to(DEVICE)
    return cuda_seconds(lambda: on_device @ on_device.T, repeat=3)


def knn_rows(sizes: list[tuple[int, int, int]]) -> list[dict]:
    from landscape import knn

    rows = []
    warm = synthetic_layer(600, 64)[0]
    knn_graph(warm, 10, device=DEVICE), knn_graph(warm, 10, device="cpu")  # warm-up: CUDA context, numba kernels
    for n, d, maxk in sizes:
        X = synthetic_layer(n, d)[0]
        full = product_seconds(X)
        graph = None

        def run():
            nonlocal graph
            graph = knn_graph(X, maxk, device=DEVICE)

        seconds = cuda_seconds(run, repeat=2)
        row = dict(n=n, d=d, maxk=maxk, knn_s=seconds, bound_s=full / 2, ratio=seconds / (full / 2),
                   tflops=2 * n * n * d / full / 1e12)
        line = (f"{n:>7d} x {d:<5d} maxk {maxk:<5d} GPU kNN {seconds:7.4f} s  bound {full / 2:7.4f} s  "
                f"{seconds / (full / 2):6.2f}x  ({row['tflops']:.1f} TFLOP/s fp32)")
        on_device = torch.from_numpy(X).to(DEVICE)  # the GEMMs and top-k's alone, without the host's part
        row["selection_s"] = cuda_seconds(lambda: knn._rows_topk(on_device, maxk), repeat=2)
        line += f"\n{'':22s}GEMMs + top-k alone (points on the GPU) {row['selection_s']:.4f} s"
        if n * d <= 14000 * 4096:  # exactness against the CPU path on the same data, and its time on every core
            gpu_exact = knn_graph(X, maxk, device=DEVICE, exact=True)
            start = time.perf_counter()
            cpu = knn_graph(X, maxk, device="cpu")
            row["cpu_s"], row["cpu_threads"] = time.perf_counter() - start, torch.get_num_threads()
            cpu_exact = knn_graph(X, maxk, device="cpu", exact=True)
            row["same_neighbours_exact"] = float((cpu_exact.indices == gpu_exact.indices).mean())
            row["same_neighbour_sets"] = float(np.mean([len(set(a) & set(b)) / len(a) for a, b in
                                                        zip(cpu.indices.tolist(), graph.indices.tolist())]))
            row["distance_rel_diff"] = float(np.max(np.abs(cpu_exact.distances[:, 1:] - gpu_exact.distances[:, 1:])
                                                    / gpu_exact.distances[:, 1:]))
            line += (f"\n{'':22s}CPU {row['cpu_s']:6.2f} s on {row['cpu_threads']} threads; exact=True: same "
                     f"neighbours {row['same_neighbours_exact']:.5f}, max rel. distance diff "
                     f"{row['distance_rel_diff']:.1e}; default: same neighbour sets {row['same_neighbour_sets']:.5f}")
        rows.append(row)
        print(line, flush=True)
    return rows


def device_map_row() -> dict:
    import h5py

    from conftest import build_tiny_model, write_tiny_mmlu
    from extract.icl import ExtractConfig, run_extract
    from landscape import store

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, mmlu = build_tiny_model(tmp / "tiny", layers=4), write_tiny_mmlu(tmp / "mmlu.jsonl")
        gpu = 0 if DEVICE == "cuda" else "cpu"
        placement = {"model.embed_tokens": gpu, "model.norm": "cpu", "model.rotary_emb": gpu, "lm_head": "cpu",
                     "model.layers.0": gpu, "model.layers.1": "cpu", "model.layers.2": "disk", "model.layers.3": gpu}
        (tmp / "map.json").write_text(json.dumps(placement))
        common = dict(model=str(model), task_data=str(mmlu), shots=(0, 2), subjects="all", per_subject=6, demo_pool=4,
                      train_per_subject=5, batch_size=4, dtype="float32")
        whole = run_extract(ExtractConfig(device=DEVICE, **common), tmp / "whole", progress=False)
        split = run_extract(ExtractConfig(device_map=str(tmp / "map.json"), **common), tmp / "split", progress=False)
        worst = 0.0
        with h5py.File(tmp / "whole" / "hidden.h5", "r") as a, h5py.File(tmp / "split" / "hidden.h5", "r") as b:
            for name in store.hidden.condition_names(a):
                for layer in store.hidden.stored_layers(a, name):
                    x, y = store.hidden.read_layer(a, name, layer), store.hidden.read_layer(b, name, layer)
                    worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(x) + 1e-3))))
    row = dict(placement=placement, accuracies_whole=whole, accuracies_split=split, max_rel_state_diff=worst)
    print(f"device map {placement}: accuracies {whole} (whole on cuda) vs {split} (split); "
          f"largest relative state difference {worst:.1e}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000x576,14000x4096,50000x4096,100000x576")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-knn", action="store_true", help="only the device-map check")
    parser.add_argument("--smoke-cpu", action="store_true", help="run everything on the CPU (checks the script, measures nothing)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = "cpu" if args.smoke_cpu else "cuda"
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    torch.backends.cuda.matmul.allow_tf32 = False  # the graph's GEMM is float32; so is the bound
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke test)"
    print(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    paper = [] if args.smoke_cpu else [(9181, 576, 1000)]
    sizes = [(*map(int, size.split("x")), 100) for size in args.sizes.split(",") if size] + paper
    results = {"device": name, "knn": [] if args.skip_knn else knn_rows(sizes), "device_map": device_map_row()}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
