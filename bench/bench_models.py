"""What each embedded model costs on this machine: seconds a question for 0-shot and 5-shot
extraction and seconds a fine-tuning step, through the suite's own commands, against the rate of
the machine's float32 matrix multiply.

    .venv/bin/python bench/bench_models.py [--models smollm2-135m,qwen2.5-coder-1.5b] [--per-subject 8]

For each installed embedded model (the others are named and skipped): ``run_extract`` of 0-shot
and 5-shot on 2 subjects x ``--per-subject`` eval + as many train questions (batch 8), then
``run_finetune`` for one epoch at batch 8 on the train rows (its steps include the prequential
code, which is the training pass itself). Prompt tokens are counted with the model's tokenizer;
the achieved rate is 2 x (parameters outside the embeddings) x prompt tokens a second, beside
the rate of one 2,048 x 2,048 float32 matmul on the same threads. ``--profile MODEL`` adds
torch.profiler's top operators over one 0-shot batch of that model: where the time goes.
Run it alone on the cores: timings of two jobs side by side mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from extract import models
from extract.finetune import FinetuneConfig, run_finetune
from extract.icl import ExtractConfig, run_extract
from landscape import store, tasks

SUBJECTS = "high_school_psychology,prehistory"


def gemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def zero_shot_tokens(run: Path, tokenizer) -> float:
    """Mean 0-shot prompt tokens a question of the run (header, question, choices, cue)."""
    import landscape

    with h5py.File(run / store.HIDDEN_FILE, "r") as f:
        header = store.hidden.read_attrs(f)
    task, items, _ = tasks.from_run(header)
    by_id = {item.id: item for item in items}
    texts = [
        tasks.render_prefix(task, by_id[tasks.id_key(i)], []) + tasks.render_question(task, by_id[tasks.id_key(i)])
        for i in landscape.examples(run).ids
    ]
    return float(np.mean([len(tokenizer.encode(text, add_special_tokens=False)) for text in texts]))


def measure(name: str, per_subject: int, folder: Path) -> dict:
    resolved = models.resolve_model(name)
    model, tokenizer = models.load_model(resolved, torch.device("cpu"), torch.float32)
    params = sum(p.numel() for n, p in model.named_parameters() if "embed" not in n)
    del model
    run = folder / name
    run_extract(
        ExtractConfig(
            model=name,
            shots=(0, 5),
            subjects=SUBJECTS,
            per_subject=per_subject,
            demo_pool=5,
            train_per_subject=per_subject,
            batch_size=8,
        ),
        run,
        progress=False,
    )
    out = dict(model=name, params=params)
    with h5py.File(run / store.HIDDEN_FILE, "r") as f:
        for condition in ("0shot", "5shot"):
            group = store.hidden.get_condition(f, condition)
            out[condition] = float(store.hidden.condition_attrs(group)["seconds"]) / len(
                store.hidden.read_outputs(f, condition)[2]
            )
    out["0shot_tokens"] = zero_shot_tokens(run, tokenizer)
    summary = run_finetune(run, FinetuneConfig(epochs=1, batch_size=8), progress=False)
    out["step"] = float(summary["seconds_per_step"])
    out["gflops_0shot"] = 2 * params * out["0shot_tokens"] / out["0shot"] / 1e9
    return out


def profile(name: str) -> str:
    """torch.profiler's top operators over one 0-shot batch of 8 questions."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, tokenizer = models.load_model(models.resolve_model(name), torch.device("cpu"), torch.float32)
    task, items = tasks.load_items(tasks.load_task("mmlu"))
    texts = [tasks.render_prefix(task, item, []) + tasks.render_question(task, item) for item in items[:8]]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        model(**batch, output_hidden_states=True)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            model(**batch, output_hidden_states=True)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(models.EMBEDDED))
    parser.add_argument("--per-subject", type=int, default=8)
    parser.add_argument("--profile", default="", help="a model whose one 0-shot batch is profiled")
    args = parser.parse_args(argv)
    gemm = gemm_gflops()
    print(f"float32 matmul 2048^3 on {torch.get_num_threads()} threads: {gemm:.0f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            try:
                models.locate_gguf(models.EMBEDDED[name])
            except models.ModelError as error:
                print(f"{name}: skipped ({error})", file=sys.stderr)
                continue
            rows.append(measure(name, args.per_subject, Path(tmp)))
    print(
        "| model | parameters (no embeddings) | 0-shot s/question (tokens) | 5-shot s/question (shared prefix) "
        "| fine-tuning s/step (batch 8) | 0-shot GFLOP/s | share of the matmul rate |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['params'] / 1e6:.0f} M | {r['0shot']:.2f} ({r['0shot_tokens']:.0f}) "
            f"| {r['5shot']:.2f} | {r['step']:.1f} | {r['gflops_0shot']:.0f} "
            f"| {r['gflops_0shot'] / gemm:.0%} |"
        )
    if args.profile:
        print(profile(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
