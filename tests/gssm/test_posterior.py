"""Filtering and smoothing marginals against brute-force path enumeration, and against the sampler."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_entropy import all_sequences, hidden_paths, path_joints, structure

from gssm_jax.gssm import posterior, sample
from gssm_jax.gssm.graph import Graph, parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def brute_force_marginals(graph: Graph, tables, tokens_NxT: np.ndarray):
    """(filtering, smoothing): per hidden node an (N, T, d) array, from p(path, tokens) of every
    hidden path. Filtering at t sums the joint of the first t steps over all paths (each prefix is
    counted once per suffix, the same number of times for all, so normalising removes it)."""
    seq_len = tokens_NxT.shape[1]
    paths_PxTxN = hidden_paths(graph, seq_len)
    filtering = [np.zeros((len(tokens_NxT), seq_len, d)) for d in graph.hidden_dims]

    def marginal(weights_PxN, t, i, d):
        onehot_PxD = paths_PxTxN[:, t, i, None] == np.arange(d)
        m_NxD = weights_PxN.T @ onehot_PxD
        return m_NxD / m_NxD.sum(-1, keepdims=True)

    for t, prob_PxN in enumerate(path_joints(graph, tables, paths_PxTxN, tokens_NxT)):
        for i, d in enumerate(graph.hidden_dims):
            filtering[i][:, t] = marginal(prob_PxN, t, i, d)
    smoothing = [
        np.stack([marginal(prob_PxN, t, i, d) for t in range(seq_len)], axis=1)
        for i, d in enumerate(graph.hidden_dims)
    ]
    return filtering, smoothing


CASES = [
    ("chain", "default", "product"),
    ("feedback", "dead", "fullrank"),
    ("feedback", "slow", "product"),
    ("mixed", "default", "product"),
    ("wide", "dead", "product"),
]


@pytest.mark.parametrize("kind,mode,kernel_type", CASES)
def test_marginals_match_brute_force(x64, kind, mode, kernel_type):
    graph = structure(kind, mode, kernel_type)
    seq_len = {"mixed": 4, "wide": 3}.get(kind, 4)
    tokens = all_sequences(graph.vocab_size, seq_len)
    tables = draw_kernels(graph, graph_seed=11)
    want_f, want_s = brute_force_marginals(graph, tables, tokens)
    for method in ("dense", "factored"):
        got_f = posterior.filtering_marginals(graph, tables, tokens, method=method)
        got_s = posterior.smoothing_marginals(graph, tables, tokens, method=method)
        assert len(got_f) == len(got_s) == len(graph.hidden)
        for i in range(len(graph.hidden)):
            assert got_f[i].dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(got_f[i]), want_f[i], atol=1e-6, rtol=0)
            np.testing.assert_allclose(np.asarray(got_s[i]), want_s[i], atol=1e-6, rtol=0)


def copy_graph() -> tuple[Graph, tuple]:
    """Z1 copies the previous token (a 0/1 kernel), Z2 is an ordinary node: given the tokens, Z1(t)
    is x(t-1) with certainty, Z2 is uncertain."""
    graph = parse_graph(
        {
            "Z1": dict(state_dim=3, alpha=1.0, parents=["X"]),
            "Z2": dict(state_dim=2, alpha=0.5),
            "X": dict(state_dim=3, alpha=0.5, parents=["Z1", "Z2"], observed=True),
        }
    )
    tables = list(draw_kernels(graph, graph_seed=2))
    own, x_prev, new = np.meshgrid(np.arange(3), np.arange(3), np.arange(3), indexing="ij")
    tables[0] = (new == x_prev).astype(np.float64)  # p(z1' | z1, x_prev)
    return graph, tuple(tables)


def test_node_deterministic_given_tokens(x64):
    graph, tables = copy_graph()
    tokens = all_sequences(3, 4)
    want_f, want_s = brute_force_marginals(graph, tables, tokens)
    copy = np.eye(3)[tokens[:, :-1]]  # one-hot of x(t-1), t = 1..T-1
    for method in ("dense", "factored"):
        filt = posterior.filtering_marginals(graph, tables, tokens, method=method)
        smooth = posterior.smoothing_marginals(graph, tables, tokens, method=method)
        for got, want in ((filt, want_f), (smooth, want_s)):
            np.testing.assert_allclose(np.asarray(got[0])[:, 1:], copy, atol=1e-12)
            for i in range(2):
                np.testing.assert_allclose(np.asarray(got[i]), want[i], atol=1e-6, rtol=0)
        assert np.asarray(filt[1])[:, 1:].max(-1).min() < 0.9  # Z2 stays uncertain
    states, sampled = sample.sample_hidden_and_tokens(graph, tables, 0, np.arange(16), 12)
    np.testing.assert_array_equal(np.asarray(states)[:, 1:, 0], np.asarray(sampled)[:, :-1])


def test_posterior_is_calibrated_against_sampled_states():
    """E[p(z_i(t) = v | x)] = P(z_i(t) = v): the mean posterior over sampled sequences matches the
    frequency of the sampler's true states (both read docs/spec.md section 2 the same way)."""
    graph = structure("feedback", "default", "product")
    tables = as_device_tables(draw_kernels(graph, graph_seed=4))
    n = 4000
    states, tokens = sample.sample_hidden_and_tokens(graph, tables, 5, np.arange(n), 6)
    states = np.asarray(states)
    for marg in (
        posterior.filtering_marginals(graph, tables, tokens),
        posterior.smoothing_marginals(graph, tables, tokens),
    ):
        for i, d in enumerate(graph.hidden_dims):
            freq_TxD = (states[:, :, i, None] == np.arange(d)).mean(0)
            mean_TxD = np.asarray(marg[i]).mean(0)
            sd = np.sqrt(freq_TxD * (1 - freq_TxD) / n) + 1e-3
            np.testing.assert_array_less(np.abs(mean_TxD - freq_TxD), 5 * sd)


def test_float32_dense_and_factored_agree_on_long_sequences():
    graph = structure("mixed", "default", "product")
    tables = as_device_tables(draw_kernels(graph, graph_seed=1))
    _, tokens = sample.sample_hidden_and_tokens(graph, tables, 0, np.arange(2), 256)
    for fn in (posterior.filtering_marginals, posterior.smoothing_marginals):
        dense, factored = (fn(graph, tables, tokens, method=m) for m in ("dense", "factored"))
        for d, f in zip(dense, factored):
            assert d.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(f)))
            np.testing.assert_allclose(np.asarray(f), np.asarray(d), atol=1e-4)
            np.testing.assert_allclose(np.asarray(f).sum(-1), 1.0, atol=1e-5)


def test_bad_inputs():
    graph = structure("single", "context", "product")
    tokens = np.zeros((2, 5), np.int32)
    with pytest.raises(posterior.ContextPosteriorError, match="context nodes \\['Z1'\\]"):
        posterior.filtering_marginals(graph, draw_kernels(graph, 0), tokens)
    graph = structure("single", "default", "product")
    tables = draw_kernels(graph, 0)
    with pytest.raises(ValueError, match="T >= 2"):
        posterior.smoothing_marginals(graph, tables, tokens[:, :1])
    with pytest.raises(ValueError, match="method"):
        posterior.filtering_marginals(graph, tables, tokens, method="fast")
    with pytest.raises(ValueError, match="tables"):
        posterior.filtering_marginals(graph, tables[:1], tokens)
