"""AdamW with a cosine-with-warmup or constant schedule and global-norm clipping (optax)."""

from __future__ import annotations

import jax
import ml_collections
import optax


def schedule(optim: ml_collections.ConfigDict) -> optax.Schedule:
    if optim.schedule == "constant":
        return (
            optax.join_schedules(
                [
                    optax.linear_schedule(0.0, optim.lr, max(optim.warmup, 1)),
                    optax.constant_schedule(optim.lr),
                ],
                [max(optim.warmup, 1)],
            )
            if optim.warmup
            else optax.constant_schedule(optim.lr)
        )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if optim.warmup else optim.lr,
        peak_value=optim.lr,
        warmup_steps=optim.warmup,
        decay_steps=optim.steps,
        end_value=optim.lr * optim.final_lr_frac,
    )


def decay_mask(params) -> object:
    """Weight decay on matrices only: norms' scales (1-D) are not decayed."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    parts = []
    if optim.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.clip_norm))
    parts.append(
        optax.adamw(
            schedule(optim),
            b1=optim.b1,
            b2=optim.b2,
            eps=optim.eps,
            weight_decay=optim.weight_decay,
            mask=decay_mask,
        )
    )
    return optax.chain(*parts)
