"""minLSTM ("Were RNNs all we needed?", Feng et al. 2024) as a language model.

As minGRU (see `gssm_jax.models.mingru`) with h_t = f'_t h_{t-1} + i'_t h~_t, where the forget and
input gates f_t = sigmoid(x_t W_f), i_t = sigmoid(x_t W_i) are normalised to f' = f / (f + i),
i' = i / (f + i), which keeps the state's scale independent of time.
"""

from __future__ import annotations

import jax

from gssm_jax.models import recurrent
from gssm_jax.models.configs import MinLSTMConfig
from gssm_jax.models.mingru import MinGRU

Config = MinLSTMConfig


class MinLSTM(MinGRU):
    """The minLSTM mixer: projected inputs (candidate, forget gate, input gate)."""

    @staticmethod
    def coefficients(u_NxGxE: jax.Array) -> tuple[jax.Array, jax.Array]:
        candidate, f, i = (
            u_NxGxE[:, 0],
            jax.nn.sigmoid(u_NxGxE[:, 1]),
            jax.nn.sigmoid(u_NxGxE[:, 2]),
        )
        total = f + i
        return f / total, i / total * candidate


Module, init_cache, cache_capacity = recurrent.family_api(MinLSTM)
