"""The SwiGLU MLP of every family that has one, dense or with each matrix a sum of Kronecker
products (`model.mlp`: "dense" or "kronecker").

The Kronecker factors and their shapes follow `gssm_jax.models.kronecker`; the matrices are never
formed: every product goes through `kronecker.kron_apply` (a reshape and two contractions),
differentiated by JAX. Both are called "mlp" in a block (`block_<i>/mlp/...`), which the Kronecker
surgery and the probes rely on.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models import kronecker, layers, lm
from gssm_jax.models.configs import Shared
from gssm_jax.models.init import matrix_std


def _init(std: float, terms: int, names: tuple[str | None, ...]):
    init = nn.initializers.truncated_normal(stddev=kronecker.factor_std(std, terms))
    return nn.with_logical_partitioning(init, names)


class Mlp(nn.Module):
    """SwiGLU: silu(x W_gate) * (x W_up) W_down, gate and up in one (D, 2, F) kernel."""

    cfg: Shared

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        F = cfg.mlp_hidden_dim
        w_gate_up = self.param(
            "gate_up", lm.weight(cfg, D, ("embed", None, "mlp")), (D, 2, F), jnp.float32
        )
        down_init = lm.weight(cfg, F, ("mlp", "embed"), residual_out=True)
        w_down = self.param("down", down_init, (F, D), jnp.float32)
        _, swiglu = layers.kernel_set(lm.kernels(cfg))
        y_NxD = swiglu(
            x_BxLxD.reshape(B * L, D),
            w_gate_up.astype(dtype),
            w_down.astype(dtype),
            lm.mesh_spec(("batch", None, "mlp")),
        )
        return y_NxD.reshape(B, L, D)


class KronMlp(nn.Module):
    """SwiGLU silu(x W_gate) * (x W_up) W_down with each W a sum of `kron_terms` Kronecker products.

    Parameters (r = kron_terms; gate and up stacked on the first axis):
    gate_up_a (2, r, D1, F1), gate_up_b (2, r, D2, F2), down_a (r, F1, D1), down_b (r, F2, D2). The
    large factors shard their D1 and F1 axes as `embed` and `mlp` (hidden index f = f1 F2 + f2, so
    F1 is the hidden axis' major part); the small second factors are replicated.
    """

    cfg: Shared

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        F, r = cfg.mlp_hidden_dim, cfg.kron_terms
        shapes = kronecker.mlp_shapes(D, F, kronecker.mlp_b_shape(cfg.kron_factor))
        (d1, f1), (d2, f2) = shapes["gate_up"]
        # the std `model.transformer.init` gives the dense matrix, shared out over the factors
        scheme, s, n = cfg.init_scheme, cfg.init_std, cfg.nb_layers
        std, out_std = matrix_std(scheme, D, s, n), matrix_std(scheme, F, s, n, residual_out=True)
        # a zero projection (fan_in_zero_out) starts with down_a at zero and down_b at fan-in
        # scale: with both factors zero neither would ever get a gradient
        down_b_std = out_std or matrix_std("fan_in", F, s, n)
        gu_a = self.param(
            "gate_up_a", _init(std, r, (None, None, "embed", "mlp")), (2, r, d1, f1), jnp.float32
        )
        gu_b = self.param(
            "gate_up_b", _init(std, r, (None, None, None, None)), (2, r, d2, f2), jnp.float32
        )
        down_a = self.param(
            "down_a", _init(out_std, r, (None, "mlp", "embed")), (r, f1, d1), jnp.float32
        )
        down_b = self.param(
            "down_b", _init(down_b_std, r, (None, None, None)), (r, f2, d2), jnp.float32
        )
        x_NxD = x_BxLxD.reshape(B * L, D)
        g_NxF = kronecker.kron_apply(x_NxD, gu_a[0].astype(dtype), gu_b[0].astype(dtype))
        u_NxF = kronecker.kron_apply(x_NxD, gu_a[1].astype(dtype), gu_b[1].astype(dtype))
        g_NxF = lm.constrain(g_NxF, ("batch", "mlp"))
        g, u = g_NxF.astype(jnp.float32), u_NxF.astype(jnp.float32)
        a_NxF = (g * jax.nn.sigmoid(g) * u).astype(dtype)
        y_NxD = kronecker.kron_apply(a_NxF, down_a.astype(dtype), down_b.astype(dtype))
        return y_NxD.reshape(B, L, D)


def mlp_block(cfg: Shared, name: str = "mlp") -> nn.Module:
    """The family's MLP module per `cfg.mlp`."""
    return KronMlp(cfg, name=name) if cfg.mlp == "kronecker" else Mlp(cfg, name=name)
