"""The report's section "The paper's claims on this run": the table of ``landscape claims`` and
each claim's statistic with its 95 % interval against the region where it would hold.

Example:
    >>> from analyses.claims import evaluate_claims, planted_view
    >>> fig = claims_figure(evaluate_claims(planted_view(n_per_class=20, layers=6), n_boot=100))
    >>> len(fig.data) >= 1
    True
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analyses.claims import Claim, as_rows
from figures.page import Section, figure_div, table
from figures.style import base_layout
from landscape.claims import CANNOT_TELL, FAILS, HOLDS

VERDICT_COLOURS = {HOLDS: "#2ca02c", FAILS: "#d62728", CANNOT_TELL: "#7f7f7f"}


def claims_figure(claims: list[Claim]) -> go.Figure:
    """One row per claim with a value: the statistic (dot), its interval (a segment from low to
    high) and the edge(s) of the region where it holds (grey ticks), coloured by verdict.

    The interval is drawn as it is, not as distances from the value: a percentile interval of a
    maximum (or of any skewed statistic) need not contain the point value, and then the dot lies
    beside its segment."""
    shown = [c for c in claims if np.isfinite(c.value)][::-1]  # first claim on top
    fig = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        rows = [c for c in shown if c.verdict == verdict]
        if not rows:
            continue
        spans = [c for c in rows if np.isfinite(c.low) and np.isfinite(c.high)]
        if spans:  # one trace of segments, broken by None between claims
            fig.add_trace(
                go.Scatter(
                    x=[x for c in spans for x in (c.low, c.high, None)],
                    y=[y for c in spans for y in (c.key, c.key, None)],
                    mode="lines",
                    name=f"{verdict}: 95 % interval",
                    legendgroup=verdict,
                    showlegend=False,
                    line=dict(color=colour, width=3),
                    hovertemplate="%{y}: interval edge %{x:.3f}<extra></extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=[c.value for c in rows],
                y=[c.key for c in rows],
                mode="markers",
                name=verdict,
                legendgroup=verdict,
                marker=dict(color=colour, size=10, line=dict(color="white", width=1)),
                customdata=[[c.statistic, c.region.describe(), c.note, _interval(c)] for c in rows],
                hovertemplate="%{y}: %{x:.3f} %{customdata[3]}<br>%{customdata[0]}<br>holds if %{customdata[1]}<br>"
                "%{customdata[2]}<extra></extra>",
            )
        )
    edges = [(c.key, edge) for c in shown for edge in (c.region.above, c.region.below) if np.isfinite(edge)]
    fig.add_trace(
        go.Scatter(
            x=[e for _, e in edges],
            y=[k for k, _ in edges],
            mode="markers",
            name="threshold",
            marker=dict(symbol="line-ns-open", size=18, color="#444", line=dict(width=2)),
            hovertemplate="%{y}: threshold %{x}<extra></extra>",
        )
    )
    base_layout(
        fig, "The paper's claims: statistic, 95 % interval and threshold", height=max(300, 40 * len(shown) + 120)
    )
    fig.update_layout(
        margin=dict(l=260),
        xaxis_title="value of the claim's statistic (units in the table)",
        yaxis=dict(categoryorder="array", categoryarray=[c.key for c in shown]),
    )  # the table's order
    return fig


def _interval(claim: Claim) -> str:
    if not (np.isfinite(claim.low) and np.isfinite(claim.high)):
        return ""
    outside = "" if claim.low <= claim.value <= claim.high else " (the value lies outside its interval)"
    return f"[{claim.low:.3f}, {claim.high:.3f}]{outside}"


def claims_section(claims: list[Claim], static: dict) -> Section:
    """The claims on this run (``figures.collect`` computes them)."""
    static["claims"] = claims_figure(claims)
    rows = [
        [
            r["claim"],
            r["statement"],
            r["statistic"],
            r["value"],
            f"[{r['low']}, {r['high']}]" if r["low"] else "",
            r["region"],
            r["verdict"],
            r["note"],
            r["paper"],
        ]
        for r in as_rows(claims)
    ]
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICT_COLOURS}
    return Section(
        "claims",
        "The paper's claims on this run",
        f"{counts[HOLDS]} hold, {counts[FAILS]} fail, {counts[CANNOT_TELL]} cannot be told. Each claim of Doimo et al. "
        "2024 and of the EDL paper is a statistic of this run with a 95 % bootstrap interval (rows resampled; layers "
        "for the label overlaps; the ID's own errors for its peak) and a region fixed before any run was looked at: "
        "it holds when the whole interval lies in the region, fails when none of it does, and cannot be told when "
        "the interval straddles the edge or the run lacks what the claim needs (the note says what). The same "
        "table: `landscape claims RUN` and RUN/claims.csv; the thresholds: docs/replication.md.",
        [
            table(
                rows,
                [
                    "claim",
                    "statement",
                    "statistic",
                    "value",
                    "95 % interval",
                    "holds if",
                    "verdict",
                    "note",
                    "the paper",
                ],
            ),
            figure_div(static["claims"], "claims"),
        ],
    )
