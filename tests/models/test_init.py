"""`model.transformer.init`: the fan-in scheme's statistics (the earlier PyTorch system's) and the fixed one's."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from gssm_jax.config import default_config
from gssm_jax.models.configs import INIT_CHOICES, TransformerConfig
from gssm_jax.models.init import INIT_SCHEMES, fan_in_normal, weight_init
from gssm_jax.models.transformer import Transformer
from gssm_jax.train.state import INIT_COMPILER_OPTIONS

# std of N(0, 1) cut at +-c without rescaling: sqrt(1 - 2 c phi(c) / (2 Phi(c) - 1))
CUT3_STD = 0.986558
CUT2_STD = 0.879626


def test_the_config_offers_the_schemes_the_models_know():
    assert INIT_CHOICES == INIT_SCHEMES
    assert default_config().model.transformer.init in INIT_SCHEMES


def test_fan_in_normal_is_pytorchs_trunc_normal_at_three_std():
    fan_in = 256
    w = np.asarray(fan_in_normal(fan_in)(jax.random.key(0), (256, 256)))
    std = fan_in**-0.5
    assert np.abs(w).max() <= 3 * std * (1 + 1e-6)
    assert np.abs(w).max() > 2.9 * std  # cut at 3 std, not at 2
    assert w.std() == pytest.approx(CUT3_STD * std, rel=0.01)
    assert abs(w.mean()) < 0.01 * std


def test_fixed_scheme_keeps_init_std_and_scales_residual_outputs():
    key, shape = jax.random.key(1), (256, 256)
    w = np.asarray(weight_init("fixed", 999, 0.02, 4)(key, shape))
    out = np.asarray(weight_init("fixed", 999, 0.02, 4, residual_out=True)(key, shape))
    assert w.std() == pytest.approx(CUT2_STD * 0.02, rel=0.01)  # cut at 2 std, not rescaled
    assert out.std() == pytest.approx(CUT2_STD * 0.02 / np.sqrt(8), rel=0.01)
    assert np.abs(w).max() <= 2 * 0.02 * (1 + 1e-6)


def test_unknown_scheme_is_an_error():
    with pytest.raises(ValueError, match="model.transformer.init"):
        weight_init("xavier", 4, 0.02, 1)


def _params(cfg: TransformerConfig):
    tokens = np.zeros((1, 8), np.int32)
    init = jax.jit(
        lambda rng: nn.unbox(Transformer(cfg).init(rng, tokens)["params"]),
        compiler_options=INIT_COMPILER_OPTIONS,
    )
    return init(jax.random.key(0))


def test_transformer_fan_in_of_every_matrix():
    D, H, F, V = 64, 4, 256, 64
    cfg = TransformerConfig(
        vocab_size=V, emb_dim=D, nb_layers=1, nb_heads=H, hidden_dim=F, init="fan_in"
    )
    p = _params(cfg)
    block = p["block_0"]
    fan_ins = {  # the input width each matrix multiplies; the embedding: emb_dim, as in PyTorch
        "embed": (p["embed"], D),
        "head": (p["head"], D),
        "qkv": (block["attn"]["qkv"], D),
        "out": (block["attn"]["out"], D),  # heads x head_dim
        "gate_up": (block["mlp"]["gate_up"], D),
        "down": (block["mlp"]["down"], F),  # the SwiGLU hidden size
    }
    for name, (w, fan_in) in fan_ins.items():
        w = np.asarray(w)
        assert w.std() == pytest.approx(CUT3_STD * fan_in**-0.5, rel=0.05), name
        assert np.abs(w).max() <= 3 * fan_in**-0.5 * (1 + 1e-6), name
    np.testing.assert_array_equal(np.asarray(block["attn_norm"]["scale"]), 1.0)
