"""Batched GSSM sampler (docs/spec.md section 2): a pure, jittable function of (kernels, data seed, indices).

Sequence `i` of the stream with data seed `s` uses the key `fold_in(key(s), i)` only, so its tokens do
not depend on the batch it is drawn in, on the batch size or on how indices are split between
processes. From that key come one 32-bit uniform per (step, node), drawn up front with Threefry on the
counter (step, node pair), so a shorter sequence is a prefix of a longer one, and, for graphs with
`context` nodes, the sequence's own kernels. Each draw is an inverse-CDF lookup: the node's inputs are
flattened to one row of its cumulative table, and the value is the number of entries <= the uniform
(float32, 24-bit uniforms: probabilities are resolved to about 6e-8). When X feeds no hidden node, the
hidden chain is scanned alone and all tokens are drawn afterwards in one vectorised lookup.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from gssm_jax.gssm import kernels
from gssm_jax.gssm.graph import Graph, NodeSpec

SCAN_UNROLL = 4
_NOISE, _CONTEXT = 0, 1  # fold_in tags under a sequence key

CdfTables = tuple  # per node of graph.nodes: cumulative rows (R, S-1) float32, or None (context)


def sequence_keys(data_seed, seq_idx_B) -> jax.Array:
    """Per-sequence keys `fold_in(key(data_seed), i)`: all the randomness sequence i sees."""
    base = jax.random.key(jnp.asarray(data_seed, jnp.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(seq_idx_B, jnp.uint32))


def _context_tables(graph: Graph, keys_B: jax.Array) -> kernels.Tables:
    """Each sequence's context tables (leading batch axis), drawn under `fold_in(key, _CONTEXT)`
    of its key; None for the fixed nodes."""
    return jax.vmap(lambda k: kernels.draw_context(jax.random.fold_in(k, _CONTEXT), graph))(keys_B)


def cdf_tables(tables: kernels.Tables) -> CdfTables:
    """Cumulative tables as rows (R, S-1) float32. Computed in float64 NumPy from the float32 tables
    when concrete, so every backend and caller gets bit-identical thresholds; traced tables (a
    caller's own jit) use an XLA float32 cumsum, which may differ in the last bit."""
    out: list[jax.Array | None] = []
    for t in tables:
        if t is None:
            out.append(None)
        elif isinstance(t, jax.core.Tracer):
            out.append(_cdf_rows(jnp.asarray(t, jnp.float32)))
        else:
            p = np.asarray(t, np.float32).astype(np.float64)
            cdf = np.cumsum(p, axis=-1)[..., :-1].reshape(-1, p.shape[-1] - 1)
            out.append(jnp.asarray(cdf.astype(np.float32)))
    return tuple(out)


def _cdf_rows(table: jax.Array) -> jax.Array:
    s = table.shape[-1]
    return jnp.cumsum(table, axis=-1)[..., :-1].reshape(-1, s - 1)


def _noise(key: jax.Array, steps: int, n_nodes: int) -> jax.Array:
    """Uniforms u_TxN in [0, 1) with 24 bits: Threefry-2x32 of counter pairs (t, j), both words used."""
    half = (n_nodes + 1) // 2
    t = jnp.broadcast_to(jnp.arange(steps, dtype=jnp.uint32)[:, None], (steps, half))
    j = jnp.broadcast_to(jnp.arange(half, dtype=jnp.uint32)[None, :], (steps, half))
    bits = threefry_2x32(jax.random.key_data(key), jnp.concatenate([t.ravel(), j.ravel()]))
    bits_2xTxH = bits.reshape(2, steps, half)
    bits_TxN = jnp.concatenate([bits_2xTxH[0], bits_2xTxH[1]], axis=1)[:, :n_nodes]
    return (bits_TxN >> 8).astype(jnp.float32) * np.float32(2.0**-24)


def _draw(cdf_RxS1: jax.Array, row: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw: the number of cumulative entries <= u in the selected rows."""
    return jnp.sum(cdf_RxS1[row] <= u[..., None], axis=-1, dtype=jnp.int32)


def _row(graph: Graph, node: NodeSpec, own_prev, values: dict, prev_token) -> jax.Array | int:
    """Flat row index of the node's inputs: own previous value (hidden only), then parents in order,
    a parent X meaning the previous token and a hidden parent its new value."""
    dims = graph.input_dims(node)
    inputs = ([] if node.observed else [own_prev]) + [
        prev_token if p == graph.observed.name else values[p] for p in node.parents
    ]
    total = 0
    for k, v in enumerate(inputs):
        total = total + v * int(np.prod(dims[k + 1 :]))
    return total


def _sampler(graph: Graph, seq_len: int) -> Callable:
    """fn(cdfs, data_seed, seq_idx_B) -> (states_BxTxN, tokens_BxT, context tables with a leading
    batch axis or None per node); jittable, with graph and length static."""
    n_nodes = len(graph.nodes)
    feedback = graph.x_feeds_hidden
    names = [n.name for n in graph.hidden]
    x_name = graph.observed.name

    def run(fixed_cdfs: CdfTables, data_seed, seq_idx_B):
        B = seq_idx_B.shape[0]
        cdfs: list[jax.Array] = list(fixed_cdfs)  # context nodes' None: their rows, set below
        keys_B = sequence_keys(data_seed, seq_idx_B)
        noise_keys_B = jax.vmap(lambda k: jax.random.fold_in(k, _NOISE))(keys_B)
        u_BxT1xN = jax.vmap(lambda k: _noise(k, seq_len - 1, n_nodes))(noise_keys_B)
        u_T1xNxB = jnp.transpose(u_BxT1xN, (1, 2, 0))
        offsets: list[jax.Array | None] = [None] * n_nodes  # context rows: b * rows_per_seq + row
        ctx: kernels.Tables = (None,) * n_nodes
        if graph.has_context:
            ctx = _context_tables(graph, keys_B)
            for i, node in enumerate(graph.nodes):
                if node.mode == "context":
                    cdfs[i] = _cdf_rows(ctx[i])
                    rows = int(np.prod(graph.input_dims(node)))
                    offsets[i] = jnp.arange(B, dtype=jnp.int32) * rows

        def lookup(i, row):
            return row if offsets[i] is None else row + offsets[i]

        def step(prev: dict, u_NxB):
            new: dict[str, jax.Array] = {}
            for i, node in enumerate(graph.hidden):
                row = _row(graph, node, prev[node.name], new, prev.get(x_name))
                new[node.name] = _draw(cdfs[i], lookup(i, row), u_NxB[i])
            if feedback:
                row = _row(graph, graph.observed, None, new, None)
                new[x_name] = _draw(cdfs[-1], lookup(-1, row), u_NxB[-1])
            return new, new

        zeros_B = jnp.zeros((B,), jnp.int32)
        init = {name: zeros_B for name in names} | ({x_name: zeros_B} if feedback else {})
        _, path = jax.lax.scan(step, init, u_T1xNxB, unroll=SCAN_UNROLL)
        if feedback:
            tokens_T1xB = path[x_name]
        else:
            row_T1xB = _row(graph, graph.observed, None, path, None)
            tokens_T1xB = _draw(cdfs[-1], lookup(-1, row_T1xB), u_T1xNxB[:, -1])
        tokens_BxT = jnp.concatenate([zeros_B[None], tokens_T1xB], axis=0).T
        states_T1xBxN = jnp.stack([path[n] for n in names], axis=-1)
        states_TxBxN = jnp.concatenate([jnp.zeros_like(states_T1xBxN[:1]), states_T1xBxN])
        return jnp.transpose(states_TxBxN, (1, 0, 2)), tokens_BxT, ctx

    return run


@functools.lru_cache(maxsize=64)
def _compiled(graph: Graph, seq_len: int) -> Callable:
    return jax.jit(_sampler(graph, seq_len))


class Sampler:
    """A jitted sampler for one graph and length; remembers the cumulative tables of the last
    `tables` object it saw (kernels are treated as immutable)."""

    def __init__(self, graph: Graph, seq_len: int):
        self.graph, self.seq_len = graph, _check_seq_len(seq_len)
        # once tables are drawn, fixed nodes' alphas play no part
        self._run = _compiled(graph.blanked(keep_context=True, alpha=1.0), self.seq_len)
        # (tables, their cdfs), swapped as one object for threads
        self._last: tuple[kernels.Tables | None, CdfTables] = (None, ())

    def cdfs(self, tables: kernels.Tables) -> CdfTables:
        last_tables, last_cdfs = self._last
        if tables is last_tables:
            return last_cdfs
        kernels.check_tables(self.graph, tables)
        cdfs = cdf_tables(tables)
        if not any(isinstance(t, jax.core.Tracer) for t in tables):
            self._last = (tables, cdfs)
        return cdfs

    def with_kernels(self, tables: kernels.Tables, data_seed, seq_idx_B):
        """(states_BxTxN, tokens_BxT, per-sequence tables): see `sample_with_kernels`."""
        states, tokens, ctx = self._run(
            self.cdfs(tables), _check_seed(data_seed), _check_indices(seq_idx_B)
        )
        return states, tokens, kernels.merge(tables, ctx)

    def __call__(self, tables: kernels.Tables, data_seed, seq_idx_B) -> jax.Array:
        return self.with_kernels(tables, data_seed, seq_idx_B)[1]


@functools.lru_cache(maxsize=64)
def make_sampler(graph: Graph, seq_len: int) -> Sampler:
    """The cached sampler fn(tables, data_seed, seq_idx_B) -> tokens_BxT for this graph and length."""
    return Sampler(graph, seq_len)


def sample_with_kernels(
    graph: Graph, tables: kernels.Tables, data_seed: int, seq_idx_B, seq_len: int
) -> tuple[jax.Array, jax.Array, kernels.Tables]:
    """States, tokens and the kernels each sequence was drawn from: `tables` with every context
    node's entry replaced by its per-sequence tables, shape (B, *input_dims, state_dim)."""
    return make_sampler(graph, seq_len).with_kernels(tables, data_seed, seq_idx_B)


def sample_hidden_and_tokens(
    graph: Graph, tables: kernels.Tables, data_seed: int, seq_idx_B, seq_len: int
) -> tuple[jax.Array, jax.Array]:
    """Hidden states states_BxTxN (nodes in `graph.hidden` order) and tokens_BxT, both int32."""
    return sample_with_kernels(graph, tables, data_seed, seq_idx_B, seq_len)[:2]


def sample_tokens(
    graph: Graph, tables: kernels.Tables, data_seed: int, seq_idx_B, seq_len: int
) -> jax.Array:
    """Tokens tokens_BxT (int32) of sequences `seq_idx_B` of the stream with seed `data_seed`."""
    return make_sampler(graph, seq_len)(tables, data_seed, seq_idx_B)


def _check_seed(data_seed) -> jax.Array:
    if isinstance(data_seed, bool) or (
        isinstance(data_seed, int | np.integer) and not 0 <= int(data_seed) < 2**32
    ):
        raise ValueError(f"data_seed={data_seed!r}: must be an integer in [0, 2**32)")
    return jnp.asarray(data_seed, jnp.uint32)


def _check_indices(seq_idx_B) -> jax.Array:
    if isinstance(seq_idx_B, jax.core.Tracer):
        return seq_idx_B.astype(jnp.uint32)
    idx = np.asarray(seq_idx_B)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"seq_idx_B: expected a 1-D integer array, got {idx.dtype} {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**32):
        raise ValueError(f"seq_idx_B: indices must lie in [0, 2**32), got {idx.min()}..{idx.max()}")
    return jnp.asarray(idx.astype(np.uint32))


def _check_seq_len(seq_len) -> int:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int | np.integer) or seq_len < 2:
        raise ValueError(f"seq_len={seq_len!r}: must be an integer >= 2")
    return int(seq_len)
