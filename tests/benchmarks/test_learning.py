"""`python -m gssm_jax.bench learn` on a tiny run, and both benches without torch installed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gssm_jax.benchmarks import learning as bench_learn
from gssm_jax.benchmarks import torch_ref
from gssm_jax.benchmarks import train_step as bench_train
from gssm_jax.config import default_config, family_config

TINY = ["--steps=12", "--at=6,12", "--graph-seeds=0", "--batch=2", "--seq-len=17", "--layers=1"]


def test_learn_without_torch_says_so_and_reports_the_jax_rows(capsys, monkeypatch):
    monkeypatch.setattr(torch_ref, "available", lambda: False)
    assert bench_learn.main(TINY) == 0
    captured = capsys.readouterr()
    assert "torch is not installed" in captured.err
    *rows, summary = [json.loads(line) for line in captured.out.splitlines()]
    default = f"jax (init={default_config().model.transformer.init})"
    assert [r["model"] for r in rows] == [default]
    (row,) = rows
    assert set(row["kl_gap"]) == {"6", "12"} and row["graph_seed"] == 0 and row["steps"] == 12
    assert all(np.isfinite(v) and v > -0.05 for v in row["kl_gap"].values())
    assert row["kl_gap"]["12"] < row["kl_gap"]["6"]  # it learns
    assert summary["mean_kl_gap"] == {default: row["kl_gap"]}
    assert "jax_at_most_torch" not in summary
    assert row["settings"]["lr"] == 1e-3 and row["settings"]["clip_norm"] == 1.0


def test_kl_at_is_the_mean_gap_of_the_window_ending_at_the_step():
    losses = np.arange(20, dtype=float)
    entropies = np.full(20, 0.5)
    assert bench_learn.kl_at(losses, entropies, [10, 20]) == {"10": 4.0, "20": 14.0}


def test_learn_config_is_the_earlier_systems_setup():
    c = bench_learn.learn_config(2, "fixed", 600)
    assert (c.data.graph_seed, c.data.seed, c.data.batch_size, c.data.seq_len) == (2, 1, 16, 256)
    m, o = family_config(c.model, 32), c.optim
    assert (m.emb_dim, m.nb_layers, m.nb_heads, m.hidden_dim, m.init) == (64, 4, 4, 256, "fixed")
    assert (o.lr, o.schedule, o.warmup, o.b1, o.b2) == (1e-3, "constant", 0, 0.9, 0.95)
    assert (o.weight_decay, o.clip_norm) == (0.0, 1.0)


def test_learn_rejects_an_unknown_init():
    with pytest.raises(SystemExit):
        bench_learn.main(["--inits=xavier"])


def test_train_bench_without_torch_says_so_and_skips_the_row(capsys, monkeypatch):
    monkeypatch.setattr(torch_ref, "available", lambda: False)
    argv = ["--batch=2", "--seq-len=17", "--layers=1", "--heads=2", "--emb-dim=16"]
    argv += ["--hidden-dim=32", "--rounds=1", "--steps=1", "--warmup=0", "--tokens=random"]
    argv += ["--models=optimized,torch", "--no-keep-memory"]
    assert bench_train.main(argv) == 0
    captured = capsys.readouterr()
    assert "torch is not installed" in captured.err
    (row,) = [json.loads(line) for line in captured.out.splitlines()]
    assert row["variant"] == "optimized"


def test_torch_from_jax_params_starts_at_the_jax_rows_loss(capsys):
    pytest.importorskip("torch")
    argv = [*TINY, "--inits=fan_in", "--torch-from-jax=fan_in", "--steps=2", "--at=1,2"]
    assert bench_learn.main(argv) == 0
    *rows, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_name = {r["model"]: r for r in rows}
    assert set(by_name) == {"jax (init=fan_in)", "torch", "torch (params of jax init=fan_in)"}
    jax_row, control = by_name["jax (init=fan_in)"], by_name["torch (params of jax init=fan_in)"]
    # the first window is the loss before any update: the same parameters, the same batch
    assert control["kl_gap"]["1"] == pytest.approx(jax_row["kl_gap"]["1"], abs=2e-5)
    assert by_name["torch"]["kl_gap"]["1"] != pytest.approx(jax_row["kl_gap"]["1"], abs=2e-5)
    assert set(summary["jax_at_most_torch"]) == {"jax (init=fan_in)"}
