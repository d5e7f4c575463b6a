"""The report's figures as plotly charts for index.html: hover a point for its run, grid point
and value, drag to zoom, double-click to reset. The PNGs (figures.py) stay for papers; these
draw the same table (table.py) and runs. Each function returns a plotly Figure, or the reason it has
nothing to draw. plotly.js is written next to index.html from the installed plotly package (no
CDN, so the page works offline).

Lines follow series.py: a line joins only runs equal in every varying key but the x axis and the
seeds; a heatmap never averages runs that differ in another key (one panel per split instead).
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gssm_jax.reporting.runs import RunRecord, finite
from gssm_jax.reporting.series import MISSING, NO_HEATMAP, cell_splits, label, series_labels
from gssm_jax.reporting.table import DERIVED, grid_keys

PLOTLY_JS = "plotly.min.js"
MAX_LEGEND = 6  # numeric keys with more distinct values get a colour scale
GREY = "rgb(153, 153, 153)"
METRIC_LABEL = {"best_eval_kl_gap": "best eval kl_gap", "eval_kl_gap": "final eval kl_gap"}
SIZE = {"width": 620, "height": 420}  # two side by side on a 1400-pixel-wide page
MAX_PANELS = 8  # heatmap panels (one per value of the keys a cell must not average over)
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")  # the series of one colour
CONFIG = {"displaylogo": False, "responsive": True}


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Colors:
    """Colours for the values of one key: a scale for numbers with more than MAX_LEGEND values
    (log when they span 10x or more), a qualitative palette otherwise; missing values grey."""

    def __init__(self, key: str, values: pd.Series) -> None:
        self.key = key
        present = [v for v in values if label(v) != MISSING]
        numbers = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce")
        self.scale = None
        self._by = {MISSING: GREY}
        if present and not numbers.isna().any() and numbers.nunique() > MAX_LEGEND:
            lo, hi = float(numbers.min()), float(numbers.max())
            self.log = lo > 0 and hi / lo >= 10
            f = np.log10 if self.log else (lambda v: v)
            self.scale = (f(lo), f(hi))
            span = (self.scale[1] - self.scale[0]) or 1.0
            for v, n in zip(present, numbers):
                t = (f(float(n)) - self.scale[0]) / span
                self._by[label(v)] = pcolors.sample_colorscale("Viridis", [t])[0]
        else:
            distinct = list(dict.fromkeys(label(v) for v in present))
            if present and not numbers.isna().any():  # a few numbers: legend in numeric order
                distinct = [label(v) for v in sorted(set(present), key=float)]
            palette = (
                pcolors.qualitative.D3 if len(distinct) <= 10 else pcolors.qualitative.Alphabet
            )
            self._by.update({v: palette[i % len(palette)] for i, v in enumerate(distinct)})
        self.order = [k for k in self._by if k != MISSING] + [MISSING]

    def color(self, value) -> str:
        return self._by[label(value)]

    def colorbar(self) -> go.Scatter | None:
        """An invisible trace carrying the colour scale's bar (numeric keys with a scale)."""
        if self.scale is None:
            return None
        lo, hi = self.scale
        title = f"log10 {self.key}" if self.log else self.key
        return go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
            marker={"colorscale": "Viridis", "cmin": lo, "cmax": hi, "color": [lo],
                    "colorbar": {"title": {"text": title}}, "showscale": True},
        )  # fmt: skip


def _hover_keys(table: pd.DataFrame) -> list[str]:
    """What a run's hover text names: its grid keys, and its family where families differ."""
    keys = grid_keys(table)
    return keys + ["family"] if "family" in table and table["family"].nunique() > 1 else keys


def _point_text(row: pd.Series, keys: list[str]) -> str:
    """Hover text of one run: its name in bold, then `key=value` for its grid point."""
    lines = [f"<b>{html.escape(str(row['run']))}</b>"]
    for key in keys:
        value = row.get(key)
        if label(value) != MISSING:
            lines.append(f"{html.escape(key)}={html.escape(_short(label(value)))}")
    return "<br>".join(lines)


def _layout(fig: go.Figure, title: str, xtitle: str, ytitle: str, xlog: bool, ylog: bool) -> None:
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        template="plotly_white",
        hovermode="closest",
        legend={"font": {"size": 11}},
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        **SIZE,
    )
    fig.update_xaxes(title_text=xtitle, type="log" if xlog else "linear")
    fig.update_yaxes(title_text=ytitle, type="log" if ylog else "linear")


def _legend_once(colors: Colors, value, shown: set) -> dict:
    """Legend entry args: one entry per colour value (not for a colour scale)."""
    text = label(value)
    first = colors.scale is None and text not in shown
    shown.add(text)
    return {"legendgroup": text, "showlegend": first, "name": f"{colors.key}={_short(text, 30)}"}


def kl_gap_vs_tokens(runs: list[RunRecord], table: pd.DataFrame, color: str) -> go.Figure | str:
    """Held-out kl_gap against tokens seen, log-log, one line per run coloured by `color`."""
    colors = Colors(color, table[color])
    keys = _hover_keys(table)
    fig, shown, drawn = go.Figure(), set[str](), 0
    for run, (_, row) in zip(runs, table.iterrows()):
        tokens, step = finite(row["tokens"]), finite(row["step"])
        per_step = tokens / step if tokens and step else None
        gaps = [(r.get("step"), finite(r.get("kl_gap"))) for r in run.eval]
        points = [
            (s, s * per_step, g)
            for s, g in gaps
            if per_step and isinstance(s, int) and s > 0 and g is not None and g > 0
        ]
        if not points:
            continue
        steps, seen, kl = zip(*points)
        text = _point_text(row, keys)
        fig.add_trace(go.Scatter(
            x=seen, y=kl, mode="lines+markers", line={"color": colors.color(row[color])},
            marker={"size": 5}, customdata=np.array(steps)[:, None], text=[text] * len(steps),
            hovertemplate="%{text}<br>step %{customdata[0]}, %{x:.3s} tokens<br>"
                          "eval kl_gap %{y:.4g}<extra></extra>",
            **_legend_once(colors, row[color], shown),
        ))  # fmt: skip
        drawn += 1
    if not drawn:
        return "no run has a positive held-out kl_gap yet"
    if colors.colorbar() is not None:
        fig.add_trace(colors.colorbar())
    _layout(fig, f"held-out KL gap, {drawn} runs", "tokens seen", "eval kl_gap (nats/token)", True, True)  # fmt: skip
    return fig


def scaling(table: pd.DataFrame, x: str, metric: str, group: str | None) -> go.Figure | str:
    """`metric` against `x` (params or train_sequences), log x: every run a dot, the mean over
    seeds a line per series (runs equal in every other varying key: series.py), coloured by
    `group`, the series of one colour told apart by dashes and listed under it in the legend."""
    data = table[pd.to_numeric(table[x], errors="coerce") > 0]
    data = data[pd.to_numeric(data[metric], errors="coerce").notna()]
    if data[x].nunique() < 2:
        return f"fewer than two values of {x} among runs with a {metric}"
    data = data.assign(**{x: data[x].astype(float), metric: data[metric].astype(float)})
    keys = _hover_keys(data)
    series = series_labels(data, x, [*grid_keys(data), *DERIVED])
    colors = Colors(group, data[group]) if group else None
    fig = go.Figure()
    ylabel = METRIC_LABEL.get(metric, metric)
    per_colour: dict[str, int] = {}
    for name, part in data.groupby(series, sort=False):
        value = label(part[group].iloc[0]) if group else ""
        colour = colors.color(value) if colors else pcolors.qualitative.D3[0]
        n = per_colour[value] = per_colour.get(value, -1) + 1
        legend: dict = {"legendgroup": value, "name": _short(str(name), 60), "showlegend": True}
        if colors and n == 0:
            legend["legendgrouptitle_text"] = f"{group}={_short(value, 30)}"
        mean = part.groupby(x)[metric].mean().sort_index()
        counts = part.groupby(x)[metric].size().sort_index().to_numpy()
        fig.add_trace(go.Scatter(
            x=mean.index, y=mean.to_numpy(), mode="lines+markers", marker={"size": 8},
            line={"color": colour, "dash": DASHES[n % len(DASHES)]},
            text=[html.escape(str(name))] * len(mean), customdata=counts[:, None],
            hovertemplate=f"<b>%{{text}}</b><br>{x} %{{x:.4s}}<br>mean {ylabel} %{{y:.4g}} "
                          "over %{customdata[0]} runs<extra></extra>",
            **legend,
        ))  # fmt: skip
        fig.add_trace(go.Scatter(
            x=part[x], y=part[metric], mode="markers", showlegend=False, legendgroup=value,
            marker={"color": colour, "size": 6, "opacity": 0.5},
            text=[_point_text(r, keys) for _, r in part.iterrows()],
            hovertemplate=f"%{{text}}<br>{x} %{{x:.4s}}<br>{ylabel} %{{y:.4g}}<extra></extra>",
        ))  # fmt: skip
    positive = bool((data[metric] > 0).all())
    _layout(fig, f"{ylabel} against {x}", x, ylabel, True, positive)
    fig.update_layout(legend={"groupclick": "toggleitem"})
    return fig


def heatmap(table: pd.DataFrame, kx: str, ky: str, metric: str) -> go.Figure | str:
    """Mean `metric` over the runs of each (kx, ky) cell (runs without both keys left out, as in
    the PNG); one panel per value of the keys that would otherwise mix within a cell (a cell
    never averages, say, a transformer and a mamba run: `series.cell_splits`)."""
    if kx not in table or ky not in table:
        return f"no column {kx if kx not in table else ky}"
    data = table[pd.to_numeric(table[metric], errors="coerce").notna()]
    data = data[data[kx].map(label).ne(MISSING) & data[ky].map(label).ne(MISSING)]
    nx, ny = data[kx].astype(str).nunique(), data[ky].astype(str).nunique()
    if data.empty or nx * ny < 2:
        return f"fewer than two ({kx}, {ky}) cells with a {metric}"
    keys = ["family", *grid_keys(data), *DERIVED]
    splits = cell_splits(data, [kx, ky], list(dict.fromkeys(keys)))
    data = data.assign(**{metric: data[metric].astype(float), "_x": data[kx].map(label),
                          "_y": data[ky].map(label)})  # fmt: skip
    if splits:
        names = data[splits].apply(lambda col: col.map(label))
        panel = names.apply(
            lambda r: ", ".join(f"{k}={_short(v, 30)}" for k, v in r.items()), axis=1
        )
    else:
        panel = pd.Series("all runs", index=data.index)
    panels = list(data.groupby(panel, sort=False))
    if len(panels) > MAX_PANELS:
        return (
            f"its cells would mix runs that differ in {', '.join(splits)}: {len(panels)} panels "
            f"(at most {MAX_PANELS}); choose other keys with --heatmap"
        )
    cols = min(len(panels), 2)
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[n for n, _ in panels] if splits else None,
        horizontal_spacing=0.15, vertical_spacing=0.3 / rows,
    )  # fmt: skip
    values = data[metric]
    lo, hi = float(values.min()), float(values.max())
    log = lo > 0 and hi / lo > 10
    f = np.log10 if log else (lambda v: v)
    for i, (_, part) in enumerate(panels):
        grid = _sorted(part.pivot_table(index="_y", columns="_x", values=metric, aggfunc="mean"))
        counts = part.pivot_table(index="_y", columns="_x", values=metric, aggfunc="size")
        counts = counts.reindex(index=grid.index, columns=grid.columns)
        runs = part.groupby(["_y", "_x"])["run"].apply(lambda s: "<br>".join(map(str, s[:6])))
        text = [[runs.get((yv, xv), "") for xv in grid.columns] for yv in grid.index]
        z = grid.to_numpy(float)
        fig.add_trace(go.Heatmap(
            z=f(z), x=[str(c) for c in grid.columns], y=[str(r) for r in grid.index],
            customdata=np.dstack([z, counts.to_numpy(float)]), text=text,
            colorscale="Magma", reversescale=True, zmin=f(lo), zmax=f(hi), showscale=i == 0,
            colorbar={"title": {"text": ("log10 " if log else "") + METRIC_LABEL.get(metric, metric)},
                      "len": min(1.0, 1.2 / rows)},
            hovertemplate=f"{kx}=%{{x}}<br>{ky}=%{{y}}<br>mean %{{customdata[0]:.4g}} over "
                          "%{customdata[1]} runs:<br>%{text}<extra></extra>",
        ), row=i // cols + 1, col=i % cols + 1)  # fmt: skip
        fig.update_xaxes(title_text=kx, type="category", row=i // cols + 1, col=i % cols + 1)
        fig.update_yaxes(title_text=ky, type="category", row=i // cols + 1, col=i % cols + 1)
    fig.update_layout(
        title={"text": f"{METRIC_LABEL.get(metric, metric)} (mean over seeds)", "font": {"size": 14}},
        template="plotly_white", width=int(SIZE["width"] * (1 if cols == 1 else 1.5)),
        height=int(SIZE["height"] * (1 if rows == 1 else 0.75 * rows)),
        margin={"l": 60, "r": 20, "t": 70, "b": 50},
    )  # fmt: skip
    return fig


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows and columns in numeric order where their labels are numbers."""
    for axis in (0, 1):
        labels = pd.Series(frame.index if axis == 0 else frame.columns)
        if not pd.to_numeric(labels, errors="coerce").isna().any():
            frame = frame.sort_index(axis=axis, key=lambda idx: pd.to_numeric(idx))
    return frame


def kl_t_curves(runs: list[RunRecord], table: pd.DataFrame, color: str) -> go.Figure | str:
    """Per-position KL gap of each run's newest `evals/<step>.json`, coloured by `color`."""
    have = [(run, row) for run, (_, row) in zip(runs, table.iterrows()) if run.kl_t]
    if not have:
        return "no run has evals/<step>.json with a kl_t list (written by gssm_jax.evaluate)"
    colors = Colors(color, pd.Series([row[color] for _, row in have]))
    keys = _hover_keys(table)
    fig, shown = go.Figure(), set[str]()
    for run, row in have:
        curve = run.kl_t or {}
        kl_t = np.asarray(curve["kl_t"], dtype=np.float64)
        text = _point_text(row, keys) + f"<br>evaluated at step {curve['step']}"
        fig.add_trace(go.Scatter(
            x=np.arange(1, len(kl_t) + 1), y=kl_t, mode="lines",
            line={"color": colors.color(row[color])}, text=[text] * len(kl_t),
            hovertemplate="%{text}<br>position %{x}: kl_t %{y:.4g}<extra></extra>",
            **_legend_once(colors, row[color], shown),
        ))  # fmt: skip
    if colors.colorbar() is not None:
        fig.add_trace(colors.colorbar())
    _layout(fig, f"per-position KL gap, newest evaluation of {len(have)} runs", "position t",
            "kl_t (nats/token)", True, False)  # fmt: skip
    return fig


def figure_plan(
    runs: list[RunRecord],
    table: pd.DataFrame,
    color: str,
    groups: tuple[str | None, str | None],
    heat: tuple[str, str] | None,
    metric: str,
) -> dict[str, go.Figure | str]:
    """{PNG file name: its interactive figure, or the reason there is none}, with the report's
    choice of colour key, group keys (params plot, train_sequences plot), heatmap keys and metric
    (plan.choose_keys)."""
    return {
        "kl_gap_vs_tokens.png": kl_gap_vs_tokens(runs, table, color),
        "kl_gap_vs_params.png": scaling(table, "params", metric, groups[0]),
        "kl_gap_vs_train_sequences.png": scaling(table, "train_sequences", metric, groups[1]),
        "heatmap.png": heatmap(table, *heat, metric) if heat else NO_HEATMAP,
        "kl_t.png": kl_t_curves(runs, table, color),
    }


def page_figures(
    runs: list[RunRecord],
    table: pd.DataFrame,
    out: Path,
    color: str,
    groups: tuple[str | None, str | None],
    heat: tuple[str, str] | None,
    metric: str,
) -> tuple[dict[str, str], str]:
    """({PNG file name: plotly <div>} of the figures that have data, plotly.js's file name),
    plotly.js written into `out` for the page to load without a network."""
    plan = figure_plan(runs, table, color, groups, heat, metric)
    divs = {
        name: to_div(fig, f"plot-{Path(name).stem}")
        for name, fig in plan.items()
        if not isinstance(fig, str)
    }
    return divs, write_plotly_js(out)


def to_div(fig: go.Figure, div_id: str) -> str:
    """The figure as a <div> and the script that draws it (plotly.js loaded by the page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=CONFIG)


def write_plotly_js(out: Path) -> str:
    """Writes the installed plotly's plotly.min.js into `out` (when it differs); its file name."""
    from plotly.offline import get_plotlyjs

    path = Path(out) / PLOTLY_JS
    text = get_plotlyjs()
    if not path.is_file() or path.stat().st_size != len(text.encode()):
        path.write_text(text)
    return PLOTLY_JS
