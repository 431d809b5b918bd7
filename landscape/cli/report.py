"""``landscape report``: one offline interactive page of a run (RUN/report/index.html)."""

from __future__ import annotations

import argparse

from figures.report import ReportConfig, run_report
from landscape.cli.arguments import add_run, config_from, int_list, nonnegative_int, positive_int
from landscape.optional import require

HELP = "one offline interactive page of a run (RUN/report/index.html)"


def add_parser(sub) -> None:
    defaults = ReportConfig()  # the one place the defaults are set
    rep = sub.add_parser("report", help=HELP)
    add_run(rep)
    rep.add_argument(
        "--map-method",
        choices=("umap", "pca"),
        default=defaults.map_method,
        help=f"2-D maps (default: {defaults.map_method}, seeded)",
    )
    rep.add_argument(
        "--map-layers", type=int_list, default=defaults.map_layers, help="comma list (default: 8 layers over the depth)"
    )
    rep.add_argument("--map-neighbors", type=positive_int, default=defaults.map_neighbors, help="UMAP n_neighbors")
    rep.add_argument("--seed", type=nonnegative_int, default=defaults.seed, help="UMAP seed")
    rep.add_argument(
        "--png",
        choices=("auto", "yes", "no"),
        default=defaults.png,
        help="PNG of each figure via kaleido (auto: when a Chromium is found)",
    )
    rep.add_argument(
        "--task-data",
        default=defaults.task_data,
        help="the task's data file for the question texts, when not where the run found it",
    )
    rep.add_argument(
        "--check",
        action="store_true",
        help="then open the page in headless Chromium: console errors, figures drawn, load time, screenshot",
    )
    rep.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> None:
    if args.png == "yes":  # auto goes without PNGs when kaleido is missing, and says so
        require("kaleido", "png", "--png yes")
    if args.check:  # before the report is made, not after
        require("playwright", "check", "--check")
    config = config_from(ReportConfig, args, map_layers=tuple(args.map_layers))
    report = run_report(args.run, config, progress=not args.no_progress)
    size = report.index.stat().st_size / 2**20
    print(
        f"wrote {len(report.figures)} figures ({len(report.pngs)} PNG){'; ' + report.png_note if report.png_note else ''}"
    )
    if args.check:
        from figures.browser import check_or_refuse  # Playwright: only when asked

        check_or_refuse(report.index)
    print(f"report: {report.index.resolve()} ({size:.1f} MiB)")
