"""The parts every family shares: token embedding, RMSNorm, output head, logical-axis helpers.

Parameters are float32 and carry logical axis names; activations are constrained with logical
names too, so `mesh.rules` alone decides data and tensor parallelism for every family.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models import layers
from gssm_jax.models.configs import Shared
from gssm_jax.models.init import weight_init

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
EMBED_AXES = ("batch", "length", "embed")


def compute_dtype(cfg: Shared):
    return DTYPES[cfg.dtype]


def kernels(cfg: Shared) -> str:
    """'custom' or 'autodiff': `cfg.kernels` resolved on the backend this is traced for."""
    return layers.resolve_kernels(cfg.kernels, jax.default_backend())


def init(std: float, names: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.truncated_normal(stddev=std), names)


def weight(cfg: Shared, fan_in: int, names: tuple[str | None, ...], residual_out: bool = False):
    """The initializer of a matrix contracting `fan_in` inputs under `cfg.init_scheme`
    (`gssm_jax.models.init`; "fixed" is `init(cfg.init_std)`, `init(out_std(cfg))` when it writes
    into the residual stream), with logical axis names."""
    scheme = weight_init(cfg.init_scheme, fan_in, cfg.init_std, cfg.nb_layers, residual_out)
    return nn.with_logical_partitioning(scheme, names)


def constant_init(value: float, names: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.constant(value), names)


def constrain(x: jax.Array, names: tuple[str | None, ...]) -> jax.Array:
    return nn.with_logical_constraint(x, names)


def mesh_spec(names: tuple[str | None, ...]):
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


def out_std(cfg: Shared) -> float:
    """Init std of the projections that write into the residual stream (GPT-2's 1/sqrt(2L))."""
    return cfg.init_std / math.sqrt(2 * cfg.nb_layers)


class RMSNorm(nn.Module):
    """x / rms(x) * scale, computed in float32, returned in the compute dtype."""

    eps: float
    dtype: jnp.dtype
    axis_name: str = "embed"

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        init = nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,))
        # unbox=True (the default) spelled out: it selects the overload typed as the bare array
        scale_D = self.param("scale", init, (x_BxLxD.shape[-1],), jnp.float32, unbox=True)
        x = x_BxLxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
        return (x * scale_D).astype(self.dtype)


def embedding_params(module: nn.Module, cfg: Shared) -> tuple[jax.Array, jax.Array]:
    """(embedding_VxD, head_DxV) declared on `module` as "embed" and "head" (the transposed
    embedding when the weights are tied)."""
    V, D = cfg.vocab_size, cfg.emb_dim
    # fan_in of the (V, D) table: D, as PyTorch counts it
    embedding_VxD = module.param("embed", weight(cfg, D, ("vocab", "embed")), (V, D), jnp.float32)
    if cfg.weight_tying:
        return embedding_VxD, embedding_VxD.T
    head_DxV = module.param("head", weight(cfg, D, ("embed", "vocab")), (D, V), jnp.float32)
    return embedding_VxD, head_DxV


def embed(cfg: Shared, embedding_VxD: jax.Array, tokens_BxL: jax.Array) -> jax.Array:
    x_BxLxD = jnp.take(embedding_VxD, tokens_BxL, axis=0).astype(compute_dtype(cfg))
    return constrain(x_BxLxD, EMBED_AXES)


def stack_start(module: nn.Module, cfg: Shared, tokens_BxL: jax.Array, cache, block_cls):
    """How every stack begins: the embedded tokens x_BxLxD, the head_DxV, the block class
    (rematerialised when `cfg.remat` and training, i.e. no cache) and the cache's start positions
    start_B (None without a cache)."""
    embedding_VxD, head_DxV = embedding_params(module, cfg)
    x_BxLxD = embed(cfg, embedding_VxD, tokens_BxL)
    block = nn.remat(block_cls) if cfg.remat and cache is None else block_cls
    start_B = None if cache is None else cache.lengths
    return x_BxLxD, head_DxV, block, start_B


def head(cfg: Shared, head_DxV: jax.Array, x_BxLxD: jax.Array) -> jax.Array:
    """Logits (float32) of the final norm's output."""
    B, L, D = x_BxLxD.shape
    dense, _ = layers.kernel_set(kernels(cfg))
    logits_NxV = dense(x_BxLxD.reshape(B * L, D), head_DxV.astype(x_BxLxD.dtype))
    logits_BxLxV = logits_NxV.astype(jnp.float32).reshape(B, L, -1)
    return constrain(logits_BxLxV, ("batch", "length", "vocab"))


def flag_overflow(logits: jax.Array, overflow_B: jax.Array) -> jax.Array:
    """NaN logits for the sequences whose cache overflowed (when the check runs under jit)."""
    shape = (-1,) + (1,) * (logits.ndim - 1)
    return jnp.where(overflow_B.reshape(shape), jnp.nan, logits)
