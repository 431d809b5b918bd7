"""``landscape claims``: the paper's claims on an analysed run, each a statistic with a 95 %
interval and a verdict (printed, and ``RUN/claims.csv``; thresholds in analyses/claims.py and
docs/replication.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyses.claims import evaluate_claims, read_run, table, write_claims
from landscape.claims import N_BOOT

HELP = "the paper's claims on an analysed run: statistic, 95 %% interval, verdict (RUN/claims.csv)"


def add_parser(sub) -> None:
    cla = sub.add_parser("claims", help=HELP, description=HELP.replace("%%", "%"))
    cla.add_argument(
        "run", type=Path, nargs="?", default=Path("runs/default"), help="run folder (default: runs/default)"
    )
    cla.add_argument("--n-boot", type=int, default=N_BOOT, help=f"bootstrap resamples (default: {N_BOOT})")
    cla.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")


def run(args: argparse.Namespace) -> None:
    if args.n_boot < 100:
        raise ValueError(f"--n-boot {args.n_boot}: at least 100 resamples for a 95 % interval")
    claims = evaluate_claims(read_run(args.run), n_boot=args.n_boot, seed=args.seed)
    print(table(claims))
    print(f"written: {write_claims(args.run, claims)}")
