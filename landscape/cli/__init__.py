"""The ``landscape`` command: one subcommand per pipeline stage.

The command line sits above every stage: each subcommand is a module here (``add_parser`` and
``run``) that builds the stage's config from the arguments, with the defaults the config sets;
nothing else under ``landscape/`` imports ``extract``, ``analyses`` or ``figures``.

Errors a user can cause (bad arguments, missing files, a run made with other settings, a full
disk, a run another process is writing, an optional part not installed) end in one line on stderr
and exit code 1; warnings of other packages (deprecations and the like, which a user cannot act
on) are not shown; ``--debug`` shows the tracebacks and those warnings.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import nullcontext

from landscape import disk, runlock
from landscape.cli import ablation, analyze, claims, compare, extract, finetune, info, report, tasks
from landscape.cli.arguments import Parser

SUBCOMMANDS = {
    module.__name__.rsplit(".", 1)[-1]: module
    for module in (extract, finetune, analyze, claims, report, compare, ablation, tasks, info)
}
WRITERS = (
    "extract",
    "finetune",
    "analyze",
    "claims",
    "report",
    "ablation",
)  # write into their run folder: one at a time
OURS = r"(landscape|extract|analyses|figures)(\.|$)"  # the packages whose warnings are shown


def build_parser() -> Parser:
    parser = Parser(prog="landscape", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks, and the warnings of other packages")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "no_progress", False) and args.command in ("extract", "finetune"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bars too
    run = getattr(args, "run", None)
    hooks = (sys.unraisablehook, sys.excepthook)
    full: list = []  # the full-disk errors (any exception) h5py meets releasing its objects
    try:
        with warnings.catch_warnings():
            if not args.debug:
                warnings.filterwarnings("ignore")
                warnings.filterwarnings("default", module=OURS)  # checked first: ours are shown
                sys.unraisablehook, sys.excepthook = _quiet_full_disk(hooks, full)
            with runlock.writing(run) if args.command in WRITERS and run is not None else nullcontext():
                SUBCOMMANDS[args.command].run(args)
            if full:  # a write HDF5 could not complete, though nothing raised
                raise full[0]
    except KeyboardInterrupt:
        print("landscape: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as error:  # our errors subclass ValueError; OSError: files, disk
        error = full[0] if full else error  # a disk that filled under HDF5 is the cause of what failed next
        if args.debug or (isinstance(error, RuntimeError) and not disk.is_full(error)):
            raise
        print(f"landscape: error: {_one_line(error, run)}", file=sys.stderr)
        if disk.hdf5_failed(error):  # HDF5 can no longer close the file, and would crash at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(1)  # as a kill would: what was flushed stays, and the same command resumes
        return 1
    finally:
        sys.unraisablehook, sys.excepthook = hooks
    return 0


def _one_line(error: BaseException, run) -> str:
    if disk.is_full(error):
        return disk.full_message(error)
    if runlock.is_hdf5_lock(error):
        return runlock.busy_message(run) if run is not None else f"{error} (another process holds the file open)"
    return str(error)


def _quiet_full_disk(hooks, full: list):
    """(unraisable hook, except hook) that keep, unprinted, the full-disk errors h5py meets while
    releasing its objects (one a dataset, each printed with HDF5's error stack through both hooks):
    the one line says it."""
    unraisable, excepthook = hooks

    def quiet_unraisable(error):
        if disk.is_full(error.exc_value):
            full.append(error.exc_value)
        else:
            unraisable(error)

    def quiet_excepthook(kind, value, traceback):
        if disk.is_full(value):
            full.append(value)
        else:
            excepthook(kind, value, traceback)

    return quiet_unraisable, quiet_excepthook


if __name__ == "__main__":
    sys.exit(main())
