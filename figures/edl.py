"""EDL figures: code length over the training stream, per-example EDL, correlations with the landscape."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures.collect import Profile
from figures.style import base_layout, condition_colours

Record = tuple[dict[str, np.ndarray], dict[str, Any]]


def code_length_curves(records: dict[str, Record]) -> go.Figure:
    """Cumulative bits over the first epoch's stream: online (prequential) vs the final and base models.

    The gap between the online curve at the end and the held-out residual (n x the final model's
    mean bits on held-out rows, the marker at the end) is the EDL; the final model's code of its
    own training rows (dashed) gives the training-row variant. Also: the format-only learner
    (bias + temperature on the base model's scores), the label-counting learner and the uniform code.
    """
    colours = condition_colours(list(records))
    fig = go.Figure()
    styles = (
        ("online_bits", "online (prequential)", "solid"),
        ("final_bits", "final model", "dash"),
        ("base_bits", "base model", "dot"),
        ("marginal_online_bits", "label counts (Laplace)", "dashdot"),
        ("format_online_bits", "format-only learner (online)", "longdash"),
    )
    for name, (arrays, attrs) in records.items():
        order = arrays["order"]
        seen = np.arange(1, len(order) + 1)
        for key, label, dash in styles:
            if key not in arrays:
                continue
            cumulative = np.cumsum(arrays[key][order])
            fig.add_trace(
                go.Scatter(
                    x=seen,
                    y=cumulative,
                    mode="lines",
                    name=f"{name}: {label}",
                    legendgroup=name,
                    line=dict(color=colours[name], dash=dash, width=2 if key == "online_bits" else 1.5),
                    hovertemplate=f"{name} {label}<br>%{{x}} examples: %{{y:.1f}} bits<extra></extra>",
                )
            )
        if "heldout_residual_bits" in attrs:
            fig.add_trace(
                go.Scatter(
                    x=[len(order)],
                    y=[attrs["heldout_residual_bits"]],
                    mode="markers",
                    name=f"{name}: held-out residual",
                    legendgroup=name,
                    marker=dict(color=colours[name], symbol="diamond", size=11),
                    hovertemplate=f"{name}: n x held-out mean bits = %{{y:.1f}}<extra></extra>",
                )
            )
    n = max(len(a["order"]) for a, _ in records.values())
    per_label = max(float(attrs["uniform_bits"]) / float(attrs["n_train"]) for _, attrs in records.values())
    fig.add_trace(
        go.Scatter(
            x=[0, n],
            y=[0, per_label * n],
            mode="lines",
            name=f"uniform ({per_label:.2f} bits/label)",
            line=dict(color="#999", dash="dot", width=1),
        )
    )
    fig.update_xaxes(title_text="training examples seen (first epoch's order)")
    fig.update_yaxes(title_text="cumulative code length (bits)")
    return base_layout(
        fig, "Prequential code vs the final model's: EDL is the gap to the held-out residual", height=480
    )


def edl_distribution(records: dict[str, Record]) -> go.Figure:
    """Histogram of per-example EDL (online - final bits), one colour per fine-tune (true vs random labels)."""
    colours = condition_colours(list(records))
    fig = go.Figure()
    for name, (arrays, attrs) in records.items():
        values = arrays["online_bits"] - arrays["final_bits"]
        fig.add_trace(
            go.Histogram(
                x=values,
                name=f"{name} ({attrs.get('labels', '?')} labels): mean {values.mean():.3f}",
                marker_color=colours[name],
                opacity=0.6,
                nbinsx=60,
                hovertemplate="EDL %{x} bits: %{y} examples<extra></extra>",
            )
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text="per-example EDL, training-row residual: online bits - final bits")
    fig.update_yaxes(title_text="examples")
    return base_layout(fig, "Per-example EDL", height=420)


def correlation_profiles(targets: dict[str, Profile]) -> go.Figure:
    """Spearman rho (bootstrap 95% CI band) of a per-example target with each landscape feature, per layer.

    Features: '0shot:<f>' in the base model, 'tuned:<f>' in the fine-tuned one, and the data overlap
    between the two.

    ``targets``: 'edl:sft' (train rows) / 'gain:sft' (eval rows) -> metrics '<feature>_{rho,low,high}'.
    """
    # Features of the tuned condition are named after it ('sft:core'); one name for all panels.
    targets = {
        name: {m.replace(f"{name.partition(':')[2]}:", "tuned:"): v for m, v in profile.items()}
        for name, profile in targets.items()
    }
    names = list(targets)
    # ~100 px between panels, whatever their number: a panel's title clears the tick labels above it
    fig = make_subplots(
        rows=len(names),
        cols=1,
        subplot_titles=[_target_title(n) for n in names],
        vertical_spacing=100 / (330 * len(names) + 80) if len(names) > 1 else 0.1,
    )
    features = sorted({m[: -len("_rho")] for p in targets.values() for m in p if m.endswith("_rho")})
    colours = condition_colours(features)
    for row, name in enumerate(names, start=1):
        profile = targets[name]
        for feature in features:
            if f"{feature}_rho" not in profile:
                continue
            layers, rho = profile[f"{feature}_rho"]
            _, low = profile[f"{feature}_low"]
            _, high = profile[f"{feature}_high"]
            colour = colours[feature]
            fig.add_trace(
                go.Scatter(
                    x=np.concatenate([layers, layers[::-1]]),
                    y=np.concatenate([high, low[::-1]]),
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.08,
                    line=dict(width=0),
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=feature,
                ),
                row=row,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=rho,
                    mode="lines+markers",
                    name=feature,
                    legendgroup=feature,
                    showlegend=row == 1,
                    line=dict(color=colour),
                    marker=dict(size=4),
                    customdata=np.stack([low, high], axis=1),
                    hovertemplate=f"{feature}<br>layer %{{x}}: rho %{{y:.3f}} [%{{customdata[0]:.3f}}, %{{customdata[1]:.3f}}]<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.add_hline(y=0, line=dict(color="#999", width=1), row=row, col=1)
        fig.update_yaxes(title_text="Spearman rho", row=row, col=1)
    fig.update_xaxes(title_text="layer", row=len(names), col=1)
    return base_layout(
        fig, "Does the landscape predict what fine-tuning writes? (95% bootstrap CI)", height=330 * len(names) + 80
    )


def _target_title(name: str) -> str:
    kind, _, condition = name.partition(":")
    if kind == "edl":
        return f"per-example EDL of {condition} (train questions)"
    if kind == "gain":
        return f"bits saved on held-out questions by {condition} (eval questions)"
    return name
