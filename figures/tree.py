"""The density-peak dendrogram (Doimo et al. 2024, Fig. 4): which groups (MMLU: subjects) merge first, per layer."""

from __future__ import annotations

import plotly.graph_objects as go
from scipy.cluster.hierarchy import dendrogram

from figures.collect import TreeLayer
from figures.style import base_layout


def dendrogram_figure(tree: TreeLayer | None, condition: str, layer: int, *, min_size: int) -> go.Figure:
    """Leaves: density peaks with more than ``min_size`` points, named by their dominant value of the first grouping field.

    Height: log density of the highest peak minus the log density at the saddle that joins two
    branches, so groups that merge low share a dense path between them.
    """
    fig = go.Figure()
    title = f"Density-peak dendrogram: {condition}, layer {layer}"
    if tree is None or len(tree.leaf_labels) < 2:
        n = 0 if tree is None else len(tree.leaf_labels)
        fig.add_annotation(
            text=f"{n} cluster(s) with more than {min_size} points: no tree at this layer",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return base_layout(fig, title, height=480)
    drawn = dendrogram(tree.linkage, no_plot=True)
    xs, ys = [], []
    for icoord, dcoord in zip(drawn["icoord"], drawn["dcoord"], strict=True):
        xs += [*icoord, None]
        ys += [*dcoord, None]
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#444", width=1.5), hoverinfo="skip", showlegend=False)
    )
    labels = [tree.leaf_labels[i] for i in drawn["leaves"]]
    ticks = [5 + 10 * i for i in range(len(labels))]
    fig.add_trace(
        go.Scatter(
            x=ticks,
            y=[0] * len(ticks),
            mode="markers",
            marker=dict(size=7, color="#1f77b4"),
            text=labels,
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    fig.update_xaxes(tickvals=ticks, ticktext=labels, tickangle=-45, automargin=True)
    fig.update_yaxes(title_text="log-density drop to the joining saddle")
    base_layout(fig, f"{title} ({tree.n_clusters} clusters, {len(labels)} shown)", height=520)
    fig.update_layout(margin=dict(l=160, b=200))  # rotated leaf names reach left of the first leaf
    return fig
