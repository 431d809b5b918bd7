"""The report's map section: each eval question placed in 2-D, one condition and layer at a time.

The 2-D maps are computed once and cached (``figures.maps.layer_maps``); the page's map widget
(``figures.page.map_div``) swaps coordinates and colourings client-side, so the question texts
are embedded once. ``map_section`` reads top-down: the layers to map, their maps, the colourings
(markers), the hover texts and controls, then the static figure of the first view.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from figures import maps
from figures.collect import RunData, layer_arrays, question_texts
from figures.page import Section, map_div
from figures.sections import pick_default_condition, range_control, select_control, union_layers

if TYPE_CHECKING:
    from figures.report_config import ReportConfig

COLOUR_LABELS = {"answer": "correct answer", "cluster": "ADP cluster of this layer", "correct": "answered right/wrong"}


def map_section(
    data: RunData,
    run: Path,
    conditions: list[str],
    layers: dict,
    config: ReportConfig,
    method: str,
    static: dict,
    progress: bool,
) -> tuple[Section, dict]:
    """The map section and its widget's data (the static figure of its first view goes to ``static``)."""
    map_layers = _map_layers(config, union_layers(layers))
    xy = _layer_maps(data, run, conditions, layers, map_layers, config, method, progress)
    spec, static["map"] = _map_spec(
        data,
        run,
        conditions,
        map_layers,
        xy,
        pick_default_condition(conditions),
        question_texts(data, config.task_data),
        method,
    )
    return Section(
        "map",
        "Map of one layer",
        f"{method.upper()} of the eval questions' representations (seed {config.seed}), one "
        f"layer at a time; hover shows the question. Colour by {', '.join(data.examples.group_names)}, answer, ADP cluster, "
        "correctness or the bits the fine-tune saved on that question.",
        [map_div("map", spec)],
    ), spec


def _map_layers(config: ReportConfig, layers: list[int]) -> list[int]:
    """The layers to map: those asked for (each analysed), else up to 8 spread over the depth."""
    if config.map_layers:
        missing = [layer for layer in config.map_layers if layer not in layers]
        if missing:
            raise ValueError(f"map layer {missing[0]} was not analysed (analysed: {layers[0]}..{layers[-1]})")
        return sorted(set(config.map_layers))
    inner = [layer for layer in layers if layer > 0] or layers
    picks = np.unique(np.round(np.linspace(0, len(inner) - 1, min(8, len(inner)))).astype(int))
    return [inner[i] for i in picks]


def _layer_maps(
    data: RunData,
    run: Path,
    conditions: list[str],
    layers: dict,
    map_layers: list[int],
    config: ReportConfig,
    method: str,
    progress: bool,
) -> dict:
    """(condition, layer) -> the eval questions' 2-D coordinates, for each mapped layer a condition has."""
    keys = [(c, layer) for c in conditions for layer in map_layers if layer in layers[c]]
    bar = tqdm(total=len(keys), desc=f"maps ({method})", unit="layer", disable=not progress)
    xy = maps.layer_maps(
        run,
        keys,
        data.eval_rows,
        method=method,
        seed=config.seed,
        n_neighbors=config.map_neighbors,
        states=data.analysis_settings.get("states", "residual"),
        progress=bar,
    )
    bar.close()
    return xy


def _map_spec(
    data: RunData,
    run: Path,
    conditions: list[str],
    map_layers: list[int],
    xy: dict,
    default_condition: str,
    texts: list[str] | None,
    method: str,
):
    """The map widget's data, and the static figure of its first view (for the PNG and figures/)."""
    rows = data.eval_rows
    first = f"group:{data.first_group}"
    markers = _markers(data, run, conditions, map_layers, xy)
    hover = _hover(data, texts)
    colour_names = list(markers)
    colour_labels = [
        COLOUR_LABELS.get(n, n.replace("gain:", "bits saved by ").replace("group:", "")) for n in colour_names
    ]
    controls = [
        select_control("condition", "condition", conditions, default_condition),
        range_control("layer", "layer", map_layers),
        select_control("colour", "colour", colour_names, first, labels=colour_labels),
    ]
    trace = {
        "type": "scattergl" if len(rows) > 5000 else "scatter",
        "mode": "markers",
        "text": hover,
        "hovertemplate": "%{text}<extra></extra>",
        "showlegend": False,
    }
    layout = {
        "template": "plotly_white",
        "height": 650,
        "margin": {"l": 40, "r": 20, "t": 60, "b": 40},
        "xaxis": {"showticklabels": False, "zeroline": False, "title": {"text": f"{method} 1"}},
        "yaxis": {"showticklabels": False, "zeroline": False, "title": {"text": f"{method} 2"}},
        "hovermode": "closest",
    }
    spec = {
        "controls": controls,
        "markers": markers,
        "trace": trace,
        "layout": layout,
        "title": f"{method.upper()} of layer {{layer}}, {{condition}}",
        "xy": {f"{c}|{layer}": np.round(points.T, 3).tolist() for (c, layer), points in xy.items()},
    }
    view = (default_condition, map_layers[-1])
    return spec, _static_view(data, xy, view, hover, markers[first], layout, method)


def _markers(data: RunData, run: Path, conditions: list[str], map_layers: list[int], xy: dict) -> dict[str, dict]:
    """Every colouring the widget offers: each group, the answer, ADP clusters, right/wrong, bits saved."""
    rows = data.eval_rows
    ex = data.examples
    letters = np.array(data.choice_labels)
    markers: dict[str, dict] = {
        f"group:{g}": maps.marker(maps.Colouring.categories(g, values[rows], sorted(set(values[rows]))))
        for g, values in ex.groups.items()
    }
    markers["answer"] = maps.marker(maps.Colouring.categories("answer", letters[ex.answers[rows]], list(letters)))
    markers["cluster"] = {"by": "layer", "values": _cluster_markers(run, conditions, map_layers)}
    markers["correct"] = {
        "by": "condition",
        "values": {
            c: maps.marker(
                maps.Colouring.categories(
                    "answered",
                    np.where(data.predictions[c][rows] == ex.answers[rows], "right", "wrong"),
                    ["wrong", "right"],
                )
            )
            for c in conditions
        },
    }
    for name, (arrays, _) in data.edl.items():
        gain = np.full(len(ex.ids), np.nan)
        gain[arrays["eval_rows"]] = arrays["eval_gain_bits"]
        markers[f"gain:{name}"] = maps.marker(maps.Colouring(f"bits saved by {name}", gain[rows]))
    # Layers missing for a condition (or skipped) fall back to the first group's colouring.
    for key in xy:
        markers["cluster"]["values"].setdefault(f"{key[0]}|{key[1]}", markers[f"group:{data.first_group}"])
    return markers


def _cluster_markers(run: Path, conditions: list[str], map_layers: list[int]) -> dict[str, dict]:
    """'condition|layer' -> the colouring by the ADP clusters stored for that layer."""
    out = {}
    for c in conditions:
        stored = layer_arrays(run, c, map_layers, ("cluster",))
        for layer, arrays in stored.items():
            clusters = arrays["cluster"]
            cluster_names = [str(i) for i in range(int(clusters.max()) + 1)]
            out[f"{c}|{layer}"] = maps.marker(
                maps.Colouring(f"ADP cluster ({len(cluster_names)})", clusters, tuple(cluster_names))
            )
    return out


def _hover(data: RunData, texts: list[str] | None) -> list[str]:
    """Each eval question's hover text: its first group, id and answer, then the question (when at hand)."""
    ex = data.examples
    letters = np.array(data.choice_labels)
    return [
        f"<b>{html.escape(ex.first_group[r])}</b> · id {html.escape(str(ex.ids[r]))} · answer {letters[ex.answers[r]]}"
        + (f"<br>{html.escape(texts[r])}" if texts else "")
        for r in data.eval_rows
    ]


def _static_view(
    data: RunData, xy: dict, view: tuple[str, int], hover: list[str], marker: dict, layout: dict, method: str
):
    """The plotly figure of one (condition, layer) view, coloured by the first group."""
    import plotly.graph_objects as go

    static = go.Figure(
        go.Scatter(
            x=xy[view][:, 0],
            y=xy[view][:, 1],
            mode="markers",
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            marker=marker,
        )
    )
    static.update_layout(
        **layout, title=f"{method.upper()} of layer {view[1]}, {view[0]}: coloured by {data.first_group}"
    )
    return static
