"""``landscape tasks``: the built-in tasks, and how to write your own."""

from __future__ import annotations

import argparse
import json

from landscape import tasks

HELP = "the built-in tasks, and how to write your own"


def add_parser(sub) -> None:
    tk = sub.add_parser("tasks", help=HELP)
    tk.add_argument("--json", action="store_true", help="as JSON")


def run(args: argparse.Namespace) -> None:
    rows = tasks.describe_builtins()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'task':<16} {'rows':>6} {'choices':>7}  {'score':<6} {'groups':<18} source")
    for row in rows:
        rows_, choices = row.get("rows"), row.get("choices")
        print(
            f"{row['name']:<16} {rows_ if rows_ is not None else '?':>6} {choices if choices is not None else '?':>7}  "
            f"{row['score']:<6} {','.join(row['groups']):<18} {row['source']}"
            + (f"  (unavailable: {row['error']})" if "error" in row else "")
        )
        if row["description"]:
            print(f"{'':<16} {row['description']}")
    print(
        "\nYour own task: a YAML file with name, source, question, choices, answer, groups "
        "(and optional answer_as: index (default), letter or text; control: true for a positive control; "
        "id, header, description, filter, rename, transform, score, prompt, choice, demo_answer, continuation); "
        "see docs/tasks.md and the built-ins in "
        + str(tasks.BUILTIN_DIR)
        + ". Then: landscape extract --task FILE --run runs/mine"
    )
