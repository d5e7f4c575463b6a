"""Decoder-only transformer (Flax linen) with logical axis names on every parameter and activation.

Token embedding, pre-norm blocks of causal multi-head attention with rotary embeddings and a SwiGLU
MLP, final RMSNorm, output head (tied to the embedding or not). Parameters are float32; the compute
dtype is configurable. Dense layers act on (B*L, D) matrices, the layout XLA:CPU multiplies fastest.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    emb_dim: int = 64
    nb_layers: int = 2
    nb_heads: int = 4
    hidden_dim: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    weight_tying: bool = False
    init_std: float = 0.02
    dtype: str = "float32"
    remat: bool = False

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.nb_heads


def _init(std: float) -> nn.initializers.Initializer:
    return nn.initializers.truncated_normal(stddev=std)


def _param(module: nn.Module, name: str, shape: tuple, std: float, axes: tuple) -> jax.Array:
    return module.param(name, nn.with_logical_partitioning(_init(std), axes), shape, jnp.float32)


class RMSNorm(nn.Module):
    eps: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        scale_D = self.param(
            "scale",
            nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
            (x_BxLxD.shape[-1],),
            jnp.float32,
        )
        x = x_BxLxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * scale_D).astype(self.dtype)


def rotary(x_BxLxHxK: jax.Array, theta: float) -> jax.Array:
    """Rotary position embedding over the last axis (pairs (i, i + K/2))."""
    L, K = x_BxLxHxK.shape[1], x_BxLxHxK.shape[-1]
    freq_F = theta ** (-jnp.arange(0, K // 2, dtype=jnp.float32) * 2 / K)
    angle_LxF = jnp.arange(L, dtype=jnp.float32)[:, None] * freq_F[None, :]
    cos, sin = jnp.cos(angle_LxF)[None, :, None, :], jnp.sin(angle_LxF)[None, :, None, :]
    x1, x2 = jnp.split(x_BxLxHxK.astype(jnp.float32), 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxHxK.dtype)


class Attention(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c = self.cfg
        B, L, D = x_BxLxD.shape
        H, K = c.nb_heads, c.head_dim
        dtype = DTYPES[c.dtype]
        out_std = c.init_std / (2 * c.nb_layers) ** 0.5
        w_qkv = _param(self, "qkv", (D, 3, H, K), c.init_std, ("embed", None, "heads", "kv"))
        w_out = _param(self, "out", (H, K, D), out_std, ("heads", "kv", "embed"))
        qkv = jnp.einsum("bld,dthk->tblhk", x_BxLxD, w_qkv.astype(dtype))
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK = (
            nn.with_logical_constraint(t, ("batch", "length", "heads", "kv")) for t in qkv
        )
        q_BxLxHxK = rotary(q_BxLxHxK, c.rope_theta)
        k_BxLxHxK = rotary(k_BxLxHxK, c.rope_theta)
        o_BxLxHxK = jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True)
        o_BxLxHxK = nn.with_logical_constraint(o_BxLxHxK, ("batch", "length", "heads", "kv"))
        y_BxLxD = jnp.einsum("blhk,hkd->bld", o_BxLxHxK, w_out.astype(dtype))
        return nn.with_logical_constraint(y_BxLxD, ("batch", "length", "embed"))


class SwiGLU(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c = self.cfg
        D, F = c.emb_dim, c.hidden_dim
        dtype = DTYPES[c.dtype]
        out_std = c.init_std / (2 * c.nb_layers) ** 0.5
        w_in = _param(self, "gate_up", (D, 2, F), c.init_std, ("embed", None, "mlp"))
        w_out = _param(self, "down", (F, D), out_std, ("mlp", "embed"))
        gate_BxLxF, up_BxLxF = jnp.einsum("bld,dtf->tblf", x_BxLxD, w_in.astype(dtype))
        h_BxLxF = nn.silu(gate_BxLxF) * up_BxLxF
        h_BxLxF = nn.with_logical_constraint(h_BxLxF, ("batch", "length", "mlp"))
        y_BxLxD = jnp.einsum("blf,fd->bld", h_BxLxF, w_out.astype(dtype))
        return nn.with_logical_constraint(y_BxLxD, ("batch", "length", "embed"))


class Block(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        c = self.cfg
        dtype = DTYPES[c.dtype]
        x_BxLxD = x_BxLxD + Attention(c, name="attn")(
            RMSNorm(c.norm_eps, dtype, name="attn_norm")(x_BxLxD)
        )
        x_BxLxD = x_BxLxD + SwiGLU(c, name="mlp")(
            RMSNorm(c.norm_eps, dtype, name="mlp_norm")(x_BxLxD)
        )
        return nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))


class Transformer(nn.Module):
    """tokens_BxL (int32) -> logits_BxLxV (float32)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        c = self.cfg
        dtype = DTYPES[c.dtype]
        embed_VxD = _param(self, "embed", (c.vocab_size, c.emb_dim), c.init_std, ("vocab", "embed"))
        x_BxLxD = jnp.take(embed_VxD, tokens_BxL, axis=0).astype(dtype)
        x_BxLxD = nn.with_logical_constraint(x_BxLxD, ("batch", "length", "embed"))
        block = nn.remat(Block) if c.remat else Block
        for i in range(c.nb_layers):
            x_BxLxD = block(c, name=f"block_{i}")(x_BxLxD)
        x_BxLxD = RMSNorm(c.norm_eps, dtype, name="final_norm")(x_BxLxD)
        if c.weight_tying:
            head_DxV = embed_VxD.T
        else:
            head_DxV = _param(
                self, "head", (c.emb_dim, c.vocab_size), c.init_std, ("embed", "vocab")
            )
        logits_BxLxV = jnp.einsum("bld,dv->blv", x_BxLxD, head_DxV.astype(dtype))
        logits_BxLxV = nn.with_logical_constraint(logits_BxLxV, ("batch", "length", "vocab"))
        return logits_BxLxV.astype(jnp.float32)
