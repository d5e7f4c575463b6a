"""Exact posterior marginals of every hidden node, from the forward(-backward) algorithm.

`filtering_marginals` gives p(z_i(t) | x(0..t)) for each hidden node i and position t: what the
best causal reader of the tokens can know about node i at t, so the ceiling of any probe of a
causal model's activations at t. `smoothing_marginals` gives p(z_i(t) | x(0..T-1)), every token
seen. Both run the forward pass of `entropy` (dense or factored, the same `forward_fns`) and sum
the joint posterior over the other nodes' axes at each step; smoothing adds a backward pass built
as the linear transpose of the same transition, so the factored form never builds an S x S matrix.

Position 0 is the fixed start (every node in state 0). Graphs with `context` nodes have no fixed
kernels, so their exact posterior is not defined here: they raise `ContextPosteriorError`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gssm_jax.gssm import entropy
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, check_tables

Marginals = tuple  # tuple[jax.Array, ...]: one p_BxTxD per hidden node, in graph.hidden order


class ContextPosteriorError(ValueError):
    """A graph with `context` nodes: their state includes per-sequence kernels, whose posterior
    is not computed here."""


def _marginals(joint, dims: tuple[int, ...]) -> Marginals:
    """Per-node marginals p_BxD of a joint (B, *fwd.shape) distribution summing to one."""
    joint = joint.reshape(joint.shape[:1] + dims)
    axes = tuple(range(1, 1 + len(dims)))
    return tuple(joint.sum(tuple(a for a in axes if a != 1 + i)) for i in range(len(dims)))


def _normalise(p):
    return p / p.sum(tuple(range(1, p.ndim)), keepdims=True)


def _start_marginals(graph: Graph, batch: int, dtype) -> Marginals:
    return tuple(jnp.zeros((batch, d), dtype).at[:, 0].set(1.0) for d in graph.hidden_dims)


def _forward(graph: Graph, tables: Tables, tokens_BxT, method: str, with_joint: bool):
    """Filtering marginals at t = 1..T-1 as (T-1, B, d_i) per node, and the joint posteriors
    (T-1, B, *shape) when `with_joint`."""
    dtype = entropy._dtype(tables)
    fwd = entropy.forward_fns(graph, tables, method, dtype)
    pred0 = entropy.first_prediction(graph, fwd, tokens_BxT, dtype)

    def step(pred, x_B):
        post = _normalise(fwd.emit(pred, x_B))
        out = (_marginals(post, graph.hidden_dims), post if with_joint else None)
        return fwd.transition(post, x_B), out

    _, (marg, joint) = jax.lax.scan(step, pred0, tokens_BxT[:, 1:].T)
    return fwd, marg, joint


def _with_start(graph: Graph, marg_T1xBxD: Marginals, batch: int, dtype) -> Marginals:
    """(B, T, d) per node: the start state at t = 0, then the given t = 1..T-1."""
    start = _start_marginals(graph, batch, dtype)
    return tuple(
        jnp.concatenate([s[:, None], jnp.swapaxes(m, 0, 1)], axis=1)
        for s, m in zip(start, marg_T1xBxD)
    )


def _filtering(graph: Graph, method: str, tables: Tables, tokens_BxT) -> Marginals:
    _, marg, _ = _forward(graph, tables, tokens_BxT, method, with_joint=False)
    return _with_start(graph, marg, tokens_BxT.shape[0], entropy._dtype(tables))


def _smoothing(graph: Graph, method: str, tables: Tables, tokens_BxT) -> Marginals:
    """Forward posteriors times backward messages beta_t(z) = p(x(t+1..T-1) | z(t)) (rescaled),
    with beta_t = T_{x(t)} (E_{x(t+1)} * beta_{t+1}): the transpose of the forward step."""
    fwd, _, post = _forward(graph, tables, tokens_BxT, method, with_joint=True)
    steps = tokens_BxT.shape[1] - 1

    def step(beta_next, inputs):
        post_t, x_t_B, x_next_B = inputs
        w = fwd.emit(beta_next, x_next_B)
        back = jax.linear_transpose(lambda a: fwd.transition(a, x_t_B), w)
        beta = _normalise(back(w)[0])
        return beta, _marginals(_normalise(post_t * beta), graph.hidden_dims)

    tokens_TxB = tokens_BxT.T
    inputs = (post[:-1], tokens_TxB[1:-1], tokens_TxB[2:])  # t = 1..T-2
    _, marg = jax.lax.scan(step, jnp.ones_like(post[-1]), inputs, reverse=True, length=steps - 1)
    last = _marginals(post[-1], graph.hidden_dims)
    marg = tuple(jnp.concatenate([m, lst[None]], axis=0) for m, lst in zip(marg, last))
    return _with_start(graph, marg, tokens_BxT.shape[0], entropy._dtype(tables))


_filtering_jit = jax.jit(_filtering, static_argnums=(0, 1))
_smoothing_jit = jax.jit(_smoothing, static_argnums=(0, 1))


def _prepare(graph: Graph, tables: Tables, tokens_BxT: ArrayLike, method: str):
    if graph.has_context:
        names = [n.name for n in graph.nodes if n.mode == "context"]
        raise ContextPosteriorError(
            f"graph has context nodes {names}: their state includes the kernels drawn for each "
            "sequence, so there is no exact posterior over the hidden nodes with fixed kernels"
        )
    tokens_BxT = jnp.asarray(tokens_BxT)
    entropy._check_tokens(tokens_BxT)
    check_tables(graph, tables)
    return tokens_BxT, entropy._resolve(graph, method), entropy._structure(graph)


def filtering_marginals(
    graph: Graph, tables: Tables, tokens_BxT: ArrayLike, method: str = "auto"
) -> Marginals:
    """p(z_i(t) | x(0..t)) for each hidden node i (graph.hidden order): one (B, T, d_i) array."""
    tokens_BxT, method, structure = _prepare(graph, tables, tokens_BxT, method)
    return _filtering_jit(structure, method, tuple(tables), tokens_BxT)


def smoothing_marginals(
    graph: Graph, tables: Tables, tokens_BxT: ArrayLike, method: str = "auto"
) -> Marginals:
    """p(z_i(t) | x(0..T-1)) for each hidden node i: one (B, T, d_i) array. Holds the joint
    filtering posteriors of the whole batch (B x T x S values) between the two passes."""
    tokens_BxT, method, structure = _prepare(graph, tables, tokens_BxT, method)
    return _smoothing_jit(structure, method, tuple(tables), tokens_BxT)
