"""Paired comparisons of groups of runs: the difference of a metric between two values of one key
(setup small_x against small_z, say) over runs that share every other key, seeds included, with a
bootstrap interval of the mean difference and how many seeds agree on its sign.

Pairing removes what the seeds share: two setups run on the same graph seed meet the same graph,
so their difference varies far less over seeds than either metric does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gssm_jax.reporting import stats
from gssm_jax.reporting.stats import SEED_KEYS, StatsError

RESAMPLES = 10_000
COLUMNS = (
    "reference",
    "value",
    "n_pairs",
    "unpaired",
    "mean_reference",
    "mean_value",
    "mean_diff",
    "ci_low",
    "ci_high",
    "n_higher",
    "n_lower",
    "agree",
    "signs",
    "confidence",
    "resamples",
)


def _label(keys: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values)) or "all runs"


def compare_groups(
    table: pd.DataFrame,
    metric: str,
    by: str,
    values: Sequence | None = None,
    within: Sequence[str] | None = None,
    seed_keys: Sequence[str] = SEED_KEYS,
    resamples: int = RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """`metric` of each value of `by` against the first of `values` (default: every value of
    `by`, sorted), within each combination of the `within` keys (default: every other varying
    non-seed key, less those `by` fixes, e.g. the alphas of a setup name).

    A pair is a reference run and a run of the other value sharing the within keys and every
    varying seed key. One row per (within cell, value): n_pairs, unpaired (runs without a
    partner), the means over the paired runs, mean_diff = mean of (value - reference), its
    percentile-bootstrap interval [ci_low, ci_high] (`resamples` resamples of the pairs by
    numpy's Generator seeded `seed`), n_higher / n_lower (pairs with a positive / negative
    difference), agree (pairs whose sign is the mean's) and signs (one + or - or 0 per pair, in
    seed order). StatsError for fewer than 2 pairs in any cell or runs that share every key."""
    if by not in table:
        raise StatsError(f"compare: no column {by!r} in the runs table")
    y = stats.metric_values(table, metric)
    present = sorted({stats.cell(v) for v in table[by]}, key=stats.sort_key)
    values = present if values is None else [stats.cell(v) for v in values]
    if len(values) < 2:
        raise StatsError(f"compare {by}: needs two or more values, got {values}")
    for v in values:
        if v not in present:
            raise StatsError(f"compare {by}: no run has {by}={v} (values: {present})")
    chosen = table[[stats.cell(v) in values for v in table[by]]].reset_index(drop=True)
    y = y[[stats.cell(v) in values for v in table[by]]]
    seeds = stats.varying(chosen, stats.seed_columns(chosen, seed_keys))
    if within is None:
        others = [k for k in stats.condition_keys(chosen, seed_keys=seed_keys) if k != by]
        tied = set(stats.functions_of(chosen, by, others))
        within = [k for k in others if k not in tied]
    within = list(within)
    rng = np.random.default_rng(seed)
    rows = []
    for point, rows_i in stats.conditions(chosen, within):
        cell_rows = chosen.iloc[rows_i]
        runs = _runs_by_seed(cell_rows, y[rows_i], by, seeds, _label(within, point))
        reference = runs.get(values[0], {})
        for value in values[1:]:
            other = runs.get(value, {})
            common = sorted(
                set(reference) & set(other), key=lambda s: [stats.sort_key(x) for x in s]
            )
            where = f"{_label(within, point)}: {by}={values[0]} and {by}={value}"
            if len(common) < 2:
                raise StatsError(
                    f"compare {where}: {len(common)} pair(s) of runs sharing "
                    f"{', '.join(seeds) or 'every key'}; needs at least 2"
                )
            a = np.array([reference[s] for s in common])
            b = np.array([other[s] for s in common])
            diff = b - a
            mean = float(diff.mean())
            lo, hi = stats.bootstrap_mean_interval(diff, resamples, confidence, rng)
            signs = "".join("+" if d > 0 else "-" if d < 0 else "0" for d in diff)
            rows.append(
                {
                    **dict(zip(within, point)),
                    "reference": values[0],
                    "value": value,
                    "n_pairs": len(common),
                    "unpaired": len(reference) + len(other) - 2 * len(common),
                    "mean_reference": float(a.mean()),
                    "mean_value": float(b.mean()),
                    "mean_diff": mean,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_higher": int((diff > 0).sum()),
                    "n_lower": int((diff < 0).sum()),
                    "agree": int((np.sign(diff) == np.sign(mean)).sum()),
                    "signs": signs,
                    "confidence": confidence,
                    "resamples": resamples,
                }
            )
    return pd.DataFrame(rows, columns=[*within, *COLUMNS])


def _runs_by_seed(rows: pd.DataFrame, y: np.ndarray, by: str, seeds: list[str], where: str) -> dict:
    """{value of `by`: {seed values: metric}} of the rows with a finite metric."""
    out: dict = {}
    for (_, row), value in zip(rows.iterrows(), y):
        if not np.isfinite(value):
            continue
        group = out.setdefault(stats.cell(row[by]), {})
        key = tuple(stats.cell(row[s]) for s in seeds)
        if key in group:
            raise StatsError(
                f"compare {where}: two runs with {by}={row[by]} share "
                f"{_label(seeds, key) if seeds else 'every key'}; cannot pair them"
            )
        group[key] = float(value)
    return out
