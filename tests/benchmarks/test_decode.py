"""`python -m gssm_jax.bench generate` on a tiny shape: one JSON line per family, consistent rates."""

from __future__ import annotations

import json

import pytest

from gssm_jax.benchmarks import decode as bench_generate
from gssm_jax.models import registry


def test_bench_prints_prefill_decode_and_recompute_rates(capsys):
    argv = ["--batch=2", "--prompt-len=4", "--total-len=8", "--chunk=4"]
    argv += ["--recompute-steps=1", "--repeats=1", "--families=transformer"]
    assert bench_generate.main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    machine, prefill, row = lines
    assert machine["bench"] == "generate" and machine["cpu_count"] >= 1
    assert prefill["row"] == "prefill" and prefill["family"] == "transformer"
    assert (prefill["small_cache_len"], prefill["large_cache_len"]) == (4, 8)
    ratio = prefill["prefill_large_cache_s"] / prefill["prefill_small_cache_s"]
    assert prefill["large_over_small"] == pytest.approx(ratio, rel=1e-3)
    assert prefill["apply_s"] > 0
    assert row["family"] == "transformer" and row["total_len"] == 8
    assert [c["buffer_len"] for c in row["recompute_step_s"]] == [8]
    assert row["prefill_tokens_per_s"] == pytest.approx(2 * 4 / row["prefill_s"], rel=1e-3)
    assert row["decode_tokens_per_s"] == pytest.approx(2 * 3 / row["decode_s"], rel=1e-3)
    want = sum(4 * c["step_s"] for c in row["recompute_step_s"])
    assert row["recompute_s"] == pytest.approx(want, rel=1e-2)
    ratio = row["decode_tokens_per_s"] / row["recompute_tokens_per_s"]
    assert row["decode_over_recompute"] == pytest.approx(ratio, rel=1e-2)


def test_bench_rejects_unknown_families(capsys):
    assert bench_generate.main(["--families=lstm9"]) == 2
    assert "unknown family 'lstm9'" in capsys.readouterr().err
    assert set(registry.FAMILIES) >= {"transformer"}


def test_prefill_only_prints_the_prefill_rows(capsys):
    argv = ["--batch=2", "--prompt-len=4", "--total-len=8", "--repeats=1", "--prefill-only"]
    assert bench_generate.main([*argv, "--families=transformer"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()][1:]
    assert [(r["row"], r["family"]) for r in rows] == [("prefill", "transformer")]
