"""Exact token-level scores under the true process: the forward filter's predictive distribution.

`entropy.py` gives log p(x(t) | x(0..t-1)) of the token that came. This module keeps the filter's
whole next-token distribution p(x(t) = v | x(0..t-1)) for every v, which gives

- `predictive_logprobs`: log p(x(t+1) = v | x(0..t)) for t = 0..L-1, shape (B, L, V): exactly what a
  language model's logits at positions 0..L-1 estimate (the Bayes-optimal "model"; `OracleFilter`
  serves it step by step, as a model's prefill/decode would);
- `token_scores`: for every position t >= 1 the true -log p(x(t) | x(<t)) of the token present and
  the exact conditional entropy H_t = -sum_v p(v | x(<t)) log p(v | x(<t)) given that prefix;
- `excess_nats`: over a mask of positions (a completion), mean(-log p - H_t) per sequence and over
  all masked tokens: `sample_excess_nats`, the true-process cross-entropy of the tokens minus the
  entropy rate along the same prefixes. Its expectation for tokens drawn from the true conditionals
  is 0; tokens drawn from a model q_t give E = KL(q_t || p_t) + H(q_t) - H(p_t), which grows as q
  moves away from p (and can go below 0 for a model sharper than p, e.g. greedy decoding).

The filter state after x(0..t) is p(z(t+1) | x(0..t)) over the hidden axes (B, d_1, ..., d_n), moved
on with `entropy.py`'s factored transition (the same operands and contraction code). x(0) = 0 is the
fixed start token: it is never scored, only read by nodes that take the previous token.

Graphs with `context` nodes: the conditionals of the process average over the per-sequence kernels,
which no finite computation gives exactly. As `entropy.sequence_entropy` does, this module draws
`mc_draws` kernel sets from the prior (`entropy.context_draws`, same seed, same draws) and uses the
mixture predictive p(v | x(<t)) = sum_k w_k(t) p_k(v | x(<t)), with w_k(t) the posterior weight of
draw k given the prefix (proportional to p_k(x(1..t-1))). Its log-probability of the token present
equals `sequence_entropy`'s Monte Carlo per-position value, and H_t is the entropy of that mixture.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gssm_jax.gssm import entropy
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, check_tables, merge


class TokenScores(NamedTuple):
    """Per position t = 1..T-1, each (B, T-1): true -log p(x(t) | x(<t)) and the conditional
    entropy H_t (nats)."""

    nll: jax.Array
    entropy: jax.Array


class Excess(NamedTuple):
    """`sample_excess_nats` per sequence (B,) and over every masked token; masked tokens (B,)."""

    per_sequence: jax.Array
    overall: jax.Array
    tokens: jax.Array


class FilterState(NamedTuple):
    """pred: p(z(t+1) | x(0..t)) per draw (N, B, d_1, ..., d_n); loglik: log p_k(x(1..t)) (N, B).

    N = 1 without context nodes (the weights are then unused)."""

    pred: jax.Array
    loglik: jax.Array


# ---- one filter (one set of tables) ------------------------------------------------------------


def _emission_marginal(graph: Graph, ops: entropy._Operands, pred) -> jax.Array:
    """p(x = v | past) for pred (B, d_1, ..., d_n): sums pred over the axes X does not read, then
    one (B, P) @ (P, V) matmul over X's parents' joint values."""
    reads = tuple(s > 1 for s in ops.emission.shape[1:])
    unread = tuple(1 + i for i, r in enumerate(reads) if not r)
    m = pred.sum(unread, keepdims=True) if unread else pred
    b, v = pred.shape[0], ops.emission.shape[0]
    e_VxP = ops.emission.reshape(v, -1)
    return m.reshape(b, -1) @ e_VxP.T


def _first(graph: Graph, ops, x0_B, dtype) -> jax.Array:
    """The state after the start token: every hidden node from state 0, moved one step."""
    b = x0_B.shape[0]
    alpha = jnp.zeros((b, graph.joint_size), dtype).at[:, 0].set(1.0)
    return entropy._transition(graph, ops, alpha.reshape((b,) + graph.hidden_dims), x0_B)


def _observe(graph: Graph, ops, pred, x_B):
    """(next pred, log p(x | past)): weigh by the emission of x, renormalise, transition."""
    weighted = pred * ops.emission[x_B]
    scale_B = weighted.sum(tuple(range(1, weighted.ndim)))
    inv = (1.0 / scale_B).reshape((-1,) + (1,) * (weighted.ndim - 1))
    return entropy._transition(graph, ops, weighted * inv, x_B), jnp.log(scale_B)


# ---- the filter over draws ---------------------------------------------------------------------


def _all_operands(graph: Graph, tables: Tables, draws, dtype):
    """Operands with a leading draw axis N (N = 1 without context nodes)."""
    if draws is None:
        ops = entropy._operands(graph, tables, dtype)
        return jax.tree.map(lambda a: a[None], ops)
    return jax.vmap(lambda ctx: entropy._operands(graph, merge(tables, ctx), dtype))(draws)


def _init(graph, ops_N, x0_B, dtype) -> FilterState:
    pred = jax.vmap(lambda ops: _first(graph, ops, x0_B, dtype))(ops_N)
    n = pred.shape[0]
    return FilterState(pred, jnp.zeros((n, x0_B.shape[0]), dtype))


def _step(graph, ops_N, state: FilterState, x_B) -> FilterState:
    pred, logp_NxB = jax.vmap(lambda ops, p: _observe(graph, ops, p, x_B))(ops_N, state.pred)
    return FilterState(pred, state.loglik + logp_NxB)


def _predictive(graph, ops_N, state: FilterState) -> jax.Array:
    """log p(next token = v | tokens so far), (B, V): the posterior-weighted mixture over draws."""
    p_NxBxV = jax.vmap(lambda ops, p: _emission_marginal(graph, ops, p))(ops_N, state.pred)
    log_p = jnp.log(p_NxBxV)
    if p_NxBxV.shape[0] == 1:
        return log_p[0]
    w = state.loglik[..., None]
    return jax.nn.logsumexp(w + log_p, axis=0) - jax.nn.logsumexp(w, axis=0)


def _predictive_BxLxV(graph, tables, draws, tokens_BxL):
    dtype = entropy._dtype(tables)
    ops_N = _all_operands(graph, tables, draws, dtype)
    state = _init(graph, ops_N, tokens_BxL[:, 0], dtype)

    def body(state, x_B):
        nxt = _step(graph, ops_N, state, x_B)
        return nxt, _predictive(graph, ops_N, nxt)

    _, rest_LxBxV = jax.lax.scan(body, state, tokens_BxL[:, 1:].T)
    first_BxV = _predictive(graph, ops_N, state)
    return jnp.concatenate([first_BxV[:, None], jnp.swapaxes(rest_LxBxV, 0, 1)], axis=1)


_predictive_jit = jax.jit(_predictive_BxLxV, static_argnums=0)


def _draws(graph: Graph, tables: Tables, mc_draws: int, mc_seed: int):
    if not graph.has_context:
        return None
    if mc_draws < 1:
        raise ValueError(f"mc_draws must be >= 1, got {mc_draws}")
    return entropy.context_draws(graph, mc_draws, mc_seed, entropy._dtype(tables))


def _check(graph: Graph, tables: Tables, tokens_BxL, min_len: int) -> jax.Array:
    tokens_BxL = jnp.asarray(tokens_BxL)
    if tokens_BxL.ndim != 2 or tokens_BxL.shape[1] < min_len:
        raise ValueError(
            f"tokens must have shape (batch, L) with L >= {min_len}, got {tokens_BxL.shape}"
        )
    if not jnp.issubdtype(tokens_BxL.dtype, jnp.integer):
        raise ValueError(f"tokens must be integers, got dtype {tokens_BxL.dtype}")
    check_tables(graph, tables)
    return tokens_BxL


# ---- public API --------------------------------------------------------------------------------


def predictive_logprobs(
    graph: Graph, tables: Tables, tokens_BxL: ArrayLike, mc_draws: int = 64, mc_seed: int = 0
) -> jax.Array:
    """log p(x(t+1) = v | x(0..t)) for t = 0..L-1, shape (B, L, V): the true process's own
    next-token log-probabilities at every position, as a model's logits would give them."""
    tokens_BxL = _check(graph, tables, tokens_BxL, 1)
    draws = _draws(graph, tables, mc_draws, mc_seed)
    return _predictive_jit(entropy._structure(graph), tuple(tables), draws, tokens_BxL)


def scores_from_predictive(logp_BxTm1xV: jax.Array, tokens_BxT: jax.Array) -> TokenScores:
    """TokenScores of tokens 1..T-1 from the predictive log-probs at positions 0..T-2."""
    nll = -jnp.take_along_axis(logp_BxTm1xV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    h = -(jnp.exp(logp_BxTm1xV) * logp_BxTm1xV).sum(-1)
    return TokenScores(nll, h)


def token_scores(
    graph: Graph, tables: Tables, tokens_BxT: ArrayLike, mc_draws: int = 64, mc_seed: int = 0
) -> TokenScores:
    """True -log p(x(t) | x(<t)) and conditional entropy H_t for t = 1..T-1, each (B, T-1)."""
    tokens_BxT = _check(graph, tables, tokens_BxT, 2)
    logp = predictive_logprobs(graph, tables, tokens_BxT[:, :-1], mc_draws, mc_seed)
    return scores_from_predictive(logp, tokens_BxT)


def excess_nats(scores: TokenScores, mask_BxTm1: ArrayLike) -> Excess:
    """mean(-log p - H_t) over the masked positions of each sequence, and over all masked tokens.

    A sequence with no masked position gets NaN; `overall` weighs sequences by their token counts.
    """
    mask = jnp.asarray(mask_BxTm1, bool)
    diff = jnp.where(mask, scores.nll - scores.entropy, 0.0)
    n_B = mask.sum(-1)
    per_seq = diff.sum(-1) / jnp.where(n_B > 0, n_B, jnp.nan)
    overall = diff.sum() / jnp.maximum(n_B.sum(), 1)
    return Excess(per_seq, overall, n_B)


class OracleFilter:
    """The true process as a model with the API of the model families (`models/registry.py`).

    `prefill(params, tokens_BxL, lengths_B)` reads each row's first `lengths_B[b]` tokens (right
    padding ignored) and returns (log p(next = v) at every position, (B, L, V); state), row b's
    next-token distribution at position lengths_B[b] - 1; `decode(params, state, tokens_B)` appends
    one token per row and returns (log p(next = v), (B, V); state); `apply(params, tokens_BxL)` is
    `predictive_logprobs`. `params` is ignored (pass None): the tables and Monte Carlo draws are
    fixed at construction. Logits are exact log-probabilities (the Monte Carlo mixture for context
    graphs). All methods are pure and jittable.
    """

    def __init__(self, graph: Graph, tables: Tables, mc_draws: int = 64, mc_seed: int = 0):
        check_tables(graph, tables)
        self.graph = graph
        self.tables = tuple(tables)
        self.draws = _draws(graph, self.tables, mc_draws, mc_seed)
        self.dtype = entropy._dtype(self.tables)

    def _ops(self):
        return _all_operands(self.graph, self.tables, self.draws, self.dtype)

    def prefill(
        self, params, tokens_BxL, lengths_B, cache_len: int | None = None
    ) -> tuple[jax.Array, FilterState]:
        del params, cache_len  # the filter's state has a fixed size
        ops_N = self._ops()
        state = _init(self.graph, ops_N, tokens_BxL[:, 0], self.dtype)

        def body(state, t_and_x):
            t, x_B = t_and_x
            nxt = _step(self.graph, ops_N, state, x_B)
            keep = t < lengths_B  # rows whose prompt has a token at position t

            def pick(new, old):
                return jnp.where(keep.reshape((1, -1) + (1,) * (new.ndim - 2)), new, old)

            state = jax.tree.map(pick, nxt, state)
            return state, _predictive(self.graph, ops_N, state)

        steps = jnp.arange(1, tokens_BxL.shape[1])
        state0 = state
        state, rest_LxBxV = jax.lax.scan(body, state, (steps, tokens_BxL[:, 1:].T))
        first_BxV = _predictive(self.graph, ops_N, state0)
        logp = jnp.concatenate([first_BxV[:, None], jnp.swapaxes(rest_LxBxV, 0, 1)], axis=1)
        return logp, state

    def decode(self, params, state: FilterState, tokens_B) -> tuple[jax.Array, FilterState]:
        del params
        ops_N = self._ops()
        state = _step(self.graph, ops_N, state, tokens_B)
        return _predictive(self.graph, ops_N, state), state

    def apply(self, params, tokens_BxL) -> jax.Array:
        """log p(x(t+1) = v | x(0..t)) for every position, (B, L, V) (the full-recompute path)."""
        del params
        return _predictive_BxLxV(self.graph, self.tables, self.draws, tokens_BxL)
