"""1 vs 2 workers on this machine: extraction, fine-tuning and the full analysis. Prints one table.

    .venv/bin/python bench/bench_parallel.py [--run runs/default] [--subjects largest:4] [--per-subject 24]

Measured in one run, each variant in its own process(es), as ratios of wall times:
- extraction (embedded model, 0-shot and 5-shot fixed demos, ``--subjects``/``--per-subject``):
  ``landscape extract`` (1 process, torch on every core) vs ``accelerate launch --num_processes 2``
  (each rank one thread); the merged files are checked equal;
- fine-tuning (LoRA, 1 epoch on the extracted train rows): 1 process vs 2 data-parallel ranks;
- the full analysis of ``--run`` (every condition, layer and split; hidden.h5 is linked, not
  copied): ``--jobs 1`` vs ``--jobs 2`` (local processes) vs ``--ray`` on a local Ray of 2 CPUs.
With 2 cores and torch already using both in one process, expect well under 2x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from landscape import store

BIN = Path(sys.executable).parent
LAUNCH = [
    str(BIN / "accelerate"),
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "-m",
    "landscape",
]


def timed(command: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def max_difference(a: Path, b: Path, group: str) -> float:
    """Largest absolute difference between the float datasets of ``group`` in two hidden.h5 files."""
    worst = 0.0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:

        def visit(name, obj):
            nonlocal worst
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                worst = max(worst, float(np.max(np.abs(obj[()] - fb[group][name][()]), initial=0.0)))

        fa[group].visititems(visit)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run", type=Path, default=Path("runs/default"), help="an analysed run: its analysis is redone"
    )
    parser.add_argument("--subjects", default="largest:4")
    parser.add_argument("--per-subject", type=int, default=24)
    parser.add_argument("--parts", default="extract,analyze", help="comma list of extract (with finetune), analyze")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    landscape = [str(BIN / "landscape")]
    rows = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if "extract" in parts:
            rows += extract_and_finetune(landscape, tmp, args)
        if "analyze" in parts:
            rows.append(analyze(landscape, tmp, args.run))

    print(f"\ncores: {os.cpu_count()}")
    print(f"| {'task':<58} | 1 worker (s) | 2 workers (s) | speed-up | note")
    print(f"|{'-' * 60}|--------------|---------------|----------|-----")
    for task, one, two, note in rows:
        print(f"| {task:<58} | {one:12.1f} | {two:13.1f} | {one / two:7.2f}x | {note}")


def extract_and_finetune(landscape: list[str], tmp: Path, args) -> list[tuple]:
    rows = []
    extract = [
        "extract",
        "--shots",
        "0,5",
        "--subjects",
        args.subjects,
        "--per-subject",
        str(args.per_subject),
        "--train-per-subject",
        "16",
        "--no-progress",
    ]
    one = timed(landscape + extract + ["--run", str(tmp / "one")])
    two = timed(LAUNCH + extract + ["--run", str(tmp / "two")])
    diff = max(
        max_difference(tmp / "one" / "hidden.h5", tmp / "two" / "hidden.h5", f"conditions/{c}")
        for c in ("0shot", "5shot")
    )
    rows.append(("extract 0+5-shot", one, two, f"max |state diff| {diff:.1e}"))

    finetune = ["finetune", "--epochs", "1", "--no-progress"]
    one = timed(landscape + finetune + [str(tmp / "one")])
    two = timed(LAUNCH + finetune + [str(tmp / "two")])
    diff = max_difference(tmp / "one" / "hidden.h5", tmp / "two" / "hidden.h5", "edl/sft")
    rows.append(("finetune (1 epoch) + extract", one, two, f"max |EDL record diff| {diff:.1e} bits"))
    return rows


def analyze(landscape: list[str], tmp: Path, run: Path) -> tuple:
    analyses = {}
    for label, flags in (("jobs 1", ["--jobs", "1"]), ("jobs 2", ["--jobs", "2"]), ("ray 2", ["--jobs", "2", "--ray"])):
        folder = tmp / label.replace(" ", "-")
        folder.mkdir()
        (folder / store.HIDDEN_FILE).symlink_to((run / store.HIDDEN_FILE).resolve())
        analyses[label] = timed([*landscape, "analyze", str(folder), "--no-progress", *flags])
    same = (
        (tmp / "jobs-1" / "metrics.csv").read_bytes()
        == (tmp / "ray-2" / "metrics.csv").read_bytes()
        == (tmp / "jobs-2" / "metrics.csv").read_bytes()
    )
    with h5py.File(run / store.HIDDEN_FILE, "r") as f:
        names = store.hidden.condition_names(f)
        size = f"{len(names)} conditions x {store.hidden.n_layers(f, names[0])} layers, {len(store.hidden.read_examples(f))} rows"
    return (
        f"analyze {run} ({size})",
        analyses["jobs 1"],
        analyses["jobs 2"],
        f"ray 2 CPUs {analyses['ray 2']:.1f} s ({analyses['jobs 1'] / analyses['ray 2']:.2f}x); "
        f"metrics.csv identical: {same}",
    )


if __name__ == "__main__":
    main()
