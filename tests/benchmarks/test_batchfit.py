"""The largest-batch search against brute force, and XLA's step memory on a tiny model."""

from __future__ import annotations

import math

import pytest
from conftest import tiny_transformer

from gssm_jax.benchmarks import batchfit


def _brute_force(bytes_at, limit: int, multiple: int, top: int = 10_000) -> int:
    fitting = [b for b in range(multiple, top, multiple) if bytes_at(b) <= limit]
    return max(fitting, default=0)


CURVES = {
    "affine": lambda b: 1_000 + 37 * b,
    "convex": lambda b: 500 + 3 * b + b * b // 7,
    "steps": lambda b: 2_000 + 256 * math.ceil(b / 8),  # allocations rounded up in blocks
    "concave": lambda b: 100 + int(400 * math.sqrt(b)),
}


@pytest.mark.parametrize("curve", sorted(CURVES))
@pytest.mark.parametrize("multiple", [1, 2, 8])
@pytest.mark.parametrize("start", [1, 16, 512])
def test_search_finds_the_brute_force_largest_batch(curve, multiple, start):
    bytes_at = CURVES[curve]
    for limit in (bytes_at(multiple) - 1, bytes_at(multiple), 3_000, 9_999, 40_000):
        best, probes = batchfit.largest_fitting(bytes_at, limit, multiple, start)
        assert best == _brute_force(bytes_at, limit, multiple), (curve, limit, probes)
        assert all(b % multiple == 0 for b in probes)
        assert len(probes) <= 16, (curve, limit, sorted(probes))  # bisection bound: ~2 log2


def test_an_affine_curve_needs_few_compiles():
    best, probes = batchfit.largest_fitting(lambda b: 10_000 + 1_000 * b, 1_000_000, 4, 16)
    assert best == 988 and len(probes) <= 5, sorted(probes)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple"):
        batchfit.largest_fitting(lambda b: b, 10, 0)


def test_step_bytes_grow_with_the_batch_and_count_the_donated_state_once():
    import jax

    from gssm_jax.config import default_config
    from gssm_jax.runtime import parallel
    from gssm_jax.train import state as train_state

    c = default_config()
    tiny_transformer(c, emb_dim=32, nb_heads=4, hidden_dim=64)
    c.data.seq_len = 33
    mesh = parallel.make_mesh(c.mesh, jax.devices()[:1])
    model = train_state.model_from_config(c, 32)
    abstract, shardings = train_state.abstract_train_state(c, mesh, model)
    small, large = (batchfit.step_bytes(c, model, mesh, b, abstract, shardings) for b in (4, 16))
    state_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(abstract))
    for parts in (small, large):
        assert parts["alias"] >= state_bytes  # the donated state is reused for the new state
        assert (
            parts["total"] == parts["argument"] + parts["output"] - parts["alias"] + parts["temp"]
        )
    assert large["argument"] - small["argument"] == 12 * 33 * 4  # the int32 token batch
    assert large["temp"] > 2 * small["temp"]
