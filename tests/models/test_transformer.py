"""The Flax transformer: shapes, causality, weight tying, dtypes, remat, init, and agreement with the
plainly written reference model on the same parameters."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gssm_jax.models.configs import TransformerConfig
from gssm_jax.models.reference import PlainTransformer
from gssm_jax.models.transformer import Transformer
from gssm_jax.train.state import INIT_COMPILER_OPTIONS

CFG = TransformerConfig(vocab_size=16, emb_dim=32, nb_layers=1, nb_heads=4, hidden_dim=64)
B, L = 3, 40


def _tokens(seed: int = 0, batch: int = B, length: int = L) -> np.ndarray:
    """NumPy draws: jax.random would compile a threefry kernel (seconds on XLA:CPU) per shape."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, CFG.vocab_size, (batch, length)).astype(np.int32)


def _init(cfg: TransformerConfig = CFG, tokens=None):
    tokens = _tokens() if tokens is None else tokens
    init = jax.jit(
        lambda rng: nn.unbox(Transformer(cfg).init(rng, tokens)["params"]),
        compiler_options=INIT_COMPILER_OPTIONS,
    )
    return init(jax.random.key(1))


def _apply(cfg: TransformerConfig, params, tokens_BxL) -> jax.Array:
    return jax.jit(Transformer(cfg).apply)({"params": params}, tokens_BxL)


def _loss(cfg: TransformerConfig, params, tokens_BxT) -> jax.Array:
    logits = Transformer(cfg).apply({"params": params}, tokens_BxT[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxT[:, 1:]).mean()


def _value_and_grad(cfg: TransformerConfig, params, tokens_BxT):
    return jax.jit(jax.value_and_grad(lambda p: _loss(cfg, p, tokens_BxT)))(params)


@pytest.fixture(scope="module")
def params():
    return _init()


def test_shapes_and_dtypes(params):
    logits = _apply(CFG, params, _tokens())
    assert logits.shape == (B, L, CFG.vocab_size) and logits.dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
    block = params["block_0"]
    assert block["attn"]["qkv"].shape == (32, 3, 4, 8)
    assert block["attn"]["out"].shape == (4, 8, 32)
    assert block["mlp"]["gate_up"].shape == (32, 2, 64)
    assert block["mlp"]["down"].shape == (64, 32)
    assert params["embed"].shape == (16, 32) and params["head"].shape == (32, 16)


def test_causal_changing_token_t_leaves_earlier_logits_unchanged(params):
    tokens = _tokens()
    t = 17
    changed = tokens.copy()
    changed[:, t] = (tokens[:, t] + 1) % CFG.vocab_size
    before, after = (
        np.asarray(_apply(CFG, params, tokens)),
        np.asarray(_apply(CFG, params, changed)),
    )
    np.testing.assert_array_equal(before[:, :t], after[:, :t])
    assert np.abs(before[:, t:] - after[:, t:]).max() > 1e-4


def test_weight_tying_shares_the_embedding():
    tied = dataclasses.replace(CFG, weight_tying=True)
    p_tied = _init(tied)
    assert "head" not in p_tied
    untied = dict(p_tied, head=p_tied["embed"].T)
    tokens = _tokens()
    np.testing.assert_allclose(
        _apply(tied, p_tied, tokens), _apply(CFG, untied, tokens), rtol=1e-6, atol=1e-6
    )


def test_bfloat16_compute_keeps_float32_params(params):
    bf16 = dataclasses.replace(CFG, dtype="bfloat16")
    p_bf16 = _init(bf16)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(p_bf16))
    tokens = _tokens()
    logits = _apply(bf16, params, tokens)
    assert logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, _apply(CFG, params, tokens), atol=5e-2)


def test_remat_gives_the_same_loss_and_grads(params):
    tokens = _tokens(3)
    remat = dataclasses.replace(CFG, remat=True)
    l0, g0 = _value_and_grad(CFG, params, tokens)
    l1, g1 = _value_and_grad(remat, params, tokens)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_matches_the_plain_reference_on_the_same_parameters():
    cfg = dataclasses.replace(CFG, nb_layers=2)
    tokens = _tokens(4, batch=4, length=131)  # 130 inputs: three causal query blocks, one ragged
    params = _init(cfg, tokens)
    plain = PlainTransformer(cfg)
    plain_params = jax.eval_shape(lambda: nn.unbox(plain.init(jax.random.key(0), tokens)))
    assert jax.tree.structure(plain_params["params"]) == jax.tree.structure(params)

    def plain_loss(p):
        logits = plain.apply({"params": p}, tokens[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

    l0, g0 = jax.jit(jax.value_and_grad(plain_loss))(params)
    l1, g1 = _value_and_grad(cfg, params, tokens)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_xla_attention_gives_the_same_loss_and_grads_as_the_blocked_kernel(params):
    tokens = _tokens(5)
    l0, g0 = _value_and_grad(dataclasses.replace(CFG, attention="blocked"), params, tokens)
    l1, g1 = _value_and_grad(dataclasses.replace(CFG, attention="xla"), params, tokens)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


def test_init_is_truncated_normal_with_scaled_output_projections():
    cfg = dataclasses.replace(
        CFG, emb_dim=64, hidden_dim=256, init="fixed", init_std=0.05, nb_layers=2
    )
    p = _init(cfg)
    block = p["block_1"]
    out_std = 0.05 / np.sqrt(2 * 2)
    # Truncated at 2 standard deviations, a normal's spread shrinks to 0.88 of its std.
    for w, std in [
        (block["attn"]["qkv"], 0.05),
        (block["mlp"]["gate_up"], 0.05),
        (p["embed"], 0.05),
        (block["attn"]["out"], out_std),
        (block["mlp"]["down"], out_std),
    ]:
        assert float(jnp.abs(w).max()) <= 2 * std + 1e-7
        assert 0.8 * std < float(jnp.std(w)) < 0.96 * std
    np.testing.assert_array_equal(block["attn_norm"]["scale"], np.ones(64, np.float32))


def _prefill_flops(params, cache_len: int, tokens) -> float:
    from gssm_jax.models.transformer import init_cache

    def prefill(params, tokens):
        cache = init_cache(CFG, tokens.shape[0], cache_len)
        valid = jnp.full((tokens.shape[0],), tokens.shape[1], jnp.int32)
        return Transformer(CFG).apply({"params": params}, tokens, cache, valid)

    cost = jax.jit(prefill).lower(params, tokens).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def test_prefill_costs_what_the_prompt_costs_whatever_the_cache_length(params):
    """Issue 24: the prefill attended the prompt to every cached position (1.27 s for 16 x 128
    tokens into 1024 positions against 0.10 s into 128); now it attends the prompt to itself."""
    tokens = _tokens(length=64)
    small, large = _prefill_flops(params, 64, tokens), _prefill_flops(params, 1024, tokens)
    assert large < 1.05 * small, (small, large)  # before: 2.4x the FLOPs


def test_prefill_and_a_chunk_that_continues_the_cache_equal_apply(params):
    """The prefill path (attention of the prompt to itself) and the general one (a chunk of
    several tokens continuing each row's cache) both give apply's logits."""
    from gssm_jax.models.transformer import init_cache

    tokens = _tokens()
    model = Transformer(CFG)
    run = jax.jit(lambda p, t, c, n: model.apply({"params": p}, t, c, n))
    cache = init_cache(CFG, B, 64)
    first, cache = run(params, tokens[:, :25], cache, jnp.full((B,), 25, jnp.int32))
    rest, cache = run(params, tokens[:, 25:], cache, jnp.full((B,), L - 25, jnp.int32))
    want = np.asarray(_apply(CFG, params, tokens))
    got = np.concatenate([np.asarray(first), np.asarray(rest)], axis=1)
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.asarray(cache.lengths).tolist() == [L] * B
