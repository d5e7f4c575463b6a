"""cuDNN flash attention (model.transformer.attention='cudnn') against the XLA formula, on a GPU.

Skipped where JAX has no GPU backend (CI); on a GPU machine run
`python -m pytest tests/models/test_attention_gpu.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models import layers

pytestmark = pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU backend")


def _f32(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, jnp.float32))


@pytest.mark.parametrize("head_dim", [24, 64])
def test_cudnn_attention_matches_xla_values_and_gradients(head_dim):
    rng = np.random.default_rng(0)
    qkv = [jnp.asarray(rng.standard_normal((2, 512, 4, head_dim)), jnp.bfloat16) for _ in "qkv"]
    cotangent = jnp.asarray(rng.standard_normal((2, 512, 4, head_dim)), jnp.bfloat16)

    def out_and_grad(implementation):
        fn = lambda q, k, v: layers.dot_product_attention(q, k, v, implementation)  # noqa: E731
        out, vjp = jax.vjp(fn, *qkv)
        return out, vjp(cotangent)

    out, grad = jax.jit(lambda: out_and_grad("cudnn"))()
    out_ref, grad_ref = jax.jit(lambda: out_and_grad("xla"))()
    np.testing.assert_allclose(_f32(out), _f32(out_ref), atol=2e-2)
    for g, g_ref in zip(grad, grad_ref, strict=True):
        np.testing.assert_allclose(
            _f32(g), _f32(g_ref), atol=5e-2 * float(np.abs(_f32(g_ref)).max())
        )


def test_auto_picks_cudnn_in_bfloat16():
    assert layers.resolve_attention("auto", "bfloat16", jax.default_backend(), 24) == "cudnn"
