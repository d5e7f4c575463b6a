"""Figures of seed statistics, one function each: `(..., path) -> None` when drawn, or the reason
there is nothing to draw as a string (the convention of the report's other figures). Means over
seeds with error bars or bands, the seed count in the legend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from gssm_jax.reporting import stats  # noqa: E402
from gssm_jax.reporting.stats import SEED_KEYS  # noqa: E402

MAX_LEGEND = 12  # more lines than this: no legend (it would hide the plot)
SPREAD_LABEL = {"std": "± std", "sem": "± s.e.m.", "range": "min-max"}


def save(fig, path: Path | str) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def seed_count(n: Sequence[int]) -> str:
    """`n=3`, or `n=2-3` when the points of a line have different seed counts."""
    lo, hi = int(min(n)), int(max(n))
    return f"n={lo}" if lo == hi else f"n={lo}-{hi}"


def label(keys: Sequence[str], values: Sequence) -> str:
    """`k=v, ...`, floats in 4 significant digits (1e+05, not 100000.0)."""
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(keys, values)
    )


def check_spread(spread: str) -> None:
    if spread not in SPREAD_LABEL:
        raise stats.StatsError(f"spread={spread!r}: expected one of {', '.join(SPREAD_LABEL)}")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def key_lines(
    table: pd.DataFrame, key: str, metric: str, seed_keys: Sequence[str] = SEED_KEYS
) -> tuple[list[str], list[str], list[tuple[tuple, pd.DataFrame]]]:
    """The lines of metric_vs_key: the keys that tell lines apart (every other varying non-seed
    key), the keys `key` fixes (left out of those: they would split nothing more), and per line
    its values of the keys and its seed_summary rows sorted by `key`. Runs without a finite
    `metric` or a value of `key` are left out."""
    y = stats.metric_values(table, metric)
    if key not in table:
        raise stats.StatsError(f"no column {key!r} in the runs table")
    keep = np.isfinite(y) & np.array([stats.cell(v) is not None for v in table[key]], bool)
    data = table[keep].reset_index(drop=True)
    others = [k for k in stats.condition_keys(data, seed_keys=seed_keys) if k != key]
    tied = stats.functions_of(data, key, others) if len(data) else []
    others = [k for k in others if k not in tied]
    summary = stats.seed_summary(data, metric, keys=[*others, key])
    summary = summary[summary["n"] > 0].reset_index(drop=True)
    lines = [
        (values, summary.iloc[rows_i].sort_values(key, key=lambda s: s.map(stats.sort_key)))
        for values, rows_i in stats.conditions(summary, others)
    ]
    return others, tied, lines


def metric_vs_key(
    table: pd.DataFrame,
    key: str,
    metric: str,
    path: Path | str,
    spread: str = "std",
    seed_keys: Sequence[str] = SEED_KEYS,
) -> str | None:
    """`metric` against the swept `key` itself (a log axis for positive numbers spanning 10x or
    more, evenly spaced categories otherwise): the mean over seeds with `spread` error bars, one
    line per combination of the other varying non-seed keys, so a line only joins runs that
    differ in `key` (and in keys `key` fixes, like params by model.emb_dim) and their seeds."""
    check_spread(spread)
    for column in (key, metric):
        if column not in table:
            return f"no column {column} in the runs table"
    others, tied, lines = key_lines(table, key, metric, seed_keys)
    xs: list[Any] = sorted(
        {stats.cell(x) for _, part in lines for x in part[key]}, key=stats.sort_key
    )
    if len(xs) < 2:
        return f"fewer than two values of {key} among runs with a {metric}"
    numeric = all(_is_number(x) for x in xs)
    log_x = numeric and min(xs) > 0 and max(xs) / min(xs) >= 10
    position = {x: (float(x) if numeric else i) for i, x in enumerate(xs)}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (values, part) in zip(colours(len(lines)), lines):
        ax.errorbar(
            [position[stats.cell(x)] for x in part[key]],
            part["mean"],
            yerr=stats.error_bars(part, spread),
            marker="o",
            capsize=3,
            color=colour,
            label=f"{label(others, values) or 'mean'} ({seed_count(part['n'])})",
        )
    positive = all((part["min"] > 0).all() for _, part in lines)
    ax.set(
        xscale="log" if log_x else "linear",
        yscale="log" if positive else "linear",
        xlabel=key,
        ylabel=metric,
    )
    if not numeric:  # after the scale, which would reset the ticks
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30)
    note = f"; {', '.join(tied)} follow {key}" if tied else ""
    ax.set_title(
        f"{metric} against {key}: mean {SPREAD_LABEL[spread]} over seeds{note}", fontsize="medium"
    )
    ax.grid(True, which="both", alpha=0.3)
    if len(lines) <= MAX_LEGEND:
        ax.legend(fontsize="small", loc="best")
    save(fig, path)
    return None


def curves_by(
    table: pd.DataFrame, keys: Sequence[str], column: str = "kl_t"
) -> dict[str, list[np.ndarray]]:
    """{`key=value, ...`: the `column` curves (lists) of its runs} for kl_t_bands; runs without a
    curve are left out."""
    out: dict[str, list[np.ndarray]] = {}
    for values, rows_i in stats.conditions(table, list(keys)):
        curves = [
            np.asarray(c, float)
            for c in table[column].iloc[rows_i]
            if isinstance(c, list | tuple | np.ndarray) and len(c)
        ]
        if curves:
            out[label(keys, values) or "all runs"] = curves
    return out


def kl_t_bands(
    curves: Mapping[str, Sequence[np.ndarray]], path: Path | str, spread: str = "std"
) -> str | None:
    """Per-position KL gap of groups side by side, log position axis: each group's mean curve over
    its runs (seeds) and a `spread` band (none for one run). Every curve of a group must have
    the same length (the run's seq_len - 1); a log y axis clips a band at the group's lowest
    curve."""
    check_spread(spread)
    groups = {k: [np.asarray(c, float) for c in v] for k, v in curves.items() if len(v)}
    if not groups:
        return "no kl_t curves to draw"
    for name, arrays in groups.items():
        lengths = sorted({len(a) for a in arrays})
        if len(lengths) > 1:
            return f"kl_t curves of {name} have different lengths {lengths}: not one seq_len"
    stacked = {name: np.stack(arrays) for name, arrays in groups.items()}
    log_y = all(np.all(s > 0) for s in stacked.values())
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (name, kl_KxL) in zip(colours(len(stacked)), stacked.items()):
        t = np.arange(1, kl_KxL.shape[1] + 1)
        summary = pd.DataFrame([stats.summarize(col) for col in kl_KxL.T])
        mean = summary["mean"].to_numpy()
        ax.plot(t, mean, color=colour, label=f"{name} (n={len(kl_KxL)})")
        if len(kl_KxL) > 1:
            down, up = stats.error_bars(summary, spread)
            low = np.maximum(mean - down, kl_KxL.min(axis=0)) if log_y else mean - down
            ax.fill_between(t, low, mean + up, color=colour, alpha=0.25, linewidth=0)
    ax.set(
        xscale="log",
        yscale="log" if log_y else "linear",
        xlabel="position t",
        ylabel="kl_t (nats/token)",
    )
    ax.set_title(f"per-position KL gap: mean {SPREAD_LABEL[spread]} over runs", fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    save(fig, path)
    return None
