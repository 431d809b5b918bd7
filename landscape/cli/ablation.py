"""``landscape ablation``: which of the paper's choices change the headline numbers (RUN/ablation/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from analyses.ablation import DEFAULT_CONDITIONS, markdown, run_ablation
from landscape.cli.arguments import add_run, name_list, positive_int

HELP = "which of the paper's choices change the headline numbers (RUN/ablation/)"


def add_parser(sub) -> None:
    ab = sub.add_parser("ablation", help=HELP)
    add_run(ab)
    ab.add_argument(
        "--conditions",
        type=name_list,
        default=list(DEFAULT_CONDITIONS),
        help=f"the 0-shot and the k-shot condition, or the 0-shot one alone (default: {','.join(DEFAULT_CONDITIONS)})",
    )
    ab.add_argument(
        "--variants", type=name_list, default=None, help="comma list (default: all; see analyses/ablation.py)"
    )
    ab.add_argument(
        "--grouping",
        default=None,
        help="the field whose ARI and label overlap head the table (default: the task's first)",
    )
    ab.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    ab.add_argument("--device", default="auto", help="for the kNN graphs: auto (cuda if present), cpu, cuda")
    ab.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> None:
    if len(args.conditions) not in (1, 2):
        raise ValueError(
            f"--conditions takes the 0-shot and the k-shot condition (or the 0-shot one), got {len(args.conditions)}"
        )
    rows = run_ablation(
        args.run,
        tuple(args.conditions),
        jobs=args.jobs,
        device=args.device,
        only=args.variants,
        grouping=args.grouping,
        progress=not args.no_progress,
    )
    print(markdown(rows))
    print(f"wrote {Path(args.run) / 'ablation' / 'table.csv'}")
