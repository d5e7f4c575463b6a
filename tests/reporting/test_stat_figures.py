"""Figures of seed statistics and scaling: files written, lines that join only what they should,
and the reasons given when there is nothing to draw."""

import numpy as np
import pandas as pd
import pytest
from planted import planted_scaling

from gssm_jax.reporting import scaling, scaling_figures, stat_figures

PNG = b"\x89PNG"


def _drawn(result, path) -> bool:
    assert result is None, result
    return path.read_bytes()[:4] == PNG and path.stat().st_size > 1000


def _lr_sweep() -> pd.DataFrame:
    """lr x emb_dim x 3 graph seeds; params follows emb_dim; one extra run of another sweep."""
    rows = []
    for emb in (32, 64):
        for lr in (1e-4, 1e-3, 1e-2):
            for s in range(3):
                kl = 0.1 * (1 + abs(np.log10(lr) + 3)) * (64 / emb) * (1 + 0.05 * s)
                rows.append(
                    {
                        "model.emb_dim": emb,
                        "optim.lr": lr,
                        "data.graph_seed": s,
                        "params": 1000 * emb,
                        "best_eval_kl_gap": kl,
                    }
                )
    rows.append(
        {
            "model.emb_dim": 64,
            "optim.lr": None,
            "data.graph_seed": 0,
            "params": 64000,
            "best_eval_kl_gap": 0.2,
        }
    )
    return pd.DataFrame(rows)


def test_a_line_per_other_key_value_over_the_swept_key(tmp_path):
    table = _lr_sweep()
    others, tied, lines = stat_figures.key_lines(table, "optim.lr", "best_eval_kl_gap")
    assert (others, tied) == (["model.emb_dim", "params"], [])  # params: same lines
    assert [values for values, _ in lines] == [(32, 32000), (64, 64000)]
    for _, part in lines:
        assert part["optim.lr"].tolist() == [1e-4, 1e-3, 1e-2] and (part["n"] == 3).all()
        assert part["model.emb_dim"].nunique() == 1 and part["params"].nunique() == 1
    # against emb_dim, params follows the x axis: one line per lr, params no line key
    others, tied, lines = stat_figures.key_lines(table, "model.emb_dim", "best_eval_kl_gap")
    assert (others, tied) == (["optim.lr"], ["params"])
    assert [values for values, _ in lines] == [(1e-4,), (1e-3,), (1e-2,), (None,)]
    assert [len(part) for _, part in lines] == [2, 2, 2, 1]  # the other sweep's run: its own
    path = tmp_path / "lr.png"
    assert _drawn(stat_figures.metric_vs_key(table, "optim.lr", "best_eval_kl_gap", path), path)
    path = tmp_path / "setup.png"
    table["setup"] = np.where(table["optim.lr"] == 1e-2, "b", "a")
    assert _drawn(
        stat_figures.metric_vs_key(table, "setup", "best_eval_kl_gap", path, "range"), path
    )


def test_metric_vs_key_says_why_it_draws_nothing(tmp_path):
    table = _lr_sweep()
    path = tmp_path / "x.png"
    assert stat_figures.metric_vs_key(table, "optim.b1", "best_eval_kl_gap", path) == (
        "no column optim.b1 in the runs table"
    )
    one = table[table["optim.lr"] == 1e-3]
    assert stat_figures.metric_vs_key(one, "optim.lr", "best_eval_kl_gap", path) == (
        "fewer than two values of optim.lr among runs with a best_eval_kl_gap"
    )
    assert not path.exists()
    with pytest.raises(ValueError, match="spread='var'"):
        stat_figures.metric_vs_key(table, "optim.lr", "best_eval_kl_gap", path, spread="var")


def test_kl_t_bands_of_groups(tmp_path):
    t = np.arange(1, 64)
    table = pd.DataFrame(
        {
            "family": ["transformer"] * 3 + ["mamba"] * 2 + ["hawk"],
            "data.graph_seed": [0, 1, 2, 0, 1, 0],
            "kl_t": [list((1 + 0.1 * s) / t) for s in range(5)] + [None],
        }
    )
    curves = stat_figures.curves_by(table, ["family"])
    assert {k: len(v) for k, v in curves.items()} == {"family=mamba": 2, "family=transformer": 3}
    path = tmp_path / "kl_t.png"
    assert _drawn(stat_figures.kl_t_bands(curves, path), path)
    assert stat_figures.kl_t_bands({"a": []}, path) == "no kl_t curves to draw"
    mixed = {"a": [np.ones(63), np.ones(127)]}
    assert stat_figures.kl_t_bands(mixed, path) == (
        "kl_t curves of a have different lengths [63, 127]: not one seq_len"
    )


def _two_term_runs():
    table = planted_scaling(
        np.geomspace(1e4, 1e6, 4),
        np.geomspace(1e5, 1e8, 4),
        seeds=2,
        noise=0.03,
        rng_seed=0,
        law=lambda n, d: 300.0 * n**-0.5 + 50.0 * d**-0.3,
    )
    return table


def test_iso_kl_contours_of_a_two_term_fit(tmp_path):
    table = _two_term_runs()
    fit = scaling.fit_scaling(table, "best_eval_kl_gap", resamples=20)
    path = tmp_path / "iso.png"
    assert _drawn(scaling_figures.iso_kl_contours(fit, table, path), path)
    one = scaling.fit_scaling(
        table[table.train_sequences == table.train_sequences.min()], "best_eval_kl_gap", resamples=0
    )
    assert scaling_figures.iso_kl_contours(one, table, path) == (
        "iso-KL contours need a two-term fit over (N, D); this fit is over params"
    )
    assert scaling_figures.iso_kl_contours(None, table, path) == "no scaling fit to draw"
    levels = scaling_figures._levels(np.array([0.011, 0.9]), 4)
    assert levels.tolist() == sorted(set(levels.tolist())) and 0.011 < levels[0] < levels[-1] < 0.9


def test_kl_against_compute_per_family(tmp_path):
    table = _two_term_runs()
    table["family"] = np.where(table.params > 5e4, "mamba", "transformer")
    table["flops_per_token"] = 6.0 * table["params"]
    table["tokens"] = table["train_sequences"] * 128
    path = tmp_path / "compute.png"
    assert _drawn(scaling_figures.kl_vs_compute(table, "best_eval_kl_gap", path), path)
    no_flops = table.drop(columns="flops_per_token")
    assert scaling_figures.kl_vs_compute(no_flops, "best_eval_kl_gap", path) == (
        "no column flops_per_token in the runs table"
    )
    table["tokens"] = 1e6 / table["flops_per_token"]
    assert scaling_figures.kl_vs_compute(table, "best_eval_kl_gap", path) == (
        "fewer than two compute values (flops_per_token x tokens) among runs with a "
        "best_eval_kl_gap"
    )
