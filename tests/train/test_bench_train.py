"""`python -m gssm_jax.bench train` on a tiny shape (the optimized model only, to stay quick)."""

from __future__ import annotations

import json

import pytest

from gssm_jax.bench import train as bench_train


def test_bench_prints_a_json_line_with_the_throughput(capsys):
    argv = ["--batch=4", "--seq-len=32", "--layers=1", "--rounds=2", "--steps=1", "--warmup=0"]
    argv += ["--tokens=random", "--models=optimized", "--no-keep-memory"]
    assert bench_train.main(argv) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["bench"] == "train" and row["variant"] == "optimized"
    assert row["batch"] == 4 and row["seq_len"] == 32 and row["tokens_per_step"] == 4 * 31
    assert row["tokens_per_s"] > 0 and row["step_time_s"] > 0 and row["timed_steps"] == 2
    assert row["tokens_per_s"] == pytest.approx(4 * 31 / row["step_time_s"], rel=1e-2)
    assert row["machine"]["cpu_count"] >= 1 and row["malloc_keeps_memory"] is False


def test_bench_rejects_unknown_models():
    with pytest.raises(SystemExit):
        bench_train.main(["--models=fast"])
