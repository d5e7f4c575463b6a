"""Paired comparisons over graph seeds: pairs, mean difference, bootstrap interval, signs."""

import numpy as np
import pandas as pd
import pytest

from gssm_jax.reporting import paired
from gssm_jax.reporting.stats import StatsError

SETUPS = {"small_x": (0.1, 1.0), "small_z": (1.0, 0.1)}  # setup -> (alpha_x, alpha_z)
EFFECT = {"transformer": 0.02, "mamba": -0.05}  # small_z - small_x per family
BASE = [0.30, 0.10, 0.55, 0.20]  # per graph seed: what a graph costs both setups


def _runs(drop: tuple = ()) -> pd.DataFrame:
    rows = []
    for setup, (ax, az) in SETUPS.items():
        for family in EFFECT:
            for s, base in enumerate(BASE):
                if (setup, family, s) in drop:
                    continue
                wobble = 0.003 * ((s * 7) % 3 - 1)  # a small per-pair deviation
                kl = base + (EFFECT[family] + wobble if setup == "small_z" else 0.0)
                rows.append(
                    {
                        "run": f"{setup}-{family}-{s}",
                        "status": "complete",
                        "setup": setup,
                        "data.alpha_x": ax,
                        "data.alpha_z": az,
                        "model.family": family,
                        "data.graph_seed": s,
                        "family": family,
                        "best_eval_kl_gap": kl,
                    }
                )
    return pd.DataFrame(rows)


def test_the_paired_difference_over_graph_seeds_per_family():
    table = _runs()
    out = paired.compare_groups(table, "best_eval_kl_gap", "setup", resamples=2000, seed=1)
    # the alphas follow the setup, so they are no cell of their own; model.family and family are
    assert list(out.columns[:2]) == ["model.family", "family"]
    assert out["model.family"].tolist() == ["mamba", "transformer"]
    for _, row in out.iterrows():
        a = table[(table.setup == "small_x") & (table.family == row.family)].best_eval_kl_gap
        b = table[(table.setup == "small_z") & (table.family == row.family)].best_eval_kl_gap
        diff = b.to_numpy() - a.to_numpy()
        assert row.n_pairs == 4 and row.unpaired == 0
        assert row.mean_diff == pytest.approx(diff.mean())
        assert row.mean_diff == pytest.approx(EFFECT[row.family], abs=0.003)
        assert diff.min() <= row.ci_low < row.mean_diff < row.ci_high <= diff.max()
        assert row.mean_value - row.mean_reference == pytest.approx(row.mean_diff)
        assert row.agree == 4 and row.resamples == 2000 and row.confidence == 0.95
    mamba, transformer = out.iloc[0], out.iloc[1]
    assert (mamba.signs, mamba.n_lower, mamba.n_higher) == ("----", 4, 0)
    assert (transformer.signs, transformer.n_higher) == ("++++", 4)
    # the unpaired spread is far wider than the paired interval
    assert transformer.ci_high - transformer.ci_low < 0.01 < np.std(BASE)


def test_the_interval_is_seeded():
    table = _runs()
    one = paired.compare_groups(table, "best_eval_kl_gap", "setup", resamples=500, seed=4)
    two = paired.compare_groups(table, "best_eval_kl_gap", "setup", resamples=500, seed=4)
    pd.testing.assert_frame_equal(one, two)


def test_runs_without_a_partner_are_counted_not_paired():
    table = _runs(drop=(("small_x", "mamba", 0),))
    out = paired.compare_groups(table, "best_eval_kl_gap", "setup", values=["small_z", "small_x"])
    mamba = out[out.family == "mamba"].iloc[0]
    assert (mamba.reference, mamba.value, mamba.n_pairs, mamba.unpaired) == (
        "small_z",
        "small_x",
        3,
        1,
    )
    assert mamba.signs == "+++"


def test_pairs_share_every_seed_key():
    table = _runs()
    table["seed"] = [0, 1] * (len(table) // 2)  # model seeds cross the graph seeds
    shifted = table.copy()
    shifted["seed"] = 1 - shifted["seed"]
    shifted["best_eval_kl_gap"] += 1.0
    both = pd.concat([table, shifted], ignore_index=True)
    out = paired.compare_groups(both, "best_eval_kl_gap", "setup", resamples=100)
    assert out["n_pairs"].tolist() == [8, 8]  # 4 graph seeds x 2 model seeds
    assert out["mean_diff"].tolist() == pytest.approx(
        [EFFECT["mamba"], EFFECT["transformer"]], abs=0.003
    )


def test_fewer_than_two_pairs_is_refused():
    drop = tuple(("small_z", "mamba", s) for s in (1, 2, 3))
    with pytest.raises(
        StatsError,
        match=r"family=mamba.*1 pair\(s\) of runs sharing data.graph_seed; needs at least 2",
    ):
        paired.compare_groups(_runs(drop), "best_eval_kl_gap", "setup")


def test_bad_requests_are_one_line_errors():
    table = _runs()
    with pytest.raises(StatsError, match="no run has setup=tiny"):
        paired.compare_groups(table, "best_eval_kl_gap", "setup", values=["small_x", "tiny"])
    with pytest.raises(StatsError, match="two or more values"):
        paired.compare_groups(table, "best_eval_kl_gap", "setup", values=["small_x"])
    with pytest.raises(StatsError, match="no column 'optim.lr'"):
        paired.compare_groups(table, "best_eval_kl_gap", "optim.lr")
    twice = pd.concat([table, table.iloc[[0]]], ignore_index=True)
    with pytest.raises(StatsError, match="two runs with setup=small_x share data.graph_seed=0"):
        paired.compare_groups(twice, "best_eval_kl_gap", "setup")


def test_three_groups_against_the_first():
    table = _runs()
    third = table[table.setup == "small_x"].copy()
    third["setup"], third["best_eval_kl_gap"] = "both_small", third["best_eval_kl_gap"] * 2
    out = paired.compare_groups(
        pd.concat([table, third], ignore_index=True),
        "best_eval_kl_gap",
        "setup",
        values=["small_x", "small_z", "both_small"],
        within=["family"],
        resamples=200,
    )
    assert out[["family", "value"]].values.tolist() == [
        ["mamba", "small_z"],
        ["mamba", "both_small"],
        ["transformer", "small_z"],
        ["transformer", "both_small"],
    ]
    assert out.iloc[1].mean_diff == pytest.approx(np.mean(BASE))
