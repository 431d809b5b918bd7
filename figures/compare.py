"""``landscape compare RUN RUN ...``: several analysed runs on one offline page.

    DIR/index.html   plotly.js inlined once; opens from disk with no network
    DIR/compare.csv  every metrics row of every run, with label, model, task and relative depth
    DIR/paired.csv   where runs share their rows: per-layer differences with bootstrap intervals

The page: each run's headline (accuracies and EDL gains with intervals, claims' verdicts), the
claims run by run, profiles over relative depth (any metric x condition, one line per run), paired
differences where two runs share their rows, and what differs between the runs. A run keeps one
colour in every figure. DIR is written beside and renamed into place.
"""

from __future__ import annotations

import csv
import html
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analyses.compare import (
    COMPARE_FILE,
    COMPARE_HEADER,
    PairedDifference,
    RunSummary,
    claim_keys,
    compare_rows,
    differences,
    paired_differences,
    shared_rows,
    summarize,
)
from analyses.metrics import csv_number
from figures.collect import NULL, is_null, null_metric
from figures.page import Section, figure_div, render_page, switcher_div, table
from figures.sections import select_control
from figures.style import PALETTE, base_layout, chance_traces
from landscape import claims as cl
from landscape.atomic import replace_atomically
from landscape.names import grouped, parse_result, split_grouped

PAIRED_FILE = "paired.csv"
PAIRED_HEADER = ("a", "b", "condition", "metric", "layer", "relative_depth", "difference", "low", "high")
VERDICT_COLOURS = {cl.HOLDS: "#d8f0d8", cl.FAILS: "#f6d5d5", cl.CANNOT_TELL: "#eeeeee"}


@dataclass
class Comparison:
    index: Path
    table: Path
    paired: Path | None
    notes: list[str]  # pairs of runs without paired differences, and why


def run_compare(
    runs: list[Path],
    out: Path,
    *,
    labels: dict[str, str] | None = None,
    paired: list[tuple[str, str]] | None = None,
    n_boot: int = cl.N_BOOT,
    seed: int = 0,
) -> Comparison:
    """Write DIR (``out``): the page, compare.csv and paired.csv. ``labels`` maps a run (as given, or
    its folder's name) to its label; ``paired`` names pairs of labels that must share rows (else
    refused, nothing written); without it every pair of runs that shares rows is compared."""
    refs = _labelled(runs, labels or {}, out)
    summaries = [summarize(path, label, n_boot=n_boot, seed=seed) for label, path in refs]
    by_label = {s.label: s for s in summaries}
    notes: list[str] = []
    pairs: list[tuple[RunSummary, RunSummary]] = []
    for a, b in paired or []:
        unknown = [x for x in (a, b) if x not in by_label]
        if unknown:
            raise ValueError(f"--paired {a},{b}: no run labelled {unknown[0]} (labels: {', '.join(by_label)})")
        if reason := shared_rows(by_label[a], by_label[b]):
            raise ValueError(f"--paired {a},{b}: {reason}, so no paired differences")
        pairs.append((by_label[a], by_label[b]))
    if not paired:
        for first, second in itertools.combinations(summaries, 2):
            if reason := shared_rows(first, second):
                notes.append(reason)
            else:
                pairs.append((first, second))
    diffs = {(a.label, b.label): paired_differences(a.view, b.view, n_boot=n_boot, seed=seed) for a, b in pairs}
    colours = {s.label: PALETTE[i % len(PALETTE)] for i, s in enumerate(summaries)}
    sections = [
        headline_section(summaries, colours, n_boot=n_boot, seed=seed),
        claims_section(summaries),
        profiles_section(summaries, colours),
        paired_section(diffs, notes),
        differences_section(summaries),
    ]
    title = "landscape: " + " vs ".join(s.label for s in summaries)
    page = render_page(title, "", [s for s in sections if s is not None])

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        _write_csv(tmp / COMPARE_FILE, COMPARE_HEADER, compare_rows(summaries))
        if diffs:
            _write_csv(
                tmp / PAIRED_FILE,
                PAIRED_HEADER,
                [
                    [
                        a,
                        b,
                        d.condition,
                        d.metric,
                        d.layer,
                        csv_number(d.relative_depth),
                        csv_number(d.value),
                        csv_number(d.low),
                        csv_number(d.high),
                    ]
                    for (a, b), found in diffs.items()
                    for d in found
                ],
            )

    replace_atomically(out, write)
    return Comparison(
        index=out / "index.html", table=out / COMPARE_FILE, paired=out / PAIRED_FILE if diffs else None, notes=notes
    )


def _labelled(runs: list[Path], labels: dict[str, str], out: Path) -> list[tuple[str, Path]]:
    """(label, run) of each run; refuses in one line the same run twice, two runs with one label,
    a label for no run, an output folder that is a run or holds something else."""
    if len(runs) < 2:
        raise ValueError("compare needs two runs or more")
    labels = {str(Path(key)): label for key, label in labels.items()}  # runs/x/ and runs/x alike
    seen: dict[Path, Path] = {}
    refs = []
    for run in map(Path, runs):
        resolved = run.resolve()
        if resolved in seen:
            raise ValueError(f"{run} is given twice (as {seen[resolved]} and {run})")
        seen[resolved] = run
        refs.append((labels.get(str(run), labels.get(run.name, run.name)), run))
    unused = set(labels) - {str(r) for _, r in refs} - {r.name for _, r in refs}
    if unused:
        raise ValueError(f"--label {sorted(unused)[0]}=...: no such run among {', '.join(str(r) for _, r in refs)}")
    names = [label for label, _ in refs]
    if len(set(names)) < len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two runs are labelled {twice}: give each its own with --label RUN=LABEL")
    out = Path(out).resolve()
    if any(out == r or r in out.parents for r in seen):
        raise ValueError(f"--out {out} lies inside a run; give a folder of its own")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: give a folder")
    if out.exists() and any(out.iterdir()) and not (out / COMPARE_FILE).is_file():
        raise ValueError(f"--out {out} holds other files (not an earlier comparison): give an empty or new folder")
    return refs


def _write_csv(path: Path, header: tuple, rows: list[list]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


# ---------------------------------------------------------------- sections


def _interval(value: tuple[float, float, float] | None, digits: int = 3) -> str:
    if value is None or not np.isfinite(value[0]):
        return ""
    v, lo, hi = value
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _swatch(label: str, colour: str) -> str:
    return f'<span style="color:{colour}">&#9632;</span> {html.escape(label)}'


def _finetunes(runs: list[RunSummary]) -> list[str]:
    return list(dict.fromkeys(c for run in runs for c in run.view.edl))


def headline_section(
    runs: list[RunSummary], colours: dict[str, str], *, n_boot: int = cl.N_BOOT, seed: int = 0
) -> Section:
    """Each run in one line, and its accuracies and EDL gains with intervals as a figure."""
    conditions = list(dict.fromkeys(c for run in runs for c in run.conditions))
    finetunes = _finetunes(runs)
    header = [
        "run",
        "model",
        "task",
        "eval rows",
        "layers",
        "recipe",
        *[f"accuracy {c}" for c in conditions],
        *[h for c in finetunes for h in (f"EDL {c} (bits, held-out)", f"gain beyond format, {c} (bits/label)")],
        "claims",
    ]
    rows = []
    accuracy: dict[str, dict[str, tuple]] = {}
    for run in runs:
        counts = cl.row_counts(run.view.n_rows, n_boot, seed)  # the bootstrap --n-boot / --seed ask for
        accuracy[run.label] = {c: run.accuracy(c, counts) for c in run.conditions if c in run.view.correct}
        verdicts = [c.verdict for c in run.claims]
        rows.append(
            [
                _swatch(run.label, colours[run.label]),
                html.escape(str(run.info.get("model", ""))),
                html.escape(str(run.info.get("task", ""))),
                str(run.view.n_rows),
                str(run.n_layers),
                html.escape(str(run.settings.get("recipe", ""))),
                *[_interval(accuracy[run.label].get(c)) for c in conditions],
                *[
                    _interval(x, digits)
                    for c in finetunes
                    for x, digits in ((run.edl_total(c), 1), (run.edl_gain(c), 3))
                ],
                " · ".join(f"{verdicts.count(v)} {v}" for v in (cl.HOLDS, cl.FAILS, cl.CANNOT_TELL)),
            ]
        )
    figure = headline_figure(runs, accuracy, conditions, finetunes, colours)
    return Section(
        "runs",
        "The runs",
        "Accuracy on the eval rows with a 95 % bootstrap interval over them; each "
        "fine-tune's EDL on held-out answers and its gain beyond format per training label, with the "
        "record's intervals (docs/edl.md).",
        [_html_table(header, rows), figure_div(figure, "headline")],
    )


def headline_figure(
    runs: list[RunSummary], accuracy: dict, conditions: list[str], finetunes: list[str], colours: dict[str, str]
) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        column_widths=[0.65, 0.35],
        horizontal_spacing=0.1,
        subplot_titles=["accuracy (eval rows)", "EDL gain beyond format (bits per training label)"],
    )
    for run in runs:
        found = [(c, accuracy[run.label][c]) for c in conditions if c in accuracy[run.label]]
        _bars(fig, run.label, colours[run.label], found, col=1, legend=True)
        gains = [(c, g) for c in finetunes if (g := run.edl_gain(c)) is not None]
        _bars(fig, run.label, colours[run.label], gains, col=2, legend=False)
    fig.update_layout(barmode="group")
    return base_layout(fig, "Accuracy and what fine-tuning taught, run by run", height=420)


def _bars(fig: go.Figure, label: str, colour: str, values: list[tuple[str, tuple]], *, col: int, legend: bool) -> None:
    if not values:
        return
    names = [c for c, _ in values]
    v = np.array([x[0] for _, x in values])
    lo, hi = np.array([x[1] for _, x in values]), np.array([x[2] for _, x in values])
    fig.add_trace(
        go.Bar(
            x=names,
            y=v,
            name=label,
            legendgroup=label,
            showlegend=legend,
            marker_color=colour,
            error_y=dict(type="data", symmetric=False, array=hi - v, arrayminus=v - lo),
            hovertemplate=f"{label}<br>%{{x}}: %{{y:.3f}}<extra></extra>",
        ),
        row=1,
        col=col,
    )


def claims_section(runs: list[RunSummary]) -> Section:
    """Each claim's verdict and statistic, one column per run (docs/replication.md)."""
    keys = claim_keys(runs)
    by_run = {run.label: {c.key: c for c in run.claims} for run in runs}
    rows = []
    for key in keys:
        cells = [f"<td>{html.escape(key)}</td>"]
        for run in runs:
            claim = by_run[run.label].get(key)
            if claim is None:
                cells.append("<td></td>")
                continue
            number = _interval((claim.value, claim.low, claim.high)) if np.isfinite(claim.value) else ""
            title = html.escape(claim.note or claim.statement, quote=True)
            cells.append(
                f'<td style="background:{VERDICT_COLOURS.get(claim.verdict, "#fff")}" title="{title}">'
                f"<b>{html.escape(claim.verdict)}</b> {number}</td>"
            )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = "<tr><th>claim</th>" + "".join(f"<th>{html.escape(run.label)}</th>" for run in runs) + "</tr>"
    return Section(
        "claims",
        "The paper's claims, run by run",
        "Verdict, statistic and 95 % interval of each claim on each run (the rule and thresholds: "
        "docs/replication.md); hover a cell for its note.",
        [f"<table>{head}{''.join(rows)}</table>"],
    )


def profile_series(runs: list[RunSummary], split: str = "eval") -> dict[tuple[str, str], dict[str, tuple]]:
    """(metric[grouping], condition) -> run label -> (relative depth, layer, value, low, high) arrays.
    Layer x layer similarity rows (grouping ``layer:<n>``) are left to each run's report."""
    out: dict[tuple[str, str], dict[str, list]] = {}
    for run in runs:
        for s, condition, layer, metric, grouping, value, low, high in run.rows:
            if s != split or grouping.startswith("layer:"):
                continue
            key = (grouped(metric, grouping) if grouping else metric, condition)
            out.setdefault(key, {}).setdefault(run.label, []).append(
                (run.relative_depth(layer), layer, value, low, high)
            )
    return {
        key: {
            label: tuple(np.array(col) for col in zip(*sorted(points), strict=True)) for label, points in by_run.items()
        }
        for key, by_run in out.items()
    }


def profile_figure(
    metric: str, condition: str, series: dict[str, tuple], colours: dict[str, str], null: dict[str, tuple] | None = None
) -> go.Figure:
    """``series``: run label -> (relative depth, layer, value, low, high) of ``metric`` (``profile_series``);
    ``null``: the same of its permutation null ('<metric>_null': mean, 2.5 and 97.5 percentiles of
    the draws), drawn per run as a light band with a dotted mean where a run has one."""
    fig = go.Figure()
    chance_shown = False
    for label, (depth, layer, value, low, high) in series.items():
        colour = colours[label]
        if null and label in null:
            n_depth, n_layer, n_mean, n_low, n_high = null[label]
            for trace in chance_traces(
                n_depth,
                n_mean,
                n_low,
                n_high,
                colour,
                name=label,
                label=metric,
                legend=not chance_shown,
                customdata=n_layer,
                where="layer %{customdata[2]} (depth %{x:.2f})",
            ):
                fig.add_trace(trace)
            chance_shown = True
        if np.isfinite(low).any():
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([depth, depth[::-1]]),
                    y=np.concatenate([high, low[::-1]]),
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.18,
                    line=dict(width=0),
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=label,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=depth,
                y=value,
                customdata=layer,
                mode="lines+markers",
                name=label,
                legendgroup=label,
                line=dict(color=colour, width=2),
                marker=dict(size=4),
                hovertemplate=f"{label}<br>layer %{{customdata}} (depth %{{x:.2f}})<br>"
                f"{metric}: %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="relative depth (layer / last layer)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text=metric)
    return _light(fig, f"{metric} of {condition}, by relative depth")


def profile_figures(series: dict[tuple[str, str], dict[str, tuple]], colours: dict[str, str]) -> dict[str, go.Figure]:
    """'metric|condition' -> its ``profile_figure``, each measure with its permutation null where a run
    has one; a null whose measure is among the series is drawn with it, not as a metric of its own."""
    figures = {}
    for (metric, condition), by_run in series.items():
        if is_null(metric) and _null_of(metric) in {m for m, c in series if c == condition}:
            continue
        figures[f"{metric}|{condition}"] = profile_figure(
            metric, condition, by_run, colours, series.get((null_metric(metric), condition))
        )
    return figures


def _null_of(metric: str) -> str:
    """The measure a null belongs to: ``ari_null[subject]`` -> ``ari[subject]``."""
    base, grouping = split_grouped(metric)
    base = base[: base.rindex(NULL)]
    return grouped(base, grouping) if grouping else base


def _light(fig: go.Figure, title: str, height: int = 440) -> go.Figure:
    """The page's look without plotly's template (which each of hundreds of stored figures would repeat)."""
    fig.update_layout(
        title=title,
        height=height,
        margin=dict(l=60, r=20, t=60, b=50),
        hovermode="closest",
        plot_bgcolor="white",
        paper_bgcolor="white",
    )
    fig.update_xaxes(gridcolor="#eee", zerolinecolor="#ccc")
    fig.update_yaxes(gridcolor="#eee", zerolinecolor="#ccc")
    return fig


def _default(options: list[str], preferred: tuple[str, ...]) -> str:
    return next((p for p in preferred if p in options), options[0])


def profiles_section(runs: list[RunSummary], colours: dict[str, str]) -> Section:
    """Any metric x condition over relative depth, one line per run (a band where the metric has an interval)."""
    series = profile_series(runs)
    figures = profile_figures(series, colours)
    metrics = sorted({key.partition("|")[0] for key in figures})
    conditions = list(dict.fromkeys(c for _, c in sorted(series, key=lambda k: _condition_order(k[1]))))
    first_group = runs[0].view.grouping
    metric = _default(metrics, (grouped("ari", first_group), "id_gride", metrics[0]))
    condition = _default([c for c in conditions if f"{metric}|{c}" in figures], ("5shot", "0shot"))
    fallback = "none"
    figures[fallback] = _light(go.Figure(), "no run has this metric for this condition")
    controls = [
        select_control("metric", "metric", metrics, metric),
        select_control("condition", "condition", conditions, condition),
    ]
    return Section(
        "profiles",
        "Profiles over relative depth",
        "Pick a metric and a condition (or a pair a~b, or a correlation): one line per run over relative "
        "depth, so models of different depths line up; a shaded band is the metric's 95 % interval; a "
        "lighter band with a dotted line is its chance level (the permutation null: its draws' mean and "
        "95 % range), where the run's analysis drew one. Every number is in compare.csv.",
        [switcher_div("profiles", controls, figures, f"{metric}|{condition}")],
    )


def _condition_order(name: str) -> tuple[int, str]:
    kind = parse_result(name)[0]
    return ({"condition": 0, "pair": 1}.get(kind, 2), name)


def paired_figure(diffs: list[PairedDifference], a: str, b: str, condition: str, metric: str) -> go.Figure:
    found = sorted((d for d in diffs if d.condition == condition and d.metric == metric), key=lambda d: d.layer)
    depth = np.array([d.relative_depth for d in found])
    value, low, high = (np.array([getattr(d, k) for d in found]) for k in ("value", "low", "high"))
    fig = go.Figure(
        [
            go.Scatter(
                x=np.concatenate([depth, depth[::-1]]),
                y=np.concatenate([high, low[::-1]]),
                fill="toself",
                fillcolor="#1f77b4",
                opacity=0.2,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            ),
            go.Scatter(
                x=depth,
                y=value,
                customdata=np.stack([[d.layer for d in found], low, high], axis=-1),
                mode="lines+markers",
                name=f"{a} − {b}",
                line=dict(color="#1f77b4", width=2),
                hovertemplate="layer %{customdata[0]}<br>difference %{y:.3f} [%{customdata[1]:.3f}, "
                "%{customdata[2]:.3f}]<extra></extra>",
            ),
        ]
    )
    fig.add_hline(y=0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title_text="relative depth (layer / last layer)", range=[-0.02, 1.02])
    fig.update_yaxes(title_text=f"{metric}: {a} − {b}")
    return _light(fig, f"{metric} of {condition}: {a} − {b}, paired over the shared rows (95 % bootstrap band)")


def paired_section(diffs: dict[tuple[str, str], list[PairedDifference]], notes: list[str]) -> Section | None:
    """Per-layer differences of two runs that share their rows, each with its bootstrap band."""
    if not diffs and not notes:
        return None
    parts = []
    caption = (
        "Where two runs hold the same questions in the same order (two seeds, two recipes, two storage "
        "dtypes on one extraction), each condition's ARI with the subject and the answer, layer by layer, "
        "as the first run minus the second, with a 95 % interval from one bootstrap of the shared rows "
        "(paired: the same draws for both). Every number is in paired.csv."
    )
    if diffs:
        figures = {}
        for (a, b), found in diffs.items():
            for condition, metric in dict.fromkeys((d.condition, d.metric) for d in found if d.layer >= 0):
                figures[f"{a} − {b}|{condition}|{metric}"] = paired_figure(found, a, b, condition, metric)
        if figures:
            default = next(iter(figures))
            pair, condition, metric = default.split("|")
            keys = [k.split("|") for k in figures]
            figures["none"] = _light(go.Figure(), "these runs share no analysed layer of this condition")
            controls = [
                select_control("pair", "runs", list(dict.fromkeys(k[0] for k in keys)), pair),
                select_control("condition", "condition", list(dict.fromkeys(k[1] for k in keys)), condition),
                select_control("metric", "metric", list(dict.fromkeys(k[2] for k in keys)), metric),
            ]
            parts.append(switcher_div("paired", controls, figures, default))
        rows = [
            [f"{a} − {b}", d.condition, d.value, d.low, d.high]
            for (a, b), found in diffs.items()
            for d in found
            if d.metric == "accuracy"
        ]
        parts.append(table(rows, ["runs", "condition", "accuracy difference", "low", "high"]))
    if notes:
        parts.append("<p>No paired differences for: " + "; ".join(html.escape(n) for n in notes) + ".</p>")
    return Section("paired", "Paired differences on shared rows", caption, parts)


def differences_section(runs: list[RunSummary]) -> Section:
    """What the runs were made of: what differs first, what they share folded away."""
    differ, same = differences(runs)
    rows = [[name, *values] for name, values in differ]
    parts = [
        table(rows, ["what differs", *[run.label for run in runs]]) if rows else "<p>Nothing differs.</p>",
        "<details><summary>The same in every run</summary>"
        + table([[n, v] for n, v in same], ["what", "value"])
        + "</details>",
    ]
    return Section(
        "differs",
        "What differs between the runs",
        "Model and its sha256, task and data hashes, partition, analysis and fine-tune settings, package "
        "versions (from each run's hidden.h5 and analysis.h5).",
        parts,
    )


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are already HTML (escaped where they hold text)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
