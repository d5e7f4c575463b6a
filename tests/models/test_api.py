"""The shared model API, for every family: prefill + decode reproduce apply at every position for
prompts of different lengths; kernels custom and autodiff agree; bad inputs are named errors."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models import registry
from gssm_jax.models.configs import FAMILY_CONFIGS, FieldError
from gssm_jax.models.family import Cache, block_name, check_family_module
from gssm_jax.train.state import INIT_COMPILER_OPTIONS

VOCAB = 11
# Tiny sizes per family (fields beyond the shared ones); chunk sizes that the lengths below do
# and do not fill.
TINY = {
    "transformer": dict(nb_heads=2, hidden_dim=24),
    "mamba": dict(expand=2, state_dim=4, head_dim=4, conv_width=3, chunk_size=4),
    "hawk": dict(expand=2, nb_heads=2, conv_width=3, hidden_dim=24),
    "mingru": dict(expand=2, hidden_dim=24),
    "minlstm": dict(expand=2, hidden_dim=24),
}
FAMILIES = list(FAMILY_CONFIGS)  # every registered family; one missing from TINY fails here


def test_every_registered_family_has_its_test_sizes():
    assert set(TINY) == set(FAMILY_CONFIGS), "add the new family's tiny sizes to TINY"


def tiny_model(family: str, **overrides) -> registry.Model:
    fields = dict(vocab_size=VOCAB, emb_dim=16, nb_layers=2, **TINY[family], **overrides)
    return registry.build(FAMILY_CONFIGS[family](**fields))


def _tokens(seed: int, batch: int, length: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype(np.int32)


def _params(model: registry.Model, length: int = 8):
    init = jax.jit(
        lambda rng: nn.unbox(model.init(rng, jnp.zeros((1, length), jnp.int32))),
        compiler_options=INIT_COMPILER_OPTIONS,
    )
    return init(jax.random.key(3))


@pytest.mark.parametrize("family", FAMILIES)
def test_prefill_then_decode_gives_the_logits_of_apply_at_every_position(family):
    model = tiny_model(family)
    params = _params(model)
    B, L = 3, 11
    tokens = _tokens(0, B, L)
    lengths = np.array([3, 11, 6], np.int32)
    full = np.asarray(jax.jit(model.apply)(params, tokens))
    prefill = jax.jit(model.prefill, static_argnums=3)
    decode = jax.jit(model.decode)
    logits, cache = prefill(params, tokens, lengths, L + 2)
    for b in range(B):
        np.testing.assert_allclose(logits[b, : lengths[b]], full[b, : lengths[b]], atol=1e-5)
    pos = lengths.copy()
    for _ in range(L - int(lengths.min())):
        step_tokens = tokens[np.arange(B), np.minimum(pos, L - 1)]
        out, cache = decode(params, cache, step_tokens)
        for b in np.flatnonzero(pos < L):
            np.testing.assert_allclose(out[b], full[b, pos[b]], atol=1e-5, err_msg=f"{b}, {pos}")
        pos += 1
    np.testing.assert_array_equal(cache.lengths, pos)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_keeps_the_contract(family):
    """Config, Module, init_cache, cache_capacity; a typed Cache with one NamedTuple per block;
    blocks named block_<i>, with the MLP (where there is one) as `mlp`."""
    module = registry.family_module(family)
    check_family_module(module)
    model = tiny_model(family)
    assert module.Config is type(model.cfg)
    cache = model.init_cache(3, 7)
    assert isinstance(cache, Cache) and cache.lengths.shape == (3,)
    assert len(cache.blocks) == model.cfg.nb_layers
    assert all(isinstance(b, tuple) and hasattr(b, "_fields") for b in cache.blocks)
    capacity = module.cache_capacity(cache)
    assert capacity == (7 if family == "transformer" else None)
    params = _params(model)
    blocks = sorted(k for k in params if k.startswith("block_"))
    assert blocks == [block_name(i) for i in range(model.cfg.nb_layers)]
    assert ("mlp" in params[block_name(0)]) == (model.cfg.mlp_hidden_dim > 0)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "mamba"])
def test_every_family_with_an_mlp_takes_the_kronecker_mlp(family):
    dense, kron = tiny_model(family), tiny_model(family, mlp="kronecker", kron_terms=2)
    params = _params(kron)
    assert set(params[block_name(0)]["mlp"]) == {"gate_up_a", "gate_up_b", "down_a", "down_b"}
    assert kron.param_count() < dense.param_count()
    assert kron.param_count() == sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    logits = jax.jit(kron.apply)(params, _tokens(0, 2, 6))
    assert logits.shape == (2, 6, VOCAB) and np.isfinite(np.asarray(logits)).all()


def test_the_kronecker_mlp_of_a_family_without_one_is_a_named_error():
    cfg = FAMILY_CONFIGS["mamba"](vocab_size=VOCAB, emb_dim=16, **TINY["mamba"], mlp="kronecker")
    with pytest.raises(FieldError, match="mlp='kronecker': needs a family with an MLP; mamba"):
        registry.build(cfg)


@pytest.mark.parametrize("family", ["transformer", "mamba"])  # the others share Mamba's dense
def test_custom_and_autodiff_kernels_agree_and_jvp_runs_through_autodiff(family):
    custom = tiny_model(family, kernels="custom")
    autodiff = tiny_model(family, kernels="autodiff")
    params = _params(custom)
    tokens = _tokens(1, 2, 9)

    def loss(model, p):
        return jnp.mean(jax.nn.log_softmax(model.apply(p, tokens))[..., 0])

    (l0, g0), (l1, g1) = jax.jit(
        lambda p: (
            jax.value_and_grad(lambda q: loss(custom, q))(p),
            jax.value_and_grad(lambda q: loss(autodiff, q))(p),
        )
    )(params)
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    tangent = jax.tree.map(jnp.ones_like, params)
    _, dl = jax.jit(lambda p, t: jax.jvp(lambda q: loss(autodiff, q), (p,), (t,)))(params, tangent)
    assert np.isfinite(float(dl))


@pytest.mark.parametrize("family", FAMILIES)
def test_param_count_is_the_size_of_the_parameters(family):
    model = tiny_model(family)
    shapes = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 5), int))))
    assert model.param_count() == sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    tied = tiny_model(family, weight_tying=True)
    assert tied.param_count() == model.param_count() - 16 * VOCAB
    flops = model.flops_per_token(64)
    assert flops["total"] == 3 * flops["forward"] > 2 * model.param_count() - 4 * 16 * VOCAB


def test_decode_past_the_cache_is_a_named_error():
    model = tiny_model("transformer")
    params = _params(model)
    tokens = _tokens(2, 2, 4)
    _, cache = model.prefill(params, tokens, np.array([4, 2]), 5)
    _, cache = model.decode(params, cache, tokens[:, 0])  # positions 4 and 2: fits
    with pytest.raises(registry.CacheFullError, match="position 5 past the cache's 5 positions"):
        model.decode(params, cache, tokens[:, 0])
    # Under jit the check cannot raise: the sequence that overflowed gets NaN logits.
    out, _ = jax.jit(model.decode)(params, cache, tokens[:, 0])
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    with pytest.raises(registry.CacheFullError, match="prefill of 4 positions into a cache of 3"):
        model.prefill(params, tokens, np.array([4, 2]), 3)


def test_prompt_lengths_outside_the_tokens_are_a_named_error():
    model = tiny_model("transformer")
    params = _params(model)
    with pytest.raises(registry.PromptError, match=r"in \[1, 4\].*\[0, 2\]"):
        model.prefill(params, _tokens(0, 2, 4), np.array([0, 2]))


def test_unknown_family_and_bad_fields_are_named_errors():
    with pytest.raises(ValueError, match="unknown model family 'rnn'"):
        registry.family_module("rnn")
    cfg = FAMILY_CONFIGS["transformer"](vocab_size=VOCAB, emb_dim=16, nb_heads=3)
    with pytest.raises(FieldError, match="nb_heads=3: must divide emb_dim=16"):
        registry.build(cfg)
    with pytest.raises(FieldError, match="kernels='fast'"):
        registry.build(dataclasses.replace(cfg, nb_heads=2, kernels="fast"))


def test_models_import_nothing_from_the_run_config():
    import ast
    from pathlib import Path

    import gssm_jax.models

    for path in Path(gssm_jax.models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in getattr(node, "names", [])]
            module = getattr(node, "module", None) or ""
            imported = [module] + [f"{module}.{n}" for n in names] if module else names
            assert not any(n.startswith("gssm_jax.config") for n in imported), path
