"""``landscape report RUN``: RUN/report/index.html, one offline page, and every figure on its own.

    RUN/report/index.html          plotly.js inlined once; opens from disk with no network
    RUN/report/figures/<name>.html each figure alone (plotly.min.js beside them)
    RUN/report/figures/<name>.png  the same, where kaleido finds a Chromium

The folder is written beside and renamed into place, so a failed report leaves the old one whole.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.offline
from tqdm import tqdm

from analyses.complexity import BITS_PER_PARAMETER
from figures import complexity as complexity_figures
from figures import control
from figures import edl as edl_figures
from figures import maps, profiles, readouts, similarity, tree
from figures.collect import RunData, collect, layer_arrays, layer_similarity, question_texts, trees
from figures.page import Section, figure_div, map_div, render_page, switcher_div, table
from landscape import names, store
from landscape.atomic import replace_atomically
from landscape.stats import mean_interval


@dataclass(frozen=True)
class ReportConfig:
    map_method: str = "umap"  # umap | pca (umap falls back to pca when it is not installed)
    map_layers: tuple[int, ...] = ()  # () = 8 layers spread over the depth
    map_neighbors: int = 15
    seed: int = 0
    png: str = "auto"  # auto (when kaleido finds a browser) | yes | no
    task_data: str | None = None  # the task's data file (question texts), when not where the run found it

    def validate(self) -> None:
        if self.map_method not in ("umap", "pca"):
            raise ValueError(f"unknown map method {self.map_method!r}: use umap or pca")
        if self.png not in ("auto", "yes", "no"):
            raise ValueError(f"png must be auto, yes or no, got {self.png!r}")
        if self.map_neighbors < 2:
            raise ValueError(f"map_neighbors must be >= 2, got {self.map_neighbors}")


@dataclass
class Report:
    index: Path
    figures: list[Path]
    pngs: list[Path]
    png_note: str


def run_report(run: Path, config: ReportConfig = ReportConfig(), *, progress: bool = True) -> Report:
    config.validate()
    run = Path(run)
    data = collect(run)
    method = config.map_method if config.map_method == "pca" or maps.umap_available() else "pca"
    conditions = data.analysed("eval")
    layers = {c: data.profiles[("eval", c)]["n_distinct"][0].tolist() for c in conditions}

    static: dict[str, object] = {}  # name -> figure drawn statically and saved alone (each builder adds its own)
    sections = [_profiles_section(data, run, conditions, layers, static),
                _readouts_section(data, conditions, static),
                _controls_section(data, conditions, static),
                _tree_section(data, run, conditions, layers, static)]
    map_section, spec = _map_section(data, run, conditions, layers, config, method, static, progress)
    sections += [map_section, _edl_section(data, static), _complexity_section(data, static)]
    sections.insert(0, _control_section(data, conditions, static))
    sections = [section for section in sections if section is not None]

    header = _header(data)
    title = f"landscape: {data.info.get('model', '?')} on {data.info.get('task', '?')} ({run.name})"
    page = render_page(title, header, sections)
    out = run / store.REPORT_DIR

    written: list[Path] = []
    pngs: list[Path] = []
    png_note = ""

    def write(tmp: Path) -> None:
        nonlocal png_note
        figures_dir = tmp / "figures"
        figures_dir.mkdir(parents=True)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        (figures_dir / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
        for name, fig in static.items():
            fig.write_html(figures_dir / f"{name}.html", include_plotlyjs="plotly.min.js", config={"displaylogo": False})
            written.append(out / "figures" / f"{name}.html")
        for name, fragment in (("map_explorer", map_div("map", spec)),):
            (figures_dir / f"{name}.html").write_text(
                render_page(title, "", [Section("map", "Map of one layer", "", [fragment])], plotlyjs="plotly.min.js"),
                encoding="utf-8")
            written.append(out / "figures" / f"{name}.html")
        if config.png != "no":
            done, png_note = _write_pngs(static, figures_dir, required=config.png == "yes")
            pngs.extend(out / "figures" / p.name for p in done)

    replace_atomically(out, write)
    return Report(index=out / "index.html", figures=written, pngs=pngs, png_note=png_note)


def _all_layers(layers: dict[str, list[int]]) -> list[int]:
    return sorted({layer for ls in layers.values() for layer in ls})


def _default_condition(conditions: list[str]) -> str:
    return next((c for c in conditions if c != names.ZERO_SHOT), conditions[0])


def _profiles_section(data: RunData, run: Path, conditions: list[str], layers: dict, static: dict) -> Section:
    static["profiles"] = profiles.layer_profiles({c: data.profiles[("eval", c)] for c in conditions}, data.groupings)
    parts = [figure_div(static["profiles"], "profiles")]
    pairs = data.pairs("eval")
    if pairs:
        static["pairs"] = profiles.pair_profiles({p: data.profiles[("eval", p)] for p in pairs})
        parts.append(figure_div(static["pairs"], "pairs"))
    estimated = {c: data.profiles[("eval", c)] for c in conditions if similarity.has_estimators(data.profiles[("eval", c)])}
    if estimated:
        static["id_estimators"] = similarity.id_estimator_profiles(estimated)
        parts.append(figure_div(static["id_estimators"], "id_estimators"))
    matrices = {c: m for c, m in layer_similarity(run).items() if c in conditions}
    if matrices:
        static["layer_similarity"] = similarity.layer_similarity_heatmaps(matrices)
        parts.append(figure_div(static["layer_similarity"], "layer_similarity"))
    all_layers = _all_layers(layers)
    curves = {c: layer_arrays(run, c, layers[c], ("gride_scales", "gride_ids", "gride_errors")) for c in conditions}
    gride_figs = {str(layer): profiles.gride_curves(curves, layer) for layer in all_layers}
    default_layer = str(all_layers[-1])
    static["gride_curves"] = gride_figs[default_layer]
    parts.append("<details><summary>Intrinsic dimension across scales (GRIDE), per layer</summary>"
                 + switcher_div("gride_curves", [_range("layer", "layer", all_layers)], gride_figs, default_layer)
                 + "</details>")
    return Section("profiles", "Profiles across layers",
                   "One line per condition; hover for values, click a legend entry to hide a condition. "
                   f"Recipe {data.analysis_settings.get('recipe', 'suite')}, "
                   f"{data.analysis_settings.get('states', 'residual')} states. "
                   "Clusters: Advanced Density Peaks (DADApy) at Z = "
                   f"{data.analysis_settings.get('Z')}; label overlap: share of each point's k_i nearest "
                   "neighbours with its label. The panels below compare conditions on the same questions (CKA, "
                   "mutual kNN, CKNNA, information imbalance: landscape.similarity), give the intrinsic dimension "
                   "by six estimators, and compare each condition's layers with each other (pick the measure in the "
                   "heatmaps' menu).", parts)


def _readouts_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
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
        "readouts", "What can be read from each layer",
        "Left: accuracy on the eval questions of a linear probe (logistic regression on standardised states, "
        f"regularisation chosen by 3-fold cross-validation on the {'train' if fit == 'train' else 'other half of the eval'} "
        "rows), of the logit lens (the model's final norm and head applied to the layer: answer only), of a probe "
        "fit on shuffled labels (control) and of the majority label. Right: the ARI of the ADP clusters with the "
        "same field. A field a probe reads where the clusters do not is present, linearly, without forming "
        "density peaks.", parts)


def _controls_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
    """The demo-sampling controls (extract --demos) beside the fixed-demo conditions they control."""
    sampling = {c: data.info["conditions"][c].get("demo_sampling", "fixed") for c in conditions
                if data.info["conditions"][c].get("kind") == "icl"}
    controls = [c for c in sampling if sampling[c] != "fixed" or any(o.startswith(f"{c}-") for o in conditions)]
    if not any(sampling[c] != "fixed" for c in controls):
        return None
    group = data.first_group
    static["controls"] = profiles.control_profiles({c: data.profiles[("eval", c)] for c in controls}, group)
    return Section(
        "controls", f"{group.capitalize()} or shared prefix?",
        f"With fixed demos every question of a {group} shares its prompt prefix. Controls: "
        f"<b>-resampled</b> (each question draws its own demos from its {group}'s pool), "
        f"<b>-othersubject</b> (demos of another {group}, drawn per question; the header is still the "
        f"question's own), <b>-noheader</b> (no header line). {group.capitalize()} structure that survives "
        "resampling is not prefix identity; ARI with the demo set measures the prefix's own pull.",
        [figure_div(static["controls"], "controls")])


def _tree_section(data: RunData, run: Path, conditions: list[str], layers: dict, static: dict) -> Section:
    min_size = int(data.analysis_settings.get("tree_min_size", 30))
    labels = data.examples.first_group[data.eval_rows]
    figures = {}
    for c in conditions:
        by_layer = trees(run, c, layers[c], labels)
        for layer in layers[c]:
            figures[f"{c}|{layer}"] = tree.dendrogram_figure(by_layer.get(layer), c, layer, min_size=min_size)
    default_condition = _default_condition(conditions)
    default = f"{default_condition}|{layers[default_condition][-1]}"
    static["dendrogram"] = figures[default]
    controls = [_select("condition", "condition", conditions, default_condition),
                _range("layer", "layer", _all_layers(layers))]
    return Section("tree", "Density-peak dendrogram",
                   f"Clusters with more than {min_size} points, joined at the saddle between their "
                   f"peaks; each leaf is named by its most frequent {data.first_group}. Pick a condition and a layer.",
                   [switcher_div("dendrogram", controls, figures, default)])


def _map_section(data: RunData, run: Path, conditions: list[str], layers: dict, config: ReportConfig, method: str,
                 static: dict, progress: bool) -> tuple[Section, dict]:
    map_layers = _map_layers(config, _all_layers(layers))
    keys = [(c, layer) for c in conditions for layer in map_layers if layer in layers[c]]
    bar = tqdm(total=len(keys), desc=f"maps ({method})", unit="layer", disable=not progress)
    xy = maps.layer_maps(run, keys, data.eval_rows, method=method, seed=config.seed,
                         n_neighbors=config.map_neighbors, states=data.analysis_settings.get("states", "residual"), progress=bar)
    bar.close()
    spec, static["map"] = _map_spec(data, run, conditions, map_layers, xy, _default_condition(conditions),
                                    question_texts(data, config.task_data), method)
    return Section("map", "Map of one layer",
                   f"{method.upper()} of the eval questions' representations (seed {config.seed}), one "
                   f"layer at a time; hover shows the question. Colour by {', '.join(data.examples.group_names)}, answer, ADP cluster, "
                   "correctness or the bits the fine-tune saved on that question.", [map_div("map", spec)]), spec


def _edl_section(data: RunData, static: dict) -> Section | None:
    if not data.edl:
        return None
    static["code_length"] = edl_figures.code_length_curves(data.edl)
    static["edl_distribution"] = edl_figures.edl_distribution(data.edl)
    parts = [_edl_table(data), figure_div(static["code_length"], "code_length"),
             figure_div(static["edl_distribution"], "edl_distribution")]
    targets = {t: data.profiles[(split, names.correlation_key(t))] for split in ("train", "eval")
               for t in data.correlation_targets(split)}
    if targets:
        static["edl_correlations"] = edl_figures.correlation_profiles(targets)
        parts.append(figure_div(static["edl_correlations"], "edl_correlations"))
    return Section("edl", "Excess description length",
                   "Prequential (online) code of the training labels while fine-tuning vs the final model's "
                   "code of held-out rows: EDL = online bits - n x held-out mean bits (the training-row variant "
                   "beside it). The format-only learner recalibrates the frozen base model (a bias per choice and a "
                   "temperature) on the same labels and batches; the gain beyond format is what the fine-tune knows "
                   "of new labels that a recalibration does not. Brackets: 95 % bootstrap intervals over examples. "
                   "Control: random labels.", parts)


def _control_section(data: RunData, conditions: list[str], static: dict) -> Section | None:
    """For a positive-control task (task file ``control: true``): could the suite see an effect?"""
    if not data.is_control:
        return None
    rows = data.eval_rows
    answers = data.examples.answers[rows]
    accuracy_rows = []
    for c in conditions:
        correct = (data.predictions[c][rows] == answers).astype(float)
        interval = mean_interval(correct)
        accuracy_rows.append([c, data.info["conditions"][c].get("kind", ""), f"{interval.value:.3f} [{interval.low:.3f}, {interval.high:.3f}]"])
    static["control_answer"] = profiles.answer_profiles({c: data.profiles[("eval", c)] for c in conditions})
    parts = [table(accuracy_rows, ["condition", "kind", "accuracy on held-out (eval) rows, 95 % CI"]),
             figure_div(static["control_answer"], "control_answer")]
    if data.edl:
        static["control_edl"] = control.edl_bars({n: a for n, (_, a) in data.edl.items()})
        parts.append(figure_div(static["control_edl"], "control_edl"))
    return Section("control", "Does the suite detect a real effect?",
                   f"{html.escape(data.info.get('task', ''))} is a positive control: its truth is planted and learnable. "
                   "A fine-tune that learnt it answers held-out questions far above 0-shot and k-shot, its late layers "
                   "cluster by answer, its held-out EDL is far above the random-label control's, and its gain beyond "
                   "format is above zero while the random-label control's interval reaches zero.", parts)


def _complexity_section(data: RunData, static: dict) -> Section | None:
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
    return Section("complexity", "Task complexity and non-identifiability",
                   "Upper bounds on the description length that reaches each accuracy (ICL demos coded by the "
                   f"model, LoRA weights at {bits:g} bits each, the prequential code of the training labels), and "
                   "how far apart the landscapes of fine-tunes that differ only in their seed are, next to their "
                   "loss spread.", parts)


def _range(name: str, label: str, options: list) -> dict:
    return {"name": name, "label": label, "type": "range", "options": [str(o) for o in options],
            "initial": len(options) - 1}


def _select(name: str, label: str, options: list, initial, labels: list[str] | None = None) -> dict:
    control = {"name": name, "label": label, "type": "select", "options": [str(o) for o in options],
               "initial": [str(o) for o in options].index(str(initial))}
    if labels:
        control["labels"] = labels
    return control


def _map_layers(config: ReportConfig, layers: list[int]) -> list[int]:
    if config.map_layers:
        missing = [layer for layer in config.map_layers if layer not in layers]
        if missing:
            raise ValueError(f"map layer {missing[0]} was not analysed (analysed: {layers[0]}..{layers[-1]})")
        return sorted(set(config.map_layers))
    inner = [layer for layer in layers if layer > 0] or layers
    picks = np.unique(np.round(np.linspace(0, len(inner) - 1, min(8, len(inner)))).astype(int))
    return [inner[i] for i in picks]


def _map_spec(data: RunData, run: Path, conditions: list[str], map_layers: list[int], xy: dict,
              default_condition: str, texts: list[str] | None, method: str):
    """The map widget's data, and the static figure of its first view (for the PNG and figures/)."""
    import plotly.graph_objects as go

    rows = data.eval_rows
    ex = data.examples
    letters = np.array(data.choice_labels)
    markers: dict[str, dict] = {
        f"group:{g}": maps.marker(maps.Colouring.categories(g, values[rows], sorted(set(values[rows]))))
        for g, values in ex.groups.items()
    }
    markers["answer"] = maps.marker(maps.Colouring.categories("answer", letters[ex.answers[rows]], list(letters)))
    first = f"group:{data.first_group}"
    markers["cluster"] = {"by": "layer", "values": {}}
    for c in conditions:
        stored = layer_arrays(run, c, map_layers, ("cluster",))
        for layer, arrays in stored.items():
            clusters = arrays["cluster"]
            cluster_names = [str(i) for i in range(int(clusters.max()) + 1)]
            markers["cluster"]["values"][f"{c}|{layer}"] = maps.marker(
                maps.Colouring(f"ADP cluster ({len(cluster_names)})", clusters, tuple(cluster_names)))
    markers["correct"] = {"by": "condition", "values": {
        c: maps.marker(maps.Colouring.categories("answered", np.where(data.predictions[c][rows] == ex.answers[rows], "right", "wrong"), ["wrong", "right"]))
        for c in conditions}}
    for name, (arrays, _) in data.edl.items():
        gain = np.full(len(ex.ids), np.nan)
        gain[arrays["eval_rows"]] = arrays["eval_gain_bits"]
        markers[f"gain:{name}"] = maps.marker(maps.Colouring(f"bits saved by {name}", gain[rows]))
    # Layers missing for a condition (or skipped) fall back to an empty cluster colouring.
    for key in xy:
        markers["cluster"]["values"].setdefault(f"{key[0]}|{key[1]}", markers[first])
    hover = [
        f"<b>{html.escape(ex.first_group[r])}</b> · id {ex.ids[r]} · answer {letters[ex.answers[r]]}"
        + (f"<br>{html.escape(texts[r])}" if texts else "")
        for r in rows
    ]
    colour_names = list(markers)
    colour_labels = [{"answer": "correct answer", "cluster": "ADP cluster of this layer", "correct": "answered right/wrong"}
                     .get(n, n.replace("gain:", "bits saved by ").replace("group:", "")) for n in colour_names]
    controls = [_select("condition", "condition", conditions, default_condition),
                _range("layer", "layer", map_layers),
                _select("colour", "colour", colour_names, first, labels=colour_labels)]
    trace = {"type": "scattergl" if len(rows) > 5000 else "scatter", "mode": "markers", "text": hover,
             "hovertemplate": "%{text}<extra></extra>", "showlegend": False}
    layout = {"template": "plotly_white", "height": 650, "margin": {"l": 40, "r": 20, "t": 60, "b": 40},
              "xaxis": {"showticklabels": False, "zeroline": False, "title": {"text": f"{method} 1"}},
              "yaxis": {"showticklabels": False, "zeroline": False, "title": {"text": f"{method} 2"}}, "hovermode": "closest"}
    spec = {
        "controls": controls, "markers": markers, "trace": trace, "layout": layout,
        "title": f"{method.upper()} of layer {{layer}}, {{condition}}",
        "xy": {f"{c}|{layer}": np.round(points.T, 3).tolist() for (c, layer), points in xy.items()},
    }
    view = (default_condition, map_layers[-1])
    static = go.Figure(go.Scatter(x=xy[view][:, 0], y=xy[view][:, 1], mode="markers", text=hover,
                                  hovertemplate="%{text}<extra></extra>", marker=markers[first]))
    static.update_layout(**layout, title=f"{method.upper()} of layer {view[1]}, {view[0]}: coloured by {data.first_group}")
    return spec, static


def _interval(attrs: dict, name: str, digits: int = 1) -> str:
    """'value [low, high]' of a total stored with its bootstrap interval."""
    if name not in attrs:
        return "–"
    return f"{attrs[name]:.{digits}f} [{attrs.get(name + '_low', np.nan):.{digits}f}, {attrs.get(name + '_high', np.nan):.{digits}f}]"


def _edl_table(data: RunData) -> str:
    rows = []
    for name, (_, attrs) in data.edl.items():
        rows.append([name, attrs.get("labels", "?"), int(attrs["n_train"]), _interval(attrs, "edl_heldout_bits"),
                     _interval(attrs, "edl_train_bits"), _interval(attrs, "edl_format_only_bits"),
                     _interval(attrs, "gain_beyond_format_bits"), _interval(attrs, "mdl_bits"),
                     float(attrs.get("heldout_residual_bits", np.nan)), float(attrs["base_bits"]),
                     float(attrs.get("marginal_mdl_bits", np.nan)), float(attrs["uniform_bits"]),
                     _interval(attrs, "accuracy_gain", 3)])
    return table(rows, ["fine-tune", "labels", "n", "EDL, held-out residual (95 % CI)", "EDL, training-row residual",
                        "EDL of the format-only learner", "gain beyond format (bits)", "online (MDL) bits",
                        "held-out residual bits", "base bits", "label-count code", "uniform",
                        "accuracy gain over 0-shot"])


def _header(data: RunData) -> str:
    info = data.info
    ex = data.examples
    rows = [
        ["model", f"{info.get('model')} — {info.get('model_source', '')}"],
        ["model sha256", info.get("model_hash", "")],
        ["task", f"{info.get('task')} ({info.get('task_file')}, sha256 {str(info.get('task_hash', ''))[:16]}…): "
                 f"{len(data.choice_labels)} choices, {info.get('score')} scoring"],
        ["dataset", f"{info.get('dataset')} (sha256 {str(info.get('dataset_hash', ''))[:16]}…)"],
        ["groupings", ", ".join(data.examples.group_names) + " (and the answer)"],
        [f"{data.first_group} values", f"{len(info.get('group_values', []))}: " + ", ".join(info.get("group_values", []))],
        ["examples", ", ".join(f"{s}: {int((ex.splits == s).sum())}" for s in ("eval", "train") if (ex.splits == s).any())],
        ["partition", json.dumps(info.get("partition", {}))],
        ["representation", info.get("representation", "")],
        ["created", f"{info.get('created_at', '')} by `{info.get('command', '')}`"],
    ]
    conditions = []
    for name, attrs in info["conditions"].items():
        conditions.append([name, attrs.get("kind", ""), attrs.get("shots", ""), attrs.get("demo_sampling", ""),
                           float(attrs["accuracy"]) if "accuracy" in attrs else "",
                           float(attrs["accuracy_train"]) if "accuracy_train" in attrs else "",
                           attrs.get("layers", ""), "yes" if attrs.get("complete") else "no"])
    provenance = {"versions": info.get("versions"), "analysis settings": data.analysis_settings,
                  "report": {"python": sys.version.split()[0]}}
    return (table(rows, ["run", str(data.run)])
            + table(conditions, ["condition", "kind", "shots", "demos", "accuracy (eval)", "accuracy (train)",
                                 "layers", "complete"])
            + "<details><summary>Provenance</summary><pre>"
            + html.escape(json.dumps(provenance, indent=1, default=str)) + "</pre></details>")


def _write_pngs(figures: dict, folder: Path, *, required: bool) -> tuple[list[Path], str]:
    """PNG of every static figure through kaleido (which drives a local Chromium), when it can."""
    try:
        import plotly.io as pio

        paths = [folder / f"{name}.png" for name in figures]
        # each at the height it has on the page (kaleido's default, 500 px, squeezes tall grids)
        pio.write_images(list(figures.values()), paths, scale=2, width=[1100] * len(paths),
                         height=[getattr(f.layout, "height", None) or 500 for f in figures.values()])
        return paths, ""
    except Exception as error:  # kaleido missing, or no Chromium for it to drive
        note = f"no PNGs: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if required:
            raise ValueError(note) from None
        return [], note
