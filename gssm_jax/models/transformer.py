"""Decoder-only transformer (Flax linen): pre-norm RMSNorm blocks, rotary causal attention, SwiGLU.

tokens_BxL (int32) -> logits_BxLxV (float32). Parameters are float32 and annotated with logical axis
names (embed, heads, kv, mlp, vocab); activations are constrained with batch, length, embed, heads,
kv, mlp, vocab, so `config.mesh.rules` alone decides data and tensor parallelism.

Positions are explicit: q and k are rotated outside the attention kernel, at positions 0..L-1 in
training and at each sequence's own positions with a cache. With a cache (a KV cache, see
`init_cache`) the L new queries attend to every cached key at or before their position, so one
decode step is a call with L = 1; a prefill into an empty cache attends the prompt to itself with
the training kernel and writes its keys and values into the cache's first L positions, so its cost
is the prompt's whatever the cache's length.

With `model.kernels` custom (the default on CPU) the blocks compute through the hand-written
backward passes of `gssm_jax.models.layers`, about twice as fast on XLA:CPU as automatic
differentiation of the same formulas; with autodiff (the default elsewhere) JAX differentiates
plain formulas. The function computed is the same.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models import layers, lm, mlp
from gssm_jax.models.configs import TransformerConfig
from gssm_jax.models.family import Cache, block_name
from gssm_jax.models.lm import EMBED_AXES, RMSNorm

Config = TransformerConfig
ATTENTION_BLOCK_LEN = 64  # query rows per causal block in `layers.causal_attention`
__all__ = ["EMBED_AXES", "Config", "RMSNorm", "Transformer", "init_cache"]


class KVCache(NamedTuple):
    """One block's keys and values, (batch, cache_len, heads, head_dim) in the compute dtype."""

    k: jax.Array
    v: jax.Array


def init_cache(cfg: TransformerConfig, batch: int, cache_len: int) -> Cache:
    """An empty KV cache of `cache_len` positions per block, lengths 0."""
    shape = (batch, cache_len, cfg.nb_heads, cfg.head_dim)
    dtype = lm.compute_dtype(cfg)
    blocks = tuple(
        KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(cfg.nb_layers)
    )
    return Cache(jnp.zeros((batch,), jnp.int32), blocks)


def cache_capacity(cache: Cache) -> int | None:
    """Positions the cache holds per sequence."""
    return cache.blocks[0].k.shape[1]


def _write(cache_BxSxHxK: jax.Array, new_BxLxHxK: jax.Array, start_B: jax.Array) -> jax.Array:
    """The cache with row b's positions start[b] .. start[b] + L - 1 set (past the end dropped)."""
    B, L = new_BxLxHxK.shape[:2]
    pos_BxL = start_B[:, None] + jnp.arange(L)[None, :]
    rows_BxL = jnp.broadcast_to(jnp.arange(B)[:, None], (B, L))
    new = new_BxLxHxK.astype(cache_BxSxHxK.dtype)
    return cache_BxSxHxK.at[rows_BxL, pos_BxL].set(new, mode="drop")


def _attend_cached(q, k, v, cache: KVCache, start_B, pos_BxL, causal):
    """(attention output, cache) of L new positions per row written at start_B + 0..L-1.

    A prefill (every row starting at position 0, the cache empty) writes the keys and values into
    the cache's first L positions and attends the prompt to itself with the training kernel
    (`causal`), so it costs what the prompt costs, not what the cache holds; otherwise (a decode
    step, or a chunk continuing sequences) the queries attend to the whole cache."""

    def fresh():
        at = (0, 0, 0, 0)
        new_k = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), at)
        new_v = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), at)
        return causal(q, k, v).astype(q.dtype), KVCache(new_k, new_v)

    def continued():
        new = KVCache(_write(cache.k, k, start_B), _write(cache.v, v, start_B))
        return layers.cached_attention(q, new.k, new.v, pos_BxL).astype(q.dtype), new

    if q.shape[1] == 1:
        return continued()
    return jax.lax.cond(jnp.all(start_B == 0), fresh, continued)


class Attention(nn.Module):
    """Causal self-attention: fused q/k/v projection, rotary embeddings, output projection.

    Without a cache, `cfg.attention` picks the kernel (see `layers.resolve_attention`): the
    CPU-tuned blocked attention, or `jax.nn.dot_product_attention` as XLA ops or cuDNN flash
    attention. With one, the new keys and values are written at positions start_B + 0..L-1 and
    the queries attend to the cache (`layers.cached_attention`), or, in a prefill, to each other
    (`_attend_cached`).
    """

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, cache: KVCache | None = None, start_B=None):
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        H, K = cfg.nb_heads, cfg.head_dim
        kernels = lm.kernels(cfg)
        dense, _ = layers.kernel_set(kernels)
        w_qkv = self.param(
            "qkv", lm.weight(cfg, D, ("embed", None, "heads", "kv")), (D, 3, H, K), jnp.float32
        )
        w_out = self.param(
            "out",
            lm.weight(cfg, H * K, ("heads", "kv", "embed"), residual_out=True),
            (H, K, D),
            jnp.float32,
        )
        qkv_BxLx3xHxK = dense(x_BxLxD.reshape(B * L, D), w_qkv.astype(dtype)).reshape(B, L, 3, H, K)
        qkv_BxLx3xHxK = lm.constrain(qkv_BxLx3xHxK, ("batch", "length", None, "heads", "kv"))
        q, k, v = qkv_BxLx3xHxK[:, :, 0], qkv_BxLx3xHxK[:, :, 1], qkv_BxLx3xHxK[:, :, 2]
        sin: layers.Angles
        cos: layers.Angles

        def causal(q, k, v):  # the L new positions attending to each other, as in training
            impl = layers.resolve_attention(
                cfg.attention, cfg.dtype, jax.default_backend(), K, kernels
            )
            if impl == "blocked":
                steps = layers.attention_steps(B, lm.batch_shards(), H, L)
                return layers.causal_attention(q, k, v, steps, ATTENTION_BLOCK_LEN)
            return layers.dot_product_attention(q, k, v, impl)

        if cache is None:
            sin, cos = layers.rope_tables(L, K, cfg.rope_theta)
            q, k = layers.rotate_qk(q, k, sin, cos)
            o_BxLxHxK = causal(q, k, v)
            new_cache = None
        else:
            pos_BxL = start_B[:, None] + jnp.arange(L)[None, :]
            sin, cos = layers.rope_at(pos_BxL, K, cfg.rope_theta)
            q, k = layers.rotate_qk(q, k, sin, cos)
            o_BxLxHxK, new_cache = _attend_cached(q, k, v, cache, start_B, pos_BxL, causal)
        o_BxLxHxK = lm.constrain(o_BxLxHxK, ("batch", "length", "heads", "kv"))
        y_NxD = dense(o_BxLxHxK.reshape(B * L, H, K), w_out.astype(dtype), 2)
        return y_NxD.reshape(B, L, D), new_cache


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x))."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, cache: KVCache | None = None, start_B=None):
        cfg = self.cfg
        h = RMSNorm(cfg.norm_eps, lm.compute_dtype(cfg), name="attn_norm")(x_BxLxD)
        y, cache = Attention(cfg, name="attn")(h, cache, start_B)
        x_BxLxD = lm.constrain(x_BxLxD + y, EMBED_AXES)
        h = RMSNorm(cfg.norm_eps, lm.compute_dtype(cfg), name="mlp_norm")(x_BxLxD)
        y = mlp.mlp_block(cfg)(h)
        return lm.constrain(x_BxLxD + y, EMBED_AXES), cache


class Transformer(nn.Module):
    """Token embedding, `nb_layers` blocks (rematerialised when `remat`), final norm, output head.

    `(tokens_BxL)` -> logits_BxLxV; `(tokens_BxL, cache, valid_B)` -> (logits_BxLxV, cache): the
    tokens continue each sequence of the cache, the first valid_B of them count (the rest are
    padding whose keys later steps overwrite).
    """

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, cache: Cache | None = None, valid_B=None):
        cfg = self.cfg
        x_BxLxD, head_DxV, block, start_B = lm.stack_start(self, cfg, tokens_BxL, cache, Block)
        new_blocks = []
        for i in range(cfg.nb_layers):
            layer_cache = None if cache is None else cache.blocks[i]
            x_BxLxD, layer_cache = block(cfg, name=block_name(i))(x_BxLxD, layer_cache, start_B)
            new_blocks.append(layer_cache)
        x_BxLxD = RMSNorm(cfg.norm_eps, lm.compute_dtype(cfg), name="final_norm")(x_BxLxD)
        logits_BxLxV = lm.head(cfg, head_DxV, x_BxLxD)
        if cache is None:
            return logits_BxLxV
        lengths_B = start_B + valid_B
        overflow_B = lengths_B > cache_capacity(cache)
        return lm.flag_overflow(logits_BxLxV, overflow_B), Cache(lengths_B, tuple(new_blocks))


Module = Transformer
