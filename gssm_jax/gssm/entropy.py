"""Exact entropy of GSSM token sequences: the forward algorithm of docs/spec.md section 4, in two forms.

`dense` builds the joint transition over the S = prod(hidden dims) joint states (one S x S matrix per
previous token when X feeds a hidden node) and runs alpha_BxS @ T per token: O(S^2) per token.
`factored` keeps alpha as a tensor over the hidden axes, shape (B, d_1, ..., d_n), and applies one
node's kernel at a time in topological order, contracting that node's old axis while its hidden
parents' axes already hold their new values; it never builds an S x S matrix. Both rescale alpha to
sum one after every token and add the log of the scale, so they are stable for any length.

On CPU a node's contraction is one elementwise fusion (a sum over its old values of slices of alpha
times its table, the axes it does not read merged so the loop runs along a long minor axis); nodes
with more than ELEM_MAX_D states use a dot, and a trailing block of nodes that reads nothing
outside itself is applied as one small matmul. The dense matrices are built by the same code
applied to a basis, so the two forms differ only in how the work is laid out.

Graphs with `context` nodes are handled by Monte Carlo over the kernel prior (`sequence_entropy`):
H = -(1/(T-1)) log mean_n p(x | kernels_n) over N drawn kernel sets, with its standard error by the
delta method, sd_n(p_n / mean p) / sqrt(N) / (T-1) (NaN for one draw; it understates the error when
one draw dominates the mean, as it does for long sequences and few draws).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, check_tables, draw_context, merge

METHODS = ("auto", "dense", "factored")
# `auto` runs the dense form only when X feeds no hidden node and S <= DENSE_MAX_S. Measured on the
# 2-core CI CPU (batch 16 x 1024, tokens per CPU-second, dense / factored): no feedback: S=16
# 17.0M / 15.4M (one node), 16.0M / 17.1M (4x4); S=64 4.7M / 4.6M (one node), 4.5M / 4.7M
# (4x4x4), 4.3M / 3.5M (8x8); S=128 1.4M / 1.8M (one node), 1.7M / 3.6M (2x4x4x4); S=256 0.48M /
# 0.50M (one node), 0.52M / 0.74M (4x4x4x4); S=1024 7.7k / 346k. With X feeding a node the dense
# form gathers an S x S matrix per token and loses from S=16 on (4x4x4: 0.33M / 2.5M).
DENSE_MAX_S = 64
# Trailing hidden axes whose joint size is at most this are applied as one small matmul.
TAIL_MAX = 16
# Nodes with at most this many states are contracted by an elementwise sum, larger ones by a dot.
ELEM_MAX_D = 8
DENSE_MAX_ENTRIES = 2**28
MC_MEMORY_BUDGET = 2**28  # bytes of forward state per chunk of Monte Carlo draws

# what `make_entropy_fn`'s function returns: H_B, or (H_B, stderr_B or None) with `stderr`
EntropyOut = jax.Array | tuple[jax.Array, jax.Array | None]


class EntropyResult(NamedTuple):
    """Per-sequence entropy (B,), optional per-position values (B, T-1), Monte Carlo draws and the
    per-sequence standard error (B,) of the Monte Carlo estimate, or None when exact."""

    per_sequence: jax.Array
    per_position: jax.Array | None
    mc_draws: int | None
    stderr: jax.Array | None = None


def dense_entries(graph: Graph) -> int:
    """Entries of the dense joint transition: S x S, times the vocabulary when X feeds a node."""
    return graph.joint_size**2 * (graph.vocab_size if graph.x_feeds_hidden else 1)


def choose_method(graph: Graph) -> str:
    """The faster exact form for this graph on CPU (measurements at DENSE_MAX_S)."""
    small = graph.joint_size <= DENSE_MAX_S
    return "dense" if small and not graph.x_feeds_hidden else "factored"


def _resolve(graph: Graph, method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"entropy method must be one of {METHODS}, got {method!r}")
    method = choose_method(graph) if method == "auto" else method
    if method == "dense":
        entries = dense_entries(graph)
        if entries > DENSE_MAX_ENTRIES:
            raise ValueError(
                f"method 'dense' needs a joint transition of {entries} entries for joint size "
                f"{graph.joint_size} (limit {DENSE_MAX_ENTRIES}); use method='factored'"
            )
    return method


def _structure(graph: Graph) -> Graph:
    """The forward pass reads only the tables: alpha, mode and kernel type blanked."""
    return graph.blanked(alpha=1.0, mode="default", kernel_type="product")


def _dtype(tables: Tables) -> jnp.dtype:
    """float64 when x64 is enabled and a float64 table is passed, else float32."""
    dtypes = [t.dtype for t in tables if t is not None]
    return jax.dtypes.canonicalize_dtype(np.result_type(np.float32, *dtypes))


# ---- operands: node kernels laid out over the hidden axes ---------------------------------------


def _node_operand(graph: Graph, table, node_idx: int, layout: tuple[int, ...]) -> jax.Array:
    """Node `node_idx`'s table as K[old, (x,) *layout] with the new value on its own axis.

    `layout` lists the hidden indices of alpha's axes; the node's hidden parents must be among
    them. Axes of `layout` the node does not read have size 1. With X as a parent the second
    axis is the previous token.
    """
    node = graph.hidden[node_idx]
    labels = ["old"] + [p if p == graph.observed.name else graph.index(p) for p in node.parents]
    labels.append("new")
    want = ["old"] + ([graph.observed.name] if graph.observed.name in node.parents else [])
    shape_ex = []
    order = [labels.index(w) for w in want]
    for h in layout:
        key = "new" if h == node_idx else h
        if key in labels:
            order.append(labels.index(key))
            shape_ex.append(graph.hidden_dims[h])
        else:
            shape_ex.append(1)
    k = jnp.transpose(table, order)
    return k.reshape(k.shape[: len(want)] + tuple(shape_ex))


def _emission_operand(graph: Graph, table, layout: tuple[int, ...]) -> jax.Array:
    """X's table as E[x, *layout], size 1 on the axes X does not read."""
    parents = [graph.index(p) for p in graph.observed.parents]
    order = [len(parents)] + [parents.index(h) for h in layout if h in parents]
    e = jnp.transpose(table, order)
    return e.reshape(
        e.shape[:1] + tuple(graph.hidden_dims[h] if h in parents else 1 for h in layout)
    )


def _tail_start(graph: Graph) -> int:
    """First hidden index of the trailing block applied as one matmul (n if none).

    The block reads neither X nor a hidden node outside it, so its transition is one fixed matrix:
    the last node alone when it has at least TAIL_MAX states, else the longest such suffix of two
    or more nodes with joint size <= TAIL_MAX.
    """
    n = len(graph.hidden)
    if not graph.hidden[-1].parents and graph.hidden_dims[-1] >= TAIL_MAX:
        return n - 1
    start, size = n, 1
    for i in range(n - 1, -1, -1):
        size *= graph.hidden_dims[i]
        if size > TAIL_MAX:
            break
        block = {graph.hidden[j].name for j in range(i, n)}
        if all(p in block for j in range(i, n) for p in graph.hidden[j].parents):
            start = i
    return start if n - start >= 2 else n


class _Operands(NamedTuple):
    """Per-node operands for the factored step (a pytree of arrays; structure from the graph)."""

    nodes: tuple[jax.Array, ...]  # K[old, (x,) d_1, ..., d_n] for the nodes before the tail
    tail: jax.Array | None  # M x M transition of the trailing block
    emission: jax.Array  # E[x, d_1, ..., d_n] (size 1 on axes X does not read)


def _grouped(shape: tuple[int, ...], involved: tuple[bool, ...]) -> tuple[tuple[int, ...], list]:
    """`shape` with each run of consecutive non-involved axes merged, and where each axis went."""
    out: list[int] = []
    where: list[int] = []
    for i, (size, inv) in enumerate(zip(shape, involved)):
        if i > 0 and not inv and not involved[i - 1]:
            out[-1] *= size
        else:
            out.append(size)
        where.append(len(out) - 1)
    return tuple(out), where


def _contract(alpha, k_op, axis: int, involved: list[bool]):
    """new alpha[.., n, ..] = sum_o alpha[.., o, ..] * K[o, ..., n, ...] on grouped axes.

    `K` has size 1 on the axes it does not read (`involved` False). Up to ELEM_MAX_D old values
    this is one elementwise fusion (a sum of slices, vectorised along the minor axis); beyond it,
    one dot.
    """
    d = alpha.shape[axis]
    if d <= ELEM_MAX_D:
        terms = [jax.lax.index_in_dim(alpha, k, axis, keepdims=True) * k_op[k] for k in range(d)]
        return sum(terms[1:], terms[0])
    names = [chr(ord("A") + g) for g in range(alpha.ndim)]
    alpha_s = "".join("o" if g == axis else c for g, c in enumerate(names))
    k_s = "o" + "".join("n" if g == axis else c for g, c in enumerate(names) if involved[g])
    k_sq = k_op.reshape((d,) + tuple(n for n, inv in zip(k_op.shape[1:], involved) if inv))
    return jnp.einsum(f"{alpha_s},{k_s}->{alpha_s.replace('o', 'n')}", alpha, k_sq)


def _apply_nodes(graph, node_ops, alpha, x_prev_B, first: int, layout: tuple[int, ...]):
    """Applies nodes first, first+1, ... (one operand each) to alpha (B, *layout dims)."""
    full_shape = alpha.shape
    for offset, k_op in enumerate(node_ops):
        node_idx = first + offset
        reads_x = graph.observed.name in graph.hidden[node_idx].parents
        k_op = k_op[:, x_prev_B] if reads_x else k_op[:, None]  # (old, B or 1, *layout)
        involved = (reads_x,) + tuple(s > 1 for s in k_op.shape[2:])
        shape, where = _grouped(full_shape, involved)
        k_op = k_op.reshape(k_op.shape[:1] + _grouped(k_op.shape[1:], involved)[0])
        group_involved = [involved[where.index(g)] for g in range(len(shape))]
        alpha = _contract(
            alpha.reshape(shape), k_op, where[1 + layout.index(node_idx)], group_involved
        )
    return alpha.reshape(full_shape)


def _operands(graph: Graph, tables: Tables, dtype) -> _Operands:
    layout = tuple(range(len(graph.hidden)))
    start = _tail_start(graph)
    tabs = [jnp.asarray(t, dtype) for t in tables]
    nodes = tuple(_node_operand(graph, tabs[i], i, layout) for i in range(start))
    tail = None
    if start < len(graph.hidden):
        sub = tuple(range(start, len(graph.hidden)))
        m = math.prod(graph.hidden_dims[start:])
        basis = jnp.eye(m, dtype=dtype).reshape((m,) + graph.hidden_dims[start:])
        sub_ops = [_node_operand(graph, tabs[i], i, sub) for i in sub]
        tail = _apply_nodes(graph, sub_ops, basis, None, start, sub).reshape(m, m)
    emission = _emission_operand(graph, tabs[-1], layout)
    return _Operands(nodes, tail, emission)


def _transition(graph: Graph, ops: _Operands, alpha, x_prev_B):
    """One hidden step for alpha (B, d_1, ..., d_n): every hidden kernel, in topological order."""
    layout = tuple(range(len(graph.hidden)))
    alpha = _apply_nodes(graph, ops.nodes, alpha, x_prev_B, 0, layout)
    if ops.tail is not None:
        m = ops.tail.shape[0]
        alpha = (alpha.reshape(-1, m) @ ops.tail).reshape(alpha.shape)
    return alpha


# ---- the two forward passes ---------------------------------------------------------------------


def _scan_scales(emit, transition, pred0, tokens_BxT) -> jax.Array:
    """Forward pass over tokens 1..T-1; returns log p(x(t) | x(0..t-1)), shape (B, T-1).

    The carry is the predictive distribution of the hidden state given the past tokens (summing to
    one). Each step weighs it by the emission of the token, takes the sum (the token's probability)
    and moves the renormalised posterior one step on; the last move is not needed but keeps the loop
    uniform.
    """

    def step(pred, x_B):
        weighted = emit(pred, x_B)
        scale_B = weighted.sum(tuple(range(1, weighted.ndim)))
        inv = (1.0 / scale_B).reshape((-1,) + (1,) * (weighted.ndim - 1))
        return transition(weighted * inv, x_B), scale_B

    _, scale_TxB = jax.lax.scan(step, pred0, tokens_BxT[:, 1:].T)
    return jnp.log(scale_TxB).T


def _start(graph: Graph, tokens_BxT, dtype) -> jax.Array:
    """alpha_0: all hidden nodes in state 0, shape (B, S)."""
    return jnp.zeros((tokens_BxT.shape[0], graph.joint_size), dtype).at[:, 0].set(1.0)


class Forward(NamedTuple):
    """One form of the forward algorithm: alpha has shape (B, *shape), `emit(alpha, x_B)` weighs
    it by p(x | z) and `transition(alpha, x_prev_B)` moves it one step (linear in alpha)."""

    shape: tuple[int, ...]  # (S,) for the dense form, the hidden dims for the factored one
    emit: Callable
    transition: Callable


def forward_fns(graph: Graph, tables: Tables, method: str, dtype) -> Forward:
    """The emission and transition of the `dense` or `factored` form (both exact)."""
    if method == "dense":
        t, e_VxS = dense_transition(graph, tables, dtype)

        def transition(alpha_BxS, x_prev_B):
            if graph.x_feeds_hidden:
                return jnp.einsum("bs,bst->bt", alpha_BxS, t[x_prev_B])
            return alpha_BxS @ t

        return Forward((graph.joint_size,), lambda pred, x_B: pred * e_VxS[x_B], transition)
    ops = _operands(graph, tables, dtype)

    def factored_transition(alpha, x_prev_B):
        return _transition(graph, ops, alpha, x_prev_B)

    return Forward(
        graph.hidden_dims, lambda pred, x_B: pred * ops.emission[x_B], factored_transition
    )


def first_prediction(graph: Graph, fwd: Forward, tokens_BxT, dtype) -> jax.Array:
    """p(z(1) | x(0)): alpha_0 moved one step, shape (B, *fwd.shape)."""
    alpha0 = _start(graph, tokens_BxT, dtype).reshape((tokens_BxT.shape[0],) + fwd.shape)
    return fwd.transition(alpha0, tokens_BxT[:, 0])


def dense_transition(
    graph: Graph, tables: Tables, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """The joint transition T[(x,) z, z'] (S x S, or V x S x S when X feeds) and emission E[x, z]."""
    ops = _operands(graph, tables, dtype)
    s, v = graph.joint_size, graph.vocab_size
    feeds = graph.x_feeds_hidden
    rows = v * s if feeds else s
    basis = jnp.tile(jnp.eye(s, dtype=dtype), (v if feeds else 1, 1))
    x_prev = jnp.repeat(jnp.arange(v), s) if feeds else None
    t = _transition(graph, ops, basis.reshape((rows,) + graph.hidden_dims), x_prev)
    t = t.reshape((v, s, s) if feeds else (s, s))
    e = jnp.broadcast_to(ops.emission, (v,) + graph.hidden_dims).reshape(v, s)
    return t, e


def _logc(graph: Graph, tables: Tables, tokens_BxT, method: str, dtype) -> jax.Array:
    fwd = forward_fns(graph, tables, method, dtype)
    pred0 = first_prediction(graph, fwd, tokens_BxT, dtype)
    return _scan_scales(fwd.emit, fwd.transition, pred0, tokens_BxT)


# ---- public API ---------------------------------------------------------------------------------


def _check_tokens(tokens_BxT) -> None:
    if tokens_BxT.ndim != 2 or tokens_BxT.shape[1] < 2:
        raise ValueError(f"tokens must have shape (batch, T) with T >= 2, got {tokens_BxT.shape}")
    if not jnp.issubdtype(tokens_BxT.dtype, jnp.integer):
        raise ValueError(f"tokens must be integers, got dtype {tokens_BxT.dtype}")


def sequence_logprobs(
    graph: Graph, tables: Tables, tokens_BxT: ArrayLike, method: str = "auto"
) -> jax.Array:
    """log p(x(t) | x(0..t-1)) for t = 1..T-1, shape (B, T-1), for graphs without context nodes."""
    if graph.has_context:
        raise ValueError("graph has context nodes: use sequence_entropy (Monte Carlo)")
    tokens_BxT = jnp.asarray(tokens_BxT)
    _check_tokens(tokens_BxT)
    check_tables(graph, tables)
    method = _resolve(graph, method)
    return -_entropy_jit(_structure(graph), method, tuple(tables), None, tokens_BxT)[0]


def context_draws(graph: Graph, mc_draws: int, mc_seed: ArrayLike, dtype=jnp.float32) -> Tables:
    """`mc_draws` kernel sets for the context nodes (leading draw axis; None for fixed nodes)."""
    return _draws_jit(graph, int(mc_draws), jax.dtypes.canonicalize_dtype(dtype), mc_seed)


@jax.jit(static_argnums=(0, 1, 2))
def _draws_jit(graph, mc_draws, dtype, mc_seed):
    keys = jax.random.split(jax.random.key(mc_seed), mc_draws)
    return jax.vmap(lambda k: draw_context(k, graph, dtype))(keys)


def _mc_stderr(cum_NxBxTm1: jax.Array) -> jax.Array:
    """Delta-method standard error (B,) of the Monte Carlo entropy of each whole sequence."""
    n, positions = cum_NxBxTm1.shape[0], cum_NxBxTm1.shape[-1]
    ratio_NxB = n * jax.nn.softmax(cum_NxBxTm1[..., -1], axis=0)  # p_n / mean p
    return jnp.sqrt(jnp.sum((ratio_NxB - 1.0) ** 2, axis=0) / (n - 1) / n) / positions


def _mc_cumlogp(graph, method, dtype, tables, draws, tokens_BxT):
    """log-mean-exp over the draws of the cumulative log-likelihoods, shape (B, T-1), and the
    standard error (B,) of the entropy."""
    mc_draws = next(d for d in draws if d is not None).shape[0]
    per_draw = graph.joint_size * tokens_BxT.shape[0]
    if method == "dense":
        per_draw += dense_entries(graph)
    chunk = max(1, min(mc_draws, MC_MEMORY_BUDGET // (4 * jnp.dtype(dtype).itemsize * per_draw)))

    def one(ctx):
        return jnp.cumsum(_logc(graph, merge(tables, ctx), tokens_BxT, method, dtype), axis=-1)

    cum_NxBxTm1 = jax.lax.map(one, draws, batch_size=chunk)
    cum_BxTm1 = jax.nn.logsumexp(cum_NxBxTm1, axis=0) - math.log(mc_draws)
    return cum_BxTm1, _mc_stderr(cum_NxBxTm1)


def _entropy_BxTm1(graph, method, tables, draws, tokens_BxT):
    """Per-position entropies -log p(x(t) | x(0..t-1)), exact or Monte Carlo over `draws`, and the
    per-sequence standard error (None when exact)."""
    dtype = _dtype(tables)
    if draws is None:
        return -_logc(graph, tables, tokens_BxT, method, dtype), None
    cum, stderr_B = _mc_cumlogp(graph, method, dtype, tables, draws, tokens_BxT)
    return -jnp.diff(cum, axis=-1, prepend=0.0), stderr_B


_entropy_jit = jax.jit(_entropy_BxTm1, static_argnums=(0, 1))


def sequence_entropy(
    graph: Graph,
    tables: Tables,
    tokens_BxT: ArrayLike,
    method: str = "auto",
    per_position: bool = False,
    mc_draws: int = 64,
    mc_seed: int = 0,
) -> EntropyResult:
    """H = -(1/(T-1)) log p(x(1..T-1) | x(0) = 0) per sequence; Monte Carlo for context nodes."""
    tokens_BxT = jnp.asarray(tokens_BxT)
    _check_tokens(tokens_BxT)
    check_tables(graph, tables)
    if graph.has_context and mc_draws < 1:
        raise ValueError(f"mc_draws must be >= 1, got {mc_draws}")
    method = _resolve(graph, method)
    draws = context_draws(graph, mc_draws, mc_seed, _dtype(tables)) if graph.has_context else None
    h_BxTm1, stderr_B = _entropy_jit(_structure(graph), method, tuple(tables), draws, tokens_BxT)
    return EntropyResult(
        per_sequence=h_BxTm1.mean(-1),
        per_position=h_BxTm1 if per_position else None,
        mc_draws=int(mc_draws) if graph.has_context else None,
        stderr=stderr_B,
    )


def make_entropy_fn(
    graph: Graph,
    seq_len: int,
    method: str = "auto",
    mc_draws: int = 64,
    mc_seed: int = 0,
    stderr: bool = False,
) -> Callable[[Tables, jax.Array], EntropyOut]:
    """A pure, jittable (tables, tokens_BxT) -> H_B for the training loop (Monte Carlo if context);
    with `stderr`, -> (H_B, standard error (B,) of the Monte Carlo estimate or None when exact).

    The computation dtype follows the tables (float32, or float64 under x64). For context nodes the
    `mc_draws` kernel sets are drawn here, once, from `mc_seed`, and every call uses the same ones.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    if graph.has_context and mc_draws < 1:
        raise ValueError(f"mc_draws must be >= 1, got {mc_draws}")
    method = _resolve(graph, method)
    draws = context_draws(graph, mc_draws, mc_seed, jnp.float64) if graph.has_context else None

    def entropy_fn(tables: Tables, tokens_BxT: jax.Array) -> EntropyOut:
        if tokens_BxT.shape[1] != seq_len:
            raise ValueError(f"tokens have length {tokens_BxT.shape[1]}, expected {seq_len}")
        tables = tuple(tables)
        check_tables(graph, tables)
        ctx = None if draws is None else jax.tree.map(lambda d: d.astype(_dtype(tables)), draws)
        h_BxTm1, stderr_B = _entropy_BxTm1(graph, method, tables, ctx, tokens_BxT)
        return (h_BxTm1.mean(-1), stderr_B) if stderr else h_BxTm1.mean(-1)

    return entropy_fn
