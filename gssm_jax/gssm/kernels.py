"""Transition kernels of a GSSM (docs/spec.md section 3), as full conditional tables.

Every node's kernel is stored as one table `p[*inputs, value]`, rows summing to one and every entry
>= 1e-10 before renormalisation. Inputs are the node's own previous value (hidden nodes only), then its
parents in the listed order. Tables come in `graph.nodes` order: hidden nodes topologically, X last.

Fixed kernels are drawn once with NumPy from the graph seed (each node from its own stream, keyed by
its name, so adding a node leaves the others' kernels unchanged). Nodes in `context` mode get `None`
there; `draw_context` draws theirs in JAX from a per-sequence key, and `merge` fills them in.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gssm_jax.gssm.graph import Graph, NodeSpec

PROB_FLOOR = 1e-10

Tables = tuple  # tuple[Array | None, ...], one per node of graph.nodes


def _apply_mode_np(m_RxS: np.ndarray, mode: str) -> np.ndarray:
    if mode not in ("slow", "dead"):
        return m_RxS
    m_RxS = m_RxS.copy()
    rows = np.arange(m_RxS.shape[0])
    target = rows % m_RxS.shape[1] if mode == "slow" else np.zeros_like(rows)
    top = m_RxS.argmax(axis=1)
    top_val = m_RxS[rows, top]
    m_RxS[rows, top] = m_RxS[rows, target]
    m_RxS[rows, target] = top_val
    return m_RxS


def _dirichlet_np(rng: np.random.Generator, alpha: float, shape: tuple[int, ...]) -> np.ndarray:
    """Dirichlet rows in log space (stable for alpha down to 1e-6): Gamma(a) = Gamma(a+1) * U^(1/a)."""
    log_g = np.log(rng.standard_gamma(alpha + 1.0, size=shape)) + np.log(rng.random(shape)) / alpha
    log_g -= log_g.max(axis=-1, keepdims=True)
    g = np.exp(log_g)
    return g / g.sum(axis=-1, keepdims=True)


def _floor_np(p: np.ndarray) -> np.ndarray:
    p = np.maximum(p / p.sum(axis=-1, keepdims=True), PROB_FLOOR)
    return p / p.sum(axis=-1, keepdims=True)


def _product_table(log_factors: list, input_dims: tuple[int, ...], xp) -> Any:
    """log p[*inputs, v] = sum_k log M_k[input_k, v], broadcast over the joint input grid."""
    n = len(input_dims)
    total = 0.0
    for k, log_m in enumerate(log_factors):
        shape = [1] * n + [log_m.shape[-1]]
        shape[k] = input_dims[k]
        total = total + xp.reshape(log_m, shape)
    return total


def draw_node_table_np(rng: np.random.Generator, node: NodeSpec, input_dims: tuple[int, ...]):
    """One node's table from a NumPy generator, float64, shape (*input_dims, state_dim)."""
    s = node.state_dim
    if node.kernel_type == "fullrank":
        rows = _dirichlet_np(rng, node.alpha, (int(np.prod(input_dims)), s))
        rows = _floor_np(_apply_mode_np(rows, node.mode))
        return rows.reshape(*input_dims, s)
    factors = [
        _floor_np(_apply_mode_np(_dirichlet_np(rng, node.alpha, (d, s)), node.mode))
        for d in input_dims
    ]
    log_t = _product_table([np.log(f) for f in factors], input_dims, np)
    log_t = log_t - log_t.max(axis=-1, keepdims=True)
    return _floor_np(np.exp(log_t))


def node_rng(graph_seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(graph_seed), zlib.crc32(name.encode())])


def draw_kernels(graph: Graph, graph_seed: int) -> Tables:
    """Fixed tables (float64 NumPy) for every non-context node; `None` for context nodes."""
    return tuple(
        None
        if n.mode == "context"
        else draw_node_table_np(node_rng(graph_seed, n.name), n, graph.input_dims(n))
        for n in graph.nodes
    )


def _softmax_floor(log_p: jax.Array) -> jax.Array:
    """softmax over the last axis, floored at PROB_FLOOR and renormalised."""
    p = jax.nn.softmax(log_p, axis=-1)
    p = jnp.maximum(p, PROB_FLOOR)
    return p / p.sum(-1, keepdims=True)


def _draw_node_table_jax(key: jax.Array, node: NodeSpec, input_dims: tuple[int, ...], dtype):
    s = node.state_dim

    def rows(k, n_rows):
        return _softmax_floor(jax.random.loggamma(k, jnp.full((n_rows, s), node.alpha, dtype)))

    if node.kernel_type == "fullrank":
        return rows(key, int(np.prod(input_dims))).reshape(*input_dims, s)
    keys = jax.random.split(key, len(input_dims))
    log_t = _product_table([jnp.log(rows(k, d)) for k, d in zip(keys, input_dims)], input_dims, jnp)
    return _softmax_floor(log_t)


def draw_context(key: jax.Array, graph: Graph, dtype=jnp.float32) -> Tables:
    """Fresh tables for the context nodes (jittable, vmappable over keys); `None` elsewhere."""
    out = []
    for i, n in enumerate(graph.nodes):
        if n.mode == "context":
            out.append(
                _draw_node_table_jax(jax.random.fold_in(key, i), n, graph.input_dims(n), dtype)
            )
        else:
            out.append(None)
    return tuple(out)


def merge(fixed: Tables, context: Tables) -> Tables:
    """Tables with the context nodes' entries taken from `context`."""
    return tuple(c if f is None else f for f, c in zip(fixed, context))


def check_tables(graph: Graph, tables: Tables) -> None:
    """Raises ValueError unless `tables` has one entry per node of `graph.nodes`, None exactly for
    the context nodes and an array of shape (*input_dims, state_dim) for every other node."""
    if len(tables) != len(graph.nodes):
        raise ValueError(f"expected {len(graph.nodes)} tables (graph.nodes), got {len(tables)}")
    for node, t in zip(graph.nodes, tables):
        want = graph.input_dims(node) + (node.state_dim,)
        if (t is None) != (node.mode == "context"):
            raise ValueError(
                f"table of node {node.name!r} must be None exactly when its mode is 'context' "
                f"(context kernels are drawn by Monte Carlo), got mode {node.mode!r}"
            )
        if t is not None and tuple(t.shape) != want:
            raise ValueError(f"table of node {node.name!r} has shape {t.shape}, expected {want}")


def as_device_tables(tables: Tables, dtype=jnp.float32) -> Tables:
    return tuple(None if t is None else jnp.asarray(t, dtype) for t in tables)


def kernels_hash(tables: Tables) -> str:
    """SHA-256 of the fixed tables (float32 bytes, so it survives a float64 -> float32 round trip)."""
    h = hashlib.sha256()
    for t in tables:
        h.update(b"context" if t is None else np.asarray(t, np.float32).tobytes())
    return h.hexdigest()
