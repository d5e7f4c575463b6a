"""The custom-gradient layers agree with JAX's own differentiation of the textbook formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.models import layers


def _normal(seed: int, shape: tuple, scale: float = 1.0) -> np.ndarray:
    """NumPy draws: jax.random would compile a threefry kernel (seconds on XLA:CPU) per shape."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def _close(a, b, rtol=2e-5):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * float(np.abs(b).max()))


def _vjp_pair(fn, reference, args, seed=9):
    """Outputs and input-gradients (for a random cotangent) of both functions, in one jit."""

    @jax.jit
    def both(*args):
        out, vjp = jax.vjp(fn, *args)
        out_ref, vjp_ref = jax.vjp(reference, *args)
        return out, out_ref, vjp(cotangent), vjp_ref(cotangent)

    out_type = jax.eval_shape(reference, *args)
    cotangent = _normal(seed, out_type.shape).astype(out_type.dtype)
    return both(*args)


def _qkv(seed: int, shape: tuple, dtype=np.float32) -> tuple:
    q, k, v = (_normal(seed + i, shape).astype(dtype) for i in range(3))
    return q, k, v


@pytest.mark.parametrize(
    "steps,block_len",
    [(1, 64), (2, 8), (4, 100)],  # one block; four, the last ragged; one group per sequence
)
def test_causal_attention_matches_reference(steps, block_len):
    out, out_ref, grads, grads_ref = _vjp_pair(
        lambda q, k, v: layers.causal_attention(q, k, v, steps, block_len),
        layers.reference_attention,
        _qkv(0, (4, 30, 2, 8)),
    )
    _close(out, out_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        _close(g, g_ref)


def test_causal_attention_in_bfloat16_is_close_to_float32():
    q, k, v = _qkv(1, (2, 40, 2, 8))
    out, out_ref = jax.jit(
        lambda q, k, v: (
            layers.causal_attention(*(a.astype(jnp.bfloat16) for a in (q, k, v)), 1, 16),
            layers.reference_attention(q, k, v),
        )
    )(q, k, v)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(jnp.float32), out_ref, atol=5e-2)


def test_xla_dot_product_attention_matches_the_blocked_kernel_in_bfloat16():
    """model.transformer.attention='xla' and 'blocked' compute the same function (bf16 rounding apart)."""
    out, out_ref, grads, grads_ref = _vjp_pair(
        lambda q, k, v: layers.dot_product_attention(q, k, v, "xla"),
        lambda q, k, v: layers.causal_attention(q, k, v, 2, 16),
        _qkv(5, (2, 70, 3, 8), jnp.bfloat16),
    )
    assert out.dtype == out_ref.dtype == jnp.bfloat16
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    np.testing.assert_allclose(f32(out), f32(out_ref), atol=3e-2)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        np.testing.assert_allclose(f32(g), f32(g_ref), atol=6e-2)


def test_cached_attention_with_shorter_queries_is_the_causal_attention_of_their_rows():
    """Queries at positions 5..9 of each sequence against 12 cached keys (the last two beyond
    every query) give rows 5..9 of causal attention over the first 10 positions."""
    q, k, v = _qkv(7, (2, 12, 2, 8))
    pos_BxQ = np.tile(np.arange(5, 10), (2, 1))
    out, full = jax.jit(
        lambda q, k, v: (
            layers.cached_attention(q[:, 5:10], k, v, pos_BxQ),
            layers.reference_attention(q[:, :10], k[:, :10], v[:, :10]),
        )
    )(q, k, v)
    _close(out, full[:, 5:10], rtol=1e-5)


@pytest.mark.parametrize(
    "choice,dtype,backend,expected",
    [
        ("auto", "float32", "cpu", "blocked"),
        ("auto", "bfloat16", "cpu", "blocked"),
        ("auto", "bfloat16", "gpu", "cudnn"),
        ("auto", "float32", "gpu", "xla"),
        ("auto", "bfloat16", "tpu", "xla"),
        ("xla", "float32", "cpu", "xla"),
        ("blocked", "bfloat16", "gpu", "blocked"),
        ("cudnn", "bfloat16", "gpu", "cudnn"),
    ],
)
def test_resolve_attention(choice, dtype, backend, expected):
    assert layers.resolve_attention(choice, dtype, backend, 24) == expected


def test_kernels_auto_is_custom_on_cpu_only_and_autodiff_attention_is_not_blocked():
    assert layers.resolve_kernels("auto", "cpu") == "custom"
    assert layers.resolve_kernels("auto", "gpu") == "autodiff"
    assert layers.resolve_kernels("custom", "gpu") == "custom"
    assert layers.resolve_attention("auto", "float32", "cpu", 16, "autodiff") == "xla"
    with pytest.raises(ValueError, match="'fast'"):
        layers.resolve_kernels("fast", "cpu")


def test_auto_attention_avoids_cudnn_for_head_dimensions_it_does_not_take():
    assert layers.resolve_attention("auto", "bfloat16", "gpu", 12) == "xla"
    assert layers.resolve_attention("auto", "bfloat16", "gpu", 256) == "xla"


def test_resolve_attention_rejects_unknown_names():
    with pytest.raises(ValueError, match="'flash'"):
        layers.resolve_attention("flash", "float32", "cpu")


@pytest.mark.parametrize(
    "x_shape,w_shape,n_in",
    [((30, 16), (16, 3, 2, 4), 1), ((30, 2, 4), (2, 4, 16), 2), ((30, 16), (16, 4), 1)],
)
def test_dense_matches_tensordot(x_shape, w_shape, n_in):
    x, w = _normal(2, x_shape), _normal(3, w_shape)
    out, out_ref, grads, grads_ref = _vjp_pair(
        lambda x, w: layers.dense(x, w, n_in),
        lambda x, w: jnp.tensordot(x, w, n_in),
        (x, w),
    )
    _close(out, out_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        _close(g, g_ref)


def test_swiglu_matches_autodiff():
    x = _normal(4, (30, 16))
    w_gate_up = _normal(5, (16, 2, 24), 0.3)
    w_down = _normal(6, (24, 16), 0.3)

    def reference(x, w_gate_up, w_down):
        gate, up = jnp.einsum("nd,dtf->tnf", x, w_gate_up)
        return (jax.nn.silu(gate) * up) @ w_down

    out, out_ref, grads, grads_ref = _vjp_pair(layers.swiglu, reference, (x, w_gate_up, w_down))
    _close(out, out_ref)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        _close(g, g_ref)


def test_rope_at_per_sequence_positions_matches_the_tables():
    x = _normal(6, (2, 5, 3, 8))
    sin, cos = layers.rope_tables(9, 8, 100.0)
    pos_BxL = np.array([[0, 1, 2, 3, 4], [4, 5, 6, 7, 8]])
    sin_b, cos_b = layers.rope_at(pos_BxL, 8, 100.0)
    rotated = layers.rope(x, sin_b, cos_b)
    _close(rotated[0], layers.rope(x[:1], sin[:5], cos[:5])[0], rtol=1e-6)
    _close(rotated[1], layers.rope(x[1:], sin[4:], cos[4:])[0], rtol=1e-6)


def test_rope_with_negative_sine_inverts_it():
    x = _normal(5, (2, 12, 3, 8))
    sin, cos = layers.rope_tables(12, 8, 100.0)
    rotated, back = jax.jit(
        lambda x: (layers.rope(x, sin, cos), layers.rope(layers.rope(x, sin, cos), -sin, cos))
    )(x)
    _close(back, x, rtol=1e-6)
    np.testing.assert_allclose(rotated[:, 0], x[:, 0], atol=1e-7)  # position 0 is not rotated


def test_attention_steps_keep_groups_small_and_divide_the_local_batch():
    # 4 heads x 256 x 256 float32 scores = 1 MiB per sequence: 2 sequences per group.
    assert layers.attention_steps(16, 1, 4, 256) == 8
    assert layers.attention_steps(16, 2, 4, 256) == 4  # 8 sequences per device
    assert layers.attention_steps(16, 4, 4, 2048) == 4  # one sequence per group at most
    assert layers.attention_steps(8, 1, 2, 32) == 1  # small: the whole batch at once
    assert layers.attention_steps(6, 4, 4, 256) == 1  # shards do not divide the batch
    assert layers.attention_steps(10, 1, 4, 256) == 5  # group size 2 divides 10
    assert layers.attention_steps(7, 1, 4, 256) == 7  # prime batch: one sequence per group
