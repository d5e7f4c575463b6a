"""Seed statistics of a runs table: the runs that differ only in their seeds are one condition, and
a metric is summarised over them (mean, standard deviation, standard error, min, max, n)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

from gssm_jax.reporting.table import LEADING, RESULTS

# Keys that only pick random draws (init, streams, graph, shuffle, Monte-Carlo entropy, held-out
# stream): runs differing only in these are repeats of one condition.
SEED_KEYS = (
    "seed",
    "data.seed",
    "data.graph_seed",
    "data.shuffle_seed",
    "data.mc_seed",
    "eval.seed",
)
SUMMARY = ("n", "mean", "std", "sem", "min", "max")


class StatsError(ValueError):
    """A statistic asked of runs that cannot give it (a missing column, too few pairs)."""


def cell(value) -> Hashable:
    """A table value as a plain, hashable Python value: None for missing (None or NaN), numpy
    scalars unwrapped, so that equal values group together whatever their dtype."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, Hashable) else str(value)


def sort_key(value) -> tuple:
    """Orders values: numbers by value, then strings, missing last."""
    value = cell(value)
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def metric_values(table: pd.DataFrame, metric: str) -> np.ndarray:
    """`metric` as floats, NaN where missing or not a number; StatsError without the column."""
    if metric not in table:
        raise StatsError(f"no column {metric!r} in the runs table")
    return pd.to_numeric(table[metric], errors="coerce").to_numpy(float)


def key_columns(table: pd.DataFrame) -> list[str]:
    """The columns that describe a run rather than report on it: everything but the table's
    leading and result columns, and but columns holding lists (per-position curves)."""
    skip = {*LEADING, *RESULTS}
    return [
        c
        for c in table.columns
        if c not in skip and not any(isinstance(v, list | dict | np.ndarray) for v in table[c])
    ]


def varying(table: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The keys with more than one distinct value (missing counts as a value)."""
    return [k for k in keys if k in table and len({cell(v) for v in table[k]}) > 1]


def condition_keys(
    table: pd.DataFrame, keys: Sequence[str] | None = None, seed_keys: Sequence[str] = SEED_KEYS
) -> list[str]:
    """The varying keys that are not seeds: the ones a condition is made of."""
    keys = key_columns(table) if keys is None else list(keys)
    return [k for k in varying(table, keys) if k not in seed_keys]


def seed_columns(table: pd.DataFrame, seed_keys: Sequence[str] = SEED_KEYS) -> list[str]:
    """The seed keys the table has a column for."""
    return [k for k in seed_keys if k in table]


def functions_of(table: pd.DataFrame, key: str, keys: Sequence[str]) -> list[str]:
    """The `keys` fixed by `key`: one value for each value of `key` (params by model.emb_dim,
    alpha_x by a setup name). Grouping by them as well would split nothing `key` does not."""
    by = [cell(v) for v in table[key]]
    out = []
    for k in keys:
        if k == key:
            continue
        seen: dict = {}
        if all(seen.setdefault(b, cell(v)) == cell(v) for b, v in zip(by, table[k])):
            out.append(k)
    return out


def conditions(table: pd.DataFrame, keys: Sequence[str]) -> list[tuple[tuple, np.ndarray]]:
    """The rows of each distinct combination of `keys`: (values, row positions), sorted by value."""
    groups: dict[tuple, list[int]] = {}
    for i, values in enumerate(zip(*(table[k] for k in keys)) if keys else [()] * len(table)):
        groups.setdefault(tuple(cell(v) for v in values), []).append(i)
    order = sorted(groups, key=lambda values: [sort_key(v) for v in values])
    return [(values, np.asarray(groups[values], int)) for values in order]


def summarize(values: np.ndarray) -> dict[str, float]:
    """n, mean, std (ddof 1; NaN for one value), sem = std / sqrt(n), min, max of the finite values."""
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return {"n": 0, **{k: math.nan for k in SUMMARY[1:]}}
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    return {
        "n": n,
        "mean": float(x.mean()),
        "std": std,
        "sem": std / math.sqrt(n),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def seed_summary(
    table: pd.DataFrame,
    metric: str,
    keys: Sequence[str] | None = None,
    seed_keys: Sequence[str] = SEED_KEYS,
) -> pd.DataFrame:
    """One row per condition (the runs sharing every varying key but the seeds; `keys` to name
    the grouping keys yourself): the keys, then n, mean, std, sem, min and max of `metric` over
    the runs with a finite value of it. A condition without any has n = 0 and NaN statistics."""
    values = metric_values(table, metric)
    keys = condition_keys(table, seed_keys=seed_keys) if keys is None else list(keys)
    rows = []
    for point, rows_i in conditions(table, keys):
        rows.append({**dict(zip(keys, point)), **summarize(values[rows_i])})
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY])


def error_bars(summary: pd.DataFrame, spread: str) -> np.ndarray:
    """The (2, n) lower and upper error-bar lengths of a seed_summary: `std`, `sem` or `range`
    (min to max); zero where undefined (one seed)."""
    if spread == "range":
        bars = np.stack(
            [summary["mean"] - summary["min"], summary["max"] - summary["mean"]]
        ).astype(float)
    elif spread in ("std", "sem"):
        bars = np.stack([summary[spread], summary[spread]]).astype(float)
    else:
        raise StatsError(f"spread={spread!r}: expected 'std', 'sem' or 'range'")
    return np.nan_to_num(bars, nan=0.0)


def percentile_interval(
    samples: np.ndarray | Sequence[float], confidence: float
) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap `samples` (percentile method)."""
    if not 0 < confidence < 1:
        raise StatsError(f"confidence={confidence}: expected a number between 0 and 1")
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(np.asarray(samples, float), [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_mean_interval(
    values: np.ndarray, resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`: `resamples` draws of len(values)
    values with replacement."""
    x = np.asarray(values, float)
    if resamples < 1:
        raise StatsError(f"resamples={resamples}: expected at least 1")
    idx_RxN = rng.integers(0, len(x), size=(resamples, len(x)))
    return percentile_interval(x[idx_RxN].mean(axis=1), confidence)
