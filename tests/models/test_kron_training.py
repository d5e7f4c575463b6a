"""Training a Kronecker model: freezing and per-group learning rates (optax), the distillation KL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import set_key

from gssm_jax.config import ConfigError, default_config, validate
from gssm_jax.train.distill import next_token_kl
from gssm_jax.train.optim import kron_labels, make_optimizer

PARAMS = {
    "embed": jnp.ones((4, 3)),
    "block_0": {
        "mlp": {"down_a": jnp.ones((1, 2, 3)), "down_b": jnp.ones((1, 2, 1))},
        "attn": {"qkv": jnp.ones((3, 3))},
    },
}


def _optim(**fields):
    c = default_config().optim
    c.unlock()
    c.update({**dict(warmup=0, schedule="constant", weight_decay=0.0, clip_norm=0.0), **fields})
    return c


def _first_update(optim) -> dict:
    tx = make_optimizer(optim)
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    return jax.tree.map(lambda u: float(jnp.abs(u).max()), updates)


def test_labels_tell_factors_from_the_rest():
    labels = kron_labels(PARAMS)
    assert labels["block_0"]["mlp"] == {"down_a": "kron", "down_b": "kron"}
    assert labels["embed"] == labels["block_0"]["attn"]["qkv"] == "rest"


@pytest.mark.parametrize(
    "freeze,moving", [("pretrained", {"kron"}), ("kron", {"rest"}), ("none", {"kron", "rest"})]
)
def test_freeze_updates_only_the_trained_group(freeze, moving):
    update = _first_update(_optim(lr=0.1, freeze=freeze, weight_decay=0.5))
    labels = kron_labels(PARAMS)
    decayed = {
        "embed": False,
        "block_0": {"mlp": {"down_a": True, "down_b": True}, "attn": {"qkv": True}},
    }
    for label, d, u in zip(*map(jax.tree.leaves, (labels, decayed, update))):
        # Adam's first step moves a trained entry by lr (+ lr * decay * 1 where decayed); frozen
        # entries stay, decay included.
        want = 0.1 * (1 + 0.5 * d) if label in moving else 0.0
        assert u == pytest.approx(want, rel=1e-4), (label, u)


def test_factors_and_pretrained_weights_take_their_own_learning_rates():
    update = _first_update(_optim(lr=0.1, kron_lr=0.03))
    assert update["block_0"]["mlp"]["down_a"] == pytest.approx(0.03, rel=1e-4)
    assert update["block_0"]["attn"]["qkv"] == pytest.approx(0.1, rel=1e-4)


def test_frozen_gradients_do_not_count_in_the_clipping_norm():
    """With a huge Adam eps the first update is lr * g / eps: it shows the clipped gradient."""
    eps = 1e6
    tx = make_optimizer(_optim(lr=1.0, freeze="pretrained", clip_norm=1.0, eps=eps))
    grads = jax.tree.map(jnp.ones_like, PARAMS)
    grads["embed"] = grads["embed"] * 1e6  # frozen: must not shrink the factors' gradients
    updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
    g = 1 / np.sqrt(8)  # 8 factor entries of gradient 1, clipped to global norm 1 among themselves
    for u in jax.tree.leaves(updates["block_0"]["mlp"]):
        np.testing.assert_allclose(np.asarray(u), -g / (g + eps), rtol=1e-4)
    assert float(jnp.abs(updates["embed"]).max()) == 0.0


def test_kl_of_the_teacher_distribution():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(2, 3, 5))
    s = rng.normal(size=(2, 3, 5))
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    q = np.exp(s) / np.exp(s).sum(-1, keepdims=True)
    want = np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
    assert float(next_token_kl(jnp.asarray(t), jnp.asarray(s))) == pytest.approx(want, rel=1e-5)
    assert float(next_token_kl(jnp.asarray(t), jnp.asarray(t + 3.0))) == pytest.approx(0, abs=1e-6)


def test_kron_config_errors_name_the_key():
    cases = {
        ("model.mlp", "sparse"): "model.mlp",
        ("model.kron_factor", "3x1"): "model.kron_factor",
        ("model.kron_factor", "2by1"): "model.kron_factor",
        ("model.kron_terms", 1000): "model.kron_terms",
        ("optim.freeze", "all"): "optim.freeze",
        ("optim.kron_lr", -1.0): "optim.kron_lr",
        ("optim.distill.teacher", "/no/such/run"): "optim.distill.teacher",
    }
    for (key, value), name in cases.items():
        c = default_config()
        c.model.mlp = "kronecker"
        set_key(c, key, value)
        with pytest.raises(ConfigError, match=name):
            validate(c)
    c = default_config()
    c.optim.freeze = "pretrained"  # a dense model has no factors to tell apart
    with pytest.raises(ConfigError, match="needs model.mlp='kronecker'"):
        validate(c)


def test_a_frozen_kronecker_state_has_the_structure_of_its_shardings():
    """The boxed optimizer state of optax's masking must match its partition specs (restore)."""
    from gssm_jax.runtime import parallel
    from gssm_jax.train import state as train_state

    c = default_config()
    c.model.mlp, c.model.kron_terms, c.optim.freeze = "kronecker", 2, "pretrained"
    c.data.seq_len = 16
    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, 32)
    abstract, shardings = train_state.abstract_train_state(c, mesh, model)
    state, _ = train_state.create_train_state(c, mesh, model, jax.random.key(0))
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    assert model.param_count() == sum(p.size for p in jax.tree.leaves(state.params))
