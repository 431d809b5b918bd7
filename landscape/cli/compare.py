"""``landscape compare``: several analysed runs on one offline page (DIR/index.html) and one tidy
table (DIR/compare.csv): profiles by relative depth, headlines, claims, paired differences where
runs share their rows, and what differs between them."""

from __future__ import annotations

import argparse
from pathlib import Path

from figures.compare import run_compare
from landscape.claims import N_BOOT
from landscape.optional import require

HELP = "several analysed runs side by side: one page (DIR/index.html) and one table (DIR/compare.csv)"


def label(text: str) -> tuple[str, str]:
    run, sep, name = text.partition("=")
    if not sep or not run or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected RUN=LABEL (the run as given, or its folder's name)")
    return run, name


def pair(text: str) -> tuple[str, str]:
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected two labels, A,B")
    return parts[0], parts[1]


def add_parser(sub) -> None:
    com = sub.add_parser("compare", help=HELP, description=HELP)
    com.add_argument("runs", type=Path, nargs="+", help="two or more analysed run folders")
    com.add_argument("--out", type=Path, required=True, help="folder for index.html, compare.csv and paired.csv")
    com.add_argument(
        "--label",
        type=label,
        action="append",
        default=[],
        metavar="RUN=LABEL",
        help="a run's name on the page (default: its folder's name); repeat for each run",
    )
    com.add_argument(
        "--paired",
        type=pair,
        action="append",
        default=[],
        metavar="A,B",
        help="the pairs of runs (by label) to difference; refused when they do not share rows "
        "(default: every pair that does)",
    )
    com.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap resamples (default: {N_BOOT})")
    com.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    com.add_argument(
        "--check",
        action="store_true",
        help="then open the page in headless Chromium: console errors, figures drawn, load time, screenshot",
    )


def run(args: argparse.Namespace) -> None:
    if args.n_boot < 100:
        raise ValueError(f"--n-boot {args.n_boot}: at least 100 resamples for a 95 % interval")
    if args.check:
        require("playwright", "check", "--check")
    result = run_compare(
        args.runs, args.out, labels=dict(args.label), paired=args.paired, n_boot=args.n_boot, seed=args.seed
    )
    for note in result.notes:
        print(f"no paired differences: {note}")
    if args.check:
        from figures.browser import check_or_refuse  # Playwright: only when asked

        check_or_refuse(result.index)
    size = result.index.stat().st_size / 2**20
    print(f"table: {result.table.resolve()}" + (f"  paired: {result.paired.resolve()}" if result.paired else ""))
    print(f"page: {result.index.resolve()} ({size:.1f} MiB)")
