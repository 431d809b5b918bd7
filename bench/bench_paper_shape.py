"""The analysis at the paper's largest shape (issue 30): `landscape analyze` of a real hidden.h5 of
Llama-3-70B's shape, stage by stage, its time and peak RSS on this machine.

    .venv/bin/python bench/bench_paper_shape.py [--shape 81x9181x8192] [--layers 0,40,80]
        [--similarity-memory 6] [--workdir DIR] [--rewrite]

1. Writes WORKDIR/hidden.h5 once (``synthetic.write_synthetic_run``: 81 layers x 9,181 eval rows
   x 8,192, float16, conditions 0shot and 5shot, subject clusters early and answer clusters
   late; 24.4 GB, kept for the next run; ``--rewrite`` makes it again).
2. Analyses it in a fresh process (a new analysis.h5 each time) at the layers ``--layers`` with
   the suite's recipe, as `landscape analyze RUN --layers ...` does (``analyses.run.run_analysis``,
   one worker), timing each stage and sampling its RSS (``measure.RssSampler``): the per-layer
   geometry (kNN graph, IDs, ADP, label overlap, ...), the readouts (logit lens, probes), the
   pairs of conditions, the similarity (each group's matrices, its reads of hidden.h5), EDL.
3. Prints the table and what the whole file (every layer) would take: the per-layer stages
   times the layers; the similarity from its measured parts (Gram work per representation and
   per read, the number of reads ``similarity_matrices`` makes for L layers at that memory).

The whole 81 layers would take hours on 2 cores (each layer's Gram is 1.4 TFLOP in float64, and
the kNN graph's another 0.7 in float32), so the default analyses three; the peak memory does not
grow with the layers (the similarity is held to ``--similarity-memory``; every other stage holds
one layer), which the table shows stage by stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import measure
from measure import RssSampler, peak_mib, rss_mib

PAPER_SHAPE = "81x9181x8192"  # Llama-3-70B: 80 blocks + embeddings, MMLU's 9,181 questions (Doimo et al.), d 8,192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shape", default=PAPER_SHAPE, help="LAYERSxROWSxWIDTH of the synthetic run (default: %(default)s)"
    )
    parser.add_argument("--layers", default="0,40,80", help="layers analysed (default: %(default)s)")
    parser.add_argument(
        "--similarity-memory", type=float, default=6.0, help="GiB a similarity task may hold (default: %(default)s)"
    )
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "landscape-bench-paper-shape")
    parser.add_argument("--rewrite", action="store_true", help="write the synthetic hidden.h5 again")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    layers, n, d = (int(v) for v in args.shape.split("x"))
    if args.child:
        print(
            "RESULT "
            + json.dumps(analyse(args.workdir, [int(v) for v in args.layers.split(",")], args.similarity_memory))
        )
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    hidden = args.workdir / "hidden.h5"
    shape_file = args.workdir / "shape.txt"
    write_s = None
    if args.rewrite or not hidden.exists() or not shape_file.exists() or shape_file.read_text() != args.shape:
        from synthetic import write_synthetic_run

        needed = 2 * layers * n * d * 2 * 1.05 - (
            hidden.stat().st_size if hidden.exists() else 0
        )  # float16, 2 conditions
        if shutil.disk_usage(args.workdir).free < needed:
            sys.exit(
                f"{args.workdir} has {shutil.disk_usage(args.workdir).free / 1e9:.1f} GB free; the synthetic run needs "
                f"{needed / 1e9:.1f} GB: give --workdir elsewhere or a smaller --shape"
            )
        shape_file.unlink(missing_ok=True)
        start = time.perf_counter()
        write_synthetic_run(hidden, layers=layers, n=n, d=d)
        write_s = time.perf_counter() - start
        shape_file.write_text(args.shape)
    for stale in ("analysis.h5", "metrics.csv"):
        (args.workdir / stale).unlink(missing_ok=True)
    command = [
        sys.executable,
        __file__,
        "--child",
        "--workdir",
        str(args.workdir),
        "--shape",
        args.shape,
        "--layers",
        args.layers,
        "--similarity-memory",
        str(args.similarity_memory),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"the analysis failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    result = json.loads(lines[-1][7:])
    (args.workdir / "result.json").write_text(
        json.dumps(result, indent=1)
    )  # the measured parts, for other extrapolations
    report(result, args, (layers, n, d), hidden, write_s, wall)


def analyse(workdir: Path, layers: list[int], memory_gib: float) -> dict:
    """Run the analysis here, every stage timed and its RSS sampled."""
    import analyses.run as run
    import analyses.similarity as similarity
    from analyses.layer import recipe_config

    parts: dict[str, float] = {}
    sampler = RssSampler()
    measure.instrument_layer(parts, sampler)
    groups: list[dict] = []

    def timed(name, fn):
        return measure.timed(parts, sampler, name, fn)

    for name, stage in (
        ("_measure_layers", "layers"),
        ("_compare_conditions", "pairs"),
        ("_compare_representations", "similarity"),
        ("_relate_to_edl", "edl"),
    ):
        setattr(run, name, timed(stage, getattr(run, name)))
    run.analyze_layer = timed("geometry", run.analyze_layer)
    run.layer_readouts = timed("readouts", run.layer_readouts)
    reads = {"n": 0, "seconds": 0.0, "prepare_s": 0.0}
    read = similarity.StoredStates.__getitem__

    def counted_read(self, r):
        start = time.perf_counter()
        try:
            return read(self, r)
        finally:
            reads["n"] += 1
            reads["seconds"] += time.perf_counter() - start

    similarity.StoredStates.__getitem__ = counted_read
    from landscape import similarity as engine

    prepare = engine._Prepared._prepare  # a read layer made float64, centred and Huh-prepared

    def counted_prepare(self, r, X):
        start = time.perf_counter()
        try:
            return prepare(self, r, X)
        finally:
            reads["prepare_s"] += time.perf_counter() - start

    engine._Prepared._prepare = counted_prepare
    matrices = similarity.similarity_matrices

    def one_group(representations, **kwargs):
        before, start = dict(reads), time.perf_counter()
        try:
            return matrices(representations, **kwargs)
        finally:
            groups.append(
                {
                    "R": len(representations),
                    "seconds": time.perf_counter() - start,
                    "reads": reads["n"] - before["n"],
                    "read_s": reads["seconds"] - before["seconds"],
                    "prepare_s": reads["prepare_s"] - before["prepare_s"],
                }
            )

    similarity.similarity_matrices = one_group
    base = rss_mib()
    start = time.perf_counter()
    run.run_analysis(workdir, recipe_config("suite", similarity_memory=memory_gib), layers=layers, progress=False)
    seconds = time.perf_counter() - start
    sampler.stop()
    return {
        "seconds": seconds,
        "parts": parts,
        "high": sampler.high,
        "base": base,
        "peak": peak_mib(),
        "groups": groups,
    }


def report(
    r: dict, args: argparse.Namespace, shape: tuple[int, int, int], hidden: Path, write_s: float | None, wall: float
) -> None:
    L, n, d = shape
    analysed = len(args.layers.split(","))
    conditions = 2
    size = hidden.stat().st_size / 1e9
    print(
        f"synthetic run {L} layers x {n} rows x {d}, float16, {conditions} conditions: {size:.1f} GB on disk"
        + (f", written in {write_s / 60:.1f} min" if write_s is not None else " (written before)")
    )
    print(
        f"landscape analyze --layers {args.layers} --similarity-memory {args.similarity_memory:g} (suite recipe, 1 worker): "
        f"{r['seconds'] / 60:.1f} min, peak RSS {r['peak'] / 1024:.2f} GiB (the process held {r['base'] / 1024:.2f} GiB before)\n"
    )
    per_layer = conditions * analysed
    print(f"{'stage':28} {'seconds':>9} {'per unit':>16} {'highest RSS GiB':>16}   all {L} layers (extrapolated)")
    inner = sorted(
        (k for k in r["parts"] if k not in ("layers", "geometry", "readouts", "pairs", "similarity", "edl")),
        key=lambda k: -r["parts"][k],
    )
    rows = [
        ("layers (geometry+readouts)", "layers", per_layer, "layer", conditions * L),
        ("  geometry", "geometry", per_layer, "layer", conditions * L),
        *((f"    {k}", k, per_layer, "layer", conditions * L) for k in inner),
        ("  readouts", "readouts", per_layer, "layer", conditions * L),
        ("pairs", "pairs", analysed, "layer", L),
        ("edl", "edl", 1, "run", 1),
    ]
    for label, key, units, unit, total in rows:
        seconds = r["parts"].get(key, float("nan"))
        high = r["high"].get(key, float("nan")) / 1024
        print(
            f"{label:28} {seconds:9.1f} {seconds / units:8.1f} s/{unit:5} {high:16.2f}   {seconds / units * total / 3600:6.2f} h"
        )
    similarity_s = r["parts"].get("similarity", float("nan"))
    print(
        f"{'similarity':28} {similarity_s:9.1f} {'':16} {r['high'].get('similarity', float('nan')) / 1024:16.2f}   "
        f"{_similarity_hours(r['groups'], L, n, d, conditions, args.similarity_memory):6.2f} h"
    )
    for g in r["groups"]:
        print(
            f"  a group of {g['R']:3d} states    {g['seconds']:9.1f} {g['reads']:5d} reads and preparations, "
            f"{g['read_s'] + g['prepare_s']:.1f} s of them"
        )
    print(
        f"\nwall {wall / 60:.1f} min with the process's start; load average {os.getloadavg()[0]:.1f} at the end "
        "(other processes on the cores lengthen every time)"
    )


def _similarity_hours(groups: list[dict], L: int, n: int, d: int, conditions: int, memory_gib: float) -> float:
    """The similarity of every layer from the measured groups: a representation's Gram work
    (seconds less its reads and preparations, per representation) and a read's and preparation's
    seconds, times what ``similarity_matrices`` does at L layers (a group of L per condition, L
    groups of ``conditions``)."""
    work = sum(g["seconds"] - g["read_s"] - g["prepare_s"] for g in groups) / sum(g["R"] for g in groups)
    read = sum(g["read_s"] + g["prepare_s"] for g in groups) / max(1, sum(g["reads"] for g in groups))
    return (
        conditions * (L * work + _reads(L, n, d, memory_gib) * read)
        + L * (conditions * work + _reads(conditions, n, d, memory_gib) * read)
    ) / 3600


def _reads(R: int, n: int, d: int, memory_gib: float) -> int:
    """How many times ``similarity_matrices`` reads R representations (plus the duplicate check's one each)."""
    memory = memory_gib * 2**30
    kept = min(R, int(memory // 2 // (16 * n * d)))
    if kept == R:
        return 2 * R
    from landscape.similarity import block_rows

    block = block_rows(n, R, all_kept=False, memory_bytes=int(memory))
    return 2 * R + math.ceil(n / block) * (R - kept)


if __name__ == "__main__":
    main()
