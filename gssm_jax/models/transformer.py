"""Decoder-only transformer (Flax linen): pre-norm RMSNorm blocks, rotary causal attention, SwiGLU.

tokens_BxL (int32) -> logits_BxLxV (float32). Parameters are float32 and annotated with logical axis
names (embed, heads, kv, mlp, vocab); activations are constrained with batch, length, embed, heads,
kv, mlp, vocab, so `config.mesh.rules` alone decides data and tensor parallelism.

The blocks compute on 2-D (batch x length, features) rows through `gssm_jax.models.layers`, whose
hand-written backward passes make training about twice as fast on XLA:CPU as automatic
differentiation of the same formulas; the function computed is the textbook one.
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from gssm_jax.models import layers
from gssm_jax.models.init import weight_init

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
ATTENTION_BLOCK_LEN = 64  # query rows per causal block in `layers.causal_attention`
EMBED_AXES = ("batch", "length", "embed")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The `model.*` config section plus the vocabulary size of the data graph."""

    vocab_size: int
    emb_dim: int = 64
    nb_layers: int = 2
    nb_heads: int = 4
    hidden_dim: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    weight_tying: bool = False
    init: str = "fan_in"
    init_std: float = 0.02
    dtype: str = "float32"
    remat: bool = False
    attention: str = "auto"

    @classmethod
    def from_config(cls, model: ml_collections.ConfigDict, vocab_size: int) -> ModelConfig:
        fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
        return cls(vocab_size=vocab_size, **{k: model[k] for k in fields})

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.nb_heads

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]


def _init(cfg: ModelConfig, fan_in: int, names: tuple[str | None, ...], residual_out=False):
    """The `cfg.init` scheme's initializer (`gssm_jax.models.init`) with logical axis names."""
    init = weight_init(cfg.init, fan_in, cfg.init_std, cfg.nb_layers, residual_out)
    return nn.with_logical_partitioning(init, names)


def _constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    return nn.with_logical_constraint(x, names)


def _mesh_spec(names: tuple[str | None, ...]):
    """The PartitionSpec these logical names map to, or None without a mesh and rules in context."""
    if jax.sharding.get_abstract_mesh().empty or not nn.get_logical_axis_rules():
        return None
    return nn.logical_to_mesh_axes(names)


def batch_shards() -> int:
    """Devices the logical `batch` axis is split over, from the mesh and rules in context (or 1)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    spec = nn.logical_to_mesh_axes(("batch",))
    axes = spec[0] if spec is not None and len(spec) else None
    if axes is None:
        return 1
    axes = (axes,) if isinstance(axes, str) else tuple(axes)
    return math.prod(mesh.shape[a] for a in axes)


class RMSNorm(nn.Module):
    """x / rms(x) * scale, computed in float32, returned in the compute dtype."""

    eps: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.ones, ("embed",))
        scale_D = self.param("scale", init, (x_BxLxD.shape[-1],), jnp.float32)
        x = x_BxLxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * scale_D).astype(self.dtype)


class Attention(nn.Module):
    """Causal self-attention: fused q/k/v projection, rotary embeddings, output projection.

    `cfg.attention` picks the kernel (see `layers.resolve_attention`): the CPU-tuned blocked
    attention, or `jax.nn.dot_product_attention` as XLA ops or cuDNN flash attention.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg, dtype = self.cfg, self.cfg.compute_dtype
        B, L, D = x_BxLxD.shape
        H, K = cfg.nb_heads, cfg.head_dim
        w_qkv = self.param(
            "qkv", _init(cfg, D, ("embed", None, "heads", "kv")), (D, 3, H, K), jnp.float32
        )
        out_init = _init(cfg, H * K, ("heads", "kv", "embed"), residual_out=True)
        w_out = self.param("out", out_init, (H, K, D), jnp.float32)
        qkv_BxLx3xHxK = layers.dense(x_BxLxD.reshape(B * L, D), w_qkv.astype(dtype)).reshape(
            B, L, 3, H, K
        )
        qkv_BxLx3xHxK = _constrain(qkv_BxLx3xHxK, ("batch", "length", None, "heads", "kv"))
        impl = layers.resolve_attention(cfg.attention, cfg.dtype, jax.default_backend(), K)
        if impl == "blocked":
            steps = layers.attention_steps(B, batch_shards(), H, L)
            o_BxLxHxK = layers.causal_attention(
                qkv_BxLx3xHxK, cfg.rope_theta, steps, ATTENTION_BLOCK_LEN
            )
        else:
            o_BxLxHxK = layers.dot_product_attention(qkv_BxLx3xHxK, cfg.rope_theta, impl)
        o_BxLxHxK = _constrain(o_BxLxHxK, ("batch", "length", "heads", "kv"))
        y_NxD = layers.dense(o_BxLxHxK.reshape(B * L, H, K), w_out.astype(dtype), 2)
        return y_NxD.reshape(B, L, D)


class Mlp(nn.Module):
    """SwiGLU: silu(x W_gate) * (x W_up) W_down, gate and up in one (D, 2, F) kernel."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg, dtype = self.cfg, self.cfg.compute_dtype
        B, L, D = x_BxLxD.shape
        F = cfg.hidden_dim
        w_gate_up = self.param(
            "gate_up", _init(cfg, D, ("embed", None, "mlp")), (D, 2, F), jnp.float32
        )
        down_init = _init(cfg, F, ("mlp", "embed"), residual_out=True)
        w_down = self.param("down", down_init, (F, D), jnp.float32)
        y_NxD = layers.swiglu(
            x_BxLxD.reshape(B * L, D),
            w_gate_up.astype(dtype),
            w_down.astype(dtype),
            _mesh_spec(("batch", None, "mlp")),
        )
        return y_NxD.reshape(B, L, D)


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x))."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = RMSNorm(cfg.norm_eps, cfg.compute_dtype, name="attn_norm")(x_BxLxD)
        x_BxLxD = _constrain(x_BxLxD + Attention(cfg, name="attn")(h), EMBED_AXES)
        h = RMSNorm(cfg.norm_eps, cfg.compute_dtype, name="mlp_norm")(x_BxLxD)
        return _constrain(x_BxLxD + Mlp(cfg, name="mlp")(h), EMBED_AXES)


class Transformer(nn.Module):
    """Token embedding, `nb_layers` blocks (rematerialised when `remat`), final norm, output head."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array) -> jax.Array:
        cfg, dtype = self.cfg, self.cfg.compute_dtype
        B, L = tokens_BxL.shape
        V, D = cfg.vocab_size, cfg.emb_dim
        embedding_VxD = self.param("embed", _init(cfg, D, ("vocab", "embed")), (V, D), jnp.float32)
        x_BxLxD = _constrain(jnp.take(embedding_VxD, tokens_BxL, axis=0).astype(dtype), EMBED_AXES)
        block = nn.remat(Block) if cfg.remat else Block
        for i in range(cfg.nb_layers):
            x_BxLxD = block(cfg, name=f"block_{i}")(x_BxLxD)
        x_NxD = RMSNorm(cfg.norm_eps, dtype, name="final_norm")(x_BxLxD).reshape(B * L, D)
        if cfg.weight_tying:
            w_head_DxV = embedding_VxD.T
        else:
            w_head_DxV = self.param("head", _init(cfg, D, ("embed", "vocab")), (D, V), jnp.float32)
        logits_NxV = layers.dense(x_NxD, w_head_DxV.astype(dtype)).astype(jnp.float32)
        return _constrain(logits_NxV.reshape(B, L, V), ("batch", "length", "vocab"))
