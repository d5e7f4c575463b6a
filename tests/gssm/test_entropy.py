"""Forward algorithm against brute-force path enumeration, dense against factored, stability."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gssm_jax.gssm import entropy, sample
from gssm_jax.gssm.graph import KERNEL_TYPES, MODES, Graph, parse_graph
from gssm_jax.gssm.kernels import as_device_tables, draw_kernels, merge


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def structure(kind: str, mode: str, kernel_type: str) -> Graph:
    """Tiny graphs: `single` (docs/spec.md section 6), `chain` (hidden parent, two parents on X), `feedback` (X
    feeds a hidden node). `mode` goes on every hidden node that allows it (slow: parentless only);
    `context` goes on Z1, and on X instead in `chain`. `mixed` and `wide` have every kind of node
    operation between them."""
    kt = dict(kernel_type=kernel_type)
    if kind == "single":
        spec = {
            "Z1": dict(state_dim=2, alpha=0.7),
            "X": dict(state_dim=2, alpha=0.7, parents=["Z1"]),
        }
    elif kind == "chain":
        spec = {
            "Z1": dict(state_dim=2, alpha=0.5),
            "Z2": dict(state_dim=3, alpha=0.5, parents=["Z1"]),
            "X": dict(state_dim=3, alpha=0.5, parents=["Z2", "Z1"]),
        }
    elif kind == "feedback":
        spec = {
            "Z1": dict(state_dim=2, alpha=0.5),
            "Z2": dict(state_dim=2, alpha=0.5, parents=["X", "Z1"]),
            "X": dict(state_dim=3, alpha=0.5, parents=["Z2", "Z1"]),
        }
    elif kind == "wide":  # a node contracted by a dot (> 8 states), a last node of 16 states
        spec = {
            "Z1": dict(state_dim=9, alpha=0.5, parents=["X"]),
            "Z2": dict(state_dim=3, alpha=0.5, parents=["Z1"]),
            "Z3": dict(state_dim=16, alpha=0.5),
            "X": dict(state_dim=2, alpha=0.5, parents=["Z2", "Z3", "Z1"]),
        }
    else:  # mixed: a node reading X and a hidden parent, then a closed trailing block
        spec = {
            "Z1": dict(state_dim=2, alpha=0.5),
            "Z2": dict(state_dim=3, alpha=0.5, parents=["Z1", "X"]),
            "Z3": dict(state_dim=2, alpha=0.5),
            "Z4": dict(state_dim=2, alpha=0.5, parents=["Z3"]),
            "X": dict(state_dim=2, alpha=0.5, parents=["Z4", "Z2"]),
        }
    spec["X"].update(observed=True)
    for name, fields in spec.items():
        fields.update(kt)
        if mode == "context":
            if name == ("X" if kind == "chain" else "Z1"):
                fields["mode"] = "context"
        elif name != "X" and (mode != "slow" or not fields.get("parents")):
            fields["mode"] = mode
    return parse_graph(spec)


def hidden_paths(graph: Graph, seq_len: int) -> np.ndarray:
    """Every hidden path from the all-zero start, (S^(T-1), T, hidden nodes)."""
    states = list(itertools.product(*[range(d) for d in graph.hidden_dims]))
    paths = np.array(list(itertools.product(states, repeat=seq_len - 1)), np.int64)
    return np.concatenate([np.zeros_like(paths[:, :1]), paths], axis=1)


def path_joints(graph: Graph, tables, paths_PxTxN: np.ndarray, tokens_NxT: np.ndarray):
    """Yields p(path(0..t), x(1..t) | x(0)) of every path and sequence, (P, N), for t = 0..T-1.

    Each factor of docs/spec.md section 2 is looked up in the node tables; numpy only vectorises over
    paths and sequences.
    """
    index = {n.name: i for i, n in enumerate(graph.hidden)}
    x_name = graph.observed.name
    tokens = tokens_NxT[None]
    prob_PxN = np.ones((len(paths_PxTxN), len(tokens_NxT)))
    yield prob_PxN
    for t in range(1, tokens_NxT.shape[1]):
        z_old, z_new = paths_PxTxN[:, t - 1, :, None], paths_PxTxN[:, t, :, None]
        for i, node in enumerate(graph.hidden):
            inputs = [
                tokens[:, :, t - 1] if q == x_name else z_new[:, index[q]] for q in node.parents
            ]
            prob_PxN = prob_PxN * np.asarray(tables[i])[(z_old[:, i], *inputs, z_new[:, i])]
        inputs = [z_new[:, index[q]] for q in graph.observed.parents]
        prob_PxN = prob_PxN * np.asarray(tables[-1])[(*inputs, tokens[:, :, t])]
        yield prob_PxN


def brute_force_probs(graph: Graph, tables, tokens_NxT: np.ndarray) -> np.ndarray:
    """p(x(1..T-1) | x(0)) per sequence: the sum over every hidden path (all S^(T-1) of them,
    enumerated explicitly) of p(path) p(tokens | path)."""
    paths_PxTxN = hidden_paths(graph, tokens_NxT.shape[1])
    *_, prob_PxN = path_joints(graph, tables, paths_PxTxN, tokens_NxT)
    return prob_PxN.sum(0)


def all_sequences(vocab: int, seq_len: int) -> np.ndarray:
    rest = np.array(list(itertools.product(range(vocab), repeat=seq_len - 1)), np.int32)
    return np.concatenate([np.zeros((len(rest), 1), np.int32), rest], axis=1)


def numpy_tables(tables):
    return [None if t is None else np.asarray(t, np.float64) for t in tables]


# Each case compiles two forward passes and context draws compile slowly (jax.random.loggamma,
# seconds per Dirichlet call site), so the structures are shared out: every fixed mode and kernel
# type on `chain` and `feedback`, context on three of them, `single` in the SPEC check below.
CONTEXT_CASES = {("single", "product"), ("feedback", "fullrank"), ("chain", "fullrank")}
CASES = [
    (kind, mode, kt) for kind in ("chain", "feedback") for mode in MODES[:3] for kt in KERNEL_TYPES
]
CASES += [(kind, "context", kt) for kind, kt in sorted(CONTEXT_CASES)]
CASES += [
    ("mixed", "default", "product"),
    ("mixed", "dead", "fullrank"),
    ("wide", "dead", "product"),
]
MC_DRAWS, MC_SEED = 3, 5


@pytest.mark.parametrize("kind,mode,kernel_type", CASES)
def test_forward_matches_brute_force(x64, kind, mode, kernel_type):
    graph = structure(kind, mode, kernel_type)
    seq_len = {"single": 3, "mixed": 3, "wide": 3}.get(kind, 4)
    tokens = all_sequences(graph.vocab_size, seq_len)
    fixed = draw_kernels(graph, graph_seed=7)
    if mode != "context":
        brute = brute_force_probs(graph, fixed, tokens)
        for method in ("dense", "factored"):
            logp = np.asarray(entropy.sequence_logprobs(graph, fixed, tokens, method=method))
            assert logp.dtype == np.float64
            np.testing.assert_allclose(np.exp(logp.sum(-1)), brute, rtol=1e-10, atol=0)
            assert math.isclose(np.exp(logp.sum(-1)).sum(), 1.0, rel_tol=1e-12)
        return
    draws, seed = MC_DRAWS, MC_SEED
    sampled = entropy.context_draws(graph, draws, seed, jnp.float64)
    per_draw = [
        numpy_tables(merge(fixed, [None if c is None else c[n] for c in sampled]))
        for n in range(draws)
    ]
    prefix_probs = np.array(
        [  # (T-1, sequences): mean over draws of p(x(1..t))
            np.mean(
                [brute_force_probs(graph, tabs, tokens[:, : k + 2]) for tabs in per_draw], axis=0
            )
            for k in range(seq_len - 1)
        ]
    )
    assert math.isclose(prefix_probs[-1].sum(), 1.0, rel_tol=1e-12)
    want_pos = -np.diff(np.log(prefix_probs), axis=0, prepend=0.0).T
    for method in ("dense", "factored"):
        res = entropy.sequence_entropy(
            graph, fixed, tokens, method=method, per_position=True, mc_draws=draws, mc_seed=seed
        )
        assert res.mc_draws == draws
        np.testing.assert_allclose(np.asarray(res.per_position), want_pos, rtol=1e-9, atol=1e-12)
        want = -np.log(prefix_probs[-1]) / (seq_len - 1)
        np.testing.assert_allclose(np.asarray(res.per_sequence), want, rtol=1e-10)


def test_spec_worked_check(x64):
    """docs/spec.md section 6: one hidden node and X, both 2 states, T = 3: 2^2 hidden paths."""
    graph = structure("single", "default", "product")
    tables = draw_kernels(graph, graph_seed=0)
    z, x = tables
    for tokens in all_sequences(2, 3):
        want = sum(
            z[0, a] * x[a, tokens[1]] * z[a, b] * x[b, tokens[2]]
            for a in range(2)
            for b in range(2)
        )
        got = entropy.sequence_entropy(graph, tables, tokens[None]).per_sequence
        assert math.isclose(float(got[0]), -math.log(want) / 2, rel_tol=1e-12)


def random_graph(rng: np.random.Generator) -> Graph:
    """A random valid graph: 1-4 hidden nodes of 2-4 states, random DAG, X sometimes feeding."""
    n = int(rng.integers(1, 5))
    spec = {}
    for i in range(n):
        earlier = [f"Z{j}" for j in range(i) if rng.random() < 0.5]
        if rng.random() < 0.3:
            earlier.append("X")
        spec[f"Z{i}"] = dict(
            state_dim=int(rng.integers(2, 5)),
            alpha=float(rng.choice([0.05, 0.3, 1.0])),
            parents=earlier,
            kernel_type=str(rng.choice(KERNEL_TYPES)),
            mode=str(rng.choice(["default", "dead"])),
        )
    x_parents = [f"Z{i}" for i in range(n) if i == n - 1 or rng.random() < 0.5]
    spec["X"] = dict(state_dim=int(rng.integers(2, 9)), alpha=0.2, parents=x_parents, observed=True)
    return parse_graph(spec)


@pytest.mark.parametrize("seed,seq_len", [(0, 8192), (8, 512), ("mixed", 2048), ("wide", 1024)])
def test_dense_and_factored_agree_float32(seed, seq_len):
    named = isinstance(seed, str)
    rng = np.random.default_rng(0 if named else seed)
    graph = structure(seed, "default", "fullrank") if named else random_graph(rng)
    tables = as_device_tables(draw_kernels(graph, graph_seed=1))
    tokens = rng.integers(0, graph.vocab_size, (3, seq_len)).astype(np.int32)
    tokens[:, 0] = 0
    dense = entropy.sequence_entropy(graph, tables, tokens, method="dense").per_sequence
    factored = entropy.sequence_entropy(graph, tables, tokens, method="factored").per_sequence
    assert dense.dtype == jnp.float32 and factored.dtype == jnp.float32
    assert np.all(np.isfinite(dense)) and np.all(np.isfinite(factored))
    np.testing.assert_allclose(np.asarray(factored), np.asarray(dense), rtol=1e-5)


def test_float32_matches_float64_on_long_sequences(x64):
    graph = structure("feedback", "default", "product")
    fixed = draw_kernels(graph, graph_seed=3)
    tokens = np.random.default_rng(0).integers(0, graph.vocab_size, (2, 8192)).astype(np.int32)
    tokens[:, 0] = 0
    h64 = entropy.sequence_entropy(graph, fixed, tokens, method="factored").per_sequence
    h32 = entropy.sequence_entropy(
        graph, as_device_tables(fixed, jnp.float32), tokens, method="factored"
    ).per_sequence
    assert h64.dtype == jnp.float64 and h32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(h32), np.asarray(h64), rtol=1e-5)


def test_per_position_and_result_fields():
    graph = structure("chain", "dead", "fullrank")
    tables = draw_kernels(graph, graph_seed=1)
    tokens = np.random.default_rng(1).integers(0, 3, (4, 50)).astype(np.int32)
    res = entropy.sequence_entropy(graph, tables, tokens, per_position=True)
    assert res.mc_draws is None
    assert res.per_position.shape == (4, 49)
    np.testing.assert_allclose(res.per_position.mean(-1), res.per_sequence, rtol=1e-6)
    logp = entropy.sequence_logprobs(graph, tables, tokens)
    np.testing.assert_allclose(-logp, res.per_position, rtol=1e-6)
    assert entropy.sequence_entropy(graph, tables, tokens).per_position is None


def test_make_entropy_fn_is_jittable_and_matches():
    graph = structure("feedback", "default", "product")
    tables = as_device_tables(draw_kernels(graph, graph_seed=2))
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 3, (4, 32)), jnp.int32)
    fn = jax.jit(entropy.make_entropy_fn(graph, 32))
    want = entropy.sequence_entropy(graph, tables, tokens).per_sequence
    np.testing.assert_allclose(fn(tables, tokens), want, rtol=1e-6)
    with pytest.raises(ValueError, match="length"):
        fn(tables, tokens[:, :16])


def test_make_entropy_fn_monte_carlo(x64):
    """Context graphs: the same draws as `sequence_entropy` with the same mc_draws and mc_seed."""
    graph = structure("feedback", "context", "fullrank")
    tables = draw_kernels(graph, graph_seed=2)
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 3, (4, 32)), jnp.int32)
    fn = jax.jit(entropy.make_entropy_fn(graph, 32, mc_draws=MC_DRAWS, mc_seed=MC_SEED))
    got = fn(tables, tokens)
    res = entropy.sequence_entropy(graph, tables, tokens, mc_draws=MC_DRAWS, mc_seed=MC_SEED)
    assert got.dtype == jnp.float64 and res.mc_draws == MC_DRAWS
    np.testing.assert_allclose(got, res.per_sequence, rtol=1e-12)
    h_B, stderr_B = jax.jit(
        entropy.make_entropy_fn(graph, 32, mc_draws=MC_DRAWS, mc_seed=MC_SEED, stderr=True)
    )(tables, tokens)
    np.testing.assert_allclose(h_B, res.per_sequence, rtol=1e-12)
    np.testing.assert_allclose(stderr_B, res.stderr, rtol=1e-12)


def test_monte_carlo_stderr_predicts_the_spread_over_seeds(x64):
    """The delta-method standard error against the sd of the estimate over 40 independent sets of
    draws (short sequences, so no single draw dominates)."""
    graph = structure("feedback", "context", "fullrank")
    tables = draw_kernels(graph, graph_seed=2)
    tokens = sample.sample_tokens(graph, as_device_tables(tables), 0, np.arange(6), 6)
    runs = [
        entropy.sequence_entropy(graph, tables, tokens, mc_draws=32, mc_seed=s) for s in range(40)
    ]
    spread_B = np.std([r.per_sequence for r in runs], axis=0, ddof=1)
    predicted_B = np.mean([r.stderr for r in runs], axis=0)
    assert np.all(predicted_B > 0)
    np.testing.assert_allclose(spread_B / predicted_B, 1.0, atol=0.35)
    fixed = structure("feedback", "default", "product")
    assert entropy.sequence_entropy(fixed, draw_kernels(fixed, 2), tokens).stderr is None


def test_auto_choice_and_large_graph_memory():
    exp1 = parse_graph(
        {
            "Z1": dict(state_dim=64, alpha=1e-3),
            "X": dict(state_dim=32, alpha=1e-3, parents=["Z1"], observed=True),
        }
    )
    assert entropy.choose_method(exp1) == "dense"
    spec = {f"Z{i}": dict(state_dim=4, alpha=0.05) for i in range(1, 9)}
    spec["X"] = dict(state_dim=64, alpha=0.05, parents=list(spec), observed=True)
    eight = parse_graph(spec)
    assert entropy.choose_method(eight) == "factored"
    with pytest.raises(ValueError, match="factored"):
        entropy.sequence_entropy(
            eight, draw_kernels(eight, 0), np.zeros((1, 4), np.int32), method="dense"
        )
    tables = as_device_tables(draw_kernels(eight, 0))
    tokens = jax.ShapeDtypeStruct((16, 2048), jnp.int32)
    compiled = jax.jit(entropy.make_entropy_fn(eight, 2048)).lower(tables, tokens).compile()
    mem = compiled.memory_analysis()
    used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    assert used < 2**31


def test_bad_inputs():
    graph = structure("single", "default", "product")
    tables = draw_kernels(graph, 0)
    tokens = np.zeros((2, 5), np.int32)
    with pytest.raises(ValueError, match="method"):
        entropy.sequence_entropy(graph, tables, tokens, method="fast")
    with pytest.raises(ValueError, match="T >= 2"):
        entropy.sequence_entropy(graph, tables, tokens[:, :1])
    with pytest.raises(ValueError, match="integers"):
        entropy.sequence_entropy(graph, tables, tokens.astype(np.float32))
    with pytest.raises(ValueError, match="tables"):
        entropy.sequence_entropy(graph, tables[:1], tokens)
    context = structure("single", "context", "product")
    with pytest.raises(ValueError, match="context"):
        entropy.sequence_logprobs(context, draw_kernels(context, 0), tokens)
    with pytest.raises(ValueError, match="None exactly"):
        entropy.sequence_entropy(context, tables, tokens)
    with pytest.raises(ValueError, match="shape"):
        entropy.sequence_entropy(graph, (tables[0][:, :1], tables[1]), tokens)


def test_sampler_frequencies_match_forward_probabilities():
    """The sampler (another module) and the forward algorithm read docs/spec.md section 2 the same way."""
    graph = structure("feedback", "dead", "fullrank")
    tables = draw_kernels(graph, graph_seed=4)
    n = 20_000
    tokens = np.asarray(sample.sample_tokens(graph, tables, 0, np.arange(n), 3))
    seqs = all_sequences(graph.vocab_size, 3)
    p = np.exp(np.asarray(entropy.sequence_logprobs(graph, tables, seqs), np.float64).sum(-1))
    counts = np.array([(tokens == s).all(-1).sum() for s in seqs])
    assert counts.sum() == n
    np.testing.assert_array_less(np.abs(counts - n * p), 5 * np.sqrt(n * p * (1 - p)) + 1)


def test_mean_sampled_entropy_matches_the_exact_entropy_rate():
    """Mean of -log p / (T-1) over sampled sequences vs its exact expectation over all sequences."""
    graph = structure("feedback", "default", "product")
    tables = draw_kernels(graph, graph_seed=7)
    T, n = 4, 20_000
    seqs = all_sequences(graph.vocab_size, T)
    logp = np.asarray(entropy.sequence_logprobs(graph, tables, seqs), np.float64).sum(-1)
    p = np.exp(logp)
    h_seq = -logp / (T - 1)
    exact = float((p * h_seq).sum())
    std = float(np.sqrt((p * (h_seq - exact) ** 2).sum()))
    tokens = sample.sample_tokens(graph, tables, 3, np.arange(n), T)
    estimate = float(np.mean(entropy.sequence_entropy(graph, tables, tokens).per_sequence))
    assert abs(estimate - exact) < 4 * std / np.sqrt(n), (estimate, exact, std)
