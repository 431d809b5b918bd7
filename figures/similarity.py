"""How alike the layers of a condition are (layer x layer heatmaps), and what each ID estimator says
layer by layer: pure functions of ``figures.collect`` structures."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from figures.collect import LayerSimilarity, Profile, null_metric
from figures.style import CHANCE, PALETTE, base_layout

ID_ESTIMATORS = (
    ("id_2nn", "2NN"),
    ("id_gride", "GRIDE (density scale)"),
    ("id_mle", "MLE (MacKay-Ghahramani)"),
    ("id_tle", "TLE"),
    ("id_lpca", "local PCA"),
    ("id_danco", "DANCo"),
)
# (measure in analysis.h5, title, colour range): the imbalance is low where the row's layer predicts the column's
SIMILARITY_MEASURES = (
    ("cka", "linear CKA", (0.0, 1.0)),
    ("cka_debiased", "linear CKA, debiased", (0.0, 1.0)),
    ("mutual_knn", "mutual kNN (Huh et al.)", (0.0, 1.0)),
    ("mutual_knn_euclidean", "mutual kNN (Euclidean neighbours)", (0.0, 1.0)),
    ("cknna", "CKNNA", (0.0, 1.0)),
    ("imbalance", "information imbalance row -> column", (0.0, 1.0)),
)


def _cols(n: int) -> int:
    return min(n, 3)


def id_estimator_profiles(profiles: dict[str, Profile]) -> go.Figure:
    """One panel per condition, one line per ID estimator over the layers."""
    names = list(profiles)
    cols = _cols(len(names))
    rows = -(-len(names) // cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=names,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        vertical_spacing=0.12 if rows > 1 else 0.2,
    )
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        for j, (metric, label) in enumerate(ID_ESTIMATORS):
            if metric not in profiles[name]:
                continue
            layers, values = profiles[name][metric]
            fig.add_trace(
                go.Scatter(
                    x=layers,
                    y=values,
                    mode="lines+markers",
                    name=label,
                    legendgroup=metric,
                    showlegend=i == 0,
                    line=dict(color=PALETTE[j % len(PALETTE)], width=2),
                    marker=dict(size=4),
                    hovertemplate=f"{name}<br>layer %{{x}}<br>{label}: %{{y:.2f}}<extra></extra>",
                ),
                row=row + 1,
                col=col + 1,
            )
        fig.update_xaxes(title_text="layer" if row == rows - 1 else None, row=row + 1, col=col + 1)
    fig.update_yaxes(title_text="intrinsic dimension", col=1)
    return base_layout(fig, "Intrinsic dimension by six estimators (eval questions)", height=320 * rows + 100)


def _null_hover(similarity: LayerSimilarity, measure: str) -> np.ndarray | None:
    """(L, L, 3) float32: the permutation null's mean, low and high of ``measure`` at each cell, or
    None when the analysis drew none (matrices '<measure>_null', '_null_low', '_null_high')."""
    mean = similarity.matrices.get(null_metric(measure))
    if mean is None or not np.isfinite(mean).any():
        return None
    bounds = [similarity.matrices.get(null_metric(measure, b), np.full_like(mean, np.nan)) for b in ("_low", "_high")]
    return np.stack([mean, *bounds], axis=-1).astype(np.float32)


def _heatmap_hover(name: str, has_null: bool) -> str:
    null = f"<br>{CHANCE}: %{{customdata[0]:.3f}} [%{{customdata[1]:.3f}}, %{{customdata[2]:.3f}}]" if has_null else ""
    return f"{name}<br>layer %{{y}} vs %{{x}}<br>%{{z:.3f}}{null}<extra></extra>"


def layer_similarity_heatmaps(matrices: dict[str, LayerSimilarity]) -> go.Figure:
    """Layer x layer similarity, one heatmap per condition; a menu switches the measure. Where the
    analysis drew a measure's permutation null, the hover gives its mean and 95 % range."""
    names = list(matrices)
    cols = _cols(len(names))
    rows = -(-len(names) // cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.06, vertical_spacing=0.12 if rows > 1 else 0.2
    )
    measures = [m for m in SIMILARITY_MEASURES if all(m[0] in s.matrices for s in matrices.values())]
    first, title, (low, high) = measures[0]
    nulls = {(n, m): _null_hover(matrices[n], m) for n in names for m, _, _ in measures}
    any_null = any(v is not None for v in nulls.values())
    for i, name in enumerate(names):
        row, col = divmod(i, cols)
        layers = matrices[name].layers
        null = nulls[(name, first)]
        fig.add_trace(
            go.Heatmap(
                z=matrices[name].matrices[first],
                x=layers,
                y=layers,
                zmin=low,
                zmax=high,
                colorscale="Viridis",
                showscale=i == 0,
                colorbar=dict(len=0.8),
                customdata=null,
                hovertemplate=_heatmap_hover(name, null is not None),
            ),
            row=row + 1,
            col=col + 1,
        )
        fig.update_xaxes(title_text="layer" if row == rows - 1 else None, row=row + 1, col=col + 1)
        fig.update_yaxes(title_text="layer" if col == 0 else None, autorange="reversed", row=row + 1, col=col + 1)
    buttons = []
    for m, label, (lo, hi) in measures:
        restyle = {
            "z": [matrices[n].matrices[m] for n in names],
            "zmin": [lo] * len(names),
            "zmax": [hi] * len(names),
            "reversescale": [m == "imbalance"] * len(names),
        }
        if any_null:  # each measure's own null in the hover (none for a measure without one)
            restyle["customdata"] = [nulls[(n, m)] for n in names]
            restyle["hovertemplate"] = [_heatmap_hover(n, nulls[(n, m)] is not None) for n in names]
        buttons.append(
            dict(
                label=label, method="update", args=[restyle, {"title.text": f"Layer x layer: {label} (eval questions)"}]
            )
        )
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.12, yanchor="bottom")]
    )
    return base_layout(fig, f"Layer x layer: {title} (eval questions)", height=380 * rows + 100)


def has_estimators(profile: Profile) -> bool:
    return any(metric in profile and np.isfinite(profile[metric][1]).any() for metric, _ in ID_ESTIMATORS[2:])
