"""The runs table's row of a text run: bits per byte where a GSSM run has entropy and kl_gap, the
tokenizer's vocabulary, no graph facts, and the whole report built over it."""

from __future__ import annotations

import json
import math

import pytest

from gssm_jax.config import config_from_dict, family_config, vocab_size
from gssm_jax.reporting.runs import RunRef, load_run, read_jsonl
from gssm_jax.reporting.table import run_row


def test_a_text_runs_row_has_bits_per_byte_and_no_entropy(tiny_text_run):
    row = run_row(load_run(RunRef("text", tiny_text_run)))
    final = json.loads((tiny_text_run / "final.json").read_text())
    train = read_jsonl(tiny_text_run / "metrics" / "train.jsonl")[-1]
    assert row["status"] == "complete" and row["step"] == 20 and row["tokens"] == 20 * 8 * 32
    assert row["eval_bits_per_byte"] == pytest.approx(final["eval"]["bits_per_byte"])
    assert row["train_bits_per_byte"] == pytest.approx(train["bits_per_byte"])
    assert row["eval_loss"] == pytest.approx(final["eval"]["loss"])
    for key in ("train_entropy", "train_kl_gap", "eval_entropy", "eval_kl_gap", "best_eval_kl_gap"):
        assert row[key] is None, key
    assert (row["vocab"], row["hidden_nodes"], row["alpha_x"], row["alpha_z"]) == (
        258,
        None,
        None,
        None,
    )
    config = config_from_dict(json.loads((tiny_text_run / "config.json").read_text()))
    assert vocab_size(config) == 258
    assert row["params"] == family_config(config.model, 258).param_count()


def test_the_report_of_a_text_run_builds_and_skips_the_kl_figures(tiny_text_run, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from gssm_jax.report import main as report_main

    assert report_main([str(tiny_text_run), "--out", str(tmp_path / "report"), "-q"]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "runs.csv")
    assert math.isclose(
        table["eval_bits_per_byte"][0],
        run_row(load_run(RunRef("t", tiny_text_run)))["eval_bits_per_byte"],
    )
    assert (tmp_path / "report" / "index.html").is_file()


def test_runs_outside_a_sweep_take_the_grid_keys_from_their_config(tmp_path):
    """Issue 24: a run outside the sweep had blank optim.lr, seed and model.emb_dim (and the
    blanks turned the seed column into floats: 0.0)."""
    from fake_runs import mixed_runs

    from gssm_jax.reporting.runs import find_runs
    from gssm_jax.reporting.table import runs_table

    paths = [str(p) for p in mixed_runs(tmp_path)]
    table = runs_table([load_run(r) for r in find_runs(paths)]).set_index("run")
    loose = table.loc[["transformer_32", "transformer_64", "mamba_32", "mamba_64"]]
    assert list(loose["optim.lr"]) == [0.01] * 4
    assert list(loose["model.emb_dim"]) == [32, 64, 32, 64]
    assert list(loose["seed"]) == [0] * 4
    csv = table.reset_index().to_csv(index=False).splitlines()
    header = csv[0].split(",")
    seeds = {line.split(",")[header.index("seed")] for line in csv[1:]}
    assert seeds == {"0", "1"}
