"""`python -m gssm_jax.evaluate` on a text run: loss, bits per byte and the per-position loss on
held-out text, no entropy or kl_gap, and the run left as it was."""

from __future__ import annotations

import json
import math
import shutil

import pytest
from conftest import one_line_error, read_jsonl, tree_digest, write_play

from gssm_jax import evaluate


def test_evaluate_a_text_run_on_its_held_out_split(tiny_text_run, capsys):
    before = tree_digest(tiny_text_run)
    assert evaluate.main(["--workdir", str(tiny_text_run), "--all"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all("no exact entropy for text (no kl_gap)" in line for line in out)
    records = [json.loads((tiny_text_run / "evals" / f"{s}.json").read_text()) for s in (10, 20)]
    trained = {r["step"]: r for r in read_jsonl(tiny_text_run / "metrics" / "eval.jsonl")}
    for record in records:
        assert not {"entropy", "kl_gap", "kl_t"} & set(record)
        assert record["loss"] == pytest.approx(trained[record["step"]]["loss"], abs=1e-5)
        assert record["bits_per_byte"] == pytest.approx(trained[record["step"]]["bits_per_byte"])
        assert record["bits_per_token"] == pytest.approx(record["loss"] / math.log(2))
        assert len(record["loss_t"]) == record["seq_len"] - 1 == 31
        assert sum(record["loss_t"]) / 31 == pytest.approx(record["loss"])
        assert record["data"].startswith("held-out split (0.05) of ") and record["sequences"] == 8
    assert records[1]["loss"] < records[0]["loss"]
    assert tree_digest(tiny_text_run) == before  # only evals/ is written


def test_evaluate_a_text_run_on_another_texts_held_out_split(tiny_text_run, tmp_path, capsys):
    other = write_play(tmp_path / "other", seed=7)
    out = tmp_path / "run"
    shutil.copytree(tiny_text_run, out)
    assert evaluate.main(["--workdir", str(out), "--data", str(other)]) == 0
    record = json.loads((out / "evals" / "20.json").read_text())
    assert record["data"] == f"held-out split (0.05) of {other}"
    assert 0 < record["bits_per_byte"] < 8
    err = one_line_error(evaluate.main, ["--workdir", str(out), "--data", "/nowhere"], capsys)
    assert err == "error: --data /nowhere: config data.path='/nowhere': no such file or folder"
