"""The NumPy references of `python -m gssm_jax.bench gssm` agree with the real sampler and forward."""

import itertools
import json
import math

import numpy as np
import pytest

from gssm_jax.benchmarks import gssm_speed as bench
from gssm_jax.gssm import entropy, kernels, sample
from gssm_jax.gssm.graph import parse_graph

FEEDBACK = {
    "A": dict(state_dim=2, alpha=1.0, mode="slow"),
    "B": dict(state_dim=3, alpha=1.0, parents=["A", "X"], mode="dead"),
    "X": dict(state_dim=3, alpha=1.0, parents=["A", "B"], observed=True, kernel_type="fullrank"),
}


def _brute_force_logp(graph, tables, x):
    """log p(x(1..T-1) | x(0) = 0) by summing over every hidden path (docs/spec.md section 6)."""
    dims = graph.hidden_dims
    total = 0.0
    for path in itertools.product(itertools.product(*(range(d) for d in dims)), repeat=len(x) - 1):
        z_prev, p = (0,) * len(dims), 1.0
        for t, z in enumerate(path, start=1):
            new = {n.name: v for n, v in zip(graph.hidden, z)}
            for i, node in enumerate(graph.hidden):
                idx = [z_prev[i]] + [x[t - 1] if q == "X" else new[q] for q in node.parents]
                p *= tables[i][(*idx, z[i])]
            p *= tables[-1][(*(new[q] for q in graph.observed.parents), x[t])]
            z_prev = z
        total += p
    return math.log(total)


def test_reference_forward_matches_brute_force():
    graph = parse_graph(FEEDBACK)
    tables = kernels.draw_kernels(graph, 1)
    seqs = [(0, *rest) for rest in itertools.product(range(3), repeat=3)]
    h_ref_B, steps = bench.reference_entropy(graph, tables, np.array(seqs))
    assert steps == 3
    brute = np.array([_brute_force_logp(graph, tables, s) for s in seqs])
    np.testing.assert_allclose(np.exp(brute).sum(), 1.0, rtol=1e-9)
    np.testing.assert_allclose(-3 * h_ref_B, brute, rtol=1e-9)


@pytest.mark.parametrize("name", ["exp1", "four"])
def test_reference_forward_matches_entropy_module(name):
    graph = parse_graph(bench.GRAPHS[name])
    tables = kernels.draw_kernels(graph, 0)
    tokens = sample.sample_tokens(graph, tables, 0, np.arange(4), 64)
    h_ref_B, _ = bench.reference_entropy(graph, tables, tokens)
    h_B = entropy.sequence_entropy(graph, kernels.as_device_tables(tables), tokens).per_sequence
    np.testing.assert_allclose(np.asarray(h_B), h_ref_B, atol=2e-5)


def test_reference_sampler_matches_sampler_distribution():
    graph = parse_graph(FEEDBACK)
    tables = kernels.draw_kernels(graph, 2)
    batch, seq_len = 256, 256
    ref_states, ref_tokens = bench.reference_sample(graph, tables, batch, seq_len, seed=0)
    states, tokens = (
        np.asarray(a)
        for a in sample.sample_hidden_and_tokens(graph, tables, 0, np.arange(batch), seq_len)
    )
    assert (ref_tokens[:, 0] == 0).all() and (ref_states[:, 0] == 0).all()

    def conditional_counts(s, x):
        # Each step's draws given their inputs: A | A; B | B, new A, previous x; x | new A, new B.
        now, nxt = np.s_[:, :-1], np.s_[:, 1:]
        index = {
            "A": (s[now][..., 0], s[nxt][..., 0]),
            "B": (s[now][..., 1], s[nxt][..., 0], x[now], s[nxt][..., 1]),
            "X": (s[nxt][..., 0], s[nxt][..., 1], x[nxt]),
        }
        out = {}
        for table, (name, idx) in zip(tables, index.items()):
            counts = np.zeros(table.shape)
            np.add.at(counts, idx, 1)
            out[name] = counts.reshape(-1, table.shape[-1])
        return out

    ours, ref = conditional_counts(states, tokens), conditional_counts(ref_states, ref_tokens)
    for name in ours:
        # Two-sample chi-square per input row (a 2 x S contingency table), summed over rows.
        both = ours[name] + ref[name]
        share = ours[name].sum(-1, keepdims=True) / np.maximum(both.sum(-1, keepdims=True), 1)
        expected = np.stack([both * share, both * (1 - share)])
        observed = np.stack([ours[name], ref[name]])
        keep = (expected >= 5).all(0)
        stat = ((observed - expected) ** 2 / np.where(expected > 0, expected, 1))[:, keep].sum()
        df = keep.sum() - keep.any(-1).sum()
        assert df >= 2, (name, df)
        # Wilson-Hilferty z-score: 4.5 is a p-value of about 3e-6 under a match.
        z = ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
        assert z < 4.5, (name, stat, df)


def test_bench_prints_json_rows(capsys):
    assert bench.main(["--graphs", "exp1", "--shapes", "4x64"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["bench"] for r in rows] == ["sample", "entropy"]
    for r in rows:
        assert r["graph"] == "exp1" and (r["batch"], r["seq_len"]) == (4, 64)
        assert r["tokens_per_s"] > 0 and r["reference_tokens_per_s"] > 0 and r["speedup"] > 0
        assert r["machine"]["cpu_count"] >= 1
    assert rows[1]["max_abs_diff_vs_reference"] < 1e-4


def test_dispatch_rejects_unknown_bench(capsys):
    from gssm_jax.bench import main

    assert main(["nope"]) == 2
    assert "gssm|train|data" in capsys.readouterr().err
