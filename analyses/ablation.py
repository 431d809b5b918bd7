"""Which of the paper's choices change the answer: ``landscape ablation RUN``.

The suite's recipe, then each choice of Doimo et al.'s figure scripts switched alone, then their
whole recipe (``doimo2024``), each analysed by ``run_analysis`` itself (the users' code path) on
the same run's 0-shot and k-shot conditions (eval rows), into RUN/ablation/<variant>/ (a link to
hidden.h5, analysis.h5, metrics.csv; a re-run reuses what is done). The headline numbers of each
variant go to RUN/ablation/table.csv and are printed as a Markdown table:

- ARI of the first grouping field (e.g. subject): mean over layers 1..L per condition, the k-shot
  peak and its layer, and the largest change of any layer's value from the suite's profile;
- ARI of the answer: mean over layers per condition;
- intrinsic dimension: the 2NN ID's peak layer and the density's ID (the chosen GRIDE scale) at
  its peak, 0-shot;
- transition layer: the first layer from which the k-shot grouping ARI stays below half its peak
  after the peak (the "sharp transition" where the paper's subject clusters dissolve; NaN when
  they never do);
- data overlap of 0-shot and k-shot neighbourhoods: mean over layers; layers compared;
- label overlap of the grouping field (k-shot) and of the answer (0-shot): mean over layers.

Example::

    landscape ablation runs/ablation --conditions 0shot,5shot --jobs 2
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np

from analyses.layer import RECIPES, AnalysisConfig
from analyses.run import run_analysis
from landscape import reader, store
from landscape.atomic import replace_atomically
from landscape.names import ANSWER, ZERO_SHOT, feature_name, grouped, icl_condition

ABLATION_DIR = "ablation"


@dataclass(frozen=True)
class Variant:
    name: str  # a folder name
    label: str  # what changes, for the table
    config: AnalysisConfig


def variants(device: str = "auto") -> list[Variant]:
    """The suite, each paper choice alone, the paper's recipe."""
    suite, paper = replace(RECIPES["suite"], device=device), replace(RECIPES["doimo2024"], device=device)
    return [
        Variant("suite", "suite (residual, maxk 100, ID ranks 16-32, answer fraction 0.3)", suite),
        Variant("normed", "normed states (input_layernorm output)", replace(suite, states="normed")),
        Variant("maxk1000", "maxk 1000", replace(suite, maxk=1000)),
        Variant(
            "maxk1000-compare300", "maxk 1000, clusters compared at 300", replace(suite, maxk=1000, cluster_maxk=300)
        ),
        Variant("idscale8", "density's ID at ranks 8-16", replace(suite, id_scale=8)),
        Variant("answer01", "answer overlap fraction 0.1", replace(suite, answer_class_fraction=0.1)),
        Variant("doimo2024", "doimo2024 (all of the above)", paper),
    ]


DEFAULT_CONDITIONS = (ZERO_SHOT, icl_condition(5))  # the paper's 0-shot and 5-shot


def run_ablation(
    run: Path,
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS,
    *,
    jobs: int = 1,
    device: str = "auto",
    only: list[str] | None = None,
    settings: dict | None = None,
    grouping: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """Analyse ``run``'s 0-shot and k-shot ``conditions`` (or the 0-shot one alone) under every
    variant (or those named in ``only``); returns (and writes) one row of headline numbers each. ``settings`` are set on top of every variant (recorded in each
    analysis.h5), e.g. a smaller maxk for a small run. ``grouping``: the field whose ARI and label
    overlap head the table (default: the task's first grouping field)."""
    hidden = reader.hidden_path(run).resolve()
    with reader.open_run_file(hidden) as f:
        names = store.hidden.read_examples(f).group_names
        known = store.hidden.condition_names(f)
        n_layers = store.hidden.n_layers(f, conditions[0]) if conditions[0] in known else 0
        stored = store.hidden.stored_layers(f, conditions[0]) if conditions[0] in known else []
    first = grouping or names[0]
    if first not in [*names, ANSWER]:
        raise ValueError(f"no grouping {first!r} in {hidden} (it has: {', '.join([*names, ANSWER])})")
    for name in conditions:
        if name not in known:
            raise ValueError(f"no condition {name!r} in {hidden} (it has: {', '.join(known)})")
    chosen = [v for v in variants(device) if only is None or v.name in only]
    if only is not None and len(chosen) != len(only):
        raise ValueError(f"unknown variant in {','.join(only)}; known: {', '.join(v.name for v in variants())}")
    rows, baseline = [], None
    for variant in chosen:
        folder = hidden.parent / ABLATION_DIR / variant.name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / store.HIDDEN_FILE
        if not link.exists():
            os.symlink(os.path.relpath(hidden, folder), link)
        # the paper's geometry only
        config = replace(variant.config, readouts=False, similarity=False, id_estimators=False, **(settings or {}))
        run_analysis(folder, config, conditions=list(conditions), splits=["eval"], jobs=jobs, progress=progress)
        profiles = read_profiles(folder / store.ANALYSIS_FILE, conditions, first, n_layers, stored)
        baseline = baseline or profiles
        rows.append(
            {"variant": variant.name, "change": variant.label, **headline(profiles, baseline, conditions, first)}
        )
    _write_table(hidden.parent / ABLATION_DIR / "table.csv", rows)
    return rows


def read_profiles(
    analysis: Path, conditions: tuple[str, ...], first: str, n_layers: int, stored: list[int] | None = None
) -> dict[str, np.ndarray]:
    """Per-layer arrays (NaN where a layer has no geometry, or is not ``stored``: default all) of
    the metrics the headline uses."""
    kept = set(range(n_layers) if stored is None else stored)
    zero = conditions[0]
    metrics = (
        grouped("ari", first),
        grouped("ari", ANSWER),
        "id_2nn",
        "id_gride",
        grouped("label_overlap", first),
        grouped("label_overlap", ANSWER),
    )
    out: dict[str, np.ndarray] = {}
    with h5py.File(analysis, "r") as f:
        for condition in conditions:
            for metric in metrics:
                out[feature_name(condition, metric)] = np.array(
                    [
                        _scalar(f, store.analysis.result_path(condition, layer), metric) if layer in kept else np.nan
                        for layer in range(n_layers)
                    ]
                )
        for metric in ("data_overlap", "n_pair_dropped"):
            out[metric] = np.array(
                [
                    _scalar(f, store.analysis.result_path(zero, layer, other=conditions[1]), metric)
                    if len(conditions) == 2 and layer in kept
                    else np.nan
                    for layer in range(n_layers)
                ]
            )
    return out


def _scalar(f: h5py.File, path: str, metric: str) -> float:
    scalars, _, skipped = store.analysis.read_result(f, path, arrays=())
    return np.nan if skipped else float(scalars.get(metric, np.nan))


def headline(
    profiles: dict[str, np.ndarray], baseline: dict[str, np.ndarray], conditions: tuple[str, ...], first: str
) -> dict:
    """The headline numbers of one variant (``conditions``: the 0-shot one, then the k-shot one if
    any; without it, the k-shot numbers are NaN)."""
    zero, shots = conditions[0], conditions[-1] if len(conditions) == 2 else "kshot"
    ari_first, ari_answer = grouped("ari", first), grouped("ari", ANSWER)
    inner = slice(1, None)  # layer 0 is the same token's embedding in every prompt
    n_layers = len(profiles[f"{zero}:id_2nn"])
    missing = np.full(n_layers, np.nan)
    k_ari = profiles.get(feature_name(shots, ari_first), missing)
    peak = int(np.nanargmax(k_ari[inner])) + 1 if np.isfinite(k_ari[inner]).any() else 0
    change = max(
        float(np.nanmax(np.abs(profiles[feature_name(c, ari_first)] - baseline[feature_name(c, ari_first)])[inner]))
        for c in conditions
        if feature_name(c, ari_first) in baseline
    )
    id_2nn = profiles[f"{zero}:id_2nn"]
    id_density = profiles[f"{zero}:id_gride"]
    return {
        f"{first} ARI {zero}": _mean(profiles[feature_name(zero, ari_first)][inner]),
        f"{first} ARI {shots}": _mean(k_ari[inner]),
        f"{shots} {first} ARI peak": round(float(k_ari[peak]), 3),
        f"{shots} {first} ARI peak layer": peak if peak else float("nan"),
        f"largest change of a layer's {first} ARI": round(change, 3),
        f"answer ARI {zero}": _mean(profiles[feature_name(zero, ari_answer)][inner]),
        f"answer ARI {shots}": _mean(profiles.get(feature_name(shots, ari_answer), missing)[inner]),
        f"2NN ID peak layer {zero}": int(np.nanargmax(id_2nn[inner])) + 1,
        f"density ID peak {zero}": round(float(np.nanmax(id_density[inner])), 2),
        "transition layer": transition_layer(k_ari),
        f"data overlap {zero}~{shots}": _mean(profiles["data_overlap"][inner]),
        "layers compared": int(np.isfinite(profiles["data_overlap"]).sum()),
        "rows dropped as duplicates (pairs)": int(np.nansum(profiles["n_pair_dropped"])),
        f"label overlap {first} {shots}": _mean(
            profiles.get(feature_name(shots, grouped("label_overlap", first)), missing)[inner]
        ),
        f"label overlap answer {zero}": _mean(profiles[feature_name(zero, grouped("label_overlap", ANSWER))][inner]),
    }


def transition_layer(profile: np.ndarray) -> float:
    """First layer after the peak (layers >= 1) from which ``profile`` stays below half the peak;
    NaN when it never does.

    Example:
        >>> transition_layer(np.array([np.nan, 0.2, 0.9, 0.8, 0.3, 0.1]))
        4.0
        >>> transition_layer(np.array([np.nan, 0.2, 0.9, 0.8]))
        nan
    """
    values = np.where(np.isfinite(profile), profile, -np.inf)
    values[0] = -np.inf
    peak = int(np.argmax(values))
    below = values < 0.5 * values[peak]
    for layer in range(peak + 1, len(values)):
        if below[layer:].all():
            return float(layer)
    return float("nan")


def _mean(values: np.ndarray) -> float:
    return round(float(np.nanmean(values)), 3) if np.isfinite(values).any() else float("nan")


def _write_table(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    replace_atomically(path, write)


def markdown(rows: list[dict]) -> str:
    """The table transposed (one column per variant), as docs/controls.md shows it."""
    keys = [k for k in rows[0] if k not in ("variant", "change")]
    lines = ["| | " + " | ".join(r["variant"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    lines.extend(f"| {key} | " + " | ".join(_cell(r[key]) for r in rows) + " |" for key in keys)
    return "\n".join(lines)


def _cell(value) -> str:
    return "–" if isinstance(value, float) and not np.isfinite(value) else str(value)
