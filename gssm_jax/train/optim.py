"""AdamW (optax) with a warmup + cosine or warmup + constant learning rate and global-norm clipping.

Weight decay applies to the weight matrices of attention, MLP and the untied output head; norm
scales (1-D) and the token embedding table are not decayed (with tied weights the table is also
the head, and stays undecayed).
"""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import optax

EMBEDDING = "embed"  # the token table's parameter name in gssm_jax.models.transformer


def schedule(optim: ml_collections.ConfigDict) -> optax.Schedule:
    """Learning rate of the update made at step s (0-based).

    Warmup: lr * (s + 1) / warmup for s < warmup, so the first update already moves and step
    warmup - 1 reaches the peak. Then "constant" stays at lr and "cosine" falls from lr at
    s = warmup to final_lr_frac * lr at s = steps along half a cosine.
    """
    lr, warmup = float(optim.lr), int(optim.warmup)
    warm = optax.linear_schedule(lr / max(warmup, 1), lr, max(warmup, 1) - 1)
    if optim.schedule != "cosine":
        return warm
    decay_steps = max(int(optim.steps) - warmup, 1)
    cosine = optax.cosine_decay_schedule(lr, decay_steps, alpha=float(optim.final_lr_frac))
    return optax.join_schedules([warm, cosine], [warmup])


def decay_mask(params: Any) -> Any:
    """True for the leaves that get weight decay: matrices other than the token embedding."""

    def decayed(path, p) -> bool:
        names = {getattr(k, "key", None) for k in path}
        return p.ndim >= 2 and EMBEDDING not in names

    return jax.tree_util.tree_map_with_path(decayed, params)


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Clip by global norm (optim.clip_norm > 0), then AdamW on the schedule."""
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
