"""`python -m gssm_jax.bench train` on a tiny shape (the optimized model only, to stay quick)."""

from __future__ import annotations

import json

import pytest

from gssm_jax.benchmarks import timing
from gssm_jax.benchmarks import train_step as bench_train
from gssm_jax.config import family_config


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


def test_bench_reports_flops_and_a_null_mfu_on_cpu(capsys):
    from gssm_jax.benchmarks.train_step import bench_config
    from gssm_jax.train import profile

    argv = ["--batch=2", "--seq-len=17", "--layers=1", "--heads=2", "--emb-dim=16"]
    argv += ["--hidden-dim=32", "--rounds=1", "--steps=1", "--warmup=0", "--tokens=random"]
    argv += ["--models=optimized", "--no-keep-memory", "--attention=xla"]
    assert bench_train.main(argv) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    shape = dict(batch=2, seq_len=17, layers=1, heads=2, emb_dim=16, hidden_dim=32, dtype="float32")
    c = bench_config(shape)
    assert row["flops_per_token"] == profile.flops_per_token(c.model, 16, 32)["total"]
    assert row["attention"] == "xla" and row["mfu"] is None and row["peak_device_bytes"] is None
    tflops = row["tokens_per_s"] / row["devices"] * row["flops_per_token"] / 1e12
    assert row["model_tflops_per_s_per_device"] == pytest.approx(tflops, rel=1e-2, abs=1e-4)


def _devices() -> int:
    """The devices the bench's mesh will have: XLA's one CPU device when JAX starts here, one per
    core when an earlier bench in this process started it (batches then come in multiples)."""
    import jax

    return len(jax.devices())


def test_max_batch_times_the_largest_batch_under_the_memory_limit(capsys):
    argv = ["--batch=4", "--seq-len=33", "--layers=1", "--rounds=1", "--steps=1", "--warmup=0"]
    argv += ["--tokens=random", "--models=optimized", "--no-keep-memory", "--max-batch"]
    argv += ["--memory-limit-gib=0.02"]
    assert bench_train.main(argv) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    search = row["max_batch_search"]
    best, limit = search["largest_batch"], search["memory_limit_bytes"]
    probes = {int(b): v for b, v in search["probes"].items()}
    m = search["batch_multiple"]  # the data-parallel size: one row per device more
    assert row["batch"] == best > 4 and limit == int(0.02 * 2**30)
    assert probes[best] <= limit < probes[best + m]  # best fits, one more row a device does not
    assert search["estimated_bytes"] == probes[best]


def test_cudnn_attention_on_cpu_exits_2_naming_the_field(capsys):
    assert bench_train.main(["--attention=cudnn", "--dtype=bfloat16", "--batch=2"]) == 2
    assert "model.transformer.attention='cudnn' needs a GPU" in capsys.readouterr().err


def test_max_batch_on_cpu_needs_a_memory_limit(capsys):
    argv = ["--max-batch", "--layers=1", "--batch=2", "--seq-len=17", "--tokens=random"]
    assert bench_train.main(argv) == 2
    assert "--memory-limit-gib" in capsys.readouterr().err


def test_the_seeds004_preset_is_the_original_experiment_model():
    from gssm_jax.benchmarks.train_step import PRESETS, bench_config

    c = bench_config(PRESETS["seeds004"])  # validates
    m = family_config(c.model, 32)
    assert (m.nb_layers, m.nb_heads, m.emb_dim, m.hidden_dim) == (12, 12, 288, 4 * 288)
    assert (c.data.seq_len, c.data.batch_size, m.dtype) == (2048, 16, "bfloat16")


class _OomAbove(bench_train.Timed):
    """Timed whose allocation 'runs out of memory' above a batch, as XLA reports it."""

    max_batch = 0

    def __init__(self, name, model, c, mesh, batches):
        if c.data.batch_size > self.max_batch:
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate")
        super().__init__(name, model, c, mesh, batches)


TINY = ["--seq-len=17", "--layers=1", "--heads=2", "--emb-dim=16", "--hidden-dim=32"]
TINY += ["--rounds=1", "--steps=1", "--warmup=0", "--tokens=random", "--no-keep-memory"]


def test_a_model_out_of_memory_at_the_fixed_batch_is_reported_not_fatal(capsys, monkeypatch):
    monkeypatch.setattr(timing, "Timed", type("Oom", (_OomAbove,), {"max_batch": 2}))
    monkeypatch.setattr(timing, "real_tokens", None)  # --tokens=random must not need it
    assert bench_train.main([*TINY, "--batch=4", "--models=optimized,plain"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["variant"], r.get("error")) for r in rows] == [
        ("optimized", "out of memory at batch 4"),
        ("plain", "out of memory at batch 4"),
    ]


def test_max_batch_steps_down_when_the_real_allocation_fails(capsys, monkeypatch):
    m = _devices()
    monkeypatch.setattr(timing, "Timed", type("Oom", (_OomAbove,), {"max_batch": 5 * m}))
    search = {"largest_batch": 7 * m, "probes": {str(7 * m): 1, str(8 * m): 2}}
    monkeypatch.setattr(bench_train, "search_batch", lambda *args: search)
    argv = [*TINY, f"--batch={4 * m}", "--models=optimized", "--max-batch", "--memory-limit-gib=1"]
    assert bench_train.main(argv) == 0
    captured = capsys.readouterr()
    (row,) = [json.loads(line) for line in captured.out.splitlines()]
    assert row["batch"] == 5 * m and row["max_batch_search"] == search
    assert f"out of memory at batch {7 * m}" in captured.err
    assert f"out of memory at batch {6 * m}" in captured.err
