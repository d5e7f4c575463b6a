"""Activation capture: the residual stream of the trained module itself, on any Flax model."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models.configs import TransformerConfig
from gssm_jax.models.transformer import Block, Transformer
from gssm_jax.probing import capture


def tiny(remat: bool = False) -> tuple[Transformer, dict, jax.Array]:
    cfg = TransformerConfig(
        vocab_size=8, emb_dim=16, nb_layers=2, nb_heads=2, hidden_dim=32, remat=remat
    )
    model = Transformer(cfg)
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 8, (3, 10)), jnp.int32)
    return model, random_params(model, tokens), tokens


def block_layers(blocks: int, parts: tuple[str, ...]) -> tuple[str, ...]:
    """The layer names of a stack of `blocks` blocks with sublayers `parts`, in model order."""
    names = [[f"block_{i}/{p}" for p in parts] + [f"block_{i}"] for i in range(blocks)]
    return ("embed", *(n for block in names for n in block))


def random_params(model: nn.Module, tokens: jax.Array) -> dict:
    """Gaussian parameters of the model's shapes (NumPy: no RNG kernels to compile)."""
    shapes = jax.eval_shape(lambda: nn.unbox(model.init(jax.random.key(0), tokens)["params"]))
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)


def test_transformer_layers_are_the_residual_stream():
    model, params, tokens = tiny()
    layers = capture.available_layers(model, params, tokens)
    assert layers == block_layers(2, ("attn", "mlp"))
    assert capture.residual_layers(layers) == ("embed", "block_0", "block_1")
    acts = jax.jit(capture.capture_fn(model, layers))(params, tokens)
    np.testing.assert_array_equal(acts["embed"], params["embed"][tokens])
    for i, before in enumerate(("embed", "block_0")):
        block = jax.jit(Block(model.cfg).apply)
        want = capture.activations(block({"params": params[f"block_{i}"]}, acts[before]))
        np.testing.assert_allclose(acts[f"block_{i}"], want, rtol=1e-6, atol=1e-6)
        # the block is x + attn(norm(x)), then + mlp(norm(.)): its outputs add up
        total = acts[before] + acts[f"block_{i}/attn"] + acts[f"block_{i}/mlp"]
        np.testing.assert_allclose(acts[f"block_{i}"], total, rtol=1e-5, atol=1e-6)
    # capturing does not change what the model computes
    logits, _ = jax.jit(
        lambda p: model.apply({"params": p}, tokens, capture_intermediates=True, mutable=True)
    )(params)
    np.testing.assert_array_equal(logits, jax.jit(model.apply)({"params": params}, tokens))


def test_rematerialised_blocks_capture_the_same():
    model, params, tokens = tiny()
    remat_model, _, _ = tiny(remat=True)
    layers = ("embed", "block_1", "block_0/mlp")
    want = jax.jit(capture.capture_fn(model, layers))(params, tokens)
    got = jax.jit(capture.capture_fn(remat_model, layers))(params, tokens)
    assert set(got) == set(layers)
    for name in layers:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-7)


class Toy(nn.Module):
    """Another family: a lookup, then blocks named block_<i> with a norm and a mixer inside."""

    @nn.compact
    def __call__(self, tokens_BxL):
        x = nn.Embed(5, 6)(tokens_BxL)
        for i in range(3):
            x = ToyBlock(name=f"block_{i}")(x)
        return nn.Dense(5)(x)


class ToyBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x + nn.Dense(6, name="mixer")(nn.LayerNorm(name="norm")(x))


def test_any_flax_model_with_named_blocks():
    model = Toy()
    tokens = jnp.zeros((2, 4), jnp.int32)
    params = random_params(model, tokens)
    layers = capture.available_layers(model, params, tokens)
    assert layers == block_layers(3, ("mixer",))
    acts = capture.capture_fn(model, layers)(params, tokens)
    np.testing.assert_array_equal(acts["embed"], params["Embed_0"]["embedding"][tokens])
    np.testing.assert_allclose(acts["block_2"], acts["block_1"] + acts["block_2/mixer"], atol=1e-6)


def test_unknown_layer():
    model, params, tokens = tiny()
    layers = capture.available_layers(model, params, tokens)
    with pytest.raises(capture.UnknownLayerError, match="'block_2'.*embed, block_0/attn"):
        capture.check_layers(["embed", "block_2"], layers)
