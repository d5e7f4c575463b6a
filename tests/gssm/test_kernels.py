"""Kernel tables (docs/spec.md section 3): stochastic rows, floors, modes, seeding, context draws."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gssm_jax.gssm.graph import parse_graph
from gssm_jax.gssm.kernels import PROB_FLOOR, draw_context, draw_kernels, merge

ROOT = Path(__file__).resolve().parents[2]
SPEC = {
    "Z1": dict(state_dim=5, alpha=0.1),
    "Z2": dict(state_dim=3, alpha=0.3, parents=["Z1", "X"], kernel_type="fullrank"),
    "Z3": dict(state_dim=4, alpha=2.0, parents=["Z2"]),
    "X": dict(state_dim=6, alpha=0.05, parents=["Z3", "Z1"], observed=True),
}


def with_fields(**changes) -> dict:
    spec = {k: dict(v) for k, v in SPEC.items()}
    for name, fields in changes.items():
        spec[name].update(fields)
    return spec


def digest(tables) -> str:
    h = hashlib.sha256()
    for t in tables:
        h.update(np.ascontiguousarray(t, np.float64).tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("kernel_type", ["product", "fullrank"])
def test_tables_are_stochastic_and_floored(kernel_type):
    spec = {k: dict(v, kernel_type=kernel_type) for k, v in SPEC.items()}
    graph = parse_graph(spec)
    tables = draw_kernels(graph, graph_seed=0)
    assert len(tables) == len(graph.nodes)
    for node, t in zip(graph.nodes, tables):
        assert t.shape == graph.input_dims(node) + (node.state_dim,)
        assert t.dtype == np.float64
        np.testing.assert_allclose(t.sum(-1), 1.0, atol=1e-12)
        assert t.min() >= PROB_FLOOR * (1 - 1e-6)


@pytest.mark.parametrize("kernel_type", ["product", "fullrank"])
def test_slow_puts_the_row_maximum_on_the_diagonal(kernel_type):
    graph = parse_graph(with_fields(Z1=dict(mode="slow", kernel_type=kernel_type, alpha=1.0)))
    for seed in range(5):
        z1 = draw_kernels(graph, seed)[0]
        np.testing.assert_array_equal(z1.argmax(-1), np.arange(5))


@pytest.mark.parametrize("kernel_type", ["product", "fullrank"])
def test_dead_puts_the_row_maximum_on_state_zero(kernel_type):
    graph = parse_graph(
        with_fields(
            Z2=dict(mode="dead", kernel_type=kernel_type, alpha=1.0),
            Z3=dict(mode="dead", kernel_type=kernel_type, alpha=1.0),
        )
    )
    for seed in range(5):
        tables = draw_kernels(graph, seed)
        for i in (1, 2):
            assert np.all(tables[i].argmax(-1) == 0)


def test_same_seed_same_tables_different_seed_different_tables():
    graph = parse_graph(SPEC)
    a, b, c = draw_kernels(graph, 3), draw_kernels(graph, 3), draw_kernels(graph, 4)
    assert digest(a) == digest(b)
    for x, y in zip(a, c):
        assert not np.allclose(x, y)


def test_same_seed_in_a_fresh_process():
    code = (
        "import hashlib, numpy as np\n"
        "from gssm_jax.gssm.graph import parse_graph\n"
        "from gssm_jax.gssm.kernels import draw_kernels\n"
        f"tables = draw_kernels(parse_graph({SPEC!r}), 3)\n"
        "h = hashlib.sha256()\n"
        "for t in tables: h.update(np.ascontiguousarray(t, np.float64).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == digest(draw_kernels(parse_graph(SPEC), 3))


def test_adding_a_node_leaves_the_others_unchanged():
    small = parse_graph(SPEC)
    spec = with_fields(X=dict(parents=["Z3", "Z1", "Z4"]))
    spec["Z4"] = dict(state_dim=2, alpha=0.5)
    large = parse_graph(spec)
    tables_small = dict(zip([n.name for n in small.nodes], draw_kernels(small, 9)))
    tables_large = dict(zip([n.name for n in large.nodes], draw_kernels(large, 9)))
    for name in ("Z1", "Z2", "Z3"):
        np.testing.assert_array_equal(tables_small[name], tables_large[name])


def test_context_draws_differ_per_key_and_merge_fills_them():
    graph = parse_graph(with_fields(Z3=dict(mode="context", kernel_type="fullrank")))
    fixed = draw_kernels(graph, 0)
    assert fixed[2] is None and all(t is not None for i, t in enumerate(fixed) if i != 2)
    keys = jax.random.split(jax.random.key(0), 2)
    draws = jax.jit(jax.vmap(lambda k: draw_context(k, graph)))(keys)
    assert [d is None for d in draws] == [True, True, False, True]
    z3 = np.asarray(draws[2])
    assert z3.shape == (2,) + graph.input_dims(graph.hidden[2]) + (4,)
    np.testing.assert_allclose(z3.sum(-1), 1.0, atol=1e-5)
    assert z3.min() > 0
    assert not np.allclose(z3[0], z3[1])
    merged = merge(fixed, [None if d is None else d[0] for d in draws])
    np.testing.assert_array_equal(np.asarray(merged[2]), z3[0])
    assert merged[0] is fixed[0]
