"""Scale benchmark: time and peak memory of each step of the per-layer analysis at N = 2x10^4..10^5.

    .venv/bin/python bench/bench_scale.py [--quick | --full] [--sizes 20000x576,...] [--layer-sizes ...]
        [--flat 20000,50000] [--timeout 1800] [--threads 1] [--workdir DIR] [--profile-adp 50000x576]

Synthetic layers with planted clusters (``planted_clusters``: C Gaussian clusters, each on its
own random low-dimensional subspace of R^d around its own centre, plus small isotropic noise;
float32, seeded). For each N x d, every step runs in a fresh subprocess, so its peak RSS
(``ru_maxrss``) is that step's; each is reported as the peak and as the peak minus the RSS the
process had after loading its inputs (imports, the data and/or the kNN graph, a tiny warm-up):

  knn     ``knn_graph`` at maxk (100), from the data (the graph is saved for the next steps)
  id      GRIDE (ranks up to 100) + 2NN, on that graph
  adp     ``density_peaks``: kNN density at the GRIDE ID of scale 16 + DADApy's ADP (halo and
          not), on that graph; its ARI with the planted clusters says the data is meaningful
  ids     the other ID estimators (``estimate_ids``: MLE, TLE, local PCA, DANCo), from data + graph
  layer   ``analyze_layer`` end to end (no readouts or similarity, which it does not run; the
          planted clusters as its one grouping), instrumented: the share of each part, ADP's
          included, is measured inside that one run

plus two rows of their own: maxk = 1000 at N = 9,181, d = 576 (the paper's setting: knn, id, adp),
and ``layer`` at N = 10^4, d = 4096 against the size of the layer's states (float32) plus its
kNN graph: the "one layer plus the graph" bound. Every ratio is from this one run. Then the
exponents of time and memory in N (log-log fits over the measured points). ``--flat N,N,...``
adds knn, id and adp on a flat density (``flat_density``), where ADP's putative centres grow
with N and its merging with their cube.

Each step runs on one thread by default (``--threads``), as the analysis workers do. The default
grid leaves out what does not fit ~25 minutes (``--full`` runs the issue's whole grid; what is
left out is printed, with why). A step past ``--timeout`` prints
"timeout" and the run goes on. ``--profile-adp 50000x576`` profiles ADP alone (cProfile, top
functions by cumulative time) on that size's graph (from ``--workdir`` when cached there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scale_steps import MAXK, STEPS, run_step, step_paths

QUICK_SIZES = "5000x576"
# Steps knn, id, adp, ids at each of these sizes; "layer" (which builds its own graph) at the layer sizes.
DEFAULT_SIZES = "20000x576,50000x576,100000x576,20000x4096,50000x4096"
DEFAULT_LAYER_SIZES = "20000x576,50000x576,20000x4096"
PAPER = (9181, 576, 1000)  # N, d, maxk of Doimo et al. 2024
BOUND = (10000, 4096)  # the one-layer memory row


def _spawn(
    args: argparse.Namespace,
    step: str,
    n: int,
    d: int,
    maxk: int,
    intrinsic_dim: float | None = None,
    profile: int = 0,
    kind: str = "planted",
) -> dict:
    command = [
        sys.executable,
        __file__,
        "--child",
        step,
        "--workdir",
        str(args.workdir),
        "--child-kind",
        kind,
        "--child-size",
        f"{n}x{d}",
        "--maxk",
        str(maxk),
        "--profile",
        str(profile),
    ]
    if intrinsic_dim is not None:
        command += ["--child-id", repr(float(intrinsic_dim))]
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall": time.perf_counter() - start}
    for line in done.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return {"status": "ok", **json.loads(line[len("RESULT ") :])}
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed (rc {done.returncode}): {tail[:120]}"}


def _sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in size.split("x")) for size in text.split(",") if size]


def _note(step: str, r: dict) -> str:
    if r["status"] != "ok":
        return ""
    if step == "knn":
        return f"graph {r['graph_mib']:.0f} MiB" + (f", {r['duplicates']} duplicates" if r["duplicates"] else "")
    if step == "id":
        return f"GRIDE(16) {r['id_gride']:.1f}, 2NN {r['id_2nn']:.1f}"
    if step == "adp":
        return f"{r['clusters']} clusters ({r['putative']} before merging), " + (
            f"ARI {r['ari']:.3f}" if r.get("kind", "planted") == "planted" else "no clusters planted"
        )
    if step == "ids":
        return ", ".join(f"{k[3:]} {v}" for k, v in r.items() if k.startswith("id_"))
    if step == "layer":
        total = r["seconds"]
        parts = sorted(r["parts"].items(), key=lambda kv: -kv[1])
        shares = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in parts if v / total >= 0.005)
        high = sorted(r["part_mib"].items(), key=lambda kv: -kv[1])[:3]
        mib = ", ".join(f"{k} {v:.0f}" for k, v in high)
        return (
            f"ARI {r['ari']:.3f}, {r['clusters']:.0f} clusters; time: {shares}; highest RSS above base, MiB: {mib}"
            + (f"; skipped: {r['skipped']}" if r["skipped"] else "")
        )
    return ""


def _fit(xs: list[float], ys: list[float]) -> str:
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if y > 0]
    if len(points) < 2:
        return "  -  "
    slope = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)[0]
    return f"{slope:5.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {QUICK_SIZES}, small paper/bound rows")
    parser.add_argument(
        "--full",
        action="store_true",
        help="analyze_layer at every size too (the issue's whole grid; far longer: it builds a larger graph a size)",
    )
    parser.add_argument("--sizes", help=f"N x d list, '' for none (default and --full: {DEFAULT_SIZES})")
    parser.add_argument(
        "--layer-sizes",
        help=f"the sizes of --sizes where analyze_layer runs too (default {DEFAULT_LAYER_SIZES}; "
        "--full and --quick: all)",
    )
    parser.add_argument("--no-paper", action="store_true", help="leave out the maxk=1000, N=9181 row")
    parser.add_argument("--no-bound", action="store_true", help="leave out the N=10^4, d=4096 memory row")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per step (default 1800)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads of each step (default 1: one core per layer, as the analysis workers run; "
        "OpenMP's spin-waits make 2 threads on 2 busy cores erratic)",
    )
    parser.add_argument("--workdir", type=Path, help="keep data and graphs here (default: a temporary folder, removed)")
    parser.add_argument(
        "--flat",
        metavar="N,N,...",
        default="",
        help="also knn, id, adp on a flat density (flat_density: uniform in a 3-cube in R^64, no clusters) "
        "at these N: ADP's hard case (off by default: ~10 min at 100000)",
    )
    parser.add_argument(
        "--profile-adp", metavar="NxD", help="only: cProfile ADP on this size's graph, top 15 by cumulative time"
    )
    parser.add_argument("--child", choices=("data", *STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--child-size", help=argparse.SUPPRESS)
    parser.add_argument("--child-id", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--child-kind", default="planted", help=argparse.SUPPRESS)
    parser.add_argument("--maxk", type=int, default=MAXK, help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, d = _sizes(args.child_size)[0]
        result = run_step(args.child, args.workdir, n, d, args.maxk, args.child_id, args.profile, args.child_kind)
        print("RESULT " + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        if args.workdir is None:
            args.workdir = Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        if args.profile_adp:
            profile_adp(args)
        else:
            benchmark(args)


def profile_adp(args: argparse.Namespace) -> None:
    n, d = _sizes(args.profile_adp)[0]
    paths = step_paths(args.workdir, n, d, MAXK)
    if not paths["X"].exists():
        _spawn(args, "data", n, d, MAXK)
    if not paths["indices"].exists():
        print(f"kNN graph of {n} x {d}: {_spawn(args, 'knn', n, d, MAXK).get('seconds', float('nan')):.1f} s")
    ids = _spawn(args, "id", n, d, MAXK)
    r = _spawn(args, "adp", n, d, MAXK, ids["id_gride"], profile=15)
    print(
        f"\nADP (density_peaks: kNN density + ADP with and without halo) at N={n}, d={d}, maxk={MAXK}: "
        f"{r['seconds']:.2f} s under cProfile; {_note('adp', r)}\n"
    )
    print(r["profile"])


def benchmark(args: argparse.Namespace) -> None:
    sizes = _sizes(args.sizes if args.sizes is not None else QUICK_SIZES if args.quick else DEFAULT_SIZES)
    layer_sizes = (
        sizes
        if (args.full or args.quick) and args.layer_sizes is None
        else _sizes(args.layer_sizes if args.layer_sizes is not None else DEFAULT_LAYER_SIZES)
    )
    paper = (2000, 576, 500) if args.quick else PAPER
    bound = (2000, 4096) if args.quick else BOUND
    plan = [("planted", n, d, MAXK, [s for s in STEPS if s != "layer" or (n, d) in layer_sizes]) for n, d in sizes]
    if not args.no_paper:
        plan.append(("planted", *paper, ["knn", "id", "adp"]))
    if not args.no_bound:
        plan.append(("planted", *bound, MAXK, ["layer"]))
    flat = [int(n) for n in args.flat.split(",") if n]
    plan += [("flat", n, 64, MAXK, ["knn", "id", "adp"]) for n in flat]
    left_out = [
        f"{n}x{d} layer: analyze_layer builds its own graph, of ~int(0.3 x N/20) = {int(0.3 * n / 20)} "
        f"neighbours for the label overlap of classes of ~N/20 (the maxk=100 graph is its start), which did not fit the default's "
        f"time: --full, or --layer-sizes {','.join(f'{a}x{b}' for a, b in layer_sizes)},{n}x{d}"
        for n, d in sizes
        if (n, d) not in layer_sizes
    ]
    load = os.getloadavg()
    print(
        f"scale benchmark: {args.threads} thread(s) a step, {os.cpu_count()} CPUs, load average {load[0]:.1f} "
        f"at start; timeout {args.timeout:.0f} s a step; planted clusters: 20 clusters on 8-dim subspaces, noise norm 3",
        flush=True,
    )
    results: dict[tuple, dict] = {}
    header = f"{'data':7s} {'N':>7s} {'d':>5s} {'maxk':>5s} {'step':6s} {'wall s':>8s} {'cpu s':>8s} {'base MiB':>9s} {'peak MiB':>9s} {'step MiB':>9s}  notes"
    print("\n" + header, flush=True)
    start_all = time.perf_counter()
    for kind, n, d, maxk, steps in plan:
        paths = step_paths(args.workdir, n, d, kind=kind)
        if not paths["X"].exists():
            made = _spawn(args, "data", n, d, maxk, kind=kind)
            if made["status"] != "ok":
                print(f"{kind:7s} {n:>7d} {d:>5d} {maxk:>5d} data   {made['status']}", flush=True)
                continue
        for step in steps:
            needs_graph = step in ("id", "adp", "ids")
            if needs_graph and results.get((kind, n, d, maxk, "knn"), {}).get("status") != "ok":
                r = {"status": "skipped (no graph)"}
            elif step == "adp" and results.get((kind, n, d, maxk, "id"), {}).get("status") != "ok":
                r = {"status": "skipped (no ID)"}
            else:
                r = _spawn(args, step, n, d, maxk, results.get((kind, n, d, maxk, "id"), {}).get("id_gride"), kind=kind)
            results[(kind, n, d, maxk, step)] = r
            if r["status"] == "ok":
                cells = (
                    f"{r['seconds']:8.2f} {r['cpu']:8.1f} {r['base']:9.0f} {r['peak']:9.0f} "
                    f"{r['peak'] - r['base']:9.0f}  {_note(step, r)}"
                )
            elif r["status"] == "timeout":
                cells = f"{'timeout':>8s}  (> {args.timeout:.0f} s)"
            else:
                cells = f"{'-':>8s}  {r['status']}"
            print(f"{kind:7s} {n:>7d} {d:>5d} {maxk:>5d} {step:6s} {cells}", flush=True)
        if args.workdir.name.startswith("bench_scale_"):  # a temporary folder: free the disk as we go
            for path in step_paths(args.workdir, n, d, maxk, kind).values():
                path.unlink(missing_ok=True)
    wall = time.perf_counter() - start_all

    def ok(n, d, maxk, step, kind="planted"):
        r = results.get((kind, n, d, maxk, step), {})
        return r if r.get("status") == "ok" else None

    print("\nADP against the rest (same run; 'in layer': ADP's share of analyze_layer's time, timed inside that run)")
    print(
        f"{'data':7s} {'N':>7s} {'d':>5s} {'maxk':>5s} {'ADP s':>7s} {'ADP/kNN':>8s} {'ADP/layer':>9s} {'in layer':>9s} "
        f"{'ADP MiB':>8s} {'kNN MiB':>8s} {'layer MiB':>9s} {'ADP/layer MiB':>13s}"
    )
    for kind, n, d, maxk, _steps in plan:
        adp, knn, layer = (ok(n, d, maxk, step, kind) for step in ("adp", "knn", "layer"))
        if not adp:
            continue
        step_mib = lambda r: r["peak"] - r["base"]  # noqa: E731
        cells = [
            f"{adp['seconds']:7.2f}",
            f"{adp['seconds'] / knn['seconds']:8.3f}" if knn else f"{'-':>8s}",
            f"{adp['seconds'] / layer['seconds']:9.3f}" if layer else f"{'-':>9s}",
            f"{100 * layer['parts'].get('adp', 0) / layer['seconds']:8.1f}%" if layer else f"{'-':>9s}",
            f"{step_mib(adp):8.0f}",
            f"{step_mib(knn):8.0f}" if knn else f"{'-':>8s}",
            f"{step_mib(layer):9.0f}" if layer else f"{'-':>9s}",
            f"{step_mib(adp) / step_mib(layer):13.3f}" if layer else f"{'-':>13s}",
        ]
        print(f"{kind:7s} {n:>7d} {d:>5d} {maxk:>5d} " + " ".join(cells))

    if not args.no_bound and (r := ok(*bound, MAXK, "layer")):
        n, d = bound
        graph_mib = n * (MAXK + 1) * 16 / 2**20
        more = [k for k in r["parts"] if k.startswith("knn(") and k != f"knn(maxk={MAXK})"]
        print(
            f"\none layer at N={n}, d={d}: states {r['states_mib']:.0f} MiB (float32) + kNN graph {graph_mib:.0f} MiB "
            f"(maxk={MAXK}, float64 distances + int64 indices{'; the label overlap builds ' + ', '.join(more) + ' too' if more else ''}); "
            f"analyze_layer's peak RSS {r['peak']:.0f} MiB, of which "
            f"{r['base']:.0f} before it ran (imports {r['base'] - r['states_mib']:.0f} + the states); its own "
            f"{r['peak'] - r['base']:.0f} MiB = {(r['peak'] - r['base']) / (r['states_mib'] + graph_mib):.2f}x (states + graph)"
        )

    print("\nexponents b of time ~ N^b and step memory ~ N^b (log-log fit over the measured sizes of each d, maxk=100)")
    print(f"{'d':>5s} {'N':>22s} " + " ".join(f"{s + ' s':>9s} {s + ' MiB':>10s}" for s in STEPS))
    for d in sorted({d for _, d in sizes}):
        ns = sorted(n for n, dd in sizes if dd == d)
        cells = []
        for step in STEPS:
            got = [(n, ok(n, d, MAXK, step)) for n in ns]
            got = [(n, r) for n, r in got if r]
            xs = [n for n, _ in got]
            cells.append(
                f"{_fit(xs, [r['seconds'] for _, r in got]):>9s} {_fit(xs, [r['peak'] - r['base'] for _, r in got]):>10s}"
            )
        print(f"{d:>5d} {','.join(map(str, ns)):>22s} " + " ".join(cells))
    ds = sorted({d for _, d in sizes})
    for n in sorted({n for n, _ in sizes}):
        pair = [d for d in ds if (n, d) in sizes]
        if len(pair) >= 2:
            cells = []
            for step in STEPS:
                got = [(d, ok(n, d, MAXK, step)) for d in pair]
                got = [(d, r) for d, r in got if r]
                cells.append(f"{step} {_fit([d for d, _ in got], [r['seconds'] for _, r in got])}")
            print(f"exponent in d at N={n} (d = {', '.join(map(str, pair))}): time ~ d^b: " + "; ".join(cells))
    if len(flat) >= 2:
        cells = []
        for step in ("knn", "adp"):
            got = [(n, r) for n in flat if (r := ok(n, 64, MAXK, step, "flat"))]
            cells.append(
                f"{step} time {_fit([n for n, _ in got], [r['seconds'] for _, r in got]).strip()}, "
                f"memory {_fit([n for n, _ in got], [r['peak'] - r['base'] for _, r in got]).strip()}"
            )
        got = [(n, r) for n in flat if (r := ok(n, 64, MAXK, "adp", "flat"))]
        cells.append(f"ADP's putative centres {_fit([n for n, _ in got], [r['putative'] for _, r in got]).strip()}")
        print(f"flat density, N = {', '.join(map(str, flat))}: exponent b (~ N^b): " + "; ".join(cells))
    load = os.getloadavg()
    print(
        f"\nmeasured in {wall / 60:.1f} min; load average {load[0]:.1f} at the end (other processes share the CPUs: "
        f"wall s can exceed cpu s / threads)"
    )
    if left_out:
        print("left out of this run:\n  " + "\n  ".join(left_out))


if __name__ == "__main__":
    main()
