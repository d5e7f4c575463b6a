"""`python -m gssm_jax.bench train --family ...` on tiny shapes: one row per family and length."""

from __future__ import annotations

import json

import pytest

from gssm_jax.benchmarks import families
from gssm_jax.benchmarks import train_step as bench_train
from gssm_jax.models.configs import FAMILY_CONFIGS

TINY = ["--batch=4", "--layers=1", "--heads=2", "--emb-dim=16", "--hidden-dim=32"]
TINY += ["--rounds=1", "--steps=1", "--warmup=0", "--tokens=random", "--no-keep-memory"]


def test_each_family_gets_a_row_with_both_lengths(capsys):
    """Two families (four compiles) to stay quick; `all` is every family (next test)."""
    assert bench_train.main([*TINY, "--family=transformer,mingru", "--seq-lens=9,17"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["family"] for r in rows] == ["transformer", "mingru"]
    for r in rows:
        short, long = r["runs"]["9"], r["runs"]["17"]
        assert (short["batch"], long["batch"]) == (4, 2)  # the same 32 tokens per step
        assert short["tokens_per_step"] == long["tokens_per_step"] == 32
        assert short["tokens_per_s"] == pytest.approx(32 / short["step_time_s"], rel=1e-2)
        assert r["scaling"] == pytest.approx(long["tokens_per_s"] / short["tokens_per_s"], rel=1e-2)
        assert r["params"] > 0 and r["config"]["emb_dim"] == 16
    transformer = rows[0]["flops_per_token"]
    assert transformer["17"] > transformer["9"]  # attention grows with the length
    assert rows[1]["flops_per_token"]["17"] == rows[1]["flops_per_token"]["9"]


def test_all_is_every_family():
    assert families._families("all") == list(FAMILY_CONFIGS)
    assert families._families("hawk,mamba") == ["hawk", "mamba"]


def test_an_unknown_family_exits_2_naming_it(capsys):
    assert bench_train.main([*TINY, "--family=rnn"]) == 2
    assert "--family: unknown 'rnn'" in capsys.readouterr().err
