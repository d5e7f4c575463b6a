"""Seed aggregation: runs differing only in seeds are one condition, summarised over seeds."""

import math

import numpy as np
import pandas as pd
import pytest

from gssm_jax.reporting import stats


def _grid() -> pd.DataFrame:
    """emb_dim x lr x 3 graph seeds (params follows emb_dim); metric = lr * emb_dim + seed."""
    rows = []
    for emb in (32, 64):
        for lr in (1e-3, 1e-2):
            for s in (0, 1, 2):
                rows.append(
                    {
                        "run": f"e{emb}-lr{lr}-s{s}",
                        "status": "complete",
                        "model.emb_dim": emb,
                        "optim.lr": lr,
                        "data.graph_seed": s,
                        "seed": 7 + s,
                        "params": 100 * emb,
                        "step": 10 * s,  # a result: varies but is not a key
                        "eval_kl_gap": lr * emb + s,
                        "kl_t": [0.1, 0.2],  # a list column is not a key
                    }
                )
    return pd.DataFrame(rows)


def test_summary_groups_by_every_varying_key_but_the_seeds():
    table = _grid()
    summary = stats.seed_summary(table, "eval_kl_gap")
    assert list(summary.columns) == ["model.emb_dim", "optim.lr", "params", *stats.SUMMARY]
    assert len(summary) == 4 and (summary["n"] == 3).all()
    row = summary[(summary["model.emb_dim"] == 64) & (summary["optim.lr"] == 1e-2)].iloc[0]
    values = np.array([0.64, 1.64, 2.64])
    assert row["mean"] == pytest.approx(values.mean())
    assert row["std"] == pytest.approx(values.std(ddof=1))
    assert row["sem"] == pytest.approx(values.std(ddof=1) / math.sqrt(3))
    assert (row["min"], row["max"]) == (pytest.approx(0.64), pytest.approx(2.64))


def test_missing_metrics_are_not_counted_and_an_empty_condition_says_n_0():
    table = _grid()
    table.loc[0, "eval_kl_gap"] = None
    table.loc[table["optim.lr"] == 1e-2, "eval_kl_gap"] = float("nan")
    summary = stats.seed_summary(table, "eval_kl_gap", keys=["model.emb_dim", "optim.lr"])
    assert list(summary["n"]) == [2, 0, 3, 0]
    assert summary["mean"].isna().tolist() == [False, True, False, True]
    single = stats.seed_summary(table.iloc[[0, 1]], "eval_kl_gap", keys=[])
    assert single["n"].tolist() == [1] and math.isnan(single["std"].iloc[0])


def test_a_missing_key_value_is_its_own_condition_sorted_last():
    table = pd.DataFrame(
        {"optim.lr": [1e-2, None, 1e-3, float("nan")], "eval_kl_gap": [1.0, 2.0, 3.0, 4.0]}
    )
    summary = stats.seed_summary(table, "eval_kl_gap")
    assert summary["optim.lr"].tolist()[:2] == [1e-3, 1e-2]
    assert summary["optim.lr"].isna().tolist() == [False, False, True]
    assert summary["n"].tolist() == [1, 1, 2]


def test_keys_fixed_by_another_key_are_found():
    table = _grid()
    assert stats.functions_of(table, "model.emb_dim", ["optim.lr", "params"]) == ["params"]
    assert stats.functions_of(table, "optim.lr", ["model.emb_dim", "params"]) == []
    assert stats.key_columns(table) == [
        "model.emb_dim",
        "optim.lr",
        "data.graph_seed",
        "seed",
        "params",
    ]


def test_error_bars_and_bad_input_errors():
    summary = pd.DataFrame(
        {
            "mean": [2.0, 5.0],
            "std": [0.5, float("nan")],
            "sem": [0.25, 0.1],
            "min": [1.0, 5.0],
            "max": [4.0, 5.0],
        }
    )
    assert stats.error_bars(summary, "std").tolist() == [[0.5, 0.0], [0.5, 0.0]]
    assert stats.error_bars(summary, "range").tolist() == [[1.0, 0.0], [2.0, 0.0]]
    with pytest.raises(stats.StatsError, match="spread='iqr'"):
        stats.error_bars(summary, "iqr")
    with pytest.raises(stats.StatsError, match="no column 'loss'"):
        stats.seed_summary(summary, "loss")
    with pytest.raises(stats.StatsError, match="confidence=1.5"):
        stats.percentile_interval(np.ones(3), 1.5)


def test_bootstrap_mean_interval_is_seeded_and_brackets_the_mean():
    x = np.array([0.1, 0.3, 0.2, 0.5, 0.4])
    a = stats.bootstrap_mean_interval(x, 2000, 0.9, np.random.default_rng(3))
    b = stats.bootstrap_mean_interval(x, 2000, 0.9, np.random.default_rng(3))
    assert a == b and x.min() <= a[0] < x.mean() < a[1] <= x.max()
    wide = stats.bootstrap_mean_interval(x, 2000, 0.99, np.random.default_rng(3))
    assert wide[0] <= a[0] and wide[1] >= a[1]
