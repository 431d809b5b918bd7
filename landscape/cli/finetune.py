"""``landscape finetune``: LoRA fine-tuning on the train rows, its prequential code (EDL), and the
states of the tuned model (a condition of RUN/hidden.h5)."""

from __future__ import annotations

import argparse

from extract import ranks
from extract.finetune import FinetuneConfig, describe, run_finetune
from landscape import names
from landscape.cli.arguments import (
    add_run,
    config_from,
    fraction,
    int_list,
    name_list,
    nonnegative_int,
    positive_float,
    positive_int,
    token_budget,
)
from landscape.store.encoding import STORE_DTYPES

HELP = "LoRA fine-tuning on the train rows, prequential code (EDL), states of the tuned model"


def add_parser(sub) -> None:
    defaults = FinetuneConfig()  # the one place the defaults are set
    ft = sub.add_parser("finetune", help=HELP)
    add_run(ft)
    ft.add_argument(
        "--name",
        default=None,
        help="condition to write (default: "
        + ", or ".join(f"{name} with --labels {labels}" for labels, name in names.FINETUNE_LABELS.items())
        + ")",
    )
    ft.add_argument(
        "--labels",
        choices=tuple(names.FINETUNE_LABELS),
        default=defaults.labels,
        help="random: uniformly random answers (control)",
    )
    ft.add_argument("--rank", type=positive_int, default=defaults.rank)
    ft.add_argument("--alpha", type=positive_int, default=defaults.alpha)
    ft.add_argument("--dropout", type=fraction, default=defaults.dropout)
    ft.add_argument(
        "--targets",
        type=name_list,
        default=list(defaults.targets),
        help="LoRA target modules (default: q,k,v,o,gate,up,down projections)",
    )
    ft.add_argument("--lr", type=positive_float, default=defaults.lr)
    ft.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    ft.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    ft.add_argument(
        "--micro-tokens",
        type=positive_int,
        default=defaults.micro_tokens,
        help="padded tokens per micro-batch (gradients accumulated over a batch; ranks share micro-batches; "
        "default: on a GPU sized by its free memory, else 2048 for SmolLM2-135M's size, fewer for a "
        "larger model's activations; a resumed fine-tune keeps the one it recorded)",
    )
    ft.add_argument(
        "--token-budget",
        type=token_budget,
        default=defaults.token_budget,
        metavar="auto|off|N",
        help="tokens a batch of the fine-tuned states' extraction (as extract's --token-budget)",
    )
    ft.add_argument("--warmup", type=fraction, default=defaults.warmup, help="warm-up steps as a fraction of all steps")
    ft.add_argument("--seed", type=nonnegative_int, default=defaults.seed)
    ft.add_argument(
        "--seeds",
        type=int_list,
        default=None,
        help="several fine-tunes that differ only in their seed: NAME (seed 0), NAME-seed1, ... (non-identifiability)",
    )
    ft.add_argument(
        "--schedule",
        choices=("online", "blockwise"),
        default=defaults.schedule,
        help="prequential code: one online pass, or Voita & Titov's blocks (retrains per block: GPU)",
    )
    ft.add_argument(
        "--checkpoints",
        type=int_list,
        default=defaults.checkpoints,
        help=f"steps whose adapters are kept and extracted ({names.step_condition('sft', '<k>')})",
    )
    ft.add_argument("--device", default=defaults.device)
    ft.add_argument(
        "--device-map",
        default=defaults.device_map,
        metavar="auto|balanced|FILE",
        help="split the model over the GPUs and cpu for training and extraction (as extract's; no disk)",
    )
    ft.add_argument("--dtype", default=defaults.dtype)
    ft.add_argument(
        "--store-dtype",
        choices=STORE_DTYPES,
        default=defaults.store_dtype,
        help=f"how hidden.h5 keeps the fine-tuned states (default: {defaults.store_dtype})",
    )
    ft.add_argument(
        "--task-data", default=defaults.task_data, help="the task's data file, when not where the run found it"
    )
    ft.add_argument("--overwrite", action="store_true", help="discard an earlier fine-tune of this name")
    ft.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> None:
    base = args.name or names.finetune_condition(args.labels)
    seeds = sorted(set(args.seeds)) if args.seeds else [args.seed]
    if any(seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be >= 0, got {seeds}")
    mine = ranks.current()  # several under `accelerate launch -m landscape finetune`
    for seed in seeds:
        config = config_from(
            FinetuneConfig,
            args,
            name=names.seed_condition(base, seed) if args.seeds else base,
            seed=seed,
            targets=tuple(args.targets),
            checkpoints=tuple(sorted(set(args.checkpoints))),
        )
        summary = run_finetune(args.run, config, overwrite=args.overwrite, progress=not args.no_progress, ranks=mine)
        if mine.main:
            print(describe({"name": config.name, **summary}))
