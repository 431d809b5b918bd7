"""Shared look: one colour per condition everywhere, discrete colour scales for categories."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

PALETTE = px.colors.qualitative.D3
CATEGORY_PALETTE = px.colors.qualitative.Light24
TEMPLATE = "plotly_white"


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
    fig.update_layout(template=TEMPLATE, title=title, height=height, margin=dict(l=60, r=20, t=60, b=50),
                      hovermode="closest")
    return fig
