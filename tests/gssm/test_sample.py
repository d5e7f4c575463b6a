"""The sampler: stream identity under any batching, docs/spec.md section 2 semantics, context kernels."""

import numpy as np
import pytest

from gssm_jax.gssm import kernels, sample
from gssm_jax.gssm.graph import parse_graph

# Every rule of a step at once: a slow root, a dead product node reading a hidden parent and the
# previous token, a fullrank node, a product X with two parents.
MIXED = {
    "A": dict(state_dim=3, alpha=1.0, mode="slow"),
    "B": dict(state_dim=3, alpha=1.0, parents=["A", "X"], mode="dead"),
    "C": dict(state_dim=2, alpha=1.0, parents=["B"], kernel_type="fullrank"),
    "X": dict(state_dim=4, alpha=1.0, parents=["B", "C"], observed=True),
}
CONTEXT = {  # X feeds no hidden node: the hidden chain is scanned alone, tokens drawn after
    "Z": dict(state_dim=3, alpha=0.3, mode="context"),
    "X": dict(
        state_dim=3, alpha=0.3, parents=["Z"], observed=True, kernel_type="fullrank", mode="context"
    ),
}
CHAIN = {
    "Z1": dict(state_dim=5, alpha=0.2),
    "Z2": dict(state_dim=2, alpha=0.2, parents=["Z1"], kernel_type="fullrank"),
    "X": dict(state_dim=6, alpha=0.2, parents=["Z1", "Z2"], observed=True),
}
T = 512  # one length for the whole file, so compiled samplers are shared between tests


def _setup(spec, graph_seed=0):
    graph = parse_graph(spec)
    return graph, kernels.draw_kernels(graph, graph_seed)


@pytest.mark.parametrize("spec", [MIXED, CONTEXT, CHAIN], ids=["mixed", "context", "chain"])
def test_stream_is_independent_of_batching(spec):
    graph, tables = _setup(spec)
    whole = np.asarray(sample.sample_tokens(graph, tables, 7, np.arange(32), T))
    quarters = [
        sample.sample_tokens(graph, tables, 7, np.arange(i, i + 8), T) for i in range(0, 32, 8)
    ]
    np.testing.assert_array_equal(np.concatenate(quarters), whole)
    # A 4-process split, each process taking every 4th index.
    for p in range(4):
        part = sample.sample_tokens(graph, tables, 7, np.arange(p, 32, 4), T)
        np.testing.assert_array_equal(part, whole[p::4])
    perm = np.random.default_rng(0).permutation(32)
    np.testing.assert_array_equal(sample.sample_tokens(graph, tables, 7, perm, T), whole[perm])
    device = kernels.as_device_tables(tables)  # float32 device tables give the same stream
    np.testing.assert_array_equal(sample.sample_tokens(graph, device, 7, np.arange(32), T), whole)


def test_shorter_sequence_is_a_prefix_and_seeds_differ():
    graph, tables = _setup(MIXED)
    idx = np.arange(8)
    long = np.asarray(sample.sample_tokens(graph, tables, 3, idx, T))
    np.testing.assert_array_equal(sample.sample_tokens(graph, tables, 3, idx, 9), long[:, :9])
    other = np.asarray(sample.sample_tokens(graph, tables, 4, idx, T))
    assert (other != long).mean() > 0.3
    assert len({tuple(row) for row in long}) == len(idx)


@pytest.mark.parametrize("spec", [MIXED, CONTEXT, CHAIN], ids=["mixed", "context", "chain"])
def test_all_nodes_start_in_state_zero(spec):
    graph, tables = _setup(spec)
    states, tokens = sample.sample_hidden_and_tokens(graph, tables, 0, np.arange(32), T)
    assert tokens.shape == (32, T) and tokens.dtype == np.int32
    assert states.shape == (32, T, len(graph.hidden)) and states.dtype == np.int32
    assert not np.asarray(tokens[:, 0]).any() and not np.asarray(states[:, 0]).any()
    assert np.asarray(tokens[:, 1:]).any()
    assert int(tokens.max()) < graph.vocab_size
    for k, node in enumerate(graph.hidden):
        assert int(states[..., k].max()) < node.state_dim


def _chi2_z(counts, probs, min_df):
    """Pearson chi-square of counts (*inputs, S) against rows probs, over cells with expected >= 5,
    as a z-score (Wilson-Hilferty): about N(0, 1) under a fit; 4.5 is a p-value of about 3e-6."""
    n = counts.sum(-1, keepdims=True)
    expected = n * probs
    keep = expected >= 5
    stat = ((counts - expected) ** 2 / np.where(keep, expected, 1))[keep].sum()
    df = keep.sum() - (keep.any(-1)).sum()
    assert df >= min_df, "too few usable cells for the test to mean anything"
    return ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / np.sqrt(2 / (9 * df))


def _counts(table, *index):
    counts = np.zeros(table.shape)
    np.add.at(counts, index, 1)
    return counts


def test_transition_frequencies_match_kernels():
    graph, tables = _setup(MIXED, graph_seed=3)
    states, tokens = sample.sample_hidden_and_tokens(graph, tables, 11, np.arange(256), T)
    a, b, c = (np.asarray(states[..., k]) for k in range(3))
    x = np.asarray(tokens)
    now, nxt = np.s_[:, :-1], np.s_[:, 1:]
    ta, tb, tc, tx = tables
    # z(t+1) | own z(t), new hidden parents z(t+1), previous token x(t); x(t+1) | new parents.
    checks = {
        "A": (ta, (a[now], a[nxt])),
        "B": (tb, (b[now], a[nxt], x[now], b[nxt])),
        "C": (tc, (c[now], b[nxt], c[nxt])),
        "X": (tx, (b[nxt], c[nxt], x[nxt])),
    }
    for name, (table, index) in checks.items():
        z = _chi2_z(_counts(table, *index), table, min_df=2)
        assert z < 4.5, f"{name}: transition counts misfit the kernel (z = {z:.1f})"
    # Controls: the same test must reject the wrong reading of a parent.
    wrong_token = _chi2_z(_counts(tb, b[now], a[nxt], x[nxt], b[nxt]), tb, min_df=2)
    wrong_parent = _chi2_z(_counts(tc, c[now], b[now], c[nxt]), tc, min_df=2)
    assert wrong_token > 10 and wrong_parent > 10, (wrong_token, wrong_parent)


def test_context_kernels_are_redrawn_per_sequence():
    graph, tables = _setup(CONTEXT)
    idx = np.arange(32)
    states, tokens, seq_tables = sample.sample_with_kernels(graph, tables, 5, idx, T)
    z, x = np.asarray(states[..., 0]), np.asarray(tokens)
    tz_B, tx_B = (np.asarray(t, np.float64) for t in seq_tables)
    assert tz_B.shape == (32, 3, 3) and tx_B.shape == (32, 3, 3)
    fits, misfits = [], []
    for i in range(len(idx)):
        counts = _counts(tz_B[i], z[i, :-1], z[i, 1:])
        counts_x = _counts(tx_B[i], z[i, 1:], x[i, 1:])
        both = np.concatenate([counts, counts_x])
        fits.append(_chi2_z(both, np.concatenate([tz_B[i], tx_B[i]]), 1))
        other = (i + 1) % len(idx)
        misfits.append(_chi2_z(both, np.concatenate([tz_B[other], tx_B[other]]), 1))
    # Each sequence follows its own kernels, and not those of its neighbour.
    assert max(fits) < 4.5, fits
    assert min(misfits) > 10, misfits


def test_bad_inputs_name_the_value():
    graph, tables = _setup(MIXED)
    with pytest.raises(ValueError, match="data_seed"):
        sample.sample_tokens(graph, tables, -1, np.arange(2), 8)
    with pytest.raises(ValueError, match="seq_idx_B"):
        sample.sample_tokens(graph, tables, 0, np.arange(4).reshape(2, 2), 8)
    with pytest.raises(ValueError, match="seq_len"):
        sample.sample_tokens(graph, tables, 0, np.arange(2), 1)
    with pytest.raises(ValueError, match="'B'"):
        sample.sample_tokens(graph, (tables[0], tables[0], *tables[2:]), 0, np.arange(2), 8)
