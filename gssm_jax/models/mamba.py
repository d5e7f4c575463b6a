"""Mamba-2 (Dao and Gu, 2024) as a language model: blocks of the SSD mixer, no MLP.

Each block: x + out(norm(y * silu(z))), where z = x W_z and y is the state-space model of the
convolved input u = silu(conv(x W_x)) in heads of head_dim, with one group of B, C (state_dim):

    h_t = exp(dt_t A) h_{t-1} + dt_t u_t B_t^T    (h: head_dim x state_dim per head)
    y_t = h_t C_t + D u_t,     dt_t = softplus(x_t W_dt + dt_bias),  A = -exp(A_log) per head

Training computes it in chunks of chunk_size positions (SSD): within a chunk as a masked
attention-like product, across chunks by passing the chunk-end states along (a scan over the
L / chunk_size chunks, never over positions). Decoding is one step of the recurrence.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gssm_jax.models import layers, lm, recurrent
from gssm_jax.models.configs import MambaConfig

Config = MambaConfig
F32 = jnp.float32
HEAD_AXES = ("batch", "length", "heads", "kv")


def _pad_to(x: jax.Array, length: int) -> jax.Array:
    return jnp.pad(x, [(0, 0), (0, length - x.shape[1])] + [(0, 0)] * (x.ndim - 2))


def ssd(
    u_BxLxHxP: jax.Array,
    dt_BxLxH: jax.Array,
    A_H: jax.Array,
    b_BxLxN: jax.Array,
    c_BxLxN: jax.Array,
    chunk: int,
    h0_BxHxPxN: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(y_BxLxHxP, h_BxHxPxN after the last position) of the recurrence above without the D skip,
    by chunks of `chunk` positions (a length that is not a multiple is padded with dt = 0, which
    leaves the state unchanged). Float32 throughout."""
    B, L, H, P = u_BxLxHxP.shape
    N = b_BxLxN.shape[-1]
    Q = min(chunk, L)
    C = -(-L // Q)
    u = _pad_to(u_BxLxHxP.astype(F32), C * Q).reshape(B, C, Q, H, P)
    dt = _pad_to(dt_BxLxH.astype(F32), C * Q).reshape(B, C, Q, H)
    bm = _pad_to(b_BxLxN.astype(F32), C * Q).reshape(B, C, Q, N)
    cm = _pad_to(c_BxLxN.astype(F32), C * Q).reshape(B, C, Q, N)
    cum_BxCxQxH = jnp.cumsum(dt * A_H, axis=2)  # log of the decay from the chunk start
    # Within a chunk: y_t = sum_{s <= t} (C_t . B_s) exp(cum_t - cum_s) dt_s u_s.
    seg_BxCxQxQxH = cum_BxCxQxH[:, :, :, None] - cum_BxCxQxH[:, :, None]
    causal_QxQ = jnp.tril(jnp.ones((Q, Q), bool))[:, :, None]
    decay = jnp.exp(jnp.where(causal_QxQ, seg_BxCxQxQxH, -jnp.inf))
    cb_BxCxQxQ = jnp.einsum("bctn,bcsn->bcts", cm, bm)
    weights_BxCxQxQxH = cb_BxCxQxQ[..., None] * decay * dt[:, :, None]
    y_diag = jnp.einsum("bctsh,bcshp->bcthp", weights_BxCxQxQxH, u)
    # Each chunk's own contribution to the state at its end, then the states passed along.
    to_end_BxCxQxH = jnp.exp(cum_BxCxQxH[:, :, -1:] - cum_BxCxQxH) * dt
    own_BxCxHxPxN = jnp.einsum("bcsn,bcsh,bcshp->bchpn", bm, to_end_BxCxQxH, u)
    chunk_decay_BxCxH = jnp.exp(cum_BxCxQxH[:, :, -1])
    h0 = jnp.zeros((B, H, P, N), F32) if h0_BxHxPxN is None else h0_BxHxPxN.astype(F32)

    def carry(h_BxHxPxN, chunk_inputs):
        decay_BxH, own = chunk_inputs
        return decay_BxH[:, :, None, None] * h_BxHxPxN + own, h_BxHxPxN

    h_last, h_before_CxBxHxPxN = lax.scan(
        carry, h0, (jnp.moveaxis(chunk_decay_BxCxH, 1, 0), jnp.moveaxis(own_BxCxHxPxN, 1, 0))
    )
    h_before_BxCxHxPxN = jnp.moveaxis(h_before_CxBxHxPxN, 0, 1)
    y_off = jnp.einsum("bctn,bchpn,bcth->bcthp", cm, h_before_BxCxHxPxN, jnp.exp(cum_BxCxQxH))
    y = (y_diag + y_off).reshape(B, C * Q, H, P)[:, :L]
    return y, h_last


def ssd_step(
    h_BxHxPxN: jax.Array,
    u_BxHxP: jax.Array,
    dt_BxH: jax.Array,
    A_H: jax.Array,
    b_BxN: jax.Array,
    c_BxN: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """(y_BxHxP, h_BxHxPxN): one step of the recurrence (without the D skip), float32."""
    u, dt = u_BxHxP.astype(F32), dt_BxH.astype(F32)
    decay = jnp.exp(dt * A_H)[:, :, None, None]
    h = decay * h_BxHxPxN + (dt[:, :, None] * u)[..., None] * b_BxN.astype(F32)[:, None, None]
    return jnp.einsum("bhpn,bn->bhp", h, c_BxN.astype(F32)), h


def a_log_init(low: float = 1.0, high: float = 16.0):
    """A_log with -A = exp(A_log) uniform in [low, high] (Mamba-2's initialisation)."""

    def init(key, shape, dtype=F32):
        return jnp.log(jax.random.uniform(key, shape, F32, low, high)).astype(dtype)

    return nn.with_logical_partitioning(init, ("heads",))


def dt_bias_init(dt_min: float = 1e-3, dt_max: float = 0.1):
    """dt_bias with softplus(dt_bias) log-uniform in [dt_min, dt_max] (Mamba's initialisation)."""

    def init(key, shape, dtype=F32):
        log_dt = jax.random.uniform(key, shape, F32, math.log(dt_min), math.log(dt_max))
        dt = jnp.exp(log_dt)
        return (dt + jnp.log(-jnp.expm1(-dt))).astype(dtype)  # inverse of softplus

    return nn.with_logical_partitioning(init, ("heads",))


class MambaState(NamedTuple):
    """One block's state: the SSM state (B, H, P, N), float32, and the two convolutions' windows
    of the W - 1 inputs before the next position, (B, W-1, H, P) and (B, W-1, 2, N)."""

    ssm: jax.Array
    conv_u: jax.Array
    conv_bc: jax.Array


class Mamba2(nn.Module):
    """The Mamba-2 mixer: (x_BxLxD, state, valid_B) -> (y_BxLxD, state), state {"ssm": BxHxPxN,
    "conv_u": Bx(W-1)xHxP, "conv_bc": Bx(W-1)x2xN}."""

    cfg: Any

    @staticmethod
    def zero_state(cfg: Any, batch: int) -> MambaState:
        H, P, N, W = cfg.nb_heads, cfg.head_dim, cfg.state_dim, cfg.conv_width
        dtype = lm.compute_dtype(cfg)
        return MambaState(
            jnp.zeros((batch, H, P, N), F32),
            jnp.zeros((batch, W - 1, H, P), dtype),
            jnp.zeros((batch, W - 1, 2, N), dtype),
        )

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, state=None, valid_B=None, start_B=None):
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        B, L, D = x_BxLxD.shape
        H, P, N, W = cfg.nb_heads, cfg.head_dim, cfg.state_dim, cfg.conv_width
        dense, _ = layers.kernel_set(lm.kernels(cfg))
        std = cfg.init_std
        w_zu = self.param("w_zu", lm.init(std, ("embed", None, "heads", "kv")), (D, 2, H, P), F32)
        w_bc = self.param("w_bc", lm.init(std, ("embed", None, None)), (D, 2, N), F32)
        w_dt = self.param("w_dt", lm.init(std, ("embed", "heads")), (D, H), F32)
        conv_u_w = self.param("conv_u_w", recurrent.conv_init(W, (None, "heads", "kv")), (W, H, P))
        conv_u_b = self.param("conv_u_b", lm.constant_init(0.0, ("heads", "kv")), (H, P), F32)
        conv_bc_w = self.param("conv_bc_w", recurrent.conv_init(W, (None, None, None)), (W, 2, N))
        conv_bc_b = self.param("conv_bc_b", lm.constant_init(0.0, (None, None)), (2, N), F32)
        dt_bias = self.param("dt_bias", dt_bias_init(), (H,), F32)
        a_log = self.param("A_log", a_log_init(), (H,), F32)
        d_skip = self.param("D", lm.constant_init(1.0, ("heads",)), (H,), F32)
        norm_scale = self.param("norm", lm.constant_init(1.0, ("heads", "kv")), (H, P), F32)
        w_out = self.param(
            "w_out", lm.init(lm.out_std(cfg), ("heads", "kv", "embed")), (H, P, D), F32
        )

        x_NxD = x_BxLxD.reshape(B * L, D)
        zu = dense(x_NxD, w_zu.astype(dtype)).reshape(B, L, 2, H, P)
        zu = lm.constrain(zu, ("batch", "length", None, "heads", "kv"))
        bc_BxLx2xN = dense(x_NxD, w_bc.astype(dtype)).reshape(B, L, 2, N)
        dt_BxLxH = dense(x_NxD, w_dt.astype(dtype)).reshape(B, L, H)
        z_BxLxHxP, u_BxLxHxP = zu[:, :, 0], zu[:, :, 1]
        window_u = None if state is None else state.conv_u
        window_bc = None if state is None else state.conv_bc
        u_BxLxHxP, window_u = recurrent.causal_conv(
            u_BxLxHxP, conv_u_w, conv_u_b, window_u, valid_B
        )
        bc_BxLx2xN, window_bc = recurrent.causal_conv(
            bc_BxLx2xN, conv_bc_w, conv_bc_b, window_bc, valid_B
        )
        u_BxLxHxP = jax.nn.silu(u_BxLxHxP.astype(F32))
        bc_BxLx2xN = jax.nn.silu(bc_BxLx2xN.astype(F32))
        b_BxLxN, c_BxLxN = bc_BxLx2xN[:, :, 0], bc_BxLx2xN[:, :, 1]
        dt_BxLxH = jax.nn.softplus(dt_BxLxH.astype(F32) + dt_bias)
        A_H = -jnp.exp(a_log)
        if state is None:
            y_BxLxHxP, _ = ssd(u_BxLxHxP, dt_BxLxH, A_H, b_BxLxN, c_BxLxN, cfg.chunk_size)
            new_state = None
        else:
            # Padding positions get dt = 0: the state passes through them unchanged.
            dt_BxLxH = jnp.where(recurrent.keep_mask(valid_B, L)[..., None], dt_BxLxH, 0.0)
            if L == 1:  # decode: one step of the recurrence
                y_BxHxP, h = ssd_step(
                    state.ssm, u_BxLxHxP[:, 0], dt_BxLxH[:, 0], A_H, b_BxLxN[:, 0], c_BxLxN[:, 0]
                )
                y_BxLxHxP = y_BxHxP[:, None]
            else:
                y_BxLxHxP, h = ssd(
                    u_BxLxHxP, dt_BxLxH, A_H, b_BxLxN, c_BxLxN, cfg.chunk_size, state.ssm
                )
            assert window_u is not None and window_bc is not None  # valid_B comes with a state
            new_state = MambaState(h, window_u, window_bc)
        y = y_BxLxHxP + d_skip[:, None] * u_BxLxHxP
        y = y * jax.nn.silu(z_BxLxHxP.astype(F32))
        y = y * lax.rsqrt(jnp.mean(y * y, axis=(-2, -1), keepdims=True) + cfg.norm_eps)
        y = lm.constrain((y * norm_scale).astype(dtype), HEAD_AXES)
        y_NxD = dense(y.reshape(B * L, H, P), w_out.astype(dtype), 2)
        return y_NxD.reshape(B, L, D), new_state


Module, init_cache, cache_capacity = recurrent.family_api(Mamba2)
