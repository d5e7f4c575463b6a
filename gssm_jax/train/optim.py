"""AdamW (optax) with a warmup + cosine or warmup + constant learning rate and global-norm clipping.

Weight decay applies to the weight matrices of attention, MLP and the untied output head; norm
scales (1-D) and the token embedding table are not decayed (with tied weights the table is also
the head, and stays undecayed).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax

from gssm_jax.models.kronecker import FACTOR_NAMES

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
    """Clip by global norm (optim.clip_norm > 0), then AdamW on the schedule.

    With optim.freeze or optim.kron_lr set: `kron_optimizer`.
    """
    if optim.get("freeze", "none") != "none" or optim.get("kron_lr") is not None:
        return kron_optimizer(optim)
    parts = []
    if optim.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.clip_norm))
    parts.append(_adamw(optim))
    return optax.chain(*parts)


def _adamw(
    optim: ml_collections.ConfigDict, lr: float | None = None
) -> optax.GradientTransformation:
    """optax.adamw with optim's moments and eps on the schedule peaking at `lr` (default optim.lr),
    weight decay on `decay_mask`."""
    if lr is not None:
        optim = ml_collections.ConfigDict(optim.to_dict())
        optim.lr = lr
    return optax.adamw(
        schedule(optim),
        b1=optim.b1,
        b2=optim.b2,
        eps=optim.eps,
        weight_decay=optim.weight_decay,
        mask=decay_mask,
    )


def kron_labels(params: Any) -> Any:
    """Label "kron" for the Kronecker factors (models.kron.FACTOR_NAMES), "rest" for the others.

    A logically boxed parameter gets one label for the whole box, so optax's masking replaces the
    box by a MaskedNode (rather than its contents), and the boxed optimizer state keeps the same
    structure as its logical partition specs.
    """

    def label(path, _) -> str:
        names = {getattr(k, "key", None) for k in path}
        return "kron" if names & set(FACTOR_NAMES) else "rest"

    boxed = lambda x: isinstance(x, nn.Partitioned)  # noqa: E731
    return jax.tree_util.tree_map_with_path(label, params, is_leaf=boxed)


def kron_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW per group of `kron_labels`: the factors at optim.kron_lr (default optim.lr), the rest
    at optim.lr; optim.freeze "kron" or "pretrained" sets that group's updates to zero.

    Frozen gradients are zeroed before the clipping, so the global norm counts trained ones only,
    and a frozen group gets no AdamW state and no weight decay (optax.set_to_zero).
    """
    frozen = {"none": (), "kron": ("kron",), "pretrained": ("rest",)}[optim.freeze]
    rates = {"kron": optim.kron_lr if optim.kron_lr is not None else optim.lr, "rest": optim.lr}
    groups = {}
    for label, lr in rates.items():
        if label in frozen:
            groups[label] = optax.set_to_zero()
            continue
        groups[label] = _adamw(optim, lr)
    parts = []
    if frozen:
        gates = {
            label: optax.set_to_zero() if label in frozen else optax.identity() for label in rates
        }
        parts.append(optax.multi_transform(gates, kron_labels))
    if optim.clip_norm > 0:
        parts.append(optax.clip_by_global_norm(optim.clip_norm))
    parts.append(optax.multi_transform(groups, kron_labels))
    return optax.chain(*parts)
