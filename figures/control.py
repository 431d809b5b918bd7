"""The positive control's readout: the EDL totals of the true- and random-label fine-tunes side by
side with their bootstrap intervals (held-out accuracies with theirs: ``landscape.stats.mean_interval``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from figures.style import base_layout, condition_colours

# (attr of /edl/<name>, bar label)
TOTALS = (
    ("edl_heldout_bits", "EDL (held-out residual)"),
    ("edl_format_only_bits", "EDL of the format-only learner"),
    ("gain_beyond_format_bits", "gain beyond format"),
    ("edl_train_bits", "EDL (training-row residual)"),
)


def edl_bars(records: dict[str, dict[str, Any]]) -> go.Figure:
    """Grouped bars, one group per total, one bar per fine-tune, with their intervals."""
    colours = condition_colours(list(records))
    fig = go.Figure()
    for name, attrs in records.items():
        present = [(key, label) for key, label in TOTALS if key in attrs]
        values = np.array([attrs[key] for key, _ in present], dtype=float)
        fig.add_trace(
            go.Bar(
                x=[label for _, label in present],
                y=values,
                name=f"{name} ({attrs.get('labels', '?')} labels)",
                marker_color=colours[name],
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=[attrs[f"{k}_high"] - attrs[k] for k, _ in present],
                    arrayminus=[attrs[k] - attrs[f"{k}_low"] for k, _ in present],
                ),
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.1f}} bits<extra></extra>",
            )
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="bits (95 % bootstrap interval)")
    return base_layout(fig, "EDL with true and random labels: what the fine-tune learnt beyond the format", height=440)
