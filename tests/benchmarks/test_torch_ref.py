"""The PyTorch eager reference of the benchmarks (skipped where torch is not installed)."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gssm_jax.benchmarks import torch_ref  # noqa: E402
from gssm_jax.benchmarks import train_step as bench_train  # noqa: E402
from gssm_jax.models.configs import TransformerConfig  # noqa: E402
from gssm_jax.models.transformer import Transformer  # noqa: E402


def test_reference_computes_the_transformer_on_the_same_parameters():
    cfg = TransformerConfig(vocab_size=32, emb_dim=32, nb_layers=2, nb_heads=4, hidden_dim=64)
    tokens = np.random.default_rng(0).integers(0, 32, (2, 24)).astype(np.int32)
    model = Transformer(cfg)
    params = nn.unbox(model.init(jax.random.key(0), tokens)["params"])
    expected = np.asarray(model.apply({"params": params}, tokens))
    ref = torch_ref.build(torch_ref.TorchShape(32, 32, 2, 4, 64), threads=1)
    torch_ref.load_jax_params(ref, params)
    np.testing.assert_allclose(torch_ref.logits(ref, tokens), expected, atol=2e-5, rtol=2e-5)


def test_reference_init_is_the_fan_in_scheme_and_its_step_learns():
    shape = torch_ref.TorchShape(32, 64, 1, 4, 256)
    ref = torch_ref.build(shape, seed=0, threads=1)
    down = ref.blocks[0].mlp.down.weight.detach().numpy()  # (emb_dim, hidden): fan_in 256
    assert down.std() == pytest.approx(0.9866 * 256**-0.5, rel=0.05)
    assert np.abs(down).max() <= 3 * 256**-0.5 + 1e-7
    step = torch_ref.TrainStep(ref, lr=1e-2)
    tokens = np.tile(np.arange(17) % 5, (4, 1))  # a periodic stream: easy to learn
    losses = [step(tokens) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]


def test_train_bench_times_the_torch_row_in_the_same_run(capsys, monkeypatch):
    monkeypatch.setattr(bench_train, "TORCH_THREADS", 1)  # OpenMP threads stall on a busy CI CPU
    argv = ["--batch=2", "--seq-len=17", "--layers=1", "--heads=2", "--emb-dim=16"]
    argv += ["--hidden-dim=32", "--rounds=1", "--steps=1", "--warmup=0", "--tokens=random"]
    argv += ["--models=optimized,torch", "--no-keep-memory"]
    assert bench_train.main(argv) == 0
    *rows, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["variant"] for r in rows] == ["optimized", "torch"]
    assert rows[1]["tokens_per_s"] > 0 and rows[1]["tokens_per_step"] == 2 * 16
    ratio = rows[0]["tokens_per_s"] / rows[1]["tokens_per_s"]
    assert summary["speedup_optimized_over_torch"] == pytest.approx(ratio, rel=1e-2)
    assert summary["speedup_optimized_over_plain"] is None and summary["torch_threads"] == 1
