"""Learning-rate schedules, gradient clipping and the weight-decay mask."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gssm_jax.config import default_config
from gssm_jax.train.optim import decay_mask, make_optimizer, schedule


def _optim(**fields):
    c = default_config().optim
    c.unlock()
    c.update(fields)
    return c


def test_cosine_schedule_warms_up_then_decays_to_the_final_fraction():
    lr_at = schedule(_optim(lr=1.0, warmup=10, steps=110, final_lr_frac=0.1, schedule="cosine"))
    values = {s: float(lr_at(s)) for s in (0, 4, 9, 10, 60, 110, 500)}
    assert values == pytest.approx(
        {0: 0.1, 4: 0.5, 9: 1.0, 10: 1.0, 60: 0.55, 110: 0.1, 500: 0.1}, abs=1e-6
    )
    assert float(lr_at(jnp.asarray(35))) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi / 4)))


def test_constant_schedule_and_no_warmup():
    constant = schedule(_optim(lr=0.5, warmup=4, schedule="constant"))
    assert [float(constant(s)) for s in (0, 3, 4, 1000)] == pytest.approx([0.125, 0.5, 0.5, 0.5])
    cosine = schedule(_optim(lr=0.5, warmup=0, steps=100, final_lr_frac=0.0, schedule="cosine"))
    assert [float(cosine(s)) for s in (0, 50, 100)] == pytest.approx([0.5, 0.25, 0.0], abs=1e-7)


def _reference_lr(optim, s: int) -> float:
    """The hand-written warmup + cosine the optax schedules replaced, in float64."""
    lr, warmup, steps = optim.lr, optim.warmup, optim.steps
    final = lr * optim.final_lr_frac
    warm = lr * min(1.0, (s + 1) / max(warmup, 1))
    if optim.schedule != "cosine" or s < warmup:
        return warm
    progress = min(max((s - warmup) / max(steps - warmup, 1), 0.0), 1.0)
    return final + (lr - final) * 0.5 * (1 + np.cos(np.pi * progress))


@pytest.mark.parametrize(
    "fields",
    [
        dict(lr=3e-3, warmup=30, steps=500, final_lr_frac=0.1, schedule="cosine"),
        dict(lr=1.0, warmup=1, steps=40, final_lr_frac=0.0, schedule="cosine"),
        dict(lr=0.5, warmup=0, steps=40, final_lr_frac=0.3, schedule="cosine"),
        dict(lr=0.5, warmup=40, steps=40, final_lr_frac=0.3, schedule="cosine"),
        dict(lr=2e-4, warmup=7, steps=60, schedule="constant"),
        dict(lr=2e-4, warmup=0, steps=60, schedule="constant"),
    ],
)
def test_schedule_matches_the_hand_written_formula_at_every_step(fields):
    optim = _optim(**fields)
    lr_at = jax.jit(schedule(optim))
    for s in range(optim.steps + 20):
        assert float(lr_at(s)) == pytest.approx(
            _reference_lr(optim, s), rel=1e-6, abs=1e-6 * optim.lr
        ), s


def _two_updates(tx, grads):
    params = {"w": jnp.ones((3, 2))}
    state = tx.init(params)
    updates = []
    for g in grads:
        u, state = tx.update({"w": g}, state, params)
        updates.append(np.asarray(u["w"]))
    return updates


def test_clipping_caps_the_global_norm_before_adamw():
    cfg = _optim(lr=0.1, warmup=0, schedule="constant", weight_decay=0.0, clip_norm=0.5)
    g_big = jnp.full((3, 2), 10.0).at[0, 0].set(-3.0)  # norm ~23: clipped to 0.5
    g_small = jnp.full((3, 2), 0.01).at[1, 1].set(0.05)  # norm ~0.05: unchanged
    adamw = optax.adamw(0.1, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=0.0)
    clipped = g_big * 0.5 / optax.tree.norm(g_big)
    ours = _two_updates(make_optimizer(cfg), [g_big, g_small])
    expected = _two_updates(adamw, [clipped, g_small])
    unclipped = _two_updates(adamw, [g_big, g_small])
    np.testing.assert_allclose(ours[1], expected[1], rtol=1e-5)
    assert np.abs(ours[1] - unclipped[1]).max() > 1e-3  # Adam's second step sees the clipping
    cfg.clip_norm = 0.0
    np.testing.assert_allclose(
        _two_updates(make_optimizer(cfg), [g_big, g_small])[1], unclipped[1], rtol=1e-5
    )


def test_weight_decay_skips_norms_and_the_embedding():
    params = {
        "embed": jnp.ones((4, 2)),
        "head": jnp.ones((2, 4)),
        "block_0": {"attn_norm": {"scale": jnp.ones(2)}, "mlp": {"down": jnp.ones((3, 2))}},
    }
    mask = decay_mask(params)
    assert mask == {
        "embed": False,
        "head": True,
        "block_0": {"attn_norm": {"scale": False}, "mlp": {"down": True}},
    }
    cfg = _optim(lr=0.1, warmup=0, schedule="constant", weight_decay=0.5, clip_norm=0.0)
    tx = make_optimizer(cfg)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    assert float(jnp.abs(updates["embed"]).max()) == 0.0
    assert float(jnp.abs(updates["block_0"]["attn_norm"]["scale"]).max()) == 0.0
    np.testing.assert_allclose(updates["head"], -0.1 * 0.5 * np.ones((2, 4)), rtol=1e-6)
