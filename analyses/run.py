"""``landscape analyze RUN``: every condition x layer of hidden.h5 into analysis.h5 and metrics.csv.

Each (split, condition, layer) is an independent task (the geometry: ``analyses.layer``; the
logit lens and linear probes: ``analyses.readouts``) that reads its own layer from hidden.h5; so is each comparison of two conditions at a layer, each
condition's layer x layer and each layer's condition x condition similarity (``analyses.similarity``),
and each layer's EDL correlations. Tasks run here, in worker processes (``jobs``) or on Ray (``ray``:
``analyses.workers``); results are written by this process as they arrive, each group marked
complete last. A re-run skips complete groups (unless ``force``), then rewrites metrics.csv from
analysis.h5 (tidy: split, condition, layer, metric, grouping, value; pairs as ``a~b``).

Splits are analysed apart: ``eval`` is the landscape of Doimo et al.; ``train`` (the fine-tuning
examples, when the run has them) gives the per-example features that EDL is correlated with.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from analyses import complexity
from analyses.correlations import correlation_tasks
from analyses.identifiability import compare_seeds, seed_families
from analyses.layer import (
    NOT_RECIPE,
    RECIPES,
    AnalysisConfig,
    LayerResult,
    analyze_layer,
    compare_layers,
    compare_states,
)
from analyses.metrics import write_metrics_csv
from analyses.readouts import LensInputs, decisions, layer_readouts, targets_train_rows_lack
from analyses.similarity import HUH_KNN, HUH_VALUES, similarity_tasks
from analyses.workers import Workers
from landscape import faults, provenance, reader, store
from landscape.atomic import replace_atomically
from landscape.huh import huh_neighbours
from landscape.names import ANSWER, ZERO_SHOT
from landscape.normed import NormParameters, apply_norm

DEFAULT_CONFIG = AnalysisConfig()  # run_analysis's default: the suite's recipe


class AnalysisMismatch(ValueError):
    """analysis.h5 exists with other settings."""


@dataclass(frozen=True)
class Sweep:
    """What one ``landscape analyze`` covers, checked against the run before anything is computed."""

    hidden: Path
    config: AnalysisConfig  # probe_fit resolved
    conditions: list[str]  # the analysed ones
    stored: dict[str, list[int]]  # every complete condition (the similarity compares them all) -> the layers it
    #                               holds (all, unless extracted with --layers)
    layers_of: dict[str, list[int]]  # each analysed condition -> the stored layers asked for (all stored by default)
    instances: dict[str, str]  # of the analysed ones: which extraction of each is analysed
    examples: store.hidden.Examples
    edl_names: list[str]
    splits: list[str]

    @property
    def analysis(self) -> Path:
        return self.hidden.parent / store.ANALYSIS_FILE


def run_analysis(
    run_dir: Path,
    config: AnalysisConfig = DEFAULT_CONFIG,
    *,
    conditions: list[str] | None = None,
    layers: list[int] | None = None,
    splits: list[str] | None = None,
    jobs: int = 1,
    ray: str | None = None,
    force: bool = False,
    progress: bool = True,
    bits_per_parameter: float = complexity.BITS_PER_PARAMETER,
    target_accuracy: float | None = None,
) -> Path:
    """Analyse a run; returns the path of metrics.csv.

    Layer tasks, then pair comparisons, then EDL correlations run here (``jobs`` = 1), in ``jobs``
    local worker processes, or as Ray tasks (``ray``: ``"local"`` starts a Ray of ``jobs`` CPUs on
    this machine, any other value is the address of a running cluster, e.g. ``"auto"`` on a node
    of it); the numbers are the same (``analyses.workers``).

    Also: seed-to-seed comparisons of fine-tune families (``analyses.identifiability``) and the
    task-complexity points and Pareto front (``analyses.complexity``; LoRA weights cost
    ``bits_per_parameter``; ``target_accuracy`` defaults to halfway from 0-shot to the best)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    sweep = _plan(run_dir, config, conditions, layers, splits)
    _prepare(sweep.analysis, sweep.config, sweep.hidden, force=force)
    _forget_replaced(sweep.analysis, sweep.instances)
    todo = _layers_to_do(sweep)
    source = str(sweep.hidden.resolve())  # Ray workers do not share this process's working directory
    with Workers(jobs, ray) as workers, h5py.File(sweep.analysis, "a") as f:
        _measure_layers(f, workers, sweep, todo, source, progress)
        _compare_conditions(f, workers, sweep, source)
        _compare_representations(f, workers, sweep, source)
        _relate_to_edl(f, workers, sweep, bits_per_parameter, target_accuracy)
    return write_metrics_csv(sweep.analysis)


def _plan(
    run_dir: Path,
    config: AnalysisConfig,
    conditions: list[str] | None,
    layers: list[int] | None,
    splits: list[str] | None,
) -> Sweep:
    """Check the request against the run (conditions complete, splits present, enough rows)."""
    config.validate()
    hidden = reader.hidden_path(run_dir)
    with reader.open_run_file(hidden) as f:
        complete = [n for n in store.hidden.condition_names(f) if store.hidden.get_condition(f, n).attrs["complete"]]
        if conditions is None:  # all complete ones; one still being written is left for a re-run
            conditions = complete
        for name in conditions:
            store.hidden.get_condition(f, name)  # an unknown name is an error naming the known ones
            if name not in complete:
                raise ValueError(f"condition {name} of {hidden} is incomplete: finish its extraction first")
        stored = {
            name: store.hidden.stored_layers(f, name) for name in complete
        }  # the analysed conditions are among them
        layers_of = {
            name: _layers_asked(layers, store.hidden.n_layers(f, name), stored[name], name) for name in conditions
        }
        instances = {name: store.hidden.condition_instance(store.hidden.get_condition(f, name)) for name in conditions}
        examples = store.hidden.read_examples(f)
        edl_names = store.edl.edl_names(f)
    if not conditions:
        raise ValueError(f"{hidden} has no conditions: run `landscape extract` first")
    present = [split for split in ("eval", "train") if (examples.splits == split).any()]
    splits = present if splits is None else splits
    for split in splits:
        if split not in present:
            raise ValueError(f"no {split!r} rows in {hidden} (it has: {', '.join(present)})")
    uncovered = targets_train_rows_lack(examples) if "train" in present else []
    if config.probe_fit == "auto":  # resolved here, so the settings record what the probes were fit on
        config = replace(config, probe_fit="train" if "train" in present and not uncovered else "eval-halves")
    elif config.readouts and config.probe_fit == "train" and "train" not in present:
        raise ValueError(f"{hidden} has no train rows to fit probes on: use --probe-fit eval-halves")
    elif config.readouts and config.probe_fit == "train" and uncovered:
        print(
            f"note: the train rows lack evaluated values of {', '.join(uncovered)} (trained on other values): "
            "no probe of it; --probe-fit eval-halves probes every target",
            file=sys.stderr,
        )
    n_eval = int((examples.splits == "eval").sum())
    if "eval" in splits and n_eval < config.maxk + 1:
        raise ValueError(
            f"{n_eval} eval examples but maxk={config.maxk} needs at least {config.maxk + 1}: lower --maxk"
        )
    n_train = int((examples.splits == "train").sum())
    if "train" in splits and n_train <= config.maxk:
        print(
            f"the train split's {n_train} rows are fewer than maxk + 1 = {config.maxk + 1}: its layers are skipped "
            "(no train-row geometry, so no EDL correlations); lower --maxk to analyse them",
            file=sys.stderr,
        )
    return Sweep(hidden, config, list(conditions), stored, layers_of, instances, examples, edl_names, list(splits))


def _layers_asked(layers: list[int] | None, total: int, stored: list[int], name: str) -> list[int]:
    """The layers of a condition to analyse: every stored one, or those of ``layers`` (negative:
    from the end), each of which must be stored."""
    if layers is None:
        return stored
    for layer in layers:
        if not -total <= layer < total:
            raise ValueError(f"layer {layer} out of range: {name} has layers 0..{total - 1}")
        if layer % total not in stored:
            raise ValueError(
                f"layer {layer % total} of {name} is not stored (it keeps {', '.join(map(str, stored))}: "
                "extracted with --layers)"
            )
    return sorted({layer % total for layer in layers})


def _layers_to_do(sweep: Sweep) -> list[tuple[str, str, int]]:
    """(split, condition, layer) of every layer asked for whose results are not complete yet."""
    with h5py.File(sweep.analysis, "r") as f:
        return [
            (split, name, layer)
            for split in sweep.splits
            for name in sweep.conditions
            for layer in sweep.layers_of[name]
            if not store.analysis.result_done(f, store.analysis.result_path(name, layer, split=split))
        ]


def _measure_layers(f: h5py.File, workers: Workers, sweep: Sweep, todo, source: str, progress: bool) -> None:
    """Each (split, condition, layer): its geometry and readouts, written as they arrive; then the
    lens's decision layers, and a refusal of conditions with no geometry at any layer."""
    bar = tqdm(total=len(todo), desc="analyze", unit="layer", disable=not progress)
    layer_tasks = (
        ((split, name, layer), _task, (source, split, name, layer, sweep.config)) for split, name, layer in todo
    )
    for (split, name, layer), result in workers.map(layer_tasks, gpu=True):
        path = store.analysis.result_path(name, layer, split=split)
        store.analysis.write_result(f, path, result.scalars, result.arrays, result.skipped)
        f.flush()
        faults.reached("analyze.result")
        bar.update(1)
    bar.close()
    if sweep.config.readouts:
        _write_decisions(f, sweep.splits, sweep.conditions, sweep.stored)
    big_enough = [
        s for s in sweep.splits if (sweep.examples.splits == s).sum() > sweep.config.maxk
    ]  # a small train split is just skipped
    _refuse_degenerate(f, big_enough, sweep.conditions, sweep.layers_of)


def _compare_conditions(f: h5py.File, workers: Workers, sweep: Sweep, source: str) -> None:
    """Pairs of conditions at each layer (data overlap, cluster agreement, ...)."""
    for path, pair in workers.map(
        _pair_tasks(f, source, sweep.splits, sweep.conditions, sweep.layers_of, sweep.config)
    ):
        store.analysis.write_result(f, path, pair.scalars, pair.arrays, pair.skipped)


def _compare_representations(f: h5py.File, workers: Workers, sweep: Sweep, source: str) -> None:
    """The similarity matrices (eval rows: every analysed layer of every complete condition) and
    their chance levels (``config.null_draws`` seeded permutations, ``config.null_seed``)."""
    config = sweep.config
    if config.similarity and "eval" in sweep.splits:
        for path, found in workers.map(
            similarity_tasks(
                f,
                source,
                "eval",
                list(sweep.stored),
                sweep.stored,
                states=config.states,
                k=config.similarity_k,
                device=config.device,
                memory_bytes=int(config.similarity_memory * 2**30),
                null_draws=config.null_draws,
                null_seed=config.null_seed,
            ),
            gpu=True,
        ):
            if found is not None:
                store.analysis.write_similarity(f, path, *found)


def _relate_to_edl(
    f: h5py.File, workers: Workers, sweep: Sweep, bits_per_parameter: float, target_accuracy: float | None
) -> None:
    """What the fine-tunes' code lengths meet in the landscape: per-example correlations, the
    seed-to-seed spread, and the task's complexity."""
    split_rows = {split: np.flatnonzero(sweep.examples.splits == split) for split in sweep.splits}
    targets = [name for name in sweep.edl_names if name in sweep.conditions and ZERO_SHOT in sweep.conditions]
    for path, scalars in workers.map(
        correlation_tasks(f, sweep.hidden, targets, split_rows, sweep.layers_of, sweep.examples.group_names[0])
    ):
        store.analysis.write_result(f, path, scalars, {}, "" if scalars else "no landscape at this layer")
    info = reader.info(sweep.hidden)["conditions"]
    for base, family in seed_families([n for n in sweep.edl_names if n in sweep.conditions]).items():
        _compare_seeds(f, sweep.hidden, base, family, info, sweep.layers_of[base])
    _write_complexity(f, sweep.hidden, info, bits_per_parameter, target_accuracy)


def _write_decisions(f: h5py.File, splits, conditions: list[str], stored: dict[str, list[int]]) -> None:
    """Each row's decision layer under the logit lens, for conditions with the lens at every
    stored layer (a condition extracted with --layers: the first stored layer it holds from)."""
    for split in splits:
        for name in conditions:
            last = store.analysis.decision_path(name, stored[name][-1], split=split)
            if store.analysis.result_done(f, last):
                continue
            predictions = []
            for layer in stored[name]:
                path = store.analysis.result_path(name, layer, split=split)
                if not store.analysis.result_done(f, path):
                    break
                _, arrays, _ = store.analysis.read_result(f, path, arrays=("lens_pred",))
                if "lens_pred" not in arrays:
                    break
                predictions.append(arrays["lens_pred"])
            if len(predictions) != len(stored[name]):
                continue  # no lens here, or not every layer analysed
            positions, decided = decisions(np.stack(predictions))
            layers = np.asarray(stored[name])[positions]  # positions among the stored layers -> layers
            for position, layer in enumerate(stored[name]):
                arrays = {"decision_layer": layers.astype(np.int16)} if layer == stored[name][-1] else {}
                store.analysis.write_result(
                    f,
                    store.analysis.decision_path(name, layer, split=split),
                    {"lens_decided": float(decided[position])},
                    arrays,
                    "",
                )


def _refuse_degenerate(f: h5py.File, splits, conditions, layers_of: dict[str, list[int]]) -> None:
    """A condition whose every layer has no geometry (e.g. all points identical) is an error, not
    a table of NaNs. One such layer is normal: layer 0 is the same token's embedding in every row."""
    for split in splits:
        for name in conditions:
            reasons = [
                store.analysis.read_result(f, store.analysis.result_path(name, layer, split=split))[2]
                for layer in layers_of[name]
            ]
            if reasons and all(reasons):
                raise ValueError(f"no layer of {name} ({split} rows) has a geometry: {reasons[-1]}")


def _forget_replaced(out: Path, instances: dict[str, str]) -> None:
    """Results of a condition that was extracted again since (``--overwrite``, a new fine-tune)
    describe data that is gone: delete them, so this run recomputes them, and record what it analyses."""
    with h5py.File(out, "a") as f:
        analysed = store.analysis.analyzed_instances(f)
        for name, instance in instances.items():
            if name in analysed and analysed[name] != instance:
                removed = store.analysis.delete_results_of(f, name)
                print(
                    f"{name} was extracted again since it was analysed: its {removed} result groups are redone",
                    file=sys.stderr,
                )
        store.analysis.record_instances(f, instances)


def _prepare(out: Path, config: AnalysisConfig, hidden: Path, *, force: bool) -> None:
    settings = config.to_dict()
    for where in ("device", "similarity_memory"):  # where and in how much memory it ran does not change the numbers
        settings.pop(where)
    preset = RECIPES[config.recipe].to_dict()
    settings["overrides"] = sorted(
        k for k in settings if k in preset and settings[k] != preset[k] and k not in NOT_RECIPE
    )
    if out.exists() and not force:
        with h5py.File(out, "r") as f:
            have = store.analysis.analysis_settings(f)
        differing = [k for k in settings if k != "overrides" and have.get(k) != settings[k]]  # overrides: derived
        if differing:
            key = differing[0]
            raise AnalysisMismatch(
                f"{out} was made with {key}={have.get(key)!r}, not {settings[key]!r}: use --force to redo it"
            )
        return

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            store.analysis.write_analysis_header(f, settings, str(hidden.name), provenance.stamp())

    replace_atomically(out, write)


def _task(hidden: str, split: str, name: str, layer: int, config: AnalysisConfig) -> LayerResult:
    """One (split, condition, layer): read the layer, measure it (runs in a worker)."""
    with h5py.File(hidden, "r") as f:
        examples = store.hidden.read_examples(f)
        residual = store.hidden.read_layer(f, name, layer)  # every row: probes fit on other rows than they score
        norms = store.readout.read_norms(f, name) if config.states == "normed" else _optional_norms(f, name)
        demo_sets = store.hidden.read_demo_sets(f, name)
        lens = _lens_inputs(f, name, norms) if config.readouts and norms is not None else None
    rows = np.flatnonzero(examples.splits == split)
    bad = int((~np.isfinite(residual[rows]).all(axis=1)).sum())
    if bad:
        raise ValueError(
            f"{name} layer {layer} holds NaN or inf in {bad} of {len(rows)} {split} rows: the forward pass "
            "overflowed (try --dtype float32) or the file is damaged; re-extract it with --overwrite"
        )
    if config.states == "residual":
        states = residual
    else:
        assert norms is not None  # read_norms raises rather than return None
        states = apply_norm(residual, *norms.layer(layer), norms.kind)
    labels = {**examples.groups, ANSWER: examples.answers}
    result = analyze_layer(
        states[rows],
        {g: values[rows] for g, values in labels.items()},
        config,
        demo_sets=None if demo_sets is None else demo_sets[rows],
        id_estimators=config.id_estimators and split == "eval",
    )  # the landscape's; not EDL's features
    result.arrays["rows"] = rows  # row of each result row in /examples
    if _feeds_similarity(result, split, len(rows), config):
        # what mutual kNN and CKNNA read of this layer, computed once for both its similarity groups
        result.arrays[HUH_KNN], result.arrays[HUH_VALUES] = huh_neighbours(
            states[rows], config.similarity_k, device=config.device
        )
    if config.readouts:
        fit_rows = None
        if split == "eval":
            fit_rows = np.flatnonzero(examples.splits == "train") if config.probe_fit == "train" else rows
        scalars, arrays = layer_readouts(
            residual[rows],
            states,
            examples.answers[rows],
            labels,
            lens=lens,
            fit_rows=fit_rows,
            score_rows=rows,
            probe_fit=config.probe_fit,
            seed=layer,
        )
        result.scalars.update(scalars)
        result.arrays.update(arrays)
    return result


def _feeds_similarity(result: LayerResult, split: str, n_rows: int, config: AnalysisConfig) -> bool:
    """Whether the layer's similarity groups will read its Huh et al. neighbours: eval rows, a
    geometry, no duplicated row (a group drops those, and then finds its own neighbours)."""
    return (
        config.similarity
        and split == "eval"
        and not result.skipped
        and result.scalars.get("n_duplicates") == 0
        and n_rows > config.similarity_k
    )


def _optional_norms(f: h5py.File, name: str) -> NormParameters | None:
    try:
        return store.readout.read_norms(f, name)
    except store.SchemaError:  # a run extracted before norms were stored: no lens, the rest as before
        return None


def _lens_inputs(f: h5py.File, name: str, norms) -> LensInputs | None:
    """The lens of a condition, or None where it is unavailable (a text-scored task, a head that
    does more than the final norm and these rows; the reason is in hidden.h5)."""
    try:
        return LensInputs(norms=norms, head=store.readout.read_head(f, name))
    except store.SchemaError:
        return None


def _pair_tasks(
    f: h5py.File, hidden: str, splits, conditions: list[str], layers_of: dict[str, list[int]], config: AnalysisConfig
):
    """(path, _pair_task, args) of every pair of conditions and layer not yet done, with the stored
    neighbour lists and clusters the comparison reads (read as the task is submitted)."""
    for split in splits:
        for a, b in itertools.combinations(conditions, 2):
            for layer in sorted(set(layers_of[a]) & set(layers_of[b])):
                path = store.analysis.result_path(a, layer, other=b, split=split)
                if not store.analysis.result_done(f, path):
                    inputs = [_comparable(f, store.analysis.result_path(c, layer, split=split)) for c in (a, b)]
                    yield path, _pair_task, (hidden, split, a, b, layer, *inputs, config)


def _comparable(f: h5py.File, path: str) -> LayerResult:
    scalars, arrays, skipped = store.analysis.read_result(f, path, arrays=("knn", "cluster", "cluster_compared"))
    return LayerResult(scalars=scalars, arrays=arrays, skipped=skipped)


def _pair_task(
    hidden: str,
    split: str,
    a: str,
    b: str,
    layer: int,
    result_a: LayerResult,
    result_b: LayerResult,
    config: AnalysisConfig,
) -> LayerResult:
    """One pair of conditions at a layer (runs in a worker): neighbourhood overlap and cluster
    agreement from the stored neighbour lists, or from the states where either holds duplicate
    points (``compare_states``: duplicated rows dropped). (CKA and the other similarity measures
    of the pair: ``analyses.similarity``, for all conditions and layers at once.)"""
    if not (result_a.skipped or result_b.skipped) and not all(r.arrays["knn"].size for r in (result_a, result_b)):
        with h5py.File(hidden, "r") as f:
            rows = np.flatnonzero(store.hidden.read_examples(f).splits == split)
            X_a, X_b = (store.hidden.read_layer(f, c, layer, config.states)[rows] for c in (a, b))
        clusters_a, clusters_b = (r.arrays.get("cluster_compared", r.arrays["cluster"]) for r in (result_a, result_b))
        return compare_states(X_a, X_b, clusters_a, clusters_b, config)
    return compare_layers(result_a, result_b, config)


def _compare_seeds(f: h5py.File, hidden: Path, base: str, family: list[str], info: dict, layers: list[int]) -> None:
    """Per layer (eval rows): how far apart the landscapes of one fine-tune's seeds are."""
    with h5py.File(hidden, "r") as h:
        eval_bits = {name: float(store.edl.read_edl(h, name)[0]["eval_final_bits"].mean()) for name in family}
    accuracy = {name: float(info[name]["accuracy"]) for name in family}
    for layer in layers:
        scalars, pairs = {}, {}
        for name in family:
            values, _, skipped = store.analysis.read_result(f, store.analysis.result_path(name, layer, split="eval"))
            scalars[name] = {} if skipped else values
        for a, b in itertools.permutations(family, 2):
            path = store.analysis.result_path(a, layer, other=b, split="eval")
            if path in f and not f[path].attrs.get("skipped"):
                pairs[(a, b)] = pairs[(b, a)] = store.analysis.read_result(f, path)[0]
        path = store.analysis.seeds_path(base, layer, split="eval")
        if not all(scalars.values()):
            store.analysis.write_result(f, path, {}, {}, "no landscape at this layer for every seed")
            continue
        store.analysis.write_result(f, path, compare_seeds(scalars, pairs, eval_bits, accuracy), {}, "")


def _write_complexity(f: h5py.File, hidden: Path, info: dict, bits_per_parameter: float, target: float | None) -> None:
    """Task-complexity points of every strategy the run holds, and their Pareto front."""
    with h5py.File(hidden, "r") as h:
        edl = {name: store.edl.read_edl(h, name) for name in store.edl.edl_names(h)}
    done = {name: attrs for name, attrs in info.items() if attrs.get("complete")}
    points = (
        complexity.icl_points(done)
        + complexity.lora_points(
            done, {n: a for n, (_, a) in edl.items() if a.get("labels") == "true"}, bits_per_parameter
        )
        + complexity.data_points(done, edl)
    )
    if not points:
        return
    baseline = float(done[ZERO_SHOT]["accuracy"]) if ZERO_SHOT in done else float("nan")
    best = max(p.accuracy for p in points)
    if target is None:
        target = baseline + 0.5 * (best - baseline) if np.isfinite(baseline) else best
    store.analysis.write_complexity(
        f,
        {
            "strategy": np.array([p.strategy for p in points]),
            "label": np.array([p.label for p in points]),
            "bits": np.array([p.bits for p in points]),
            "accuracy": np.array([p.accuracy for p in points]),
            "on_front": complexity.pareto_front(points),
        },
        {
            "baseline_accuracy": baseline,
            "target_accuracy": float(target),
            "best_accuracy": best,
            "smallest_bits": complexity.smallest_bits(points, target),
            "bits_per_parameter": bits_per_parameter,
        },
    )
