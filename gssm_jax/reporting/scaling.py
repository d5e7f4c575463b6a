"""Scaling fits of a runs table: the KL gap against parameters and/or training data (the power laws
of gssm_jax.reporting.powerlaw), every run a point, with percentile-bootstrap intervals over seeds.

The bootstrap resamples whole seeds: a resample draws as many seed labels (the run's values of
the seed keys) as there are, with replacement, and refits on all the runs of the drawn labels. A
seed's runs move together because they share what the seed drew (a harder graph is harder at
every size), and resampling them together keeps that. With S seeds there are only
C(2S-1, S) distinct resamples (10 for 3 seeds, 35 for 4): the interval is coarse for few seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from gssm_jax.reporting import powerlaw, stats
from gssm_jax.reporting.powerlaw import FitError, NotConvergedError  # noqa: F401 (re-exported)
from gssm_jax.reporting.stats import SEED_KEYS

RESAMPLES = 1000
SYMBOLS = {"params": "N", "train_sequences": "D", "tokens": "D"}


@dataclasses.dataclass(frozen=True)
class Fit:
    """A fitted law over the runs of a table and its bootstrap over seeds.

    params: A, alpha (and B, beta for two axes); intervals: the same names -> (low, high), None
    without a bootstrap (one seed, or resamples=0); failed_resamples: resamples whose refit was
    refused or did not converge (left out of the intervals)."""

    metric: str
    axes: tuple[str, ...]
    params: dict[str, float]
    rms_log_residual: float
    n_points: int
    n_seeds: int
    intervals: dict[str, tuple[float, float]] | None
    confidence: float
    resamples: int
    failed_resamples: int

    def predict(self, *x: np.ndarray) -> np.ndarray:
        """The fitted kl at x (one array per axis, in the order of `axes`)."""
        return powerlaw.predict(self.params, *x)


def fit_points(
    table: pd.DataFrame, metric: str, axes: Sequence[str], seed_keys: Sequence[str] = SEED_KEYS
) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
    """The runs with a finite metric and axes: x (axes x runs), y, and each run's seed label."""
    for axis in axes:
        if axis not in table:
            raise FitError(f"fit: no column {axis!r} in the runs table")
    y = stats.metric_values(table, metric)
    x_AxP = np.stack([stats.metric_values(table, a) for a in axes])
    keep = np.isfinite(y) & np.all(np.isfinite(x_AxP), axis=0)
    seeds = stats.seed_columns(table, seed_keys)
    labels = [tuple(stats.cell(v) for v in row) for row in table[seeds].itertuples(index=False)]
    return x_AxP[:, keep], y[keep], [lab for lab, k in zip(labels, keep) if k]


def fit_scaling(
    table: pd.DataFrame,
    metric: str,
    axes: Sequence[str] = ("params", "train_sequences"),
    seed_keys: Sequence[str] = SEED_KEYS,
    resamples: int = RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    max_evaluations: int = 2000,
) -> Fit:
    """Fit `metric` over the `axes` that vary among the runs having them: both of two -> kl = A
    N^-alpha + B D^-beta, one -> kl = A x^-alpha. Intervals: `resamples` seed resamples (numpy
    Generator seeded `seed`), each refitted from the full fit, percentile `confidence`.

    FitError when no axis varies, the points are too few or a kl is <= 0; NotConvergedError when
    the full fit does not converge (see powerlaw.fit_law)."""
    x_AxP, y_P, labels = fit_points(table, metric, axes, seed_keys)
    moving = [i for i, a in enumerate(axes) if len(set(x_AxP[i])) > 1]
    if not moving:
        raise FitError(
            f"fit of {metric}: none of {', '.join(axes)} varies among the {len(y_P)} runs with it"
        )
    axes = tuple(axes[i] for i in moving)
    x_AxP = x_AxP[moving]
    estimate = powerlaw.fit_law(x_AxP, y_P, axes, max_evaluations=max_evaluations)
    distinct = sorted(set(labels), key=lambda lab: [stats.sort_key(v) for v in lab])
    intervals, failed = None, 0
    if resamples > 0 and len(distinct) > 1:
        samples, failed = _bootstrap(
            x_AxP, y_P, labels, distinct, axes, estimate, resamples, seed, max_evaluations
        )
        if samples:
            intervals = {
                name: stats.percentile_interval([s[name] for s in samples], confidence)
                for name in estimate.params
            }
    return Fit(
        metric=metric,
        axes=axes,
        params=estimate.params,
        rms_log_residual=estimate.rms_log_residual,
        n_points=len(y_P),
        n_seeds=len(distinct),
        intervals=intervals,
        confidence=confidence,
        resamples=resamples if len(distinct) > 1 else 0,
        failed_resamples=failed,
    )


def _bootstrap(x_AxP, y_P, labels, distinct, axes, estimate, resamples, seed, max_evaluations):
    """Refits on `resamples` seed resamples; a resample drawn before reuses its refit."""
    rng = np.random.default_rng(seed)
    rows_of = {lab: np.flatnonzero([lab == other for other in labels]) for lab in distinct}
    done: dict[tuple, dict | None] = {}
    samples, failed = [], 0
    for _ in range(resamples):
        drawn = tuple(sorted(rng.integers(0, len(distinct), size=len(distinct))))
        if drawn not in done:
            rows = np.concatenate([rows_of[distinct[i]] for i in drawn])
            try:
                done[drawn] = powerlaw.fit_law(
                    x_AxP[:, rows], y_P[rows], axes, estimate.params, max_evaluations
                ).params
            except FitError:
                done[drawn] = None
        if done[drawn] is None:
            failed += 1
        else:
            samples.append(done[drawn])
    return samples, failed


def _sci(value: float) -> str:
    """3.1e2 rather than 3.1e+02."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _decimals(lo: float, hi: float) -> int:
    """Decimals (2 to 4) that tell an interval's ends apart."""
    return next((k for k in (2, 3) if f"{lo:.{k}f}" != f"{hi:.{k}f}"), 4)


def describe_fit(fit: Fit, symbols: dict[str, str] | None = None) -> str:
    """The fit in one line, e.g. `kl = 3.1e2 * N^-0.52 [0.47, 0.57] (95% bootstrap over 3
    seeds, 1000 resamples)`; exponent intervals in brackets (2 decimals, up to 4 when a narrow interval needs them); `symbols` names the axes (default
    N for params, D for train_sequences and tokens, else the column name)."""
    symbols = {**SYMBOLS, **(symbols or {})}
    terms = []
    for (amp, exp), axis in zip((("A", "alpha"), ("B", "beta")), fit.axes):
        lo, hi = fit.intervals[exp] if fit.intervals else (0.0, 0.0)
        k = _decimals(lo, hi) if fit.intervals else 2
        term = f"{_sci(fit.params[amp])} * {symbols.get(axis, axis)}^{-fit.params[exp]:.{k}f}"
        if fit.intervals:
            term += f" [{lo:.{k}f}, {hi:.{k}f}]"
        terms.append(term)
    if fit.intervals:
        note = f"{fit.confidence:.0%} bootstrap over {fit.n_seeds} seeds, {fit.resamples} resamples"
        if fit.failed_resamples:
            note += f", {fit.failed_resamples} refits failed"
    elif fit.n_seeds < 2:
        note = f"no interval: {fit.n_seeds} seed"
    elif fit.resamples:
        note = f"no interval: all {fit.resamples} bootstrap refits failed"
    else:
        note = "no interval: no bootstrap"
    return f"kl = {' + '.join(terms)} ({note}; {fit.n_points} runs)"
