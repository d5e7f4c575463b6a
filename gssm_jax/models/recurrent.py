"""What the recurrent families share: the linear recurrence in parallel form, the short causal
convolution, and the language-model stack around a family's mixer.

Every recurrent mixer is a map (x_BxLxD, state | None, valid_B | None, start_B | None) ->
(y_BxLxD, state): without a state (training) the sequences start from zero at position 0; with one
(prefill, decode) they continue it from position start_B[b], and only the first valid_B[b]
positions of row b count: the later ones (padding) leave the returned state as it was after
position valid_B[b] - 1, so prompts of different lengths share one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gssm_jax.models import lm, mlp
from gssm_jax.models.family import Cache, block_name
from gssm_jax.models.lm import EMBED_AXES, RMSNorm

F32 = jnp.float32


def linear_scan(a_BxLx: jax.Array, b_BxLx: jax.Array, h0_Bx: jax.Array | None = None) -> jax.Array:
    """h_t = a_t * h_{t-1} + b_t for t = 0..L-1 (elementwise; h_{-1} = h0 or 0), all h_t at once by
    `jax.lax.associative_scan` (log-depth, no loop over time)."""
    a_BxLx, b_BxLx = jnp.asarray(a_BxLx), jnp.asarray(b_BxLx)
    if h0_Bx is not None:
        b_BxLx = b_BxLx.at[:, 0].add(a_BxLx[:, 0] * h0_Bx)

    def combine(left, right):
        a1, b1 = left
        a2, b2 = right
        return a1 * a2, a2 * b1 + b2

    return lax.associative_scan(combine, (a_BxLx, b_BxLx), axis=1)[1]


def keep_mask(valid_B: jax.Array, length: int) -> jax.Array:
    """keep_BxL: position t of row b counts (t < valid_B[b])."""
    return jnp.arange(length)[None, :] < valid_B[:, None]


def causal_conv(
    x_BxLx: jax.Array,
    w_Wx: jax.Array,
    bias: jax.Array,
    window_BxW1x: jax.Array | None = None,
    valid_B: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """Depthwise causal convolution y_t = bias + sum_j w_j x_{t - (W - 1) + j}, and the new window.

    The window holds the W - 1 inputs before position 0 (zeros without one). The returned window
    is the W - 1 inputs before position valid_B[b] of each row (None without valid_B).
    """
    W, L = w_Wx.shape[0], x_BxLx.shape[1]
    if window_BxW1x is None:
        window_BxW1x = jnp.zeros((x_BxLx.shape[0], W - 1, *x_BxLx.shape[2:]), x_BxLx.dtype)
    xp = jnp.concatenate([window_BxW1x.astype(x_BxLx.dtype), x_BxLx], axis=1)
    w = w_Wx.astype(x_BxLx.dtype)
    y = bias.astype(x_BxLx.dtype) + sum(w[j] * xp[:, j : j + L] for j in range(W))
    if valid_B is None:
        return y, None
    window = jax.vmap(lambda row, v: lax.dynamic_slice_in_dim(row, v, W - 1, axis=0))(xp, valid_B)
    return y, window


def conv_init(width: int, names: tuple[str | None, ...]):
    """PyTorch's default for a depthwise Conv1d: uniform in +-1/sqrt(width)."""
    bound = width**-0.5

    def init(key, shape, dtype=F32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return nn.with_logical_partitioning(init, names)


class Block(nn.Module):
    """x + mixer(norm(x)), then x + SwiGLU(norm(x)) when the family has a hidden_dim."""

    cfg: Any
    mixer: Callable

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, state: Any = None, valid_B=None, start_B=None):
        cfg, dtype = self.cfg, lm.compute_dtype(self.cfg)
        h = RMSNorm(cfg.norm_eps, dtype, name="mixer_norm")(x_BxLxD)
        y, state = self.mixer(cfg, name="mixer")(h, state, valid_B, start_B)
        x_BxLxD = lm.constrain(x_BxLxD + y, EMBED_AXES)
        if getattr(cfg, "hidden_dim", 0):
            h = RMSNorm(cfg.norm_eps, dtype, name="mlp_norm")(x_BxLxD)
            x_BxLxD = lm.constrain(x_BxLxD + mlp.mlp_block(cfg)(h), EMBED_AXES)
        return x_BxLxD, state


class Stack(nn.Module):
    """Token embedding, `nb_layers` blocks of `mixer` (rematerialised when `remat`), final norm,
    output head. `(tokens_BxL)` -> logits; `(tokens_BxL, cache, valid_B)` -> (logits, cache)."""

    cfg: Any
    mixer: Callable

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, cache: Cache | None = None, valid_B=None):
        cfg = self.cfg
        x_BxLxD, head_DxV, block, start_B = lm.stack_start(self, cfg, tokens_BxL, cache, Block)
        new_blocks = []
        for i in range(cfg.nb_layers):
            state = None if cache is None else cache.blocks[i]
            x_BxLxD, state = block(cfg, self.mixer, name=block_name(i))(
                x_BxLxD, state, valid_B, start_B
            )
            new_blocks.append(state)
        x_BxLxD = RMSNorm(cfg.norm_eps, lm.compute_dtype(cfg), name="final_norm")(x_BxLxD)
        logits_BxLxV = lm.head(cfg, head_DxV, x_BxLxD)
        if cache is None:
            return logits_BxLxV
        return logits_BxLxV, Cache(cache.lengths + valid_B, tuple(new_blocks))


def init_cache(cfg: Any, batch: int, mixer: Any) -> Cache:
    """Zero state of every block (`mixer.zero_state(cfg, batch)`, the mixer's typed state) and
    lengths 0."""
    blocks = tuple(mixer.zero_state(cfg, batch) for _ in range(cfg.nb_layers))
    return Cache(jnp.zeros((batch,), jnp.int32), blocks)


def cache_capacity(cache: Cache) -> None:
    """A recurrent state holds any number of positions."""
    return None


def family_api(mixer: Any) -> tuple[Callable, Callable, Callable]:
    """(Module, init_cache, cache_capacity) of a recurrent family whose blocks mix with `mixer`:
    what `gssm_jax.models.registry` asks of a family module."""

    def module(cfg: Any) -> Stack:
        return Stack(cfg, mixer)

    def family_init_cache(cfg: Any, batch: int, cache_len: int | None = None) -> Cache:
        return init_cache(cfg, batch, mixer)

    return module, family_init_cache, cache_capacity
