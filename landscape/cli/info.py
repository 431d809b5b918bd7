"""``landscape info``: a run's provenance and what each stage has written."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from landscape import reader

HELP = "a run's provenance and what each stage has written"


def add_parser(sub) -> None:
    inf = sub.add_parser("info", help=HELP)
    inf.add_argument("run", type=Path)
    inf.add_argument("--json", action="store_true", help="everything, as JSON (provenance, settings, stages)")


def run(args: argparse.Namespace) -> None:
    info, status = reader.info(args.run), reader.status(args.run)
    if args.json:
        print(json.dumps({**info, "stages": status}, indent=2, default=str))
    else:
        print(reader.describe_status(info, status))
