"""Linear softmax probes, one per (layer, hidden node), fitted together and scored against the
true states and the exact Bayes posterior.

All probes of a group of layers with the same feature width train in one jitted scan: the
parameters are stacked (layers, nodes, ...) and the loss is vmapped over both axes, so every probe
gets its own gradient while sharing the minibatch rows. Nodes with fewer states than the widest
are padded with masked classes. Features are standardised with the training rows' mean and
standard deviation (an affine map, so the probe stays linear in the activations).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

MASKED = -1e9  # logit of a padded class


@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    """AdamW with a cosine decay over `steps` minibatches of `batch` rows (consecutive
    permutations of the training rows)."""

    steps: int = 400
    batch: int = 4096
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0


class Probes(NamedTuple):
    """Weights (L, K, D, C) and biases (L, K, C) of the probes of L layers and K nodes."""

    w: jax.Array
    b: jax.Array


class Scores(NamedTuple):
    """Per (layer, node) test-split scores, each shaped (L, K) (JAX arrays from `score`; NumPy,
    one layer's (K,), from `probe_layers`)."""

    accuracy: jax.Array | np.ndarray  # argmax of the probe against the true state
    xent_posterior: jax.Array | np.ndarray  # -sum_v p(v | x) log q(v), q the probe
    nll_true: jax.Array | np.ndarray  # -log q(true state)


def class_mask(dims: tuple[int, ...]) -> jax.Array:
    """mask_KxC: True for the real classes of each node, C = max(dims)."""
    return jnp.arange(max(dims))[None, :] < jnp.asarray(dims)[:, None]


def standardise(train_LxNxD: jax.Array, *others: jax.Array) -> tuple[jax.Array, ...]:
    """Features of every set scaled by the training rows' per-feature mean and std."""
    mean = train_LxNxD.mean(1, keepdims=True)
    std = train_LxNxD.std(1, keepdims=True) + 1e-6
    return tuple((x - mean) / std for x in (train_LxNxD, *others))


def _logits(probes: Probes, x_LxBxD: jax.Array, mask_KxC: jax.Array) -> jax.Array:
    """logits (L, K, B, C) of every probe, padded classes masked: one matmul per layer for all
    nodes' classes at once (what vmapping a single probe over layers and nodes computes)."""
    logits = jnp.einsum("lbd,lkdc->lkbc", x_LxBxD, probes.w) + probes.b[:, :, None]
    return jnp.where(mask_KxC[None, :, None], logits, MASKED)


def minibatches(n_rows: int, settings: ProbeSettings) -> np.ndarray:
    """idx_SxB: row indices of every step, consecutive permutations of the rows (NumPy, seeded)."""
    batch, steps = min(settings.batch, n_rows), settings.steps
    rng = np.random.default_rng(settings.seed)
    epochs = math.ceil(steps * batch / n_rows)
    flat = np.concatenate([rng.permutation(n_rows) for _ in range(epochs)])
    return flat[: steps * batch].reshape(steps, batch).astype(np.int32)


def fit(
    x_LxNxD: jax.Array,
    y_KxN: jax.Array | np.ndarray,
    dims: tuple[int, ...],
    settings: ProbeSettings,
) -> Probes:
    """Probes for every (layer, node) of standardised features and integer states y_KxN."""
    idx_SxB = minibatches(x_LxNxD.shape[1], settings)
    y_KxN = jnp.asarray(y_KxN, jnp.int32)
    return _fit_jit(x_LxNxD, y_KxN, class_mask(dims), jnp.asarray(idx_SxB), settings)


def _fit(x_LxNxD, y_KxN, mask_KxC, idx_SxB, settings: ProbeSettings) -> Probes:
    L, _, D = x_LxNxD.shape
    K, C = mask_KxC.shape
    init = Probes(jnp.zeros((L, K, D, C), x_LxNxD.dtype), jnp.zeros((L, K, C), x_LxNxD.dtype))
    tx = optax.adamw(
        optax.cosine_decay_schedule(settings.lr, idx_SxB.shape[0], alpha=0.01),
        weight_decay=settings.weight_decay,
    )

    def loss(probes: Probes, idx_B) -> jax.Array:
        logits_LxKxBxC = _logits(probes, x_LxNxD[:, idx_B], mask_KxC)
        labels_KxB = y_KxN[:, idx_B]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits_LxKxBxC, labels_KxB[None])
        return ce.mean(-1).sum()  # a sum over probes: each gets its own mean-loss gradient

    def step(carry, idx_B):
        probes, opt_state = carry
        grads = jax.grad(loss)(probes, idx_B)
        updates, opt_state = tx.update(grads, opt_state, probes)
        return (optax.apply_updates(probes, updates), opt_state), None

    (probes, _), _ = jax.lax.scan(step, (init, tx.init(init)), idx_SxB)
    return probes


_fit_jit = jax.jit(_fit, static_argnums=(4,))


@jax.jit
def score(
    probes: Probes, x_LxNxD: jax.Array, y_KxN: jax.Array, post_KxNxC: jax.Array, mask_KxC
) -> Scores:
    """Test-split scores of every probe; `post_KxNxC` is the filtering posterior (zero-padded)."""
    log_q = jax.nn.log_softmax(_logits(probes, x_LxNxD, mask_KxC), axis=-1)  # (L, K, N, C)
    accuracy = (log_q.argmax(-1) == y_KxN[None]).mean(-1)
    xent = -(jnp.where(post_KxNxC[None] > 0, post_KxNxC[None] * log_q, 0.0)).sum(-1).mean(-1)
    nll = -jnp.take_along_axis(log_q, y_KxN[None, :, :, None], axis=-1)[..., 0].mean(-1)
    return Scores(accuracy, xent, nll)


def probe_layers(
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    y_train_KxN: np.ndarray,
    y_test_KxN: np.ndarray,
    post_test_KxNxC: np.ndarray,
    dims: tuple[int, ...],
    settings: ProbeSettings,
) -> dict[str, Scores]:
    """Test scores of the probes of every layer ({layer: rows x features} per split); layers of
    one feature width are standardised, fitted and scored together."""
    by_width: dict[int, list[str]] = {}
    for name, x in train.items():
        by_width.setdefault(x.shape[-1], []).append(name)
    mask, y_test = class_mask(dims), jnp.asarray(y_test_KxN)
    scores = {}
    for group in by_width.values():
        x_train, x_test = standardise(
            jnp.stack([train[n] for n in group]), jnp.stack([test[n] for n in group])
        )
        probes = fit(x_train, y_train_KxN, dims, settings)
        got = score(probes, x_test, y_test, jnp.asarray(post_test_KxNxC), mask)
        for i, name in enumerate(group):
            scores[name] = Scores(*(np.asarray(a[i]) for a in got))
    return scores


def bayes_scores(y_KxN: np.ndarray, post_KxNxC: np.ndarray, train_y_KxN: np.ndarray) -> dict:
    """Per node: the posterior argmax's accuracy (`ceiling`), the posterior's mean entropy, and
    `chance`: the accuracy of always answering the training split's most frequent state."""
    ceiling = (post_KxNxC.argmax(-1) == y_KxN).mean(-1)
    p = post_KxNxC
    entropy = -(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)).sum(-1).mean(-1)
    majority = [np.bincount(row).argmax() for row in train_y_KxN]
    chance = np.array([(row == m).mean() for row, m in zip(y_KxN, majority)])
    return {"ceiling": ceiling, "posterior_entropy": entropy, "chance": chance}
