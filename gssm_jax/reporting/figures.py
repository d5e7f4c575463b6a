"""The report's figures, one function each: `(..., path) -> None`, or the reason it has nothing to
draw as a string (the page says why a figure is missing instead of showing an empty one)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gssm_jax.reporting.runs import RunRecord, finite  # noqa: E402
from gssm_jax.reporting.series import series_labels  # noqa: E402
from gssm_jax.reporting.table import DERIVED, grid_keys  # noqa: E402

MAX_LEGEND = 6  # numeric keys with more distinct values get a colour bar
METRIC_LABEL = {"best_eval_kl_gap": "best eval kl_gap", "eval_kl_gap": "final eval kl_gap"}


def _numeric(values: pd.Series) -> np.ndarray | None:
    out = pd.to_numeric(values, errors="coerce")
    return None if out.isna().any() else out.to_numpy(float)


MISSING = "none"  # the legend's name for runs without a value of the key (e.g. another sweep's)


def _key(value) -> str:
    return (
        MISSING if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)
    )


class Palette:
    """Colours for the values of one key: a colour bar for numbers with more than MAX_LEGEND
    values (log scale when they span 10x or more), a legend for anything else; runs without a
    value are grey."""

    def __init__(self, key: str, values: pd.Series) -> None:
        self.key = key
        keys = [_key(v) for v in values]
        present = [v for v, k in zip(values, keys) if k != MISSING]
        numbers = _numeric(pd.Series(present, dtype=object))
        self.norm = None
        self._by = {MISSING: (0.6, 0.6, 0.6, 1.0)}
        if numbers is not None and len(set(numbers)) > MAX_LEGEND:
            lo, hi = numbers.min(), numbers.max()
            log = lo > 0 and hi / lo >= 10
            self.norm = mcolors.LogNorm(lo, hi) if log else mcolors.Normalize(lo, hi)
            self.cmap = plt.get_cmap("viridis")
            self._by.update({_key(v): self.cmap(self.norm(n)) for v, n in zip(present, numbers)})
        else:
            distinct = list(dict.fromkeys(_key(v) for v in present))
            if numbers is not None:  # a few numbers: a legend in numeric order
                distinct = [_key(v) for v in sorted(set(present), key=float)]
            cmap = plt.get_cmap("tab10" if len(distinct) <= 10 else "tab20")
            self._by.update({v: cmap(i % cmap.N) for i, v in enumerate(distinct)})
        self._labelled: set[str] = set()

    def color(self, value) -> tuple:
        return self._by[_key(value)]

    def label(self, value) -> str | None:
        """The legend label the first time a value is drawn (categorical keys and missing)."""
        k = _key(value)
        if (self.norm is not None and k != MISSING) or k in self._labelled:
            return None
        self._labelled.add(k)
        return f"{self.key}={k}"

    def finish(self, fig, ax) -> None:
        if self.norm is not None:
            mappable = plt.cm.ScalarMappable(norm=self.norm, cmap=self.cmap)
            fig.colorbar(mappable, ax=ax, label=self.key)
        if self._labelled:
            ax.legend(fontsize="small", loc="best")


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def kl_gap_vs_tokens(
    runs: list[RunRecord], table: pd.DataFrame, color: str, path: Path
) -> str | None:
    """Held-out kl_gap against tokens seen, log-log, one line per run coloured by `color`."""
    palette = Palette(color, table[color])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn, dropped = 0, 0
    for run, (_, row) in zip(runs, table.iterrows()):
        per_step = row["tokens"] / row["step"] if row["tokens"] and row["step"] else None
        steps_gaps = [(r.get("step"), finite(r.get("kl_gap"))) for r in run.eval]
        points = [(s * per_step, g) for s, g in steps_gaps if per_step and s and g is not None]
        dropped += sum(g <= 0 for _, g in points)
        points = [(t, g) for t, g in points if g > 0]
        if not points:
            continue
        tokens, gaps = zip(*points)
        value = row[color]
        ax.plot(
            tokens,
            gaps,
            marker=".",
            color=palette.color(value),
            label=palette.label(value),
            alpha=0.85,
        )
        drawn += 1
    if not drawn:
        plt.close(fig)
        return "no run has a positive held-out kl_gap yet"
    ax.set(xscale="log", yscale="log", xlabel="tokens seen", ylabel="eval kl_gap (nats/token)")
    note = f" ({dropped} points <= 0 not shown)" if dropped else ""
    ax.set_title(f"held-out KL gap, {drawn} runs{note}", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    palette.finish(fig, ax)
    _save(fig, path)
    return None


def scaling(table: pd.DataFrame, x: str, metric: str, group: str | None, path: Path) -> str | None:
    """`metric` against `x` (params or train_sequences), log-log: every run a dot, the mean over
    runs at the same x (seeds) a line, coloured by `group`; a line joins only runs equal in every
    other varying key (series.py), so a colour may hold several lines."""
    data = table[pd.to_numeric(table[x], errors="coerce") > 0]
    data = data[pd.to_numeric(data[metric], errors="coerce").notna()]
    if data[x].nunique() < 2:
        return f"fewer than two values of {x} among runs with a {metric}"
    data = data.assign(**{x: data[x].astype(float), metric: data[metric].astype(float)})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = (
        [(None, data)] if group is None else list(data.groupby(data[group].map(_key), sort=False))
    )
    palette = Palette(group, data[group]) if group else None
    series = series_labels(data, x, [*grid_keys(data), *DERIVED])
    for value, part in groups:
        colour = palette.color(value) if palette else "C0"
        label = palette.label(value) if palette else None
        ax.scatter(part[x], part[metric], color=colour, s=12, alpha=0.45)
        for _, line in part.groupby(series.loc[part.index], sort=False):
            mean = line.groupby(x)[metric].mean().sort_index()
            ax.plot(mean.index, mean.to_numpy(), marker="o", color=colour, label=label)
            label = None
    positive = bool((data[metric] > 0).all())
    ax.set(
        xscale="log",
        yscale="log" if positive else "linear",
        xlabel=x,
        ylabel=METRIC_LABEL.get(metric, metric),
    )
    ax.set_title(
        f"{METRIC_LABEL.get(metric, metric)} against {x} (line: mean over seeds)", fontsize="medium"
    )
    ax.grid(True, which="both", alpha=0.3)
    if palette:
        palette.finish(fig, ax)
    _save(fig, path)
    return None


def heatmap(table: pd.DataFrame, kx: str, ky: str, metric: str, path: Path) -> str | None:
    """Mean `metric` over the runs of each (kx, ky) cell, annotated."""
    if kx not in table or ky not in table:
        return f"no column {kx if kx not in table else ky}"
    data = table[pd.to_numeric(table[metric], errors="coerce").notna()]
    data = data[data[kx].notna() & data[ky].notna()]  # runs of another sweep may lack a key
    nx, ny = data[kx].astype(str).nunique(), data[ky].astype(str).nunique()
    if data.empty or nx * ny < 2:
        return f"fewer than two ({kx}, {ky}) cells with a {metric}"
    pairs = len(data[[kx, ky]].astype(str).drop_duplicates())
    if nx > 1 and ny > 1 and pairs == nx == ny:
        return f"{kx} and {ky} vary together (one {ky} per {kx}): no grid to show"
    grid = data.assign(**{metric: data[metric].astype(float)}).pivot_table(
        index=ky, columns=kx, values=metric, aggfunc="mean"
    )
    grid = _sorted(_sorted(grid, axis=0), axis=1)
    values = grid.to_numpy(float)
    fig, ax = plt.subplots(figsize=(1.2 * values.shape[1] + 3, 0.8 * values.shape[0] + 2))
    finite_values = values[np.isfinite(values)]
    norm = (
        mcolors.LogNorm()
        if (finite_values > 0).all() and finite_values.max() / finite_values.min() > 10
        else None
    )
    image = ax.imshow(values, cmap="magma_r", norm=norm, aspect="auto", origin="lower")
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            r, g, b, _ = image.cmap(image.norm(v))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize="small", color=ink)
    ax.set_xticks(range(values.shape[1]), [str(c) for c in grid.columns], rotation=45)
    ax.set_yticks(range(values.shape[0]), [str(i) for i in grid.index])
    ax.set(xlabel=kx, ylabel=ky)
    ax.set_title(f"{METRIC_LABEL.get(metric, metric)} (mean over runs)", fontsize="medium")
    fig.colorbar(image, ax=ax)
    _save(fig, path)
    return None


def _sorted(frame: pd.DataFrame, axis: int) -> pd.DataFrame:
    labels = frame.index if axis == 0 else frame.columns
    numbers = pd.to_numeric(pd.Series(labels), errors="coerce")
    if numbers.isna().any():
        return frame
    return frame.sort_index(axis=axis, key=lambda idx: pd.to_numeric(idx))


def kl_t_curves(runs: list[RunRecord], table: pd.DataFrame, color: str, path: Path) -> str | None:
    """Per-position KL gap kl_t of each run's newest `evals/<step>.json`, coloured by `color`."""
    have = [(run, row) for run, (_, row) in zip(runs, table.iterrows()) if run.kl_t]
    if not have:
        return "no run has evals/<step>.json with a kl_t list (written by gssm_jax.inference.evaluation)"
    palette = Palette(color, pd.Series([row[color] for _, row in have]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run, row in have:
        assert run.kl_t is not None  # `have` keeps the runs with one
        kl_t = np.asarray(run.kl_t["kl_t"], float)
        value = row[color]
        ax.plot(
            np.arange(1, len(kl_t) + 1),
            kl_t,
            color=palette.color(value),
            label=palette.label(value),
            alpha=0.85,
        )
    ax.set(xscale="log", xlabel="position t", ylabel="kl_t (nats/token)")
    ax.set_title(f"per-position KL gap, newest evaluation of {len(have)} runs", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    palette.finish(fig, ax)
    _save(fig, path)
    return None
