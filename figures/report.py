"""``landscape report RUN``: RUN/report/index.html, one offline page, and every figure on its own.

    RUN/report/index.html          plotly.js inlined once; opens from disk with no network
    RUN/report/figures/<name>.html each figure alone (plotly.min.js beside them)
    RUN/report/figures/<name>.png  the same, where kaleido finds a Chromium

The folder is written beside and renamed into place, so a failed report leaves the old one whole.

``run_report`` reads top-down: the run collected (``figures.collect``), every section drawn in page
order (``figures.sections``, ``figures.map_section``; each adds the figures it draws to one
name -> figure dict), the page rendered (``figures.page``), then the folder written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import plotly.offline

from figures import maps
from figures.claims import claims_section
from figures.collect import RunData, collect
from figures.map_section import map_section
from figures.page import Section, map_div, render_page
from figures.report_config import ReportConfig
from figures.sections import (
    complexity_section,
    control_section,
    controls_section,
    edl_section,
    header,
    profiles_section,
    readouts_section,
    tree_section,
)
from landscape import store
from landscape.atomic import replace_atomically

DEFAULT_CONFIG = ReportConfig()  # run_report's default: the report's defaults


@dataclass
class Report:
    index: Path
    figures: list[Path]
    pngs: list[Path]
    png_note: str


def run_report(run: Path, config: ReportConfig = DEFAULT_CONFIG, *, progress: bool = True) -> Report:
    """Write RUN/report/: the page, each of its figures alone, and their PNGs (as ``config.png`` says)."""
    config.validate()
    run = Path(run)
    data = collect(run)
    static: dict[str, object] = {}  # name -> figure drawn statically and saved alone (each builder adds its own)
    sections, spec = _sections(data, run, config, _map_method(config), static, progress)
    title = f"landscape: {data.info.get('model', '?')} on {data.info.get('task', '?')} ({run.name})"
    page = render_page(title, header(data), sections)
    return _write_report(run / store.REPORT_DIR, page, title, spec, static, config)


def _map_method(config: ReportConfig) -> str:
    """The map method asked for, or PCA where UMAP is not installed."""
    return config.map_method if config.map_method == "pca" or maps.umap_available() else "pca"


def _sections(
    data: RunData, run: Path, config: ReportConfig, method: str, static: dict, progress: bool
) -> tuple[list[Section], dict]:
    """The page's sections in page order (those the run has), and the map widget's data."""
    conditions = data.analysed("eval")
    layers = {c: data.profiles[("eval", c)]["n_distinct"][0].tolist() for c in conditions}
    sections = [
        claims_section(data.claims, static),
        profiles_section(data, run, conditions, layers, static),
        readouts_section(data, conditions, static),
        controls_section(data, conditions, static),
        tree_section(data, run, conditions, layers, static),
    ]
    the_map, spec = map_section(data, run, conditions, layers, config, method, static, progress)
    sections += [the_map, edl_section(data, static), complexity_section(data, static)]
    sections.insert(0, control_section(data, conditions, static))  # drawn last (its figures saved last), shown first
    return [section for section in sections if section is not None], spec


def _write_report(out: Path, page: str, title: str, spec: dict, static: dict, config: ReportConfig) -> Report:
    """RUN/report/ written beside and renamed into place: the page, every figure alone, their PNGs."""
    written: list[Path] = []
    pngs: list[Path] = []
    png_note = ""

    def write(tmp: Path) -> None:
        nonlocal png_note
        figures_dir = tmp / "figures"
        figures_dir.mkdir(parents=True)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        written.extend(_write_figures(figures_dir, out / "figures", title, spec, static))
        if config.png != "no":
            done, png_note = _write_pngs(static, figures_dir, required=config.png == "yes")
            pngs.extend(out / "figures" / p.name for p in done)

    replace_atomically(out, write)
    return Report(index=out / "index.html", figures=written, pngs=pngs, png_note=png_note)


def _write_figures(folder: Path, final: Path, title: str, spec: dict, static: dict) -> list[Path]:
    """plotly.min.js, each static figure and the map explorer as pages of their own; their final paths."""
    (folder / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    written = []
    for name, fig in static.items():
        fig.write_html(folder / f"{name}.html", include_plotlyjs="plotly.min.js", config={"displaylogo": False})
        written.append(final / f"{name}.html")
    explorer = [Section("map", "Map of one layer", "", [map_div("map", spec)])]
    (folder / "map_explorer.html").write_text(
        render_page(title, "", explorer, plotlyjs="plotly.min.js"), encoding="utf-8"
    )
    written.append(final / "map_explorer.html")
    return written


def _write_pngs(figures: dict, folder: Path, *, required: bool) -> tuple[list[Path], str]:
    """PNG of every static figure through kaleido (which drives a local Chromium), when it can."""
    try:
        import plotly.io as pio

        paths = [folder / f"{name}.png" for name in figures]
        # each at the height it has on the page (kaleido's default, 500 px, squeezes tall grids)
        pio.write_images(
            list(figures.values()),
            paths,
            scale=2,
            width=[1100] * len(paths),
            height=[getattr(f.layout, "height", None) or 500 for f in figures.values()],
        )
        return paths, ""
    except Exception as error:  # kaleido missing, or no Chromium for it to drive
        note = f"no PNGs: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        if required:
            raise ValueError(note) from None
        return [], note
