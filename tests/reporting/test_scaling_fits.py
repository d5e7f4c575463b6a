"""Scaling fits: planted power laws recovered, bootstrap intervals over seeds, refusals."""

import re

import numpy as np
import pytest
from planted import planted_scaling

from gssm_jax.reporting import powerlaw, scaling
from gssm_jax.reporting.scaling import FitError, NotConvergedError

SIZES = np.geomspace(1e4, 1e7, 7).round()  # parameters, 3 decades
DATA = np.geomspace(1e5, 1e9, 7).round()  # training sequences, 4 decades
ONE = lambda n, d: 300.0 * n**-0.5  # noqa: E731
TWO = lambda n, d: 300.0 * n**-0.5 + 50.0 * d**-0.3  # noqa: E731


def test_one_variable_law_is_recovered_with_a_bootstrap_interval():
    table = planted_scaling(SIZES, [1000], seeds=5, noise=0.03, rng_seed=0, law=ONE)
    fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=300, seed=0)
    assert fit.axes == ("params",)  # train_sequences does not vary: the one-term form
    assert fit.params["alpha"] == pytest.approx(0.5, rel=0.02)
    assert fit.params["A"] == pytest.approx(300.0, rel=0.15)
    lo, hi = fit.intervals["alpha"]
    assert lo < 0.5 < hi and hi - lo < 0.05
    assert (fit.n_points, fit.n_seeds, fit.resamples, fit.failed_resamples) == (35, 5, 300, 0)
    assert 0.01 < fit.rms_log_residual < 0.05  # the planted 3% noise


def test_two_variable_law_is_recovered():
    table = planted_scaling(SIZES, DATA, seeds=3, noise=0.03, rng_seed=1, law=TWO)
    fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=100, seed=0)
    assert fit.axes == ("params", "train_sequences")
    assert fit.params["alpha"] == pytest.approx(0.5, rel=0.02)
    assert fit.params["beta"] == pytest.approx(0.3, rel=0.02)
    assert fit.params["B"] == pytest.approx(50.0, rel=0.3)
    for name, truth in (("alpha", 0.5), ("beta", 0.3)):
        lo, hi = fit.intervals[name]
        assert lo <= fit.params[name] <= hi and hi - lo < 0.1 * truth
    n, d = np.array([1e5, 1e6]), np.array([1e6, 1e7])
    assert fit.predict(n, d) == pytest.approx(TWO(n, d), rel=0.05)


def test_the_bootstrap_interval_contains_the_planted_exponents():
    table = planted_scaling(SIZES, DATA[::2], seeds=6, noise=0.05, rng_seed=2, law=TWO)
    fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=200, seed=3)
    assert fit.intervals["alpha"][0] < 0.5 < fit.intervals["alpha"][1]
    assert fit.intervals["beta"][0] < 0.3 < fit.intervals["beta"][1]


def test_too_few_points_are_refused():
    table = planted_scaling(SIZES[:2], [1000], seeds=4, noise=0.03, rng_seed=0, law=ONE)
    with pytest.raises(FitError, match="over params: 2 distinct point\\(s\\), needs at least 3"):
        scaling.fit_scaling(table, "best_eval_kl_gap")
    table = planted_scaling(SIZES, DATA[:2], seeds=2, noise=0.03, rng_seed=0, law=TWO)
    with pytest.raises(
        FitError, match="2 distinct value\\(s\\) of train_sequences, needs at least 3"
    ):
        scaling.fit_scaling(table, "best_eval_kl_gap")
    with pytest.raises(FitError, match="over N, D: 4 distinct point\\(s\\), needs at least 5"):
        powerlaw.fit_law(([1, 2, 3, 4], [1, 2, 3, 4]), [1, 1, 1, 1], ("N", "D"))
    one = table[table.params == SIZES[0]]
    with pytest.raises(FitError, match="none of params, train_sequences varies"):
        scaling.fit_scaling(one[one.train_sequences == DATA[0]], "best_eval_kl_gap")


def test_gaps_that_are_not_positive_are_refused():
    table = planted_scaling(SIZES, [1000], seeds=2, noise=0.03, rng_seed=0, law=ONE)
    table.loc[3, "best_eval_kl_gap"] = -0.002
    with pytest.raises(FitError, match="1 of 14 kl values are <= 0"):
        scaling.fit_scaling(table, "best_eval_kl_gap")


def test_a_fit_that_does_not_converge_says_so():
    table = planted_scaling(SIZES, DATA, seeds=1, noise=0.03, rng_seed=0, law=TWO)
    with pytest.raises(NotConvergedError, match="did not converge after 2 evaluations"):
        scaling.fit_scaling(table, "best_eval_kl_gap", max_evaluations=2)
    flat = planted_scaling(SIZES, DATA, seeds=1, noise=0.0, rng_seed=0, law=ONE)
    with pytest.raises(NotConvergedError, match="leaves a parameter undetermined"):
        scaling.fit_scaling(flat, "best_eval_kl_gap")


def test_the_fit_in_one_line():
    table = planted_scaling(SIZES, [1000], seeds=3, noise=0.03, rng_seed=0, law=ONE)
    fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=200)
    line = scaling.describe_fit(fit)
    pattern = r"kl = \d\.\de\d \* N\^-0\.\d\d+ \[0\.\d\d+, 0\.\d\d+\] \(95% bootstrap over 3 seeds, 200 resamples; 21 runs\)"
    assert re.fullmatch(pattern, line), line
    single = scaling.fit_scaling(table[table["data.graph_seed"] == 0], "best_eval_kl_gap")
    assert scaling.describe_fit(single).endswith("(no interval: 1 seed; 7 runs)")
    two = scaling.fit_scaling(
        planted_scaling(SIZES, DATA, seeds=2, noise=0.03, rng_seed=0, law=TWO),
        "best_eval_kl_gap",
        resamples=20,
    )
    assert re.fullmatch(
        r"kl = .* \* N\^-0\.\d\d+ \[.*\] \+ .* \* D\^-0\.\d\d+ \[.*\] \(95% .*\)",
        scaling.describe_fit(two),
    )
    assert scaling._sci(310.0) == "3.1e2" and scaling._sci(0.0123) == "1.2e-2"
    assert (scaling._decimals(0.47, 0.57), scaling._decimals(0.496, 0.503)) == (2, 3)
