"""``landscape extract``: k-shot prompts -> the last-token state of every layer (RUN/hidden.h5)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from extract import ranks
from extract.icl import ExtractConfig, run_extract
from extract.models import embedded_summary
from landscape import names
from landscape.cli.arguments import DEFAULT_RUN, config_from, name_list, nonnegative_int, positive_int, token_budget
from landscape.layers import SPEC_FORMS, check_spec
from landscape.store.encoding import STORE_DTYPES

HELP = "k-shot prompts -> last-token hidden states of every layer (RUN/hidden.h5)"


def shot_list(text: str) -> tuple[int, ...]:
    try:
        shots = tuple(sorted({nonnegative_int(part) for part in text.split(",") if part.strip()}))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"bad shots {text!r}: {error}") from None
    if not shots:
        raise argparse.ArgumentTypeError("no shots given")
    return shots


def demo_samplings(text: str) -> tuple[str, ...]:
    samplings = tuple(dict.fromkeys(name_list(text)))
    for sampling in samplings:
        if sampling not in names.SAMPLINGS:
            raise argparse.ArgumentTypeError(names.unknown("demo sampling", sampling, names.SAMPLINGS))
    return samplings


def layer_spec(text: str) -> str | None:
    try:
        return check_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(sub) -> None:
    defaults = ExtractConfig()  # the one place the defaults are set
    ex = sub.add_parser("extract", help=HELP)
    ex.add_argument("--run", type=Path, default=DEFAULT_RUN, help=f"output folder (default: {DEFAULT_RUN})")
    ex.add_argument(
        "--model",
        default=defaults.model,
        help="an embedded model (" + "; ".join(embedded_summary()).replace("%", "%%") + "), a folder or a hub id",
    )
    ex.add_argument(
        "--task",
        default=defaults.task,
        help=f"a built-in task (landscape tasks) or a task file (default: {defaults.task})",
    )
    ex.add_argument(
        "--task-data", default=defaults.task_data, help="a data file that replaces the task's source (same fields)"
    )
    ex.add_argument(
        "--shots",
        type=shot_list,
        default=defaults.shots,
        help=f"comma list of k, one condition each (default: {','.join(map(str, defaults.shots))})",
    )
    ex.add_argument(
        "--demos",
        type=demo_samplings,
        default=defaults.demos,
        help="demo samplings, one condition each per k: "
        + ", ".join(f"{s} ({names.icl_condition(5, s)})" for s in names.SAMPLINGS)
        + f"; default: {','.join(defaults.demos)}",
    )
    ex.add_argument(
        "--subjects",
        default=defaults.subjects,
        help=f"values of the task's first grouping field (MMLU: subjects): all | largest:N | comma list (default: {defaults.subjects})",
    )
    ex.add_argument(
        "--per-subject", type=positive_int, default=defaults.per_subject, help="eval questions per value (at most)"
    )
    ex.add_argument(
        "--demo-pool", type=positive_int, default=defaults.demo_pool, help="demonstrations set apart per value"
    )
    ex.add_argument(
        "--train-per-subject",
        type=nonnegative_int,
        default=defaults.train_per_subject,
        help="fine-tuning questions per value (at most)",
    )
    ex.add_argument(
        "--train-first",
        action="store_true",
        help="set each value's training rows apart before its eval rows (the paper's recipe: every "
        "subject gets its training questions even when --per-subject asks for more than it has)",
    )
    ex.add_argument(
        "--train-subjects",
        default=defaults.train_subjects,
        metavar="others|all|largest:K|a,b,...",
        help="values whose rows are fine-tuned on, --train-per-subject each (default: the evaluated ones); "
        "others: every value not evaluated (the paper's fine-tune: ~20 questions of every other subject)",
    )
    ex.add_argument("--seed", type=nonnegative_int, default=defaults.seed, help="partition seed")
    ex.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help="rows a batch when there is no token budget (on the CPU by default)",
    )
    ex.add_argument(
        "--token-budget",
        type=token_budget,
        default=defaults.token_budget,
        metavar="auto|off|N",
        help="tokens a batch holds, rows x (shared prefix + longest question): auto sizes it by a GPU's free "
        "memory (on the CPU: batches of --batch-size rows), off keeps rows, N any device (docs/distributed.md)",
    )
    ex.add_argument("--device", default=defaults.device, help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    ex.add_argument(
        "--device-map",
        default=defaults.device_map,
        metavar="auto|balanced|FILE",
        help="split a model larger than one device over the GPUs, cpu and disk (accelerate): auto, "
        "balanced, balanced_low_0, sequential, or a JSON file of module -> GPU index / cpu / disk",
    )
    ex.add_argument(
        "--dtype", default=defaults.dtype, help="auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16"
    )
    ex.add_argument(
        "--store-dtype",
        choices=STORE_DTYPES,
        default=defaults.store_dtype,
        help=f"how hidden.h5 keeps the states, on CPU and GPU alike (default: {defaults.store_dtype}; float16 "
        "halves the file: docs/distributed.md); always read back as float32",
    )
    ex.add_argument(
        "--layers",
        type=layer_spec,
        default=defaults.layers,
        help=f"whose states to keep: {SPEC_FORMS} (default: all; the last layer always; fine-tunes keep "
        "the layers of the run's 0-shot condition)",
    )
    ex.add_argument("--no-prefix-cache", action="store_true", help="recompute the shared prefix for every question")
    ex.add_argument("--overwrite", action="store_true", help="replace a run made with other settings")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> None:
    config = config_from(ExtractConfig, args, prefix_cache=not args.no_prefix_cache)
    mine = ranks.current()  # several under `accelerate launch -m landscape extract`
    accuracies = run_extract(config, args.run, overwrite=args.overwrite, progress=not args.no_progress, ranks=mine)
    if not mine.main:
        return
    for name, accuracy in accuracies.items():
        print(f"{name}\taccuracy={accuracy:.4f}")
    print(f"wrote {args.run / 'hidden.h5'}")
    _note_too_few_rows(args.run)


def _note_too_few_rows(run: Path) -> None:
    """Say now, not after the fine-tune, when the analysis's neighbour graphs need more eval rows than the run has."""
    from analyses.layer import RECIPES
    from landscape import reader, store

    with reader.open_run_file(run) as f:
        n_eval = int((store.hidden.read_examples(f).splits == "eval").sum())
    if n_eval <= min(recipe.maxk for recipe in RECIPES.values()):
        wanted = ", ".join(f"{name} {recipe.maxk}" for name, recipe in RECIPES.items())
        print(
            f"note: {n_eval} eval rows, but landscape analyze needs more than its maxk ({wanted}): pass it --maxk "
            f'below {n_eval} (make: ANALYZE_EXTRA="--maxk {max(1, n_eval // 2)}")',
            file=sys.stderr,
        )
