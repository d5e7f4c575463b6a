"""Dense, SwiGLU and causal self-attention as pure functions with hand-written backward passes.

On XLA:CPU the automatic backward pass of a transformer costs several times its forward pass
(`python -m gssm_jax.bench train` compares). These functions compute the textbook values but choose
the form of every contraction themselves:

- every matmul is a plain (rows x inner) @ (inner x cols) product on row-major operands: the
  transposed weight or the narrower activation is written out first (XLA:CPU runs matmuls with a
  transposed operand at about half speed, so the transposes are kept out of the dots);
- weight gradients are one 2-D matmul over the flattened batch x length rows;
- the SwiGLU gradient of gate and up is one elementwise pass into the (N, 2, F) fused layout;
- attention loops over small groups of sequences so that their L x L scores stay in cache, skips
  the causally masked key blocks, and recomputes the softmax in the backward pass from the saved
  log-sum-exp (as FlashAttention does) instead of storing it.

Inputs keep their dtype; matmuls accumulate in float32 and the softmax is float32.
"""

from __future__ import annotations

import functools
import math
from typing import Literal, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from gssm_jax.models.configs import ATTENTION_CHOICES, KERNEL_CHOICES, cudnn_supports

F32 = jnp.float32


def _transposed(x: jax.Array, perm: tuple[int, ...]) -> jax.Array:
    """x transposed in memory. XLA would otherwise fold the transpose into the consuming matmul,
    whose transposed-operand forms run at about half the speed on XLA:CPU; the barrier stops it."""
    return lax.optimization_barrier(jnp.transpose(x, perm))


def _swap_last(x: jax.Array) -> jax.Array:
    return _transposed(x, (*range(x.ndim - 2), x.ndim - 1, x.ndim - 2))


def _dot(a: jax.Array, b: jax.Array, contract: tuple, dtype) -> jax.Array:
    """dot_general over `contract` (no batch axes), accumulated in float32, cast to `dtype`."""
    out = lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=F32)
    return out.astype(dtype)


# --- dense -----------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x: jax.Array, w: jax.Array, n_in: int = 1) -> jax.Array:
    """y[n, out...] = sum over in... of x[n, in...] w[in..., out...]: one matmul on rows n."""
    return _dot(x, w, (tuple(range(1, 1 + n_in)), tuple(range(n_in))), x.dtype)


def _dense_fwd(x, w, n_in):
    return dense(x, w, n_in), (x, w)


def _dense_bwd(n_in, res, dy):
    x, w = res
    n_out = w.ndim - n_in
    out_axes = tuple(range(1, 1 + n_out))
    wT = _transposed(w, (*range(n_in, w.ndim), *range(n_in)))
    dx = _dot(dy, wT, (out_axes, tuple(range(n_out))), x.dtype)
    if math.prod(w.shape[:n_in]) <= math.prod(w.shape[n_in:]):  # transpose the narrower operand
        xT = _transposed(x, (*range(1, x.ndim), 0))
        dw = _dot(xT, dy, ((n_in,), (0,)), w.dtype)
    else:
        dyT = _transposed(dy, (*range(1, dy.ndim), 0))
        dw = jnp.transpose(
            _dot(dyT, x, ((n_out,), (0,)), w.dtype), (*range(n_out, w.ndim), *range(n_out))
        )
    return dx, dw


dense.defvjp(_dense_fwd, _dense_bwd)


# --- SwiGLU MLP ------------------------------------------------------------------------------


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def swiglu(
    x_NxD: jax.Array,
    w_gate_up_Dx2xF: jax.Array,
    w_down_FxD: jax.Array,
    hidden_spec: PartitionSpec | None = None,
) -> jax.Array:
    """silu(x W_gate) * (x W_up) W_down with gate and up fused in one (D, 2, F) kernel.

    `hidden_spec`, when given, constrains the sharding of the (N, 2, F) hidden activations and
    their gradient (it needs a mesh in context, `jax.set_mesh`).
    """
    return _swiglu_fwd(x_NxD, w_gate_up_Dx2xF, w_down_FxD, hidden_spec)[0]


def _constrain(x: jax.Array, spec: PartitionSpec | None) -> jax.Array:
    return x if spec is None else lax.with_sharding_constraint(x, spec)


def _swiglu_act(gu_Nx2xF: jax.Array) -> jax.Array:
    g, u = gu_Nx2xF[:, 0].astype(F32), gu_Nx2xF[:, 1].astype(F32)
    return (g / (1.0 + jnp.exp(-g)) * u).astype(gu_Nx2xF.dtype)


def _swiglu_fwd(x_NxD, w_gate_up_Dx2xF, w_down_FxD, hidden_spec):
    gu_Nx2xF = _constrain(_dot(x_NxD, w_gate_up_Dx2xF, ((1,), (0,)), x_NxD.dtype), hidden_spec)
    a_NxF = _swiglu_act(gu_Nx2xF)
    y_NxD = _dot(a_NxF, w_down_FxD, ((1,), (0,)), x_NxD.dtype)
    return y_NxD, (x_NxD, gu_Nx2xF, a_NxF, w_gate_up_Dx2xF, w_down_FxD)


def _swiglu_bwd(hidden_spec, res, dy_NxD):
    x_NxD, gu_Nx2xF, a_NxF, w_gate_up_Dx2xF, w_down_FxD = res
    dtype = x_NxD.dtype
    # The barrier keeps XLA from merging this recomputation with the forward pass, which would
    # store the sigmoid and split the fused passes below into several.
    gu_Nx2xF = lax.optimization_barrier(gu_Nx2xF)
    da_NxF = _dot(dy_NxD, _swap_last(w_down_FxD), ((1,), (0,)), F32)
    dw_down_DxF = _dot(_swap_last(dy_NxD), a_NxF, ((1,), (0,)), w_down_FxD.dtype)
    g, u = gu_Nx2xF[:, 0].astype(F32), gu_Nx2xF[:, 1].astype(F32)
    sig = 1.0 / (1.0 + jnp.exp(-g))
    dg = da_NxF * u * sig * (1.0 + g * (1.0 - sig))
    du = da_NxF * g * sig
    dgu_Nx2xF = _constrain(jnp.stack([dg, du], axis=1).astype(dtype), hidden_spec)
    dw_gate_up = _dot(_swap_last(x_NxD), dgu_Nx2xF, ((1,), (0,)), w_gate_up_Dx2xF.dtype)
    w_gate_up_2xFxD = _transposed(w_gate_up_Dx2xF, (1, 2, 0))
    dx_NxD = _dot(dgu_Nx2xF, w_gate_up_2xFxD, ((1, 2), (0, 1)), dtype)
    return dx_NxD, dw_gate_up, lax.optimization_barrier(dw_down_DxF).T


swiglu.defvjp(_swiglu_fwd, _swiglu_bwd)


# --- rotary embeddings -----------------------------------------------------------------------


def _rope_freqs(head_dim: int, theta: float) -> np.ndarray:
    """theta^(-2i / head_dim) for i < head_dim / 2, float32 (static: a constant in the step)."""
    exponent = -np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return (np.float32(theta) ** exponent).astype(np.float32)


# sin and cos of the rotary angles: host constants (`rope_tables`) or traced (`rope_at`)
Angles = jax.Array | np.ndarray


def rope_tables(length: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """sin and cos of position x frequency for positions 0..length-1, each (length, head_dim // 2),
    float32, computed on the host: they enter the jitted step as constants, where XLA would
    otherwise recompute sin and cos inside every fusion that reads them (once per element)."""
    angle = np.arange(length, dtype=np.float32)[:, None] * _rope_freqs(head_dim, theta)
    return np.sin(angle), np.cos(angle)


def rope_at(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """sin and cos of position x frequency, each positions.shape + (head_dim // 2,), float32."""
    angle = positions.astype(F32)[..., None] * _rope_freqs(head_dim, theta)
    return jnp.sin(angle), jnp.cos(angle)


def rope(x_BxLxHxK: jax.Array, sin: Angles, cos: Angles) -> jax.Array:
    """Rotates the pairs (x[k], x[k + K/2]) by position-dependent angles (GPT-NeoX layout).

    sin and cos are (L, K/2) (the same positions for every sequence) or (B, L, K/2). With -sin
    it is the inverse rotation, which is also its transpose.
    """
    x1, x2 = jnp.split(x_BxLxHxK, 2, axis=-1)
    sin, cos = sin[..., None, :], cos[..., None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rotate_qk(
    q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, sin: Angles, cos: Angles
) -> tuple[jax.Array, jax.Array]:
    """q and k rotated in float32 and cast back to their dtype (positions are explicit here,
    outside any attention kernel)."""
    dtype = q_BxLxHxK.dtype
    q = rope(q_BxLxHxK.astype(F32), sin, cos).astype(dtype)
    k = rope(k_BxLxHxK.astype(F32), sin, cos).astype(dtype)
    return q, k


# --- causal self-attention -------------------------------------------------------------------


def _query_blocks(length: int, block_len: int) -> list[tuple[int, int]]:
    return [(s, min(s + block_len, length)) for s in range(0, length, block_len)]


def _masked_scores(q_CxHxQxK, kT_CxHxKxS, start: int) -> jax.Array:
    """Scores of queries start..start+Q-1 against keys 0..S-1, causally masked with -inf."""
    s_CxHxQxS = jnp.einsum("chqk,chks->chqs", q_CxHxQxK, kT_CxHxKxS)
    nq, ns = s_CxHxQxS.shape[-2:]
    row = lax.broadcasted_iota(jnp.int32, (nq, ns), 0) + start
    col = lax.broadcasted_iota(jnp.int32, (nq, ns), 1)
    return jnp.where(col <= row, s_CxHxQxS, -jnp.inf)


def _heads_first(q_CxLxHxK, k_CxLxHxK, v_CxLxHxK):
    """q (scaled by 1/sqrt(K)), k transposed and v of one group, float32, heads first."""
    head_dim = q_CxLxHxK.shape[-1]
    return (
        _transposed(q_CxLxHxK.astype(F32) * (head_dim**-0.5), (0, 2, 1, 3)),
        _transposed(k_CxLxHxK.astype(F32), (0, 2, 3, 1)),
        _transposed(v_CxLxHxK.astype(F32), (0, 2, 1, 3)),
    )


def _group_fwd(q_CxLxHxK, k_CxLxHxK, v_CxLxHxK, block_len: int):
    q, kT, v = _heads_first(q_CxLxHxK, k_CxLxHxK, v_CxLxHxK)
    outs, lses = [], []
    for start, end in _query_blocks(q.shape[2], block_len):
        s = _masked_scores(q[:, :, start:end], kT[..., :end], start)
        m = jnp.max(s, axis=-1, keepdims=True)
        e = jnp.exp(s - m)
        total = jnp.sum(e, axis=-1, keepdims=True)
        outs.append(jnp.einsum("chqs,chsk->chqk", e, v[:, :, :end]) / total)
        lses.append((m + jnp.log(total))[..., 0])
    o_CxHxLxK = jnp.concatenate(outs, axis=2)
    return o_CxHxLxK.transpose(0, 2, 1, 3).astype(q_CxLxHxK.dtype), jnp.concatenate(lses, 2)


def _group_bwd(q_CxLxHxK, k_CxLxHxK, v_CxLxHxK, o_CxLxHxK, lse_CxHxL, do_CxLxHxK, block_len):
    q, kT, v = _heads_first(q_CxLxHxK, k_CxLxHxK, v_CxLxHxK)
    length, head_dim = q.shape[2], q.shape[3]
    do = do_CxLxHxK.astype(F32)
    delta_CxHxL = jnp.sum(do * o_CxLxHxK.astype(F32), axis=-1).transpose(0, 2, 1)
    do = _transposed(do, (0, 2, 1, 3))
    vT, k, qT, doT = _swap_last(v), _swap_last(kT), _swap_last(q), _swap_last(do)
    dqs = []
    dkT = jnp.zeros(kT.shape, F32)
    dvT = jnp.zeros(vT.shape, F32)
    for start, end in _query_blocks(length, block_len):
        p = jnp.exp(
            _masked_scores(q[:, :, start:end], kT[..., :end], start)
            - lse_CxHxL[:, :, start:end, None]
        )
        do_i = do[:, :, start:end]
        dp = jnp.einsum("chqk,chks->chqs", do_i, vT[..., :end])
        ds = p * (dp - delta_CxHxL[:, :, start:end, None])
        dqs.append(jnp.einsum("chqs,chsk->chqk", ds, k[:, :, :end]))
        dkT = dkT.at[..., :end].add(jnp.einsum("chkq,chqs->chks", qT[..., start:end], ds))
        dvT = dvT.at[..., :end].add(jnp.einsum("chkq,chqs->chks", doT[..., start:end], p))
    dtype = q_CxLxHxK.dtype
    dq = (jnp.concatenate(dqs, axis=2).transpose(0, 2, 1, 3) * (head_dim**-0.5)).astype(dtype)
    return dq, dkT.transpose(0, 3, 1, 2).astype(dtype), dvT.transpose(0, 3, 1, 2).astype(dtype)


def _to_groups(x: jax.Array, steps: int) -> jax.Array:
    """(B, ...) -> (steps, B // steps, ...); step j holds sequences j, j + steps, ...

    Interleaving keeps each group spread over the data-parallel shards of the batch axis, so the
    loop over groups runs on every device at once.
    """
    return jnp.moveaxis(x.reshape(x.shape[0] // steps, steps, *x.shape[1:]), 1, 0)


def _from_groups(x: jax.Array) -> jax.Array:
    x = jnp.moveaxis(x, 0, 1)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def causal_attention(
    q_BxLxHxK: jax.Array,
    k_BxLxHxK: jax.Array,
    v_BxLxHxK: jax.Array,
    steps: int = 1,
    block_len: int = 64,
) -> jax.Array:
    """Causal multi-head softmax attention of already rotated queries and keys (position i
    attends to 0..i), with a hand-written backward pass.

    The batch is processed in `steps` groups (a loop) and the queries in blocks of `block_len`
    rows that attend only to keys up to their last row. Both are performance knobs: the result
    does not depend on them beyond rounding.
    """
    return _attention_fwd(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, steps, block_len)[0]


def _attention_fwd(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, steps, block_len):
    def body(_, group: tuple[jax.Array, ...]):  # q, k, v of one group
        q, k, v = group
        return None, _group_fwd(q, k, v, block_len)

    qkv = tuple(_to_groups(a, steps) for a in (q_BxLxHxK, k_BxLxHxK, v_BxLxHxK))
    _, (o, lse) = lax.scan(body, None, qkv)
    o_BxLxHxK, lse_BxHxL = _from_groups(o), _from_groups(lse)
    return o_BxLxHxK, (q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, o_BxLxHxK, lse_BxHxL)


def _attention_bwd(steps, block_len, res, do_BxLxHxK):
    def body(_, group: tuple[jax.Array, ...]):  # q, k, v, o, lse, do of one group
        q, k, v, o, lse, do = group
        return None, _group_bwd(q, k, v, o, lse, do, block_len)

    groups = tuple(_to_groups(a, steps) for a in (*res, do_BxLxHxK))
    _, grads = lax.scan(body, None, groups)
    return tuple(_from_groups(g) for g in grads)


causal_attention.defvjp(_attention_fwd, _attention_bwd)


def attention_steps(batch: int, batch_shards: int, nb_heads: int, length: int) -> int:
    """Loop steps for `causal_attention`: groups of about 2 MiB of float32 scores per device.

    The group size per device must divide the per-device batch; with a batch that the shards do
    not divide, the whole batch is one group.
    """
    if batch % batch_shards:
        return 1
    local = batch // batch_shards
    per_group = max(1, (2 << 20) // (4 * nb_heads * length * length))
    size = max(d for d in range(1, min(per_group, local) + 1) if local % d == 0)
    return local // size


def dot_product_attention(
    q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array, implementation: str = "xla"
) -> jax.Array:
    """Causal attention through `jax.nn.dot_product_attention`, differentiated by JAX.

    implementation "xla" is the textbook formula (the yardstick for `causal_attention`); "cudnn"
    is cuDNN's fused flash attention (GPU, bfloat16 or float16 inputs), which skips the masked half.
    """
    # a str here (`resolve_attention` passes the config's value on); JAX checks it at run time
    jax_implementation = cast(Literal["xla", "cudnn"], implementation)
    return jax.nn.dot_product_attention(
        q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, is_causal=True, implementation=jax_implementation
    )


def cached_attention(
    q_BxQxHxK: jax.Array, k_BxSxHxK: jax.Array, v_BxSxHxK: jax.Array, q_pos_BxQ: jax.Array
) -> jax.Array:
    """Attention of Q queries at positions q_pos against S cached keys at positions 0..S-1: query
    (b, i) sees keys s <= q_pos[b, i]. The decode path (one query per sequence) and prefill."""
    head_dim = q_BxQxHxK.shape[-1]
    q = q_BxQxHxK.astype(F32) * (head_dim**-0.5)
    s_BxHxQxS = jnp.einsum("bqhk,bshk->bhqs", q, k_BxSxHxK.astype(F32))
    key_pos_S = jnp.arange(k_BxSxHxK.shape[1])
    visible_BxQxS = key_pos_S[None, None, :] <= q_pos_BxQ[:, :, None]
    s_BxHxQxS = jnp.where(visible_BxQxS[:, None], s_BxHxQxS, -jnp.inf)
    p_BxHxQxS = jax.nn.softmax(s_BxHxQxS, axis=-1)
    o_BxQxHxK = jnp.einsum("bhqs,bshk->bqhk", p_BxHxQxS, v_BxSxHxK.astype(F32))
    return o_BxQxHxK.astype(q_BxQxHxK.dtype)


def reference_attention(
    q_BxLxHxK: jax.Array, k_BxLxHxK: jax.Array, v_BxLxHxK: jax.Array
) -> jax.Array:
    """The textbook formula, differentiated by JAX: the yardstick for `causal_attention`."""
    return dot_product_attention(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, "xla")


def resolve_kernels(choice: str, backend: str) -> str:
    """The kernels `model.kernels` names on this backend: "custom" (the hand-written backward
    passes above, measured faster on XLA:CPU) or "autodiff" (plain formulas differentiated by JAX;
    `jax.jvp` works through them). "auto" is custom on CPU and autodiff elsewhere."""
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {choice!r}")
    if choice != "auto":
        return choice
    return "custom" if backend == "cpu" else "autodiff"


def resolve_attention(
    choice: str, dtype: str, backend: str, head_dim: int = 64, kernels: str = "auto"
) -> str:
    """The attention implementation `model.transformer.attention` names on this backend.

    "auto" is "blocked" (`causal_attention`, tuned for XLA:CPU) where the kernels resolve to
    custom (CPU by default), else "cudnn" on GPU where cuDNN supports the dtype and head
    dimension (bfloat16, a multiple of 8 up to 128), and "xla" otherwise (GPU float32, TPU).
    """
    if choice not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {ATTENTION_CHOICES}, got {choice!r}")
    if choice != "auto":
        return choice
    if resolve_kernels(kernels, backend) == "custom" and backend == "cpu":
        return "blocked"
    if backend in ("gpu", "cuda") and cudnn_supports(dtype, head_dim):
        return "cudnn"
    return "xla"


# --- the same layers for JAX's own differentiation -------------------------------------------


def dense_autodiff(x: jax.Array, w: jax.Array, n_in: int = 1) -> jax.Array:
    """`dense` without a custom gradient."""
    return _dot(x, w, (tuple(range(1, 1 + n_in)), tuple(range(n_in))), x.dtype)


def swiglu_autodiff(
    x_NxD: jax.Array,
    w_gate_up_Dx2xF: jax.Array,
    w_down_FxD: jax.Array,
    hidden_spec: PartitionSpec | None = None,
) -> jax.Array:
    """`swiglu` without a custom gradient."""
    gu_Nx2xF = _constrain(_dot(x_NxD, w_gate_up_Dx2xF, ((1,), (0,)), x_NxD.dtype), hidden_spec)
    return _dot(_swiglu_act(gu_Nx2xF), w_down_FxD, ((1,), (0,)), x_NxD.dtype)


def kernel_set(kernels: str) -> tuple:
    """(dense, swiglu) for resolved kernels 'custom' or 'autodiff'."""
    return (dense, swiglu) if kernels == "custom" else (dense_autodiff, swiglu_autodiff)
