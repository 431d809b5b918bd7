"""Per-layer profiles: one line per condition (or pair of conditions), one panel per metric."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures.collect import Profile, null_series
from figures.style import base_layout, chance_traces, condition_colours
from landscape.names import grouped


def layer_metrics(groupings: list[str]) -> list[tuple[str, str]]:
    """(metric in analysis.h5, panel title) of the landscape grid; ``groupings``: the task's
    grouping fields, then ``answer``: each gets its ARI and label-overlap panels."""
    return [
        ("id_gride", "ID (GRIDE, density scale)"),
        ("id_2nn", "ID (2NN)"),
        ("n_clusters", "ADP clusters"),
        *[(grouped("ari", g), f"ARI ~ {g}") for g in groupings],
        (grouped("ari_core", groupings[0]), f"ARI ~ {groupings[0]} (core)"),
        ("ari_demo_set", "ARI ~ demo set"),
        *[(grouped("label_overlap", g), f"label overlap: {g}") for g in groupings],
        ("core_fraction", "core fraction"),
    ]


def control_metrics(group: str) -> list[tuple[str, str]]:
    """The demo-sampling controls' panels, about the first grouping field ``group``."""
    return [
        (grouped("ari", group), f"ARI ~ {group}"),
        ("ari_demo_set", "ARI ~ demo set (which demos precede)"),
        (grouped("label_overlap", group), f"label overlap: {group}"),
        ("n_clusters", "ADP clusters"),
    ]


PAIR_METRICS = (
    ("data_overlap", "neighbour overlap (same questions)"),
    ("ari_clusters", "ARI of the two clusterings"),
    ("cka", "linear CKA"),
    ("cka_debiased", "linear CKA, debiased"),
    ("mutual_knn", "mutual kNN (Huh et al.)"),
    ("mutual_knn_euclidean", "mutual kNN (Euclidean neighbours)"),
    ("cknna", "CKNNA"),
    ("imbalance_a_to_b", "info imbalance a -> b"),
    ("imbalance_b_to_a", "info imbalance b -> a"),
)


def _grid(series: dict[str, Profile], metrics, colours: dict[str, str], title: str, cols: int) -> go.Figure:
    metrics = [(m, t) for m, t in metrics if any(m in profile for profile in series.values())]
    rows = -(-len(metrics) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[t for _, t in metrics],
        horizontal_spacing=0.07,
        vertical_spacing=0.12 if rows > 1 else 0.2,
    )
    chance_shown = False
    for i, (metric, label) in enumerate(metrics):
        row, col = divmod(i, cols)
        for name, profile in series.items():
            if metric not in profile:
                continue
            chance_shown |= add_chance(
                fig, profile, metric, name, label, colours[name], row=row + 1, col=col + 1, legend=not chance_shown
            )
            layers, values = profile[metric]
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=values,
                    mode="lines+markers",
                    name=name,
                    legendgroup=name,
                    showlegend=i == 0,
                    line=dict(color=colours[name], width=2),
                    marker=dict(size=4),
                    hovertemplate=f"{name}<br>layer %{{x}}<br>{label}: %{{y:.3f}}<extra></extra>",
                ),
                row=row + 1,
                col=col + 1,
            )
        fig.update_xaxes(title_text="layer" if row == rows - 1 else None, row=row + 1, col=col + 1)
    return base_layout(fig, title, height=300 * rows + 80)


def add_chance(
    fig: go.Figure,
    profile: Profile,
    metric: str,
    name: str,
    label: str,
    colour: str,
    *,
    row: int,
    col: int,
    legend: bool,
) -> bool:
    """Draw ``metric``'s permutation null (band and dotted mean, ``figures.style.chance_traces``)
    under ``name``'s line when the analysis drew one; whether it did."""
    found = null_series(profile, metric)
    if found is None:
        return False
    for trace in chance_traces(*found, colour, name=name, label=label, legend=legend):
        fig.add_trace(trace, row=row, col=col)
    return True


def layer_profiles(profiles: dict[str, Profile], groupings: list[str], *, split: str = "eval") -> go.Figure:
    """``profiles``: condition -> its per-layer metrics; ``groupings``: the fields analysed."""
    colours = condition_colours(list(profiles))
    return _grid(profiles, layer_metrics(groupings), colours, f"Landscape across layers ({split} questions)", cols=3)


def control_profiles(profiles: dict[str, Profile], group: str, *, split: str = "eval") -> go.Figure:
    """Demo-sampling controls beside the fixed-demo condition: how much of the first grouping's
    structure survives."""
    colours = condition_colours(list(profiles))
    return _grid(
        profiles,
        control_metrics(group),
        colours,
        f"{group.capitalize()} or shared prefix? Fixed demos vs the controls ({split})",
        cols=2,
    )


def answer_profiles(profiles: dict[str, Profile], *, split: str = "eval") -> go.Figure:
    """The answer's ARI and label overlap across layers, one line per condition (the control's readout)."""
    colours = condition_colours(list(profiles))
    metrics = [
        (grouped("ari", "answer"), "ARI ~ answer"),
        (grouped("label_overlap", "answer"), "label overlap: answer"),
        ("n_clusters", "ADP clusters"),
    ]
    return _grid(profiles, metrics, colours, f"Is the answer in the landscape? ({split})", cols=3)


def pair_profiles(pairs: dict[str, Profile], *, split: str = "eval") -> go.Figure:
    """``pairs``: 'a~b' -> per-layer overlap between conditions a and b."""
    colours = condition_colours(list(pairs))
    return _grid(pairs, PAIR_METRICS, colours, f"How much two conditions agree, layer by layer ({split})", cols=2)


def gride_curves(curves: dict[str, dict[int, dict[str, np.ndarray]]], layer: int) -> go.Figure:
    """Multiscale ID of every condition at ``layer``: ``curves[condition][layer]`` has gride_scales/ids/errors."""
    colours = condition_colours(list(curves))
    fig = go.Figure()
    for name, by_layer in curves.items():
        if layer not in by_layer:
            continue
        arrays = by_layer[layer]
        fig.add_trace(
            go.Scatter(
                x=arrays["gride_scales"],
                y=arrays["gride_ids"],
                name=name,
                mode="lines+markers",
                line=dict(color=colours[name]),
                error_y=dict(type="data", array=arrays["gride_errors"], visible=True),
                hovertemplate=f"{name}<br>scale %{{x}} neighbours<br>ID %{{y:.2f}}<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", title_text="scale (rank of the neighbour, GRIDE)")
    fig.update_yaxes(title_text="intrinsic dimension")
    return base_layout(fig, f"Intrinsic dimension across scales, layer {layer}", height=420)
