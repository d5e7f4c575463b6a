"""Weight initialisation schemes (`model.transformer.init`), one initializer per parameter matrix.

- "fan_in": the earlier PyTorch system's scheme. Every matrix and the token embedding are drawn
  from N(0, std^2) with std = fan_in^-0.5, cut at +-3 std (as `torch.nn.init.trunc_normal_(w, std=s,
  a=-3s, b=3s)`: the cut is not rescaled, so the sample std is 0.9866 std). fan_in is the width of
  the input the matrix multiplies: emb_dim for the q/k/v, SwiGLU gate/up and output-head matrices
  and for the embedding (PyTorch's fan_in of an (vocab, emb_dim) table), heads x head_dim for the
  attention output projection, the hidden size for the SwiGLU output projection.
- "fixed": std = `init_std` for every matrix and the embedding, `init_std / sqrt(2 x nb_layers)`
  for the two residual output projections (attention out, SwiGLU down), from a normal with that
  std cut at +-2 std (`flax.linen.initializers.truncated_normal`: not rescaled, sample std 0.88
  std). This was the only scheme before `model.transformer.init` existed.
- "fan_in_zero_out": "fan_in" for every matrix but the two projections that write into the
  residual stream (attention out, SwiGLU down), which start at zero, so every block starts as the
  identity and the first updates grow the branches from there (the "zero-init the last layer of
  each residual branch" practice). It learns faster per token than "fan_in" on the debug task and
  in `python -m gssm_jax.bench learn` (docs/results/parity.md), and is the default.
  Gradients still reach every matrix from the second update on: the zero projections get nonzero
  gradients at once.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from gssm_jax.models.configs import INIT_CHOICES as INIT_SCHEMES

FAN_IN_CUT = 3.0  # in standard deviations


def fan_in_normal(fan_in: int) -> nn.initializers.Initializer:
    """N(0, 1 / fan_in) cut at +-3 std, without rescaling (PyTorch's trunc_normal_)."""
    std = fan_in**-0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        unit = jax.random.truncated_normal(key, -FAN_IN_CUT, FAN_IN_CUT, shape, jnp.float32)
        return (std * unit).astype(dtype)

    return init


def matrix_std(
    scheme: str, fan_in: int, init_std: float, nb_layers: int, residual_out: bool = False
) -> float:
    """The std of one matrix's normal (before its cut) under `scheme` (arguments as `weight_init`)."""
    if scheme == "fan_in" or (scheme == "fan_in_zero_out" and not residual_out):
        return fan_in**-0.5
    if scheme == "fan_in_zero_out":
        return 0.0
    if scheme == "fixed":
        return init_std / math.sqrt(2 * nb_layers) if residual_out else init_std
    raise ValueError(f"model.transformer.init must be one of {INIT_SCHEMES}, got {scheme!r}")


def weight_init(
    scheme: str, fan_in: int, init_std: float, nb_layers: int, residual_out: bool = False
) -> nn.initializers.Initializer:
    """The initializer of one matrix under `scheme`.

    fan_in: the product of the input axes the matrix contracts; residual_out: whether it is an
    output projection into the residual stream (scaled down by sqrt(2 x nb_layers) under "fixed").
    """
    std = matrix_std(scheme, fan_in, init_std, nb_layers, residual_out)
    if std == 0.0:
        return nn.initializers.zeros
    if scheme in ("fan_in", "fan_in_zero_out"):
        return fan_in_normal(fan_in)
    return nn.initializers.truncated_normal(stddev=std)
