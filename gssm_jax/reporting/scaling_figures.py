"""Figures of scaling: iso-KL contour lines of a two-term fit over (parameters, data) with the runs
on them, and the KL gap against training compute. `(..., path) -> None` when drawn, or the reason
there is nothing to draw as a string."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gssm_jax.reporting import scaling, stats  # noqa: E402
from gssm_jax.reporting.stat_figures import (  # noqa: E402
    SPREAD_LABEL,
    check_spread,
    colours,
    save,
    seed_count,
)
from gssm_jax.reporting.stats import SEED_KEYS  # noqa: E402

GRID = 200  # contour grid points per axis
MARGIN = 2.0  # the contour plot spans the runs' range widened by this factor each way


def _levels(z: np.ndarray, count: int) -> np.ndarray:
    """`count` log-spaced contour levels inside z's range, rounded to two significant digits."""
    raw = np.geomspace(z.min(), z.max(), count + 2)[1:-1]
    rounded = np.array([float(f"{v:.2g}") for v in raw])
    return np.unique(rounded[(rounded > z.min()) & (rounded < z.max())])


def iso_kl_contours(
    fit: scaling.Fit | None,
    table: pd.DataFrame,
    path: Path | str,
    levels: int = 8,
    seed_keys: Sequence[str] = SEED_KEYS,
) -> str | None:
    """Lines of equal fitted KL gap over (N, D) of a two-term fit, log-log, the runs' conditions
    drawn on them as dots coloured by their measured mean over seeds (same colour scale)."""
    if fit is None:
        return "no scaling fit to draw"
    if len(fit.axes) != 2:
        return f"iso-KL contours need a two-term fit over (N, D); this fit is over {fit.axes[0]}"
    x_AxP, y_P, _ = scaling.fit_points(table, fit.metric, fit.axes, seed_keys)
    if not len(y_P):
        return f"no run has {fit.metric}, {fit.axes[0]} and {fit.axes[1]}"
    points = pd.DataFrame({"n": x_AxP[0], "d": x_AxP[1], "kl": y_P})
    means = points.groupby(["n", "d"], as_index=False)["kl"].mean()
    n_G = np.geomspace(points["n"].min() / MARGIN, points["n"].max() * MARGIN, GRID)
    d_G = np.geomspace(points["d"].min() / MARGIN, points["d"].max() * MARGIN, GRID)
    n_GxG, d_GxG = np.meshgrid(n_G, d_G)
    kl_GxG = fit.predict(n_GxG, d_GxG)
    if not np.all(np.isfinite(kl_GxG) & (kl_GxG > 0)):
        return "the fit is not a finite positive kl over the runs' range"
    norm = mcolors.LogNorm(
        min(kl_GxG.min(), means["kl"].min()), max(kl_GxG.max(), means["kl"].max())
    )
    fig, ax = plt.subplots(figsize=(7, 5))
    lines = ax.contour(
        n_GxG, d_GxG, kl_GxG, levels=_levels(kl_GxG, levels), norm=norm, cmap="viridis"
    )
    ax.clabel(lines, fmt="%.2g", fontsize="small")
    dots = ax.scatter(
        means["n"], means["d"], c=means["kl"], norm=norm, cmap="viridis", edgecolors="black", s=40
    )
    fig.colorbar(dots, ax=ax, label=f"{fit.metric} (dots: runs' mean over seeds)")
    ax.set(xscale="log", yscale="log", xlabel=fit.axes[0], ylabel=fit.axes[1])
    title = "iso-KL lines of " + scaling.describe_fit(fit)
    ax.set_title(textwrap.fill(title, 80), fontsize="small")
    ax.grid(True, which="both", alpha=0.2)
    save(fig, path)
    return None


def kl_vs_compute(
    table: pd.DataFrame,
    metric: str,
    path: Path | str,
    flops: str = "flops_per_token",
    tokens: str = "tokens",
    group: str = "family",
    spread: str = "std",
    seed_keys: Sequence[str] = SEED_KEYS,
) -> str | None:
    """`metric` against training compute (`flops` x `tokens`, both columns), log-log: one marker
    per condition (mean over its seeds, `spread` error bars), coloured by `group`. No lines: the
    conditions of a family differ in more than compute (size, training length)."""
    check_spread(spread)
    for column in (metric, flops, tokens):
        if column not in table:
            return f"no column {column} in the runs table"
    compute = stats.metric_values(table, flops) * stats.metric_values(table, tokens)
    y = stats.metric_values(table, metric)
    keep = np.isfinite(compute) & (compute > 0) & np.isfinite(y)
    data = table[keep].reset_index(drop=True)
    if len(np.unique(np.log10(compute[keep]).round(9))) < 2:  # equal up to rounding
        return f"fewer than two compute values ({flops} x {tokens}) among runs with a {metric}"
    keys = stats.condition_keys(data, seed_keys=seed_keys)
    summary = stats.seed_summary(data, metric, keys=keys)
    summary["compute"] = stats.seed_summary(
        data.assign(compute=compute[keep]), "compute", keys=keys
    )["mean"]
    by = [group] if group in keys else []
    parts = stats.conditions(summary, by)
    only = f"{group}={data[group].iloc[0]}" if group in data else "runs"  # one value, or none
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (values, rows_i) in zip(colours(len(parts)), parts):
        part = summary.iloc[rows_i]
        name = f"{group}={values[0]}" if by else only
        ax.errorbar(
            part["compute"],
            part["mean"],
            yerr=stats.error_bars(part, spread),
            fmt="o",
            capsize=3,
            color=colour,
            label=f"{name} ({seed_count(part['n'])})",
        )
    ax.set(
        xscale="log",
        yscale="log" if bool((y[keep] > 0).all()) else "linear",
        xlabel=f"training compute: {flops} x {tokens} (FLOPs)",
        ylabel=metric,
    )
    ax.set_title(
        f"{metric} against compute: mean {SPREAD_LABEL[spread]} over seeds", fontsize="medium"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    save(fig, path)
    return None
