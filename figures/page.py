"""The HTML around the figures: plotly.js inlined once, static figures, and two small widgets.

A widget redraws one plot from data embedded in the page when a control changes:
``switcher`` picks a whole precomputed figure by the controls' values (dendrogram per condition
and layer, ID curves per layer); ``map`` swaps the coordinates and the marker of one scatter
trace, so the question texts are embedded once per page instead of once per layer and colouring.
Nothing is fetched: the page works from a file with no network.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

PLOT_CONFIG = {"responsive": True, "displaylogo": False}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 24px 60px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; } .num { text-align: right; font-variant-numeric: tabular-nums; }
.caption { color: #555; max-width: 1000px; } .controls { margin: 8px 0; display: flex; gap: 24px; align-items: center; }
.controls label { font-size: 14px; } details > summary { cursor: pointer; margin: 8px 0; color: #1f4e9c; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; font-size: 12px; }
nav a { margin-right: 14px; }
"""

_WIDGET_JS = r"""
const LS = {
  config: %(config)s,
  controls(root, controls, onChange) {
    const state = {};
    const bar = document.createElement('div'); bar.className = 'controls'; root.before(bar);
    for (const c of controls) {
      const label = document.createElement('label'); label.textContent = c.label + ' ';
      state[c.name] = c.options[c.initial];
      if (c.type === 'range') {
        const input = document.createElement('input'); input.type = 'range'; input.min = 0;
        input.max = c.options.length - 1; input.value = c.initial; input.step = 1;
        const shown = document.createElement('b'); shown.textContent = c.options[c.initial];
        input.addEventListener('input', () => { state[c.name] = c.options[+input.value];
          shown.textContent = state[c.name]; onChange(state); });
        label.append(input, ' ', shown);
      } else {
        const select = document.createElement('select');
        c.options.forEach((o, i) => { const opt = new Option(c.labels ? c.labels[i] : o, i); select.add(opt); });
        select.value = c.initial;
        select.addEventListener('change', () => { state[c.name] = c.options[+select.value]; onChange(state); });
        label.append(select);
      }
      bar.append(label);
    }
    return state;
  },
  switcher(id, spec) {
    const div = document.getElementById(id);
    const draw = (state) => {
      const key = spec.controls.map(c => state[c.name]).join('|');
      const fig = spec.figures[key] || spec.figures[spec.fallback];
      Plotly.react(div, fig.data, fig.layout, LS.config);
    };
    draw(LS.controls(div, spec.controls, draw));
  },
  map(id, spec) {
    const div = document.getElementById(id);
    const draw = (state) => {
      const key = state.condition + '|' + state.layer;
      let m = spec.markers[state.colour];
      if (m.by === 'condition') m = m.values[state.condition];
      else if (m.by === 'layer') m = m.values[key];
      const xy = spec.xy[key];
      const trace = Object.assign({}, spec.trace, {x: xy[0], y: xy[1], marker: m});
      const layout = Object.assign({}, spec.layout,
        {title: {text: spec.title.replace('{condition}', state.condition).replace('{layer}', state.layer)}});
      Plotly.react(div, [trace], layout, LS.config);
    };
    draw(LS.controls(div, spec.controls, draw));
  },
};
"""


# A plot drawn inside a closed <details> has no width yet: size it when the details open.
_RESIZE_ON_OPEN = """document.querySelectorAll('details').forEach(d => d.addEventListener('toggle',
  () => d.querySelectorAll('.js-plotly-plot').forEach(p => Plotly.Plots.resize(p))));"""


def widget_js() -> str:
    return _WIDGET_JS % {"config": json.dumps(PLOT_CONFIG)}


@dataclass
class Section:
    """One part of the page: a title, a caption and any number of figures or widgets (HTML)."""

    anchor: str
    title: str
    caption: str
    parts: list[str] = field(default_factory=list)


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A static figure, drawn where it stands (plotly.js must already be on the page)."""
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)
    return f'<div class="ls-figure" data-name="{div_id}">{body}</div>'


def _json(value) -> str:
    return pio.to_json(value, validate=False, pretty=False, remove_uids=True).replace("</", "<\\/")


def switcher_div(div_id: str, controls: list[dict], figures: dict[str, go.Figure], fallback: str) -> str:
    """A figure chosen among ``figures`` (keyed 'v1|v2|...' by the controls' values)."""
    spec = {
        "controls": controls,
        "fallback": fallback,
        "figures": {key: fig.to_plotly_json() for key, fig in figures.items()},
    }
    return (
        f'<div class="ls-figure" data-name="{div_id}"><div id="{div_id}"></div></div>'
        f"<script>LS.switcher({json.dumps(div_id)}, {_json(spec)});</script>"
    )


def map_div(div_id: str, spec: dict) -> str:
    return (
        f'<div class="ls-figure" data-name="{div_id}"><div id="{div_id}"></div></div>'
        f"<script>LS.map({json.dumps(div_id)}, {_json(spec)});</script>"
    )


def table(rows: list[list], header: list[str]) -> str:
    def cell(value, tag):
        if isinstance(value, float):
            return f'<{tag} class="num">{value:.4g}</{tag}>'
        return f"<{tag}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell(h, "th") for h in header)
    body = "".join("<tr>" + "".join(cell(v, "td") for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_page(title: str, header: str, sections: list[Section], *, plotlyjs: str = "inline") -> str:
    """The whole page. ``plotlyjs``: 'inline' (one self-contained file) or a path beside the page."""
    if plotlyjs == "inline":
        script = f"<script>{plotly.offline.get_plotlyjs()}</script>"
    else:
        script = f'<script src="{html.escape(plotlyjs)}"></script>'
    nav = "".join(f'<a href="#sec-{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<h2 id="sec-{s.anchor}">{html.escape(s.title)}</h2><p class="caption">{s.caption}</p>' + "".join(s.parts)
        for s in sections
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style>{script}<script>{widget_js()}</script></head>"
        f"<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{header}{body}<script>{_RESIZE_ON_OPEN}</script></body></html>"
    )
