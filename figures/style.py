"""Shared look: one colour per condition everywhere, discrete colour scales for categories."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.D3
CATEGORY_PALETTE = px.colors.qualitative.Light24
TEMPLATE = "plotly_white"
CHANCE = "chance (permutation null)"  # the one legend entry of every measure's permutation null


def condition_colours(names: list[str]) -> dict[str, str]:
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def discrete_colorscale(n: int) -> list[list]:
    """A stepwise colorscale for integer codes 0..n-1 (use cmin=-0.5, cmax=n-0.5)."""
    n = max(n, 1)
    scale = []
    for i in range(n):
        colour = CATEGORY_PALETTE[i % len(CATEGORY_PALETTE)]
        scale += [[i / n, colour], [(i + 1) / n, colour]]
    return scale


def base_layout(fig: go.Figure, title: str, *, height: int = 450) -> go.Figure:
    fig.update_layout(
        template=TEMPLATE, title=title, height=height, margin=dict(l=60, r=20, t=60, b=50), hovermode="closest"
    )
    return fig


def translucent(colour: str, alpha: float) -> str:
    """``#rrggbb`` (or ``rgb(r, g, b)``) as ``rgba(r, g, b, alpha)``: a fill in a line's colour."""
    if colour.startswith("#") and len(colour) == 7:
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    elif colour.startswith("rgb(") and colour.endswith(")"):
        r, g, b = (int(float(v)) for v in colour[4:-1].split(","))
    else:
        return colour
    return f"rgba({r}, {g}, {b}, {alpha})"


def chance_traces(
    x: np.ndarray,
    mean: np.ndarray,
    low: np.ndarray | None,
    high: np.ndarray | None,
    colour: str,
    *,
    name: str,
    label: str,
    legend: bool,
    customdata: np.ndarray | None = None,
    where: str = "layer %{x}",
) -> list[go.Scatter]:
    """A measure's chance level, its permutation null: the 95 % range of the draws as a light band
    in ``colour`` (none where ``low``/``high`` are missing), their mean as a thin dotted line.

    Every such trace of a figure shares the legend group ``CHANCE``: ``legend`` shows its one
    entry (grey), and clicking it hides or shows every chance band at once. ``name`` is whose
    null it is (condition, pair or run), ``label`` the measure; ``customdata`` (n,) and ``where``
    say where a point is in the hover (default: its layer).
    """
    x, mean = np.asarray(x), np.asarray(mean, dtype=float)
    lo = np.full(len(x), np.nan) if low is None else np.asarray(low, dtype=float)
    hi = np.full(len(x), np.nan) if high is None else np.asarray(high, dtype=float)
    traces = []
    banded = np.isfinite(lo) & np.isfinite(hi)
    if banded.any():
        bx, blo, bhi = x[banded], lo[banded], hi[banded]
        traces.append(
            go.Scatter(
                x=np.concatenate([bx, bx[::-1]]),
                y=np.concatenate([bhi, blo[::-1]]),
                fill="toself",
                fillcolor=translucent(colour, 0.12),
                line=dict(width=0),
                mode="lines",
                name=f"{name}: {CHANCE}",
                legendgroup=CHANCE,
                showlegend=False,
                hoverinfo="skip",
            )
        )
    points = np.stack([lo, hi] if customdata is None else [lo, hi, np.asarray(customdata, dtype=float)], axis=-1)
    traces.append(
        go.Scatter(
            x=x,
            y=mean,
            customdata=points,
            mode="lines",
            name=CHANCE,
            legendgroup=CHANCE,
            showlegend=False,
            line=dict(color=colour, width=1, dash="dot"),
            hovertemplate=f"{name}: {CHANCE}<br>{where}<br>{label}: mean %{{y:.3f}}, 95 % of draws in "
            "[%{customdata[0]:.3f}, %{customdata[1]:.3f}]<extra></extra>",
        )
    )
    if legend:  # the group's one legend entry, grey: it stands for every condition's band
        traces.append(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=CHANCE,
                legendgroup=CHANCE,
                showlegend=True,
                line=dict(color="#888", width=1, dash="dot"),
                fill="toself",
                fillcolor="rgba(136, 136, 136, 0.12)",
                hoverinfo="skip",
            )
        )
    return traces
