"""The same transformer written plainly and differentiated by JAX: the yardstick for `Transformer`.

It has the parameter tree of `gssm_jax.models.transformer.Transformer` (same names, shapes and
logical axes) and computes the same function with einsums and `jax.nn.dot_product_attention`, so
tests compare the two on the same parameters and the train benchmark times both in one run.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models.configs import TransformerConfig
from gssm_jax.models.init import weight_init
from gssm_jax.models.layers import rope, rope_tables
from gssm_jax.models.lm import compute_dtype
from gssm_jax.models.transformer import EMBED_AXES, RMSNorm


def _param(module: nn.Module, name: str, shape: tuple, fan_in: int, axes: tuple, out=False):
    c = module.cfg
    init = weight_init(c.init, fan_in, c.init_std, c.nb_layers, residual_out=out)
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.float32)


class PlainAttention(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c, dtype = self.cfg, compute_dtype(self.cfg)
        L, D = x_BxLxD.shape[1:]
        H, K = c.nb_heads, c.head_dim
        w_qkv = _param(self, "qkv", (D, 3, H, K), D, ("embed", None, "heads", "kv"))
        w_out = _param(self, "out", (H, K, D), H * K, ("heads", "kv", "embed"), out=True)
        q, k, v = jnp.einsum("bld,dthk->tblhk", x_BxLxD, w_qkv.astype(dtype))
        sin, cos = rope_tables(L, K, c.rope_theta)
        q, k = rope(q, sin, cos).astype(dtype), rope(k, sin, cos).astype(dtype)
        o_BxLxHxK = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
        return jnp.einsum("blhk,hkd->bld", o_BxLxHxK, w_out.astype(dtype))


class PlainMlp(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c, dtype = self.cfg, compute_dtype(self.cfg)
        D, F = c.emb_dim, c.hidden_dim
        w_gate_up = _param(self, "gate_up", (D, 2, F), D, ("embed", None, "mlp"))
        w_down = _param(self, "down", (F, D), F, ("mlp", "embed"), out=True)
        gate_BxLxF, up_BxLxF = jnp.einsum("bld,dtf->tblf", x_BxLxD, w_gate_up.astype(dtype))
        return jnp.einsum("blf,fd->bld", nn.silu(gate_BxLxF) * up_BxLxF, w_down.astype(dtype))


class PlainBlock(nn.Module):
    cfg: TransformerConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c = self.cfg
        h = RMSNorm(c.norm_eps, compute_dtype(c), name="attn_norm")(x_BxLxD)
        x_BxLxD = x_BxLxD + PlainAttention(c, name="attn")(h)
        h = RMSNorm(c.norm_eps, compute_dtype(c), name="mlp_norm")(x_BxLxD)
        return nn.with_logical_constraint(x_BxLxD + PlainMlp(c, name="mlp")(h), EMBED_AXES)


class PlainTransformer(nn.Module):
    """tokens_BxL (int32) -> logits_BxLxV (float32), without custom gradients."""

    cfg: TransformerConfig

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        c, dtype = self.cfg, compute_dtype(self.cfg)
        embed_VxD = _param(self, "embed", (c.vocab_size, c.emb_dim), c.emb_dim, ("vocab", "embed"))
        x_BxLxD = jnp.take(embed_VxD, tokens_BxL, axis=0).astype(dtype)
        block = nn.remat(PlainBlock) if c.remat else PlainBlock
        for i in range(c.nb_layers):
            x_BxLxD = block(c, name=f"block_{i}")(x_BxLxD)
        x_BxLxD = RMSNorm(c.norm_eps, dtype, name="final_norm")(x_BxLxD)
        if c.weight_tying:
            head_DxV = embed_VxD.T
        else:
            head_DxV = _param(
                self, "head", (c.emb_dim, c.vocab_size), c.emb_dim, ("embed", "vocab")
            )
        logits_BxLxV = jnp.einsum("bld,dv->blv", x_BxLxD, head_DxV.astype(dtype))
        return logits_BxLxV.astype(jnp.float32)
