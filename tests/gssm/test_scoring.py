"""Predictive distribution, conditional entropy and sample excess against brute-force enumeration."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_entropy import all_sequences, brute_force_probs, numpy_tables, structure

from gssm_jax.gssm import entropy, scoring
from gssm_jax.gssm.kernels import draw_kernels, merge


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def brute_predictive(graph, tables_list, tokens_NxT):
    """p(x(t) = v | x(<t)) for t = 1..T-1 by enumeration: P(prefix, v) / P(prefix), (N, T-1, V).

    `tables_list` holds one table set per kernel draw; probabilities are averaged over draws."""
    n, t_len = tokens_NxT.shape
    v = graph.vocab_size
    out = np.zeros((n, t_len - 1, v))

    def prob(seqs):
        return np.mean([brute_force_probs(graph, tabs, seqs) for tabs in tables_list], axis=0)

    for t in range(1, t_len):
        prefix = tokens_NxT[:, :t]
        denom = prob(prefix) if t > 1 else np.ones(n)
        for val in range(v):
            seqs = np.concatenate([prefix, np.full((n, 1), val, prefix.dtype)], axis=1)
            out[:, t - 1, val] = prob(seqs) / denom
    return out


def _check_against(graph, tables, tables_list, tokens, **mc):
    want_p = brute_predictive(graph, tables_list, tokens)
    np.testing.assert_allclose(want_p.sum(-1), 1.0, rtol=1e-12)
    logp = np.asarray(scoring.predictive_logprobs(graph, tables, tokens[:, :-1], **mc))
    assert logp.dtype == np.float64
    np.testing.assert_allclose(np.exp(logp), want_p, rtol=1e-9, atol=1e-14)
    scores = scoring.token_scores(graph, tables, tokens, **mc)
    want_nll = -np.log(np.take_along_axis(want_p, tokens[:, 1:, None], -1)[..., 0])
    want_h = -(want_p * np.log(want_p)).sum(-1)
    np.testing.assert_allclose(np.asarray(scores.nll), want_nll, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(scores.entropy), want_h, rtol=1e-9)
    return scores


@pytest.mark.parametrize("kind", ["chain", "feedback", "mixed"])
def test_predictive_and_entropy_match_brute_force(x64, kind):
    graph = structure(kind, "default", "product")
    tokens = all_sequences(graph.vocab_size, 4 if kind != "mixed" else 3)
    tables = draw_kernels(graph, graph_seed=3)
    scores = _check_against(graph, tables, [tables], tokens)
    # The token log-probs are entropy.py's, position by position.
    ref = -np.asarray(entropy.sequence_logprobs(graph, tables, tokens))
    np.testing.assert_allclose(np.asarray(scores.nll), ref, rtol=1e-12)
    # Over all sequences weighted by their probability, E[-log p(x_t)] = E[H_t] position by position.
    p_seq = np.exp(-np.asarray(scores.nll).sum(-1))
    np.testing.assert_allclose(
        p_seq @ np.asarray(scores.nll), p_seq @ np.asarray(scores.entropy), rtol=1e-10
    )


def test_context_graph_is_the_posterior_weighted_mixture(x64):
    graph = structure("feedback", "context", "fullrank")
    tokens = all_sequences(graph.vocab_size, 4)
    fixed = draw_kernels(graph, graph_seed=7)
    draws, seed = 3, 5
    sampled = entropy.context_draws(graph, draws, seed, jnp.float64)
    per_draw = [
        numpy_tables(merge(fixed, [None if c is None else c[n] for c in sampled]))
        for n in range(draws)
    ]
    scores = _check_against(graph, fixed, per_draw, tokens, mc_draws=draws, mc_seed=seed)
    res = entropy.sequence_entropy(
        graph, fixed, tokens, per_position=True, mc_draws=draws, mc_seed=seed
    )
    np.testing.assert_allclose(np.asarray(scores.nll), np.asarray(res.per_position), 1e-10)


def test_excess_nats_masks_and_weights():
    nll = jnp.array([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]])
    h = jnp.array([[0.5, 1.0, 1.0], [0.5, 0.0, 0.0]])
    mask = jnp.array([[False, True, True], [True, True, True]])
    ex = scoring.excess_nats(scoring.TokenScores(nll, h), mask)
    np.testing.assert_allclose(np.asarray(ex.per_sequence), [1.5, 1.0 / 3.0])
    np.testing.assert_allclose(float(ex.overall), (1.0 + 2.0 + 0.0 + 0.5 + 0.5) / 5)
    assert np.asarray(ex.tokens).tolist() == [2, 3]
    none = scoring.excess_nats(scoring.TokenScores(nll, h), jnp.zeros_like(mask))
    assert np.isnan(np.asarray(none.per_sequence)).all() and float(none.overall) == 0.0


def test_oracle_prefill_and_decode_match_the_full_pass():
    graph = structure("feedback", "default", "product")
    tables = draw_kernels(graph, graph_seed=1)
    oracle = scoring.OracleFilter(graph, tables)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, graph.vocab_size, (3, 9)).astype(np.int32)
    tokens[:, 0] = 0
    full = np.asarray(oracle.apply(None, jnp.asarray(tokens)))
    lengths = np.array([2, 5, 7], np.int32)
    padded = np.where(np.arange(9) < lengths[:, None], tokens, 1).astype(np.int32)
    logits, state = jax.jit(oracle.prefill)(None, jnp.asarray(padded), jnp.asarray(lengths))
    valid = np.arange(9) < lengths[:, None]
    np.testing.assert_allclose(np.asarray(logits)[valid], full[valid], atol=1e-6)
    step = jax.jit(oracle.decode)
    for k in range(2):
        pos = lengths + k
        logits, state = step(None, state, jnp.asarray(tokens[np.arange(3), pos]))
        np.testing.assert_allclose(np.asarray(logits), full[np.arange(3), pos], atol=1e-6)


def test_bad_inputs():
    graph = structure("chain", "default", "product")
    tables = draw_kernels(graph, graph_seed=1)
    with pytest.raises(ValueError, match="L >= 2"):
        scoring.token_scores(graph, tables, np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="integers"):
        scoring.predictive_logprobs(graph, tables, np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="expected 3 tables"):
        scoring.token_scores(graph, tables[:2], np.zeros((2, 3), np.int32))
