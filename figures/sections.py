"""The report page's header and its sections, one builder per section.

Each builder takes the collected run (``figures.collect.RunData``) and returns a ``Section`` (or
None when the run has nothing for it), adding every figure it draws to ``static`` (name -> figure,
each saved alone beside the page). They come here in page order, as ``figures.report`` shows them;
the map section, between the dendrogram and the EDL, lives in ``figures.map_section``, which
shares the widget helpers at the top.

Example:
    >>> select_control("condition", "condition", ["0shot", "5shot"], "5shot")["initial"]
    1
"""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import numpy as np

from analyses.complexity import BITS_PER_PARAMETER
from figures import complexity as complexity_figures
from figures import control, profiles, readouts, similarity, tree
from figures import edl as edl_figures
from figures.collect import RunData, layer_arrays, layer_similarity, trees
from figures.page import Section, figure_div, switcher_div, table
from landscape import names
from landscape.stats import mean_interval


def union_layers(layers: dict[str, list[int]]) -> list[int]:
    """Every layer that some condition was analysed at, in order."""
    return sorted({layer for ls in layers.values() for layer in ls})


def pick_default_condition(conditions: list[str]) -> str:
    """The condition a widget shows first: the first one that is not 0-shot."""
    return next((c for c in conditions if c != names.ZERO_SHOT), conditions[0])


def range_control(name: str, label: str, options: list) -> dict:
    """A slider over ``options``, starting at the last."""
    return {
        "name": name,
        "label": label,
        "type": "range",
        "options": [str(o) for o in options],
        "initial": len(options) - 1,
    }


def select_control(name: str, label: str, options: list, initial, labels: list[str] | None = None) -> dict:
    """A drop-down of ``options`` (shown as ``labels`` when given), starting at ``initial``."""
    select = {
        "name": name,
        "label": label,
        "type": "select",
        "options": [str(o) for o in options],
        "initial": [str(o) for o in options].index(str(initial)),
    }
    if labels:
        select["labels"] = labels
    return select


def header(data: RunData) -> str:
    """The page's header: the run (model, task, data, partition, provenance) and its conditions."""
    info = data.info
    ex = data.examples
    rows = [
        ["model", f"{info.get('model')} — {info.get('model_source', '')}"],
        ["model sha256", info.get("model_hash", "")],
        [
            "task",
            f"{info.get('task')} ({info.get('task_file')}, sha256 {str(info.get('task_hash', ''))[:16]}…): "
            f"{len(data.choice_labels)} choices, {info.get('score')} scoring",
        ],
        ["dataset", f"{info.get('dataset')} (sha256 {str(info.get('dataset_hash', ''))[:16]}…)"],
        ["groupings", ", ".join(data.examples.group_names) + " (and the answer)"],
        [
            f"{data.first_group} values",
            f"{len(info.get('group_values', []))}: " + ", ".join(info.get("group_values", [])),
        ],
        [
            "examples",
            ", ".join(f"{s}: {int((ex.splits == s).sum())}" for s in ("eval", "train") if (ex.splits == s).any()),
        ],
        ["partition", json.dumps(info.get("partition", {}))],
        ["representation", info.get("representation", "")],
        ["created", f"{info.get('created_at', '')} by `{info.get('command', '')}`"],
    ]
    conditions = []
    for name, attrs in info["conditions"].items():
        conditions.append(
            [
                name,
                attrs.get("kind", ""),
                attrs.get("shots", ""),
                attrs.get("demo_sampling", ""),
                float(attrs["accuracy"]) if "accuracy" in attrs else "",
                float(attrs["accuracy_train"]) if "accuracy_train" in attrs else "",
                attrs.get("layers", ""),
                "yes" if attrs.get("complete") else "no",
            ]
        )
    provenance = {
        "versions": info.get("versions"),
        "analysis settings": data.analysis_settings,
        "report": {"python": sys.version.split()[0]},
    }
    return (
        table(rows, ["run", str(data.run)])
        + table(
            conditions,
            ["condition", "kind", "shots", "demos", "accuracy (eval)", "accuracy (train)", "layers", "complete"],
        )
        + "<details><summary>Provenance</summary><pre>"
        + html.escape(json.dumps(provenance, indent=1, default=str))
        + "</pre></details>"
    )


def control_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
    """For a positive-control task (task file ``control: true``): could the suite see an effect?"""
    if not data.is_control:
        return None
    rows = data.eval_rows
    answers = data.examples.answers[rows]
    accuracy_rows = []
    for c in conditions:
        correct = (data.predictions[c][rows] == answers).astype(float)
        interval = mean_interval(correct)
        accuracy_rows.append(
            [
                c,
                data.info["conditions"][c].get("kind", ""),
                f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]",
            ]
        )
    static["control_answer"] = profiles.answer_profiles({c: data.profiles[("eval", c)] for c in conditions})
    parts = [
        table(accuracy_rows, ["condition", "kind", "accuracy on held-out (eval) rows, 95 % CI"]),
        figure_div(static["control_answer"], "control_answer"),
    ]
    if data.edl:
        static["control_edl"] = control.edl_bars({n: a for n, (_, a) in data.edl.items()})
        parts.append(figure_div(static["control_edl"], "control_edl"))
    return Section(
        "control",
        "Does the suite detect a real effect?",
        f"{html.escape(data.info.get('task', ''))} is a positive control: its truth is planted and learnable. "
        "A fine-tune that learnt it answers held-out questions far above 0-shot and k-shot, its late layers "
        "cluster by answer, its held-out EDL is far above the random-label control's, and its gain beyond "
        "format is above zero while the random-label control's interval reaches zero.",
        parts,
    )


def profiles_section(data: RunData, run: Path, conditions: list[str], layers: dict, static: dict) -> Section:
    """Every condition's profiles across layers, then the pair, ID-estimator, layer-similarity and GRIDE panels."""
    static["profiles"] = profiles.layer_profiles({c: data.profiles[("eval", c)] for c in conditions}, data.groupings)
    parts = [figure_div(static["profiles"], "profiles")]
    pairs = data.pairs("eval")
    if pairs:
        static["pairs"] = profiles.pair_profiles({p: data.profiles[("eval", p)] for p in pairs})
        parts.append(figure_div(static["pairs"], "pairs"))
    estimated = {
        c: data.profiles[("eval", c)] for c in conditions if similarity.has_estimators(data.profiles[("eval", c)])
    }
    if estimated:
        static["id_estimators"] = similarity.id_estimator_profiles(estimated)
        parts.append(figure_div(static["id_estimators"], "id_estimators"))
    matrices = {c: m for c, m in layer_similarity(run).items() if c in conditions}
    if matrices:
        static["layer_similarity"] = similarity.layer_similarity_heatmaps(matrices)
        parts.append(figure_div(static["layer_similarity"], "layer_similarity"))
    all_layers = union_layers(layers)
    curves = {c: layer_arrays(run, c, layers[c], ("gride_scales", "gride_ids", "gride_errors")) for c in conditions}
    gride_figs = {str(layer): profiles.gride_curves(curves, layer) for layer in all_layers}
    default_layer = str(all_layers[-1])
    static["gride_curves"] = gride_figs[default_layer]
    parts.append(
        "<details><summary>Intrinsic dimension across scales (GRIDE), per layer</summary>"
        + switcher_div("gride_curves", [range_control("layer", "layer", all_layers)], gride_figs, default_layer)
        + "</details>"
    )
    return Section(
        "profiles",
        "Profiles across layers",
        "One line per condition; hover for values, click a legend entry to hide a condition. A light "
        "band with a dotted line under a condition's line is that measure's chance level, where the "
        "analysis drew one: the 95 % range and mean of its permutation null (labels, or one side's rows, "
        "shuffled). "
        f"Recipe {data.analysis_settings.get('recipe', 'suite')}, "
        f"{data.analysis_settings.get('states', 'residual')} states. "
        "Clusters: Advanced Density Peaks (DADApy) at Z = "
        f"{data.analysis_settings.get('Z')}; label overlap: share of each point's k_i nearest "
        "neighbours with its label. The panels below compare conditions on the same questions (CKA, "
        "mutual kNN, CKNNA, information imbalance: landscape.similarity), give the intrinsic dimension "
        "by six estimators, and compare each condition's layers with each other (pick the measure in the "
        "heatmaps' menu).",
        parts,
    )


def readouts_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
    """Linear probes and the logit lens per layer, each target beside its ARI curve."""
    by_condition = {c: data.profiles[("eval", c)] for c in conditions}
    if not readouts.has_readouts(by_condition):
        return None
    parts = []
    for target in data.groupings:
        name = f"readout_{target}"
        static[name] = readouts.target_readouts(by_condition, target)
        parts.append(figure_div(static[name], name))
    if any("lens_accuracy" in p for p in by_condition.values()):
        static["lens"] = readouts.lens_profiles(by_condition)
        parts.append(figure_div(static["lens"], "lens"))
    fit = data.analysis_settings.get("probe_fit", "train")
    return Section(
        "readouts",
        "What can be read from each layer",
        "Left: accuracy on the eval questions of a linear probe (logistic regression on standardised states, "
        f"regularisation chosen by 3-fold cross-validation on the {'train' if fit == 'train' else 'other half of the eval'} "
        "rows), of the logit lens (the model's final norm and head applied to the layer: answer only), of a probe "
        "fit on shuffled labels (control) and of the majority label. Right: the ARI of the ADP clusters with the "
        "same field. A field a probe reads where the clusters do not is present, linearly, without forming "
        "density peaks.",
        parts,
    )


def controls_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
    """The demo-sampling controls (extract --demos) beside the fixed-demo conditions they control."""
    sampling = {
        c: data.info["conditions"][c].get("demo_sampling", "fixed")
        for c in conditions
        if data.info["conditions"][c].get("kind") == "icl"
    }
    controls = [c for c in sampling if sampling[c] != "fixed" or any(o.startswith(f"{c}-") for o in conditions)]
    if not any(sampling[c] != "fixed" for c in controls):
        return None
    group = data.first_group
    static["controls"] = profiles.control_profiles({c: data.profiles[("eval", c)] for c in controls}, group)
    return Section(
        "controls",
        f"{group.capitalize()} or shared prefix?",
        f"With fixed demos every question of a {group} shares its prompt prefix. Controls: "
        f"<b>-resampled</b> (each question draws its own demos from its {group}'s pool), "
        f"<b>-othersubject</b> (demos of another {group}, drawn per question; the header is still the "
        f"question's own), <b>-noheader</b> (no header line). {group.capitalize()} structure that survives "
        "resampling is not prefix identity; ARI with the demo set measures the prefix's own pull.",
        [figure_div(static["controls"], "controls")],
    )


def tree_section(data: RunData, run: Path, conditions: list[str], layers: dict, static: dict) -> Section:
    """The density-peak dendrogram of one condition and layer, picked on the page."""
    min_size = int(data.analysis_settings.get("tree_min_size", 30))
    labels = data.examples.first_group[data.eval_rows]
    figures = {}
    for c in conditions:
        by_layer = trees(run, c, layers[c], labels)
        for layer in layers[c]:
            figures[f"{c}|{layer}"] = tree.dendrogram_figure(by_layer.get(layer), c, layer, min_size=min_size)
    default_condition = pick_default_condition(conditions)
    default = f"{default_condition}|{layers[default_condition][-1]}"
    static["dendrogram"] = figures[default]
    controls = [
        select_control("condition", "condition", conditions, default_condition),
        range_control("layer", "layer", union_layers(layers)),
    ]
    return Section(
        "tree",
        "Density-peak dendrogram",
        f"Clusters with more than {min_size} points, joined at the saddle between their "
        f"peaks; each leaf is named by its most frequent {data.first_group}. Pick a condition and a layer.",
        [switcher_div("dendrogram", controls, figures, default)],
    )


def edl_section(data: RunData, static: dict) -> Section | None:
    """The fine-tunes' excess description length: totals, code-length curves, their spread, correlations."""
    if not data.edl:
        return None
    static["code_length"] = edl_figures.code_length_curves(data.edl)
    static["edl_distribution"] = edl_figures.edl_distribution(data.edl)
    parts = [
        _edl_table(data),
        figure_div(static["code_length"], "code_length"),
        figure_div(static["edl_distribution"], "edl_distribution"),
    ]
    targets = {
        t: data.profiles[(split, names.correlation_key(t))]
        for split in ("train", "eval")
        for t in data.correlation_targets(split)
    }
    if targets:
        static["edl_correlations"] = edl_figures.correlation_profiles(targets)
        parts.append(figure_div(static["edl_correlations"], "edl_correlations"))
    return Section(
        "edl",
        "Excess description length",
        "Prequential (online) code of the training labels while fine-tuning vs the final model's "
        "code of held-out rows: EDL = online bits - n x held-out mean bits (the training-row variant "
        "beside it). The format-only learner recalibrates the frozen base model (a bias per choice and a "
        "temperature) on the same labels and batches; the gain beyond format is what the fine-tune knows "
        "of new labels that a recalibration does not. Brackets: 95 % bootstrap intervals over examples. "
        "Control: random labels.",
        parts,
    )


def _edl_table(data: RunData) -> str:
    """One row of EDL totals (with their intervals) per fine-tune."""
    rows = []
    for name, (_, attrs) in data.edl.items():
        rows.append(
            [
                name,
                attrs.get("labels", "?"),
                int(attrs["n_train"]),
                _interval(attrs, "edl_heldout_bits"),
                _interval(attrs, "edl_train_bits"),
                _interval(attrs, "edl_format_only_bits"),
                _interval(attrs, "gain_beyond_format_bits"),
                _interval(attrs, "mdl_bits"),
                float(attrs.get("heldout_residual_bits", np.nan)),
                float(attrs["base_bits"]),
                float(attrs.get("marginal_mdl_bits", np.nan)),
                float(attrs["uniform_bits"]),
                _interval(attrs, "accuracy_gain", 3),
            ]
        )
    return table(
        rows,
        [
            "fine-tune",
            "labels",
            "n",
            "EDL, held-out residual (95 % CI)",
            "EDL, training-row residual",
            "EDL of the format-only learner",
            "gain beyond format (bits)",
            "online (MDL) bits",
            "held-out residual bits",
            "base bits",
            "label-count code",
            "uniform",
            "accuracy gain over 0-shot",
        ],
    )


def _interval(attrs: dict, name: str, digits: int = 1) -> str:
    """'value [low, high]' of a total stored with its bootstrap interval."""
    if name not in attrs:
        return "–"
    return f"{attrs[name]:.{digits}f} [{attrs.get(name + '_low', np.nan):.{digits}f}, {attrs.get(name + '_high', np.nan):.{digits}f}]"


def complexity_section(data: RunData, static: dict) -> Section | None:
    """Task complexity bounds and the spread of fine-tunes that differ only in their seed."""
    parts = []
    if data.complexity is not None:
        static["complexity"] = complexity_figures.complexity_figure(*data.complexity)
        parts.append(figure_div(static["complexity"], "complexity"))
    for base in data.seed_families("eval"):
        static[f"seeds_{base}"] = complexity_figures.seeds_figure(data.profiles[("eval", names.seeds_key(base))], base)
        parts.append(figure_div(static[f"seeds_{base}"], f"seeds_{base}"))
    if not parts:
        return None
    bits = (data.complexity or ({}, {}))[1].get("bits_per_parameter", BITS_PER_PARAMETER)
    return Section(
        "complexity",
        "Task complexity and non-identifiability",
        "Upper bounds on the description length that reaches each accuracy (ICL demos coded by the "
        f"model, LoRA weights at {bits:g} bits each, the prequential code of the training labels), and "
        "how far apart the landscapes of fine-tunes that differ only in their seed are, next to their "
        "loss spread.",
        parts,
    )
