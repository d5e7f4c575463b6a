"""Hawk (Griffin, De et al. 2024): the RG-LRU recurrence after a short causal convolution.

Each block: x + out(RG-LRU(conv(x W_x)) * gelu(x W_g)), then x + SwiGLU(x). The RG-LRU of width
E = expand * emb_dim, with gates block-diagonal over nb_heads blocks:

    r_t = sigmoid(u_t W_a + b_a),  i_t = sigmoid(u_t W_i + b_i),  log a_t = -c softplus(-lam) r_t
    h_t = a_t h_{t-1} + sqrt(1 - a_t^2) (i_t u_t)                                      (c = 8)

a_t and the input term read only u_t, so training computes every h_t at once with an associative
scan; decoding is one step of the recurrence and of the convolution window.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models import layers, lm, recurrent
from gssm_jax.models.configs import HawkConfig

Config = HawkConfig
F32 = jnp.float32
GATE_SCALE = 8.0  # Griffin's c
HEAD_AXES = ("batch", "length", "heads", "kv")


def decay_init(scheme: str = "original", low: float = 0.9, high: float = 0.999):
    """The initializer of lam, whose decay rate is softplus(-lam) (log a_t = -c softplus(-lam) r_t),
    under `scheme` (`HawkConfig.decay_init`), with radii in [low, high]:

    - "original": the earlier PyTorch system's draw: its parameter p = 0.5 log u, u ~ U[low^2,
      high^2], read through a softplus without inverting it, so the rate is softplus(p) =
      log(1 + r) for radius r = sqrt(u): lam = -p;
    - "recurrentgemma": the same radius with the softplus inverted, rate -log r, so a = r^(c r_t);
    - "griffin_ac": a^c = sigmoid(lam)^c uniform in [low, high] (gssm_jax's first choice).
    """

    def init(key, shape, dtype=F32):
        if scheme == "griffin_ac":
            a_c = jax.random.uniform(key, shape, F32, low, high)
            a = a_c ** (1.0 / GATE_SCALE)
            return jnp.log(a / (1.0 - a)).astype(dtype)
        log_r = 0.5 * jnp.log(jax.random.uniform(key, shape, F32, low**2, high**2))
        if scheme == "original":
            return (-log_r).astype(dtype)
        rate = -log_r  # softplus(-lam) = rate  <=>  -lam = log(expm1(rate))
        return (-jnp.log(jnp.expm1(rate))).astype(dtype)

    return nn.with_logical_partitioning(init, ("heads", "kv"))


def rg_lru_coefficients(
    u_BxLxHxK: jax.Array,
    gates_BxLx2xHxK: jax.Array,
    lam_HxK: jax.Array,
    first_BxL: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(a, b) of h = a h + b (float32) from the convolved input and the gate pre-activations.
    `first_BxL` marks a sequence's position 0, where the input enters unscaled (the "reset" of
    `HawkConfig.first_token`); None scales every input by sqrt(1 - a^2)."""
    r = jax.nn.sigmoid(gates_BxLx2xHxK[:, :, 0])
    i = jax.nn.sigmoid(gates_BxLx2xHxK[:, :, 1])
    log_a = -GATE_SCALE * jax.nn.softplus(-lam_HxK) * r
    a = jnp.exp(log_a)
    scale = jnp.sqrt(-jnp.expm1(2.0 * log_a))
    if first_BxL is not None:
        scale = jnp.where(first_BxL[:, :, None, None], 1.0, scale)
    return a, scale * i * u_BxLxHxK.astype(F32)


class HawkState(NamedTuple):
    """One block's state: the RG-LRU's h (B, H, K), float32, and the convolution's window of the
    W - 1 inputs before the next position (B, W-1, H, K)."""

    h: jax.Array
    conv: jax.Array


class RGLRU(nn.Module):
    """The Hawk mixer: (x_BxLxD, state, valid_B) -> (y_BxLxD, state), state {"h": BxHxK,
    "conv": Bx(W-1)xHxK}."""

    cfg: Any

    @staticmethod
    def zero_state(cfg: Any, batch: int) -> HawkState:
        H, K, W = cfg.nb_heads, cfg.head_dim, cfg.conv_width
        dtype = lm.compute_dtype(cfg)
        return HawkState(jnp.zeros((batch, H, K), F32), jnp.zeros((batch, W - 1, H, K), dtype))

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, state=None, valid_B=None, start_B=None):
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        H, K, W = cfg.nb_heads, cfg.head_dim, cfg.conv_width
        dense, _ = layers.kernel_set(lm.kernels(cfg))
        w_in = self.param(
            "w_in", lm.init(cfg.init_std, ("embed", None, "heads", "kv")), (D, 2, H, K), F32
        )
        conv_w = self.param("conv_w", recurrent.conv_init(W, (None, "heads", "kv")), (W, H, K), F32)
        conv_b = self.param("conv_b", lm.constant_init(0.0, ("heads", "kv")), (H, K), F32)
        gate_w = self.param(
            "gate_w", lm.init(K**-0.5, (None, "heads", "kv", None)), (2, H, K, K), F32
        )
        gate_b = self.param("gate_b", lm.constant_init(0.0, (None, "heads", "kv")), (2, H, K), F32)
        lam = self.param("lam", decay_init(cfg.decay_init), (H, K), F32)
        w_out = self.param(
            "w_out", lm.init(lm.out_std(cfg), ("heads", "kv", "embed")), (H, K, D), F32
        )
        xg = dense(x_BxLxD.reshape(B * L, D), w_in.astype(dtype)).reshape(B, L, 2, H, K)
        xg = lm.constrain(xg, ("batch", "length", None, "heads", "kv"))
        u_BxLxHxK, gate_BxLxHxK = xg[:, :, 0], jax.nn.gelu(xg[:, :, 1])
        window = None if state is None else state.conv
        u_BxLxHxK, window = recurrent.causal_conv(u_BxLxHxK, conv_w, conv_b, window, valid_B)
        gates = jnp.einsum("blhk,ghkj->blghj", u_BxLxHxK.astype(F32), gate_w) + gate_b
        first = None
        if cfg.first_token == "reset":
            start = jnp.zeros((B,), jnp.int32) if start_B is None else start_B
            first = (start[:, None] + jnp.arange(L)[None, :]) == 0
        a, b = rg_lru_coefficients(u_BxLxHxK, gates, lam, first)
        if state is None:
            h_BxLxHxK = recurrent.linear_scan(a, b)
            new_state = None
        else:
            keep = recurrent.keep_mask(valid_B, L)[..., None, None]
            a, b = jnp.where(keep, a, 1.0), jnp.where(keep, b, 0.0)
            if L == 1:  # decode: one step of the recurrence
                h_BxLxHxK = (a[:, 0] * state.h + b[:, 0])[:, None]
            else:
                h_BxLxHxK = recurrent.linear_scan(a, b, state.h)
            assert window is not None  # valid_B comes with a state
            new_state = HawkState(h_BxLxHxK[:, -1], window)
        y = lm.constrain(h_BxLxHxK.astype(dtype) * gate_BxLxHxK, HEAD_AXES)
        y_NxD = dense(y.reshape(B * L, H, K), w_out.astype(dtype), 2)
        return y_NxD.reshape(B, L, D), new_state


Module, init_cache, cache_capacity = recurrent.family_api(RGLRU)
