"""Generation loops on models with the prefill/decode interface: the true process itself (exact
conditionals from the forward filter) and a random bigram model, scored under the true process."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.config import four_graph
from gssm_jax.gssm import scoring
from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels
from gssm_jax.gssm.sample import sample_tokens
from gssm_jax.inference import decoding

GRAPH = parse_graph(four_graph())
TABLES = as_device_tables(draw_kernels(GRAPH, 0))


@functools.cache
def oracle() -> scoring.OracleFilter:
    return scoring.OracleFilter(GRAPH, TABLES)


class Bigram:
    """A random model: logits depend on the previous token only, through the table in params."""

    def apply(self, table, tokens_BxL):
        return table[tokens_BxL]

    def prefill(self, table, tokens_BxL, lengths_B, cache_len=None):
        return table[tokens_BxL], None

    def decode(self, table, cache, tokens_B):
        return table[tokens_B], cache


BIGRAM_TABLE = 2.0 * jax.random.normal(jax.random.key(3), (GRAPH.vocab_size, GRAPH.vocab_size))


def prompts(num: int, max_len: int, seed: int = 11):
    tokens = np.asarray(sample_tokens(GRAPH, TABLES, seed, np.arange(num), max_len))
    lengths = np.linspace(1, max_len, num).round().astype(np.int32)
    tokens = np.where(np.arange(max_len) < lengths[:, None], tokens, 0)
    return jnp.asarray(tokens, jnp.int32), jnp.asarray(lengths)


@functools.cache
def jitted(model: str, mode: str, max_new: int, temperature: float = 1.0, keep_logits=False):
    lm = oracle() if model == "oracle" else Bigram()
    gen = decoding.generate_cached if mode == "cached" else decoding.generate_recompute
    fn = functools.partial(gen, lm)
    kw = dict(temperature=temperature, keep_logits=keep_logits)
    return jax.jit(lambda params, p, lengths, keys: fn(params, p, lengths, keys, max_new, **kw))


def run(model, params, mode, p, lengths, seed, max_new, **kw):
    keys = decoding.row_keys(seed, jnp.arange(p.shape[0]))
    return jitted(model, mode, max_new, **kw)(params, p, lengths, keys)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_cached_equals_recompute_on_the_true_process(temperature):
    p, lengths = prompts(6, 10)
    kw = dict(temperature=temperature, keep_logits=True)
    cached = run("oracle", None, "cached", p, lengths, 0, 12, **kw)
    full = run("oracle", None, "recompute", p, lengths, 0, 12, **kw)
    np.testing.assert_array_equal(np.asarray(cached.tokens), np.asarray(full.tokens))
    np.testing.assert_allclose(np.asarray(cached.logits), np.asarray(full.logits), atol=1e-5)
    # The logits are the exact predictive of each joined row at each new position.
    joined = decoding.join(p, lengths, cached.tokens)
    exact = np.asarray(scoring.predictive_logprobs(GRAPH, TABLES, joined))
    cols = np.asarray(lengths)[:, None] - 1 + np.arange(12)
    want = exact[np.arange(6)[:, None], cols]
    np.testing.assert_allclose(np.asarray(cached.logits), want, atol=1e-5)


def test_same_seed_same_samples_whatever_the_batch():
    p, lengths = prompts(8, 6)
    a = run("oracle", None, "cached", p, lengths, 5, 10).tokens
    b = run("oracle", None, "cached", p, lengths, 5, 10).tokens
    c = run("oracle", None, "cached", p, lengths, 6, 10).tokens
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    # Rows 2..5 alone (same sequence ids) draw the same completions.
    keys = decoding.row_keys(5, jnp.arange(2, 6))
    sub = jitted("oracle", "cached", 10)(None, p[2:6], lengths[2:6], keys)
    np.testing.assert_array_equal(np.asarray(sub.tokens), np.asarray(a)[2:6])


def test_top_k_and_temperature_give_their_distributions():
    logits_V = jnp.array([2.0, 1.5, 0.0, -1.0, 1.0, -3.0])
    n = 40_000
    keys = decoding.row_keys(0, jnp.arange(n))
    rows = jnp.broadcast_to(logits_V, (n, 6))
    for temperature, top_k in [(1.0, 0), (0.5, 0), (2.0, 3), (1.0, 1)]:
        draws = np.asarray(decoding.sample_logits(keys, rows, temperature, top_k))
        freq = np.bincount(draws, minlength=6) / n
        scaled = np.asarray(logits_V) / temperature
        if top_k:
            scaled[np.argsort(-scaled)[top_k:]] = -np.inf
        want = np.exp(scaled - scaled.max())
        want /= want.sum()
        np.testing.assert_allclose(freq, want, atol=0.01, err_msg=f"T={temperature} k={top_k}")
        assert set(np.flatnonzero(freq)) <= set(np.flatnonzero(want))
    greedy = decoding.sample_logits(keys[:3], rows[:3], 0.0, 0)
    assert np.asarray(greedy).tolist() == [0, 0, 0]


def test_planted_perfect_model_has_small_excess_and_a_random_model_a_large_one():
    p, lengths = prompts(64, 24, seed=21)
    max_new = 32

    def excess(model, params):
        new = run(model, params, "cached", p, lengths, 1, max_new).tokens
        joined = decoding.join(p, lengths, new)
        scores = scoring.token_scores(GRAPH, TABLES, joined)
        mask = decoding.completion_mask(lengths, max_new, joined.shape[1])
        return scoring.excess_nats(scores, mask)

    perfect = excess("oracle", None)
    assert np.asarray(perfect.tokens).tolist() == [max_new] * 64
    assert abs(float(perfect.overall)) < 0.1, float(perfect.overall)
    random = excess("bigram", BIGRAM_TABLE)
    assert float(random.overall) > 1.0, float(random.overall)
    assert np.median(np.asarray(random.per_sequence)) > np.max(np.asarray(perfect.per_sequence))
