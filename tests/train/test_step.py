"""Train and eval steps on one device: learning, gradient accumulation, metrics, the train state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_transformer

from gssm_jax.config import default_config
from gssm_jax.runtime import parallel
from gssm_jax.train import state as train_state
from gssm_jax.train import step as train_step

VOCAB = 32


def _config(**optim):
    c = default_config()
    tiny_transformer(c, emb_dim=16, nb_heads=2, hidden_dim=32)
    c.model.transformer.init = (
        "fixed"  # std 0.02: the fresh model's loss is near log(VOCAB), as tested below
    )
    c.data.seq_len, c.data.batch_size = 16, 4
    c.optim.update(dict(lr=1e-2, warmup=0, schedule="constant", clip_norm=1.0, **optim))
    return c


def _tokens(seed: int, batch: int = 4, length: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, length)).astype(np.int32)


def _copy(state):
    return jax.tree.map(jnp.copy, state)


@pytest.fixture(scope="module")
def setup():
    c = _config()
    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, VOCAB)
    state, shardings = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    return c, mesh, model, state, shardings


def test_fresh_state_and_its_abstract_twin(setup):
    c, mesh, model, state, shardings = setup
    assert int(state.step) == 0
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    abstract, abstract_shardings = train_state.abstract_train_state(c, mesh, model)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    for a, s in zip(jax.tree.leaves(abstract), jax.tree.leaves(state), strict=True):
        assert (a.shape, a.dtype) == (s.shape, s.dtype)
        assert a.sharding.is_equivalent_to(s.sharding, s.ndim)
    assert jax.tree.structure(abstract_shardings) == jax.tree.structure(shardings)


def test_loss_decreases_on_a_repeated_batch(setup):
    c, mesh, model, state, shardings = setup
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    tokens = _tokens(1)
    state = _copy(state)
    losses = []
    for _ in range(25):
        state, metrics = step_fn(state, tokens)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 25
    assert losses[-1] < 0.6 * losses[0], losses
    assert float(metrics["lr"]) == pytest.approx(1e-2)
    assert float(metrics["grad_norm"]) > 0


def test_eval_loss_matches_the_train_step_loss(setup):
    c, mesh, model, state, shardings = setup
    tokens = _tokens(2)
    mean, nll_B = train_step.make_eval_step(c, model, mesh, shardings, per_sequence=True)(
        state.params, tokens
    )
    assert nll_B.shape == (4,)
    assert float(mean) == pytest.approx(float(jnp.mean(nll_B)), rel=1e-6)
    assert float(train_step.make_eval_step(c, model, mesh, shardings)(state.params, tokens)) == (
        pytest.approx(float(mean), rel=1e-6)
    )
    _, metrics = train_step.make_train_step(c, model, mesh, shardings)(_copy(state), tokens)
    assert float(metrics["loss"]) == pytest.approx(float(mean), rel=1e-6)
    assert float(mean) == pytest.approx(np.log(VOCAB), rel=0.05)  # small init: near uniform


def test_two_micro_batches_give_the_step_of_one_big_batch(setup):
    c, mesh, model, state, shardings = setup
    tokens = _tokens(3, batch=8)
    results = []
    for accum in (1, 2):
        ca = _config(accum_steps=accum)
        ca.data.batch_size = 8
        step_fn = train_step.make_train_step(ca, model, mesh, shardings)
        new_state, metrics = step_fn(_copy(state), tokens)
        results.append((new_state, {k: float(v) for k, v in metrics.items()}))
    (one, m1), (two, m2) = results
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-6)
    assert m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-5)
    for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(one), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_a_nonfinite_step_is_not_applied_and_counted(setup):
    """A step whose gradients are nan keeps the parameters and the AdamW moments, advances the
    step, counts itself in `nonfinite`; the next finite step applies and resets the count."""
    c, mesh, model, state, shardings = setup
    step_fn = train_step.make_train_step(c, model, mesh, shardings)
    state, _ = step_fn(_copy(state), _tokens(4))  # moments away from zero
    leaves, treedef = jax.tree.flatten(state.params)
    leaves[0] = leaves[0].at[(0,) * leaves[0].ndim].set(jnp.nan)
    poisoned = state.replace(params=jax.tree.unflatten(treedef, leaves))
    before = _copy(poisoned)
    after, metrics = step_fn(_copy(poisoned), _tokens(5))
    assert not bool(metrics["finite"]) and int(metrics["nonfinite"]) == 1
    assert int(after.step) == int(before.step) + 1 and int(after.nonfinite) == 1
    for a, b in zip(
        jax.tree.leaves((after.params, after.opt_state)),
        jax.tree.leaves((before.params, before.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert not bool(train_step.all_finite(after))
    healed, metrics = step_fn(after.replace(params=state.params), _tokens(6))
    assert bool(metrics["finite"]) and int(healed.nonfinite) == 0
    assert bool(train_step.all_finite(healed))
