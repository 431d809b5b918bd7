"""What can be read from each layer (the logit lens, linear probes) beside what the geometry shows.

One figure per target (a grouping field of the task, or the answer): on the left the accuracy of
the linear probe by layer (one solid line per condition), the logit lens's accuracy for the answer
(dashed), the majority baseline and the shuffled-label control (dotted); on the right the ARI of
the ADP clusters with the same target (and its permutation null, a band, where the analysis drew
one). One more figure for the lens alone: the log-probability of the right choice, its
calibration error and the share of questions already decided.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures.collect import Profile
from figures.profiles import add_chance
from figures.style import base_layout, condition_colours
from landscape.names import ANSWER, grouped


def has_readouts(profiles: dict[str, Profile]) -> bool:
    return any(m.startswith(("probe_accuracy[", "lens_accuracy")) for p in profiles.values() for m in p)


def target_readouts(profiles: dict[str, Profile], target: str, *, split: str = "eval") -> go.Figure:
    """Probe (and, for the answer, lens) accuracy by layer beside the ARI of the same target."""
    colours = condition_colours(list(profiles))
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.14, subplot_titles=(f"read out: {target}", f"ARI clusters ~ {target}")
    )
    shown = set()
    shown_chance = False

    def line(name: str, metric: str, dash: str, label: str, col: int, width: float = 2) -> None:
        if metric not in profiles[name]:
            return
        layers, values = profiles[name][metric]
        # one legend entry per condition: clicking it hides all of that condition's lines
        fig.add_trace(
            go.Scatter(
                x=layers,
                y=values,
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=name not in shown,
                line=dict(color=colours[name], width=width, dash=dash),
                hovertemplate=f"{name}<br>layer %{{x}}<br>{label}: %{{y:.3f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
        shown.add(name)

    for name in profiles:
        line(name, grouped("probe_accuracy", target), "solid", "probe", 1)
        if target == ANSWER:
            line(name, "lens_accuracy", "dash", "lens", 1)
        line(name, grouped("probe_control", target), "dot", "control", 1, width=1)
        if grouped("ari", target) in profiles[name]:  # the ARI's chance level, when the analysis drew one
            shown_chance = (
                add_chance(
                    fig,
                    profiles[name],
                    grouped("ari", target),
                    name,
                    "ARI",
                    colours[name],
                    row=1,
                    col=2,
                    legend=not shown_chance,
                )
                or shown_chance
            )
        line(name, grouped("ari", target), "solid", "ARI", 2)
    majority = next(
        (p[grouped("probe_majority", target)] for p in profiles.values() if grouped("probe_majority", target) in p),
        None,
    )
    if majority is not None:
        fig.add_trace(
            go.Scatter(
                x=majority[0],
                y=majority[1],
                mode="lines",
                name="majority baseline",
                line=dict(color="#888", width=1, dash="dot"),
                hovertemplate="majority baseline: %{y:.3f}<extra></extra>",
            ),
            row=1,
            col=1,
        )
    fig.update_yaxes(title_text="accuracy (eval rows)", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="ARI", row=1, col=2)
    fig.update_xaxes(title_text="layer")
    return base_layout(
        fig, f"Readouts vs clusters: {target} ({split}; solid probe, dashed lens, dotted shuffled control)", height=420
    )


LENS_METRICS = (
    ("lens_logprob", "log p(right), nats"),
    ("lens_ece", "calibration (ECE)"),
    ("lens_decided", "share decided"),
)


def lens_profiles(profiles: dict[str, Profile], *, split: str = "eval") -> go.Figure:
    """The logit lens by layer: log-probability of the right choice, calibration, decisions."""
    colours = condition_colours(list(profiles))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in LENS_METRICS], horizontal_spacing=0.08)
    for col, (metric, label) in enumerate(LENS_METRICS, start=1):
        for name, profile in profiles.items():
            if metric in profile:
                layers, values = profile[metric]
                fig.add_trace(
                    go.Scatter(
                        x=layers,
                        y=values,
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=col == 1,
                        line=dict(color=colours[name], width=2),
                        marker=dict(size=4),
                        hovertemplate=f"{name}<br>layer %{{x}}<br>{label}: %{{y:.3f}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
    fig.update_xaxes(title_text="layer")
    return base_layout(
        fig, f"Logit lens, layer by layer ({split}; decided: the lens answer is final from this layer on)", height=380
    )
