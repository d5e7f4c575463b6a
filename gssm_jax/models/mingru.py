"""minGRU ("Were RNNs all we needed?", Feng et al. 2024) as a language model.

Each block: x + out(h) with h_t = (1 - z_t) h_{t-1} + z_t h~_t, z_t = sigmoid(x_t W_z),
h~_t = x_t W_h (width E = expand * emb_dim); then x + SwiGLU(x). Gates and candidates read only the
input, so training computes every h_t at once with an associative scan; decoding is one step of
the recurrence. The width is sharded by the logical axis `mlp`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models import layers, lm, recurrent
from gssm_jax.models.configs import MinGRUConfig

Config = MinGRUConfig
F32 = jnp.float32


class MinGRUState(NamedTuple):
    """One block's state: h (B, E), float32 (minLSTM's too)."""

    h: jax.Array


class MinGRU(nn.Module):
    """The minGRU mixer: (x_BxLxD, state, valid_B) -> (y_BxLxD, state), state {"h": BxE}."""

    cfg: Any

    @staticmethod
    def zero_state(cfg: Any, batch: int) -> MinGRUState:
        return MinGRUState(jnp.zeros((batch, cfg.inner_dim), F32))

    @staticmethod
    def coefficients(u_NxGxE: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(a, b) of h = a h + b from the projected inputs (candidate, update gate)."""
        candidate, gate = u_NxGxE[:, 0], u_NxGxE[:, 1]
        return jax.nn.sigmoid(-gate), jax.nn.sigmoid(gate) * candidate

    @staticmethod
    def candidate_fn(cfg: Any) -> Any:
        """The candidate's map (`MinGRUConfig.candidate`): identity ("linear") or the paper's g,
        g(v) = v + 0.5 for v >= 0 and sigmoid(v) below ("log_space": positive, as its log-space
        scan needs; computed here in linear space, the same recurrence)."""
        if cfg.candidate == "linear":
            return None
        return lambda v: jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, state=None, valid_B=None, start_B=None):
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        E, G = cfg.inner_dim, cfg.nb_inputs
        dense, _ = layers.kernel_set(lm.kernels(cfg))
        w_in = self.param("w_in", lm.init(cfg.init_std, ("embed", None, "mlp")), (D, G, E), F32)
        w_out = self.param("w_out", lm.init(lm.out_std(cfg), ("mlp", "embed")), (E, D), F32)
        u_NxGxE = dense(x_BxLxD.reshape(B * L, D), w_in.astype(dtype))
        u_NxGxE = lm.constrain(u_NxGxE.reshape(B, L, G, E), ("batch", "length", None, "mlp"))
        u_NxGxE = u_NxGxE.reshape(B * L, G, E).astype(F32)
        g = self.candidate_fn(cfg)
        if g is not None:
            u_NxGxE = u_NxGxE.at[:, 0].set(g(u_NxGxE[:, 0]))
        a, b = self.coefficients(u_NxGxE)
        a_BxLxE, b_BxLxE = a.reshape(B, L, E), b.reshape(B, L, E)
        if state is None:
            h_BxLxE = recurrent.linear_scan(a_BxLxE, b_BxLxE)
            new_state = None
        else:
            keep = recurrent.keep_mask(valid_B, L)[..., None]
            a_BxLxE, b_BxLxE = jnp.where(keep, a_BxLxE, 1.0), jnp.where(keep, b_BxLxE, 0.0)
            if L == 1:  # decode: one step of the recurrence
                h_BxLxE = (a_BxLxE[:, 0] * state.h + b_BxLxE[:, 0])[:, None]
            else:
                h_BxLxE = recurrent.linear_scan(a_BxLxE, b_BxLxE, state.h)
            new_state = MinGRUState(h_BxLxE[:, -1])
        h_BxLxE = lm.constrain(h_BxLxE.astype(dtype), ("batch", "length", "mlp"))
        y_NxD = dense(h_BxLxE.reshape(B * L, E), w_out.astype(dtype))
        return y_NxD.reshape(B, L, D), new_state


Module, init_cache, cache_capacity = recurrent.family_api(MinGRU)
