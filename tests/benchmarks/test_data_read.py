"""`python -m gssm_jax.bench data` on a text config: the text pipeline's row (windows/s read by the
trainer's reader against windows/s the train step consumes), at tiny sizes (no timing claims)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, TEXT_TINY, write_play

from gssm_jax.benchmarks import data_read


def test_a_text_config_gives_the_text_row(tmp_path, capsys):
    corpus = write_play(tmp_path / "corpus")
    argv = [f"--config={ROOT / 'configs' / 'text.py'}", f"--config.data.path={corpus}", *TEXT_TINY]
    code = data_read.main([*argv, "--read-batches=20", "--train-steps=2"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == (0 if row["ratio"] >= data_read.MIN_RATIO else 1)
    assert row["bench"] == "data" and row["source"] == "text"
    assert row["read_windows_per_s"] > 0 and row["train_windows_per_s"] > 0
    assert row["ratio"] == pytest.approx(
        row["read_windows_per_s"] / row["train_windows_per_s"], rel=0.01
    )
    assert row["read_tokens_per_s"] == pytest.approx(31 * row["read_windows_per_s"], rel=1e-3)
    assert (row["batch_size"], row["seq_len"]) == (8, 32) and row["train_windows"] > 0


def test_an_unreadable_text_source_is_one_line(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    argv = [
        f"--config={ROOT / 'configs' / 'text.py'}",
        f"--config.data.path={tmp_path / 'empty.txt'}",
    ]
    with pytest.raises(SystemExit) as e:
        data_read.main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().endswith("empty.txt: no text (empty file)")
