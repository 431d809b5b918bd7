"""The ``landscape`` command: one subcommand per pipeline stage.

Errors a user can cause (bad arguments, missing files, a run made with other settings) end in
one line on stderr and exit code 1; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from landscape.schema import STORE_DTYPES


def _number(cast, inside, bounds: str):
    """An argparse type: ``cast(text)``, finite, for which ``inside(value)`` holds (``bounds`` says how)."""
    kind = "an integer" if cast is int else "a number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        if not math.isfinite(value) or not inside(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {bounds}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, ">= 1")
_nonnegative_int = _number(int, lambda v: v >= 0, ">= 0")
_positive_float = _number(float, lambda v: v > 0, "a positive finite number")
_fraction = _number(float, lambda v: 0 <= v < 1, "in [0, 1)")


def _shots(text: str) -> tuple[int, ...]:
    try:
        shots = tuple(sorted({_nonnegative_int(part) for part in text.split(",") if part.strip()}))
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"bad shots {text!r}: {error}") from None
    if not shots:
        raise argparse.ArgumentTypeError("no shots given")
    return shots


def _demo_samplings(text: str) -> tuple[str, ...]:
    from extract.demos import SAMPLINGS

    names = tuple(dict.fromkeys(_names(text)))
    for name in names:
        if name not in SAMPLINGS:
            raise argparse.ArgumentTypeError(f"unknown demo sampling {name!r} (known: {', '.join(SAMPLINGS)})")
    return names


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError("empty list")
    return names


def _layer_list(text: str) -> list[int]:
    try:
        return [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad layer list {text!r}: expected integers") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from analyses.layer import RECIPES, AnalysisConfig
    from extract.finetune import FinetuneConfig
    from extract.icl import ExtractConfig

    # Defaults come from the config dataclasses, the one place they are set.
    defaults, ft_defaults, an_defaults = ExtractConfig(), FinetuneConfig(), AnalysisConfig()
    parser = _Parser(prog="landscape", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("extract", help="k-shot prompts -> last-token hidden states of every layer (RUN/hidden.h5)")
    ex.add_argument("--run", type=Path, default=Path("runs/default"), help="output folder (default: runs/default)")
    ex.add_argument("--model", default=defaults.model, help="embedded name (smollm2-135m, gemma3-270m), folder or hub id")
    ex.add_argument("--task", default=defaults.task, help=f"a built-in task (landscape tasks) or a task file (default: {defaults.task})")
    ex.add_argument("--task-data", default=None, help="a data file that replaces the task's source (same fields)")
    ex.add_argument("--shots", type=_shots, default=defaults.shots, help="comma list of k, one condition each (default: 0,5)")
    ex.add_argument("--demos", type=_demo_samplings, default=defaults.demos,
                    help="demo samplings, one condition each per k: fixed (5shot), resampled (5shot-resampled), "
                         "other-subject (5shot-othersubject), no-header (5shot-noheader); default: fixed")
    ex.add_argument("--subjects", default=defaults.subjects,
                    help="values of the task's first grouping field (MMLU: subjects): all | largest:N | comma list (default: largest:12)")
    ex.add_argument("--per-subject", type=_positive_int, default=defaults.per_subject, help="eval questions per value (at most)")
    ex.add_argument("--demo-pool", type=_positive_int, default=defaults.demo_pool, help="demonstrations set apart per value")
    ex.add_argument("--train-per-subject", type=_nonnegative_int, default=defaults.train_per_subject, help="fine-tuning questions per value (at most)")
    ex.add_argument("--seed", type=_nonnegative_int, default=defaults.seed, help="partition seed")
    ex.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    ex.add_argument("--device", default=defaults.device, help="auto (cuda if present), cpu, cuda, cuda:1, ...")
    ex.add_argument("--device-map", default=None, metavar="auto|balanced|FILE",
                    help="split a model larger than one device over the GPUs, cpu and disk (accelerate): auto, "
                         "balanced, balanced_low_0, sequential, or a JSON file of module -> GPU index / cpu / disk")
    ex.add_argument("--dtype", default=defaults.dtype, help="auto (bfloat16 on cuda, float32 on cpu), float32, bfloat16, float16")
    ex.add_argument("--store-dtype", choices=STORE_DTYPES, default=defaults.store_dtype,
                    help="how hidden.h5 keeps the states, on CPU and GPU alike (default: float32; float16 halves the "
                         "file: README, Beyond one machine); always read back as float32")
    ex.add_argument("--no-prefix-cache", action="store_true", help="recompute the shared prefix for every question")
    ex.add_argument("--overwrite", action="store_true", help="replace a run made with other settings")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")

    ft = sub.add_parser("finetune", help="LoRA fine-tuning on the train rows, prequential code (EDL), states of the tuned model")
    ft.add_argument("run", type=Path, nargs="?", default=Path("runs/default"), help="run folder (default: runs/default)")
    ft.add_argument("--name", default=None, help="condition to write (default: sft, or sft-random with --labels random)")
    ft.add_argument("--labels", choices=("true", "random"), default="true", help="random: uniformly random answers (control)")
    ft.add_argument("--rank", type=_positive_int, default=ft_defaults.rank)
    ft.add_argument("--alpha", type=_positive_int, default=ft_defaults.alpha)
    ft.add_argument("--dropout", type=_fraction, default=ft_defaults.dropout)
    ft.add_argument("--targets", type=_names, default=list(ft_defaults.targets), help="LoRA target modules (default: q,k,v,o,gate,up,down projections)")
    ft.add_argument("--lr", type=_positive_float, default=ft_defaults.lr)
    ft.add_argument("--epochs", type=_positive_int, default=ft_defaults.epochs)
    ft.add_argument("--batch-size", type=_positive_int, default=ft_defaults.batch_size)
    ft.add_argument("--micro-tokens", type=_positive_int, default=ft_defaults.micro_tokens,
                    help="padded tokens per micro-batch (gradients accumulated over a batch; ranks share micro-batches)")
    ft.add_argument("--warmup", type=_fraction, default=ft_defaults.warmup, help="warm-up steps as a fraction of all steps")
    ft.add_argument("--seed", type=_nonnegative_int, default=ft_defaults.seed)
    ft.add_argument("--seeds", type=_layer_list, default=None,
                    help="several fine-tunes that differ only in their seed: NAME (seed 0), NAME-seed1, ... (non-identifiability)")
    ft.add_argument("--schedule", choices=("online", "blockwise"), default="online",
                    help="prequential code: one online pass, or Voita & Titov's blocks (retrains per block: GPU)")
    ft.add_argument("--checkpoints", type=_layer_list, default=(), help="steps whose adapters are kept and extracted (sft@step<k>)")
    ft.add_argument("--device", default="auto")
    ft.add_argument("--device-map", default=None, metavar="auto|balanced|FILE",
                    help="split the model over the GPUs and cpu for training and extraction (as extract's; no disk)")
    ft.add_argument("--dtype", default="auto")
    ft.add_argument("--store-dtype", choices=STORE_DTYPES, default=ft_defaults.store_dtype,
                    help="how hidden.h5 keeps the fine-tuned states (default: float32)")
    ft.add_argument("--task-data", default=None, help="the task's data file, when not where the run found it")
    ft.add_argument("--overwrite", action="store_true", help="discard an earlier fine-tune of this name")
    ft.add_argument("--no-progress", action="store_true")

    an = sub.add_parser("analyze", help="geometry of every condition x layer (RUN/analysis.h5, RUN/metrics.csv)")
    an.add_argument("run", type=Path, nargs="?", default=Path("runs/default"), help="run folder (default: runs/default)")
    an.add_argument("--recipe", choices=list(RECIPES), default="suite",
                    help="preset of every setting below: suite (default) or doimo2024 (the paper's figure scripts: "
                         "normed states, maxk 1000 / 300, ID at ranks 8-16, answer overlap fraction 0.1); "
                         "a flag given beside it overrides that one setting (recorded)")
    an.add_argument("--states", choices=["residual", "normed"], default=None,
                    help=f"residual stream as stored, or normed: after the norm that reads each layer (recipe: {an_defaults.states})")
    an.add_argument("--maxk", type=_positive_int, default=None, help=f"neighbours in each layer's kNN graph (recipe: {an_defaults.maxk})")
    an.add_argument("--cluster-maxk", type=_positive_int, default=None,
                    help="neighbours of the clustering compared between conditions and drawn as dendrograms (recipe: maxk)")
    an.add_argument("--gride-range", type=_positive_int, default=None, help=f"GRIDE up to this neighbour rank (recipe: {an_defaults.gride_range}, at most maxk)")
    an.add_argument("--id-scale", type=_positive_int, default=None, help=f"the GRIDE scale whose ID feeds the density (recipe: {an_defaults.id_scale}: ranks 16-32)")
    an.add_argument("--density-k", type=_positive_int, default=None, help=f"neighbours of the kNN density (recipe: {an_defaults.density_k})")
    an.add_argument("--Z", type=_positive_float, default=None, help=f"ADP merging threshold (recipe: {an_defaults.Z})")
    an.add_argument("--class-fraction", type=_positive_float, default=None,
                    help=f"label overlap of grouping fields: k_i = fraction x class size (recipe: {an_defaults.class_fraction})")
    an.add_argument("--answer-class-fraction", type=_positive_float, default=None,
                    help=f"the same for the answer (recipe: {an_defaults.answer_class_fraction})")
    an.add_argument("--tree-min-size", type=_positive_int, default=None, help=f"dendrogram leaves: clusters with more points (recipe: {an_defaults.tree_min_size})")
    an.add_argument("--tree-max-log-density", type=float, default=None, help="dendrogram leaves: no peak denser than this (default: none)")
    an.add_argument("--overlap-k", type=_positive_int, default=None, help=f"neighbours of the data overlap between conditions (recipe: {an_defaults.overlap_k})")
    an.add_argument("--no-readouts", dest="readouts", action="store_false",
                    help="skip the logit lens and the linear probes (geometry only)")
    an.add_argument("--no-similarity", dest="similarity", action="store_false",
                    help="skip CKA, mutual kNN, CKNNA and information imbalance (layer x layer, condition x condition)")
    an.add_argument("--similarity-k", type=_positive_int, default=an_defaults.similarity_k,
                    help=f"neighbours of mutual kNN and CKNNA (default: {an_defaults.similarity_k}, Huh et al.'s)")
    an.add_argument("--no-id-estimators", dest="id_estimators", action="store_false",
                    help="skip the MLE, TLE, local PCA and DANCo IDs (GRIDE and 2NN remain)")
    an.add_argument("--id-k", type=_positive_int, default=an_defaults.id_k,
                    help=f"neighbours of the MLE, TLE and local PCA IDs (default: {an_defaults.id_k}, at most maxk)")
    an.add_argument("--probe-fit", choices=["auto", "train", "eval-halves"], default="auto",
                    help="fit the probes on the train rows, or cross-fit on two halves of the eval rows (auto: train when the run has them)")
    an.add_argument("--conditions", type=_names, default=None, help="comma list (default: all)")
    an.add_argument("--layers", type=_layer_list, default=None, help="comma list (default: all; negative counts from the end)")
    an.add_argument("--bits-per-parameter", type=_positive_float, default=16.0, help="task complexity: bits to write one LoRA weight")
    an.add_argument("--target-accuracy", type=_number(float, lambda v: 0 <= v <= 1, "in [0, 1]"), default=None,
                    help="task complexity: the accuracy whose smallest description is read off (default: halfway from 0-shot to the best)")
    an.add_argument("--jobs", type=_positive_int, default=1, help="worker processes (each task: a condition's layer, a pair of conditions at a layer, a layer's correlations)")
    an.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                    help="run the tasks (layers, pairs, correlations) on Ray: alone, a local Ray of --jobs CPUs; "
                         "with an ADDRESS (auto, ray://host:10001), that cluster")
    an.add_argument("--device", default="auto", help="for the kNN graph: auto (cuda if present), cpu, cuda")
    an.add_argument("--splits", type=_names, default=None, help="comma list of eval, train (default: those the run has)")
    an.add_argument("--force", "--overwrite", dest="force", action="store_true",
                    help="recompute everything (a file made with other settings is refused otherwise)")
    an.add_argument("--no-progress", action="store_true")

    rep = sub.add_parser("report", help="one offline interactive page of a run (RUN/report/index.html)")
    rep.add_argument("run", type=Path, nargs="?", default=Path("runs/default"), help="run folder (default: runs/default)")
    rep.add_argument("--map-method", choices=("umap", "pca"), default="umap", help="2-D maps (default: umap, seeded)")
    rep.add_argument("--map-layers", type=_layer_list, default=(), help="comma list (default: 8 layers over the depth)")
    rep.add_argument("--map-neighbors", type=_positive_int, default=15, help="UMAP n_neighbors")
    rep.add_argument("--seed", type=_nonnegative_int, default=0, help="UMAP seed")
    rep.add_argument("--png", choices=("auto", "yes", "no"), default="auto", help="PNG of each figure via kaleido (auto: when a Chromium is found)")
    rep.add_argument("--task-data", default=None, help="the task's data file for the question texts, when not where the run found it")
    rep.add_argument("--check", action="store_true", help="then open the page in headless Chromium: console errors, figures drawn, load time, screenshot")
    rep.add_argument("--no-progress", action="store_true")

    ab = sub.add_parser("ablation", help="which of the paper's choices change the headline numbers (RUN/ablation/)")
    ab.add_argument("run", type=Path, nargs="?", default=Path("runs/default"), help="run folder (default: runs/default)")
    ab.add_argument("--conditions", type=_names, default=["0shot", "5shot"], help="the 0-shot and the k-shot condition, or the 0-shot one alone (default: 0shot,5shot)")
    ab.add_argument("--variants", type=_names, default=None, help="comma list (default: all; see analyses/ablation.py)")
    ab.add_argument("--grouping", default=None, help="the field whose ARI and label overlap head the table (default: the task's first)")
    ab.add_argument("--jobs", type=_positive_int, default=1, help="worker processes")
    ab.add_argument("--device", default="auto", help="for the kNN graphs: auto (cuda if present), cpu, cuda")
    ab.add_argument("--no-progress", action="store_true")

    tk = sub.add_parser("tasks", help="the built-in tasks, and how to write your own")
    tk.add_argument("--json", action="store_true", help="as JSON")

    inf = sub.add_parser("info", help="a run's provenance and what each stage has written")
    inf.add_argument("run", type=Path)
    inf.add_argument("--json", action="store_true", help="everything, as JSON (provenance, settings, stages)")
    return parser


def _config(cls, args: argparse.Namespace, **values):
    """A config dataclass from the parsed arguments that share its field names, then ``values``."""
    fields = {field.name for field in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in vars(args).items() if k in fields}, **values})


def _extract(args: argparse.Namespace) -> None:
    from extract import ranks
    from extract.icl import ExtractConfig, run_extract

    config = _config(ExtractConfig, args, prefix_cache=not args.no_prefix_cache)
    mine = ranks.current()  # several under `accelerate launch -m landscape extract`
    accuracies = run_extract(config, args.run, overwrite=args.overwrite, progress=not args.no_progress, ranks=mine)
    if not mine.main:
        return
    for name, accuracy in accuracies.items():
        print(f"{name}\taccuracy={accuracy:.4f}")
    print(f"wrote {args.run / 'hidden.h5'}")


def _finetune(args: argparse.Namespace) -> None:
    from extract import ranks
    from extract.finetune import FinetuneConfig, describe, run_finetune

    from analyses.identifiability import seed_family_name

    base = args.name or ("sft" if args.labels == "true" else "sft-random")
    seeds = sorted(set(args.seeds)) if args.seeds else [args.seed]
    if any(seed < 0 for seed in seeds):
        raise ValueError(f"seeds must be >= 0, got {seeds}")
    mine = ranks.current()  # several under `accelerate launch -m landscape finetune`
    for seed in seeds:
        config = _config(
            FinetuneConfig,
            args,
            name=seed_family_name(base, seed) if args.seeds else base,
            seed=seed,
            targets=tuple(args.targets),
            checkpoints=tuple(sorted(set(args.checkpoints))),
        )
        summary = run_finetune(args.run, config, overwrite=args.overwrite, progress=not args.no_progress, ranks=mine)
        if mine.main:
            print(describe({"name": config.name, **summary}))


def _analyze(args: argparse.Namespace) -> None:
    from analyses.layer import NOT_RECIPE, RECIPES, AnalysisConfig, recipe_config
    from analyses.run import run_analysis

    overrides = {field.name: getattr(args, field.name) for field in dataclasses.fields(AnalysisConfig)
                 if field.name not in NOT_RECIPE and getattr(args, field.name, None) is not None}
    recipe = RECIPES[args.recipe]
    if "maxk" in overrides and "gride_range" not in overrides:  # GRIDE never reaches past the graph
        overrides["gride_range"] = min(recipe.gride_range, overrides["maxk"])
    config = recipe_config(args.recipe, device=args.device, readouts=args.readouts, similarity=args.similarity,
                           similarity_k=args.similarity_k, id_estimators=args.id_estimators, id_k=args.id_k,
                           probe_fit=args.probe_fit, **overrides)
    metrics = run_analysis(
        args.run, config, conditions=args.conditions, layers=args.layers, splits=args.splits, jobs=args.jobs, ray=args.ray,
        force=args.force, progress=not args.no_progress, bits_per_parameter=args.bits_per_parameter,
        target_accuracy=args.target_accuracy,
    )
    print(f"wrote {metrics.parent / 'analysis.h5'} and {metrics}")


def _report(args: argparse.Namespace) -> None:
    from figures.report import ReportConfig, run_report

    config = _config(ReportConfig, args, map_layers=tuple(args.map_layers))
    report = run_report(args.run, config, progress=not args.no_progress)
    size = report.index.stat().st_size / 2**20
    print(f"wrote {len(report.figures)} figures ({len(report.pngs)} PNG){'; ' + report.png_note if report.png_note else ''}")
    if args.check:
        from figures.browser import check_page

        check = check_page(report.index, report.index.with_name("screenshot.png"))
        print(check.summary())
        if not check.ok:
            raise ValueError(f"the page did not render cleanly: {check.problems()}")
    print(f"report: {report.index.resolve()} ({size:.1f} MiB)")


def _ablation(args: argparse.Namespace) -> None:
    from analyses.ablation import markdown, run_ablation

    if len(args.conditions) not in (1, 2):
        raise ValueError(f"--conditions takes the 0-shot and the k-shot condition (or the 0-shot one), got {len(args.conditions)}")
    rows = run_ablation(args.run, tuple(args.conditions), jobs=args.jobs, device=args.device, only=args.variants,
                        grouping=args.grouping, progress=not args.no_progress)
    print(markdown(rows))
    print(f"wrote {Path(args.run) / 'ablation' / 'table.csv'}")


def _tasks(args: argparse.Namespace) -> None:
    from landscape import tasks

    rows = tasks.describe_builtins()
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'task':<16} {'rows':>6} {'choices':>7}  {'score':<6} {'groups':<18} source")
    for row in rows:
        rows_, choices = row.get("rows"), row.get("choices")
        print(f"{row['name']:<16} {rows_ if rows_ is not None else '?':>6} {choices if choices is not None else '?':>7}  "
              f"{row['score']:<6} {','.join(row['groups']):<18} {row['source']}"
              + (f"  (unavailable: {row['error']})" if "error" in row else ""))
        if row["description"]:
            print(f"{'':<16} {row['description']}")
    print("\nYour own task: a YAML file with name, source, question, choices, answer, answer_as, groups "
          "(and optional id, header, filter, rename, score, prompt, choice, demo_answer, continuation); "
          "see README 'Your own task' and the built-ins in " + str(tasks.BUILTIN_DIR)
          + ". Then: landscape extract --task FILE --run runs/mine")


def _info(args: argparse.Namespace) -> None:
    from landscape import reader

    info, status = reader.info(args.run), reader.status(args.run)
    if args.json:
        print(json.dumps({**info, "stages": status}, indent=2, default=str))
    else:
        print(reader.describe_status(info, status))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "no_progress", False) and args.command in ("extract", "finetune"):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # its weight-loading bars too
    handlers = {"extract": _extract, "finetune": _finetune, "analyze": _analyze, "report": _report, "tasks": _tasks,
                "info": _info, "ablation": _ablation}
    try:
        handlers[args.command](args)
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
