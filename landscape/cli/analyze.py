"""``landscape analyze``: the geometry of every condition x layer (RUN/analysis.h5, RUN/metrics.csv)."""

from __future__ import annotations

import argparse
import dataclasses

from analyses.complexity import BITS_PER_PARAMETER
from analyses.layer import NOT_RECIPE, RECIPES, AnalysisConfig, recipe_config
from analyses.run import run_analysis
from landscape.cli.arguments import add_run, int_list, name_list, positive_float, positive_int, probability
from landscape.normed import STATES
from landscape.optional import require

HELP = "geometry of every condition x layer (RUN/analysis.h5, RUN/metrics.csv)"


def add_parser(sub) -> None:
    recipe = AnalysisConfig()  # the default recipe; its settings default to None here: the chosen recipe's value
    an = sub.add_parser("analyze", help=HELP)
    add_run(an)
    an.add_argument(
        "--recipe",
        choices=list(RECIPES),
        default=recipe.recipe,
        help="preset of every setting below: suite (default) or doimo2024 (the paper's figure scripts: "
        "normed states, maxk 1000 / 300, ID at ranks 8-16, answer overlap fraction 0.1); "
        "a flag given beside it overrides that one setting (recorded)",
    )
    an.add_argument(
        "--states",
        choices=STATES,
        default=None,
        help=f"residual stream as stored, or normed: after the norm that reads each layer (recipe: {recipe.states})",
    )
    an.add_argument(
        "--maxk", type=positive_int, default=None, help=f"neighbours in each layer's kNN graph (recipe: {recipe.maxk})"
    )
    an.add_argument(
        "--cluster-maxk",
        type=positive_int,
        default=None,
        help="neighbours of the clustering compared between conditions and drawn as dendrograms (recipe: maxk)",
    )
    an.add_argument(
        "--gride-range",
        type=positive_int,
        default=None,
        help=f"GRIDE up to this neighbour rank (recipe: {recipe.gride_range}, at most maxk)",
    )
    an.add_argument(
        "--id-scale",
        type=positive_int,
        default=None,
        help=f"the GRIDE scale whose ID feeds the density (recipe: {recipe.id_scale}: ranks 16-32)",
    )
    an.add_argument(
        "--density-k",
        type=positive_int,
        default=None,
        help=f"neighbours of the kNN density (recipe: {recipe.density_k})",
    )
    an.add_argument("--Z", type=positive_float, default=None, help=f"ADP merging threshold (recipe: {recipe.Z})")
    an.add_argument(
        "--class-fraction",
        type=positive_float,
        default=None,
        help=f"label overlap of grouping fields: k_i = fraction x class size (recipe: {recipe.class_fraction})",
    )
    an.add_argument(
        "--answer-class-fraction",
        type=positive_float,
        default=None,
        help=f"the same for the answer (recipe: {recipe.answer_class_fraction})",
    )
    an.add_argument(
        "--label-overlap-sample",
        type=positive_int,
        default=None,
        metavar="M",
        help="a label overlap that needs more than maxk neighbours (large classes, e.g. the answer's): estimate it "
        "from M points stratified by label, with its standard error, instead of building the longer graph "
        "(default: exact)",
    )
    an.add_argument(
        "--tree-min-size",
        type=positive_int,
        default=None,
        help=f"dendrogram leaves: clusters with more points (recipe: {recipe.tree_min_size})",
    )
    an.add_argument(
        "--tree-max-log-density",
        type=float,
        default=None,
        help="dendrogram leaves: no peak denser than this (default: none)",
    )
    an.add_argument(
        "--overlap-k",
        type=positive_int,
        default=None,
        help=f"neighbours of the data overlap between conditions (recipe: {recipe.overlap_k})",
    )
    an.add_argument(
        "--no-readouts",
        dest="readouts",
        action="store_false",
        help="skip the logit lens and the linear probes (geometry only)",
    )
    an.add_argument(
        "--no-similarity",
        dest="similarity",
        action="store_false",
        help="skip CKA, mutual kNN, CKNNA and information imbalance (layer x layer, condition x condition)",
    )
    an.add_argument(
        "--similarity-k",
        type=positive_int,
        default=recipe.similarity_k,
        help=f"neighbours of mutual kNN and CKNNA (default: {recipe.similarity_k}, Huh et al.'s)",
    )
    an.add_argument(
        "--similarity-memory",
        type=positive_float,
        default=recipe.similarity_memory,
        metavar="GIB",
        help=f"memory a similarity task may hold, in GiB: a condition's layers are kept when they fit and "
        f"read again block by block when not (default: {recipe.similarity_memory:g})",
    )
    an.add_argument(
        "--no-id-estimators",
        dest="id_estimators",
        action="store_false",
        help="skip the MLE, TLE, local PCA and DANCo IDs (GRIDE and 2NN remain)",
    )
    an.add_argument(
        "--id-k",
        type=positive_int,
        default=recipe.id_k,
        help=f"neighbours of the MLE, TLE and local PCA IDs (default: {recipe.id_k}, at most maxk)",
    )
    an.add_argument(
        "--null-draws",
        type=int,
        default=recipe.null_draws,
        metavar="D",
        help=f"permutation draws of each measure's chance level (ARI, label and data overlap, CKA, mutual kNN, "
        f"CKNNA: labels or one side's rows shuffled; metrics '<measure>_null'; default: {recipe.null_draws}; 0: none)",
    )
    an.add_argument("--null-seed", type=int, default=recipe.null_seed, help="seed of those draws (default: 0)")
    an.add_argument(
        "--probe-fit",
        choices=["auto", "train", "eval-halves"],
        default=recipe.probe_fit,
        help="fit the probes on the train rows, or cross-fit on two halves of the eval rows (auto: train when the run has them)",
    )
    an.add_argument("--conditions", type=name_list, default=None, help="comma list (default: all)")
    an.add_argument(
        "--layers", type=int_list, default=None, help="comma list (default: all; negative counts from the end)"
    )
    an.add_argument(
        "--bits-per-parameter",
        type=positive_float,
        default=BITS_PER_PARAMETER,
        help=f"task complexity: bits to write one LoRA weight (default: {BITS_PER_PARAMETER:g})",
    )
    an.add_argument(
        "--target-accuracy",
        type=probability,
        default=None,
        help="task complexity: the accuracy whose smallest description is read off (default: halfway from 0-shot to the best)",
    )
    an.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        help="worker processes (each task: a condition's layer, a pair of conditions at a layer, a layer's correlations)",
    )
    an.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the tasks (layers, pairs, correlations) on Ray: alone, a local Ray of --jobs CPUs; "
        "with an ADDRESS (auto, ray://host:10001), that cluster",
    )
    an.add_argument("--device", default=recipe.device, help="for the kNN graph: auto (cuda if present), cpu, cuda")
    an.add_argument(
        "--splits", type=name_list, default=None, help="comma list of eval, train (default: those the run has)"
    )
    an.add_argument(
        "--force",
        "--overwrite",
        dest="force",
        action="store_true",
        help="recompute everything (a file made with other settings is refused otherwise)",
    )
    an.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> None:
    if args.ray is not None:
        require("ray", "ray", "--ray")
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(AnalysisConfig)
        if field.name not in NOT_RECIPE and getattr(args, field.name, None) is not None
    }
    recipe = RECIPES[args.recipe]
    if "maxk" in overrides and "gride_range" not in overrides:  # GRIDE never reaches past the graph
        overrides["gride_range"] = min(recipe.gride_range, overrides["maxk"])
    config = recipe_config(
        args.recipe,
        device=args.device,
        readouts=args.readouts,
        similarity=args.similarity,
        similarity_k=args.similarity_k,
        similarity_memory=args.similarity_memory,
        id_estimators=args.id_estimators,
        id_k=args.id_k,
        null_draws=args.null_draws,
        null_seed=args.null_seed,
        probe_fit=args.probe_fit,
        **overrides,
    )
    metrics = run_analysis(
        args.run,
        config,
        conditions=args.conditions,
        layers=args.layers,
        splits=args.splits,
        jobs=args.jobs,
        ray=args.ray,
        force=args.force,
        progress=not args.no_progress,
        bits_per_parameter=args.bits_per_parameter,
        target_accuracy=args.target_accuracy,
    )
    print(f"wrote {metrics.parent / 'analysis.h5'} and {metrics}")
