"""Extraction benchmark on the embedded model: throughput, overhead, memory. Prints one table.

    .venv/bin/python bench/bench_extract.py [--subjects anatomy,astronomy] [--per-subject 24]

Measured in one run, as ratios against a baseline of the same run:
- questions/s for 0-shot, 5-shot with the shared-prefix cache, 5-shot recomputing the full prompt;
  target: 5-shot (cached) >= 0.6 x the 0-shot throughput;
- the cost of the demo controls: 5-shot with resampled demos (a prefix per question: no cache)
  and with another subject's demos (a cache per (subject, other subject) pair), vs fixed demos;
- overhead of ``run_extract`` (tokenising, hooks, HDF5 writes, bookkeeping) over a bare loop of
  the same forward passes on the same batches; target <= 10 %;
- peak RSS of an extraction of N and of 4N questions, each in its own process;
  target: RSS(4N) <= 1.15 x RSS(N).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import torch

from extract import data, forward, models
from extract.icl import ExtractConfig, run_extract
from landscape import store, tasks


def _seconds(run_dir: Path, condition: str) -> float:
    with h5py.File(run_dir / "hidden.h5", "r") as f:
        return float(store.hidden.get_condition(f, condition).attrs["seconds"])


def bare_loop_seconds(config: ExtractConfig, shots: int) -> float:
    """The same forward passes as run_extract, nothing else: no hooks, no writes, no bookkeeping."""
    task, items = tasks.load_items(tasks.load_task(config.task))
    by_id = {q.id: q for q in items}
    values = data.select_values(items, config.subjects)
    part = data.make_partition(
        items,
        values,
        demo_pool=config.demo_pool,
        per_subject=config.per_subject,
        train_per_subject=config.train_per_subject,
        seed=config.seed,
    )
    model, tok = models.load_model(models.resolve_model(config.model), torch.device("cpu"), torch.float32)
    start = time.perf_counter()
    for value in part.values:
        demos = [by_id[i] for i in part.demos[value][:shots]]
        header_item = by_id[part.demos[value][0]]
        cache = forward.encode_prefix(model, tok.encode(tasks.render_prefix(task, header_item, demos)))
        q_ids = sorted(
            (
                tok.encode(tasks.render_question(task, by_id[i]), add_special_tokens=False)
                for i in part.eval
                if by_id[i].group == value
            ),
            key=len,
        )
        for s in range(0, len(q_ids), config.batch_size):
            batch = q_ids[s : s + config.batch_size]
            width = max(map(len, batch))
            ids = torch.tensor([q + [0] * (width - len(q)) for q in batch])
            mask = torch.tensor([[1] * len(cache.ids) + [1] * len(q) + [0] * (width - len(q)) for q in batch])
            last = torch.tensor([len(q) - 1 for q in batch])
            past = copy.deepcopy(cache.cache)
            past.batch_repeat_interleave(len(batch))
            with torch.inference_mode():
                model(
                    input_ids=ids,
                    attention_mask=mask,
                    past_key_values=past,
                    use_cache=True,
                    logits_to_keep=last[:, None],
                )
    return time.perf_counter() - start


def child_peak_rss(per_subject: int, subjects: str) -> float:
    """Peak RSS (MiB) of a fresh process extracting 0-shot for ``per_subject`` x subjects.

    The lifetime maximum: if extraction grew with N it would pass the model load's peak."""
    code = (
        "import json, resource, sys, tempfile, pathlib\n"
        "from extract.icl import ExtractConfig, run_extract\n"
        f"run_extract(ExtractConfig(shots=(0,), subjects={subjects!r}, per_subject={per_subject}, train_per_subject=0),"
        " pathlib.Path(tempfile.mkdtemp()), progress=False)\n"
        "print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", default="anatomy,astronomy")
    parser.add_argument("--per-subject", type=int, default=24)
    args = parser.parse_args()

    base = ExtractConfig(shots=(0, 5), subjects=args.subjects, per_subject=args.per_subject, train_per_subject=0)
    tmp = Path(tempfile.mkdtemp())
    run_extract(base, tmp / "cached", progress=False)
    run_extract(
        ExtractConfig(
            shots=(5,), subjects=args.subjects, per_subject=args.per_subject, train_per_subject=0, prefix_cache=False
        ),
        tmp / "full",
        progress=False,
    )
    run_extract(
        ExtractConfig(
            shots=(5,),
            subjects=args.subjects,
            per_subject=args.per_subject,
            train_per_subject=0,
            demos=("resampled", "other-subject"),
        ),
        tmp / "controls",
        progress=False,
    )
    with h5py.File(tmp / "cached" / "hidden.h5", "r") as f:
        n = len(store.hidden.read_examples(f))
    zero, five, five_full = (
        _seconds(tmp / "cached", "0shot"),
        _seconds(tmp / "cached", "5shot"),
        _seconds(tmp / "full", "5shot"),
    )
    resampled, other = _seconds(tmp / "controls", "5shot-resampled"), _seconds(tmp / "controls", "5shot-othersubject")
    bare = bare_loop_seconds(base, shots=5)
    rss_n = child_peak_rss(args.per_subject, args.subjects)
    rss_4n = child_peak_rss(4 * args.per_subject, args.subjects)

    rows = [
        ("0-shot throughput", f"{n / zero:.2f} q/s", "baseline", ""),
        ("5-shot, prefix cache", f"{n / five:.2f} q/s", f"{zero / five:.2f} x 0-shot", ">= 0.60"),
        ("5-shot, full prompt", f"{n / five_full:.2f} q/s", f"{zero / five_full:.2f} x 0-shot", ""),
        ("prefix cache speed-up", "", f"{five_full / five:.2f} x", ""),
        ("5-shot, resampled demos", f"{n / resampled:.2f} q/s", f"{resampled / five:.2f} x fixed time", ""),
        ("5-shot, other subject's demos", f"{n / other:.2f} q/s", f"{other / five:.2f} x fixed time", ""),
        ("extraction / bare loop (5-shot)", f"{five:.2f} s / {bare:.2f} s", f"{five / bare - 1:+.1%}", "<= +10%"),
        (f"peak RSS N={n}", f"{rss_n:.0f} MiB", "baseline", ""),
        (f"peak RSS 4N={4 * n}", f"{rss_4n:.0f} MiB", f"{rss_4n / rss_n:.3f} x", "<= 1.15"),
    ]
    print(
        f"\nextraction benchmark: smollm2-135m, {args.subjects}, N={n}, batch {base.batch_size}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(f"{'measure':34s} {'value':>22s} {'ratio':>16s} {'target':>8s}")
    for row in rows:
        print(f"{row[0]:34s} {row[1]:>22s} {row[2]:>16s} {row[3]:>8s}")
    print(
        json.dumps(
            {
                "n": n,
                "zero_s": zero,
                "five_s": five,
                "five_full_s": five_full,
                "bare_s": bare,
                "resampled_s": resampled,
                "other_subject_s": other,
                "rss_n_mib": rss_n,
                "rss_4n_mib": rss_4n,
            }
        )
    )


if __name__ == "__main__":
    main()
