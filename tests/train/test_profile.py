"""Profiling outputs: FLOP accounting, trace files with named step regions, step-time breakdown."""

from __future__ import annotations

import glob
import gzip
import json
import os

from conftest import read_jsonl

from gssm_jax.config import default_config
from gssm_jax.train import profile


def test_flops_match_a_hand_count():
    model = default_config().model
    model.emb_dim, model.nb_layers, model.transformer.hidden_dim = 4, 2, 8
    # Per layer: QKV 3*4*4 + out 4*4 = 64 weights, SwiGLU 3*4*8 = 96 weights -> 2*160 = 320 FLOPs;
    # attention over 5 positions: QK^T 2*5*4 = 40 and AV 40 -> 80. Two layers: 800.
    # Head: 2*4*3 = 24. Forward 824; backward 1648; total 2472.
    f = profile.flops_per_token(model, seq_len=5, vocab=3)
    assert f == {"forward": 824, "backward": 1648, "total": 2472}


def test_peak_table():
    assert profile.peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == 989e12
    assert profile.peak_flops("TPU v4", "float32") == 275e12
    assert profile.peak_flops("cpu", "float32") is None


def _events(path):
    with gzip.open(path) as f:
        data = json.load(f)
    return data["traceEvents"] if isinstance(data, dict) else data


def test_trace_window_and_breakdown(tmp_path, run_main):
    workdir = tmp_path / "prof"
    code, out = run_main(
        workdir,
        "--config.optim.steps=8",
        "--config.optim.warmup=1",
        "--config.log.period=4",
        "--config.eval.period=8",
        "--config.profile.start_step=2",
        "--config.profile.num_steps=3",
        "--config.profile.memory_step=3",
    )
    assert code == 0, out
    perfetto = workdir / "profile" / "trace.json.gz"
    assert perfetto.exists(), out
    xplanes = glob.glob(str(workdir / "profile" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert xplanes and all(os.path.getsize(p) > 0 for p in xplanes)
    viewer = glob.glob(str(workdir / "profile" / "plugins" / "profile" / "*" / "*.trace.json.gz"))
    for path in [perfetto, *viewer]:
        events = _events(path)
        steps = sorted(
            int(e["args"]["step_num"]) for e in events if e.get("name") == "train" and "args" in e
        )
        assert steps == [2, 3, 4], (path, steps)
        names = {e.get("name") for e in events}
        assert {"train_step", "data_wait"} <= names, names
    memory = workdir / "profile" / "memory_step3.prof"
    assert memory.exists() and memory.stat().st_size > 0

    for r in read_jsonl(workdir / "metrics" / "train.jsonl"):
        parts = r["data_wait_s"] + r["compute_s"] + r["log_s"] + r["checkpoint_s"] + r["profile_s"]
        assert abs(parts - r["step_time_s"]) <= 0.1 * r["step_time_s"], r
        assert r["flops_per_token"] > 0 and r["mfu"] is None  # no known peak for a CPU
        assert r["host_rss_bytes"] > 0
