"""Task complexity (accuracy vs description bits, per strategy) and seed-to-seed landscape spread."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from figures.collect import Profile
from figures.style import PALETTE, base_layout

STRATEGY_NAMES = {
    "icl": "ICL: demonstrations' code",
    "lora": "LoRA: parameters x bits",
    "data": "data: prequential code",
}


def complexity_figure(arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> go.Figure:
    """Accuracy against log bits, one colour per strategy; the Pareto front, baseline and target.

    Zero bits (0-shot) cannot sit on a log axis: it is drawn at 1 bit and says so on hover."""
    fig = go.Figure()
    bits = np.maximum(arrays["bits"], 1.0)
    for i, strategy in enumerate(("icl", "lora", "data")):
        mask = arrays["strategy"] == strategy
        if not mask.any():
            continue
        fig.add_trace(
            go.Scatter(
                x=bits[mask],
                y=arrays["accuracy"][mask],
                mode="markers",
                name=STRATEGY_NAMES[strategy],
                marker=dict(size=10, color=PALETTE[i]),
                text=arrays["label"][mask],
                customdata=arrays["bits"][mask],
                hovertemplate="%{text}<br>%{customdata:.4g} bits<br>accuracy %{y:.3f}<extra></extra>",
            )
        )
    front = np.flatnonzero(arrays["on_front"])
    front = front[np.argsort(bits[front])]
    if len(front):
        xs = np.repeat(bits[front], 2)[1:]
        ys = np.repeat(arrays["accuracy"][front], 2)[:-1]
        xs = np.append(xs, bits.max() * 3)
        ys = np.append(ys, arrays["accuracy"][front][-1])
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name="Pareto front (complexity bound)",
                line=dict(color="#444", dash="dot", shape="hv"),
                hoverinfo="skip",
            )
        )
    baseline, target = attrs.get("baseline_accuracy"), attrs.get("target_accuracy")
    if baseline is not None and np.isfinite(baseline):
        fig.add_hline(y=baseline, line=dict(color="#999", width=1), annotation_text=f"0-shot {baseline:.3f}")
    if target is not None:
        smallest = attrs.get("smallest_bits", np.inf)
        label = f"target {target:.3f}: " + (f"{smallest:.4g} bits" if np.isfinite(smallest) else "not reached")
        fig.add_hline(y=target, line=dict(color="#d62728", width=1, dash="dash"), annotation_text=label)
    fig.update_xaxes(type="log", title_text="description length (bits, log; 0 bits drawn at 1)")
    fig.update_yaxes(title_text="eval accuracy")
    return base_layout(fig, "Task complexity: the fewest bits that reach an accuracy", height=480)


def seeds_figure(profile: Profile, base: str) -> go.Figure:
    """Relative spread across seeds, per layer: landscape (lines) vs loss and accuracy (flat lines)."""
    fig = go.Figure()
    layers, overlap = profile["overlap_mean"]
    _, ari = profile["ari_clusters_mean"]
    _, id_range = profile["id_gride_range"]
    _, id_mean = profile["id_gride_mean"]
    n = int(profile["n_seeds"][1][0])
    lines = (
        ("1 - neighbourhood overlap (mean over pairs)", 1 - overlap, PALETTE[0]),
        ("1 - ARI of the clusterings (mean over pairs)", 1 - ari, PALETTE[1]),
        ("ID range / ID mean", id_range / id_mean, PALETTE[2]),
    )
    for name, values, colour in lines:
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=values,
                mode="lines+markers",
                name=name,
                line=dict(color=colour),
                hovertemplate=f"{name}<br>layer %{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    loss = profile["eval_bits_range"][1][0] / profile["eval_bits_mean"][1][0]
    accuracy = profile["accuracy_range"][1][0]
    for name, value, dash in (
        (f"eval loss range / mean ({loss:.3f})", loss, "dash"),
        (f"accuracy range ({accuracy:.3f})", accuracy, "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[layers.min(), layers.max()],
                y=[value, value],
                mode="lines",
                name=name,
                line=dict(color="#333", dash=dash),
                hoverinfo="name",
            )
        )
    fig.update_xaxes(title_text="layer")
    fig.update_yaxes(title_text="relative spread across seeds")
    return base_layout(fig, f"Same loss, different landscape? {n} seeds of {base}", height=450)
