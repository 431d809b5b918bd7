"""The ``landscape`` command: one subcommand per pipeline stage.

The command line sits above every stage: each subcommand is a module here (``add_parser`` and
``run``) that builds the stage's config from the arguments, with the defaults the config sets;
nothing else under ``landscape/`` imports ``extract``, ``analyses`` or ``figures``.

Errors a user can cause (bad arguments, missing files, a run made with other settings) end in
one line on stderr and exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys

from landscape.cli import ablation, analyze, claims, compare, extract, finetune, info, report, tasks
from landscape.cli.arguments import Parser

SUBCOMMANDS = {module.__name__.rsplit(".", 1)[-1]: module for module in (extract, finetune, analyze, claims, report, compare, ablation, tasks, info)}


def build_parser() -> Parser:
    parser = Parser(prog="landscape", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_progress", False) and args.command in ("extract", "finetune"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bars too
    try:
        SUBCOMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        print("landscape: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:  # our errors subclass ValueError; OSError: files, disk
        if args.debug:
            raise
        print(f"landscape: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
