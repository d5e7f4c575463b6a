"""The train and eval steps: pure functions of (state, tokens_BxT), jitted with explicit shardings.

The loss is the mean next-token cross-entropy: logits at positions 0..T-2 predict tokens 1..T-1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gssm_jax.models.registry import Model
from gssm_jax.runtime import parallel
from gssm_jax.train import distill
from gssm_jax.train.optim import make_optimizer, schedule
from gssm_jax.train.state import TrainState, model_from_config

__all__ = [
    "all_finite",
    "make_eval_step",
    "make_train_step",
    "model_from_config",
    "sequence_nll",
]


@jax.jit
def all_finite(tree: Any) -> jax.Array:
    """True when every floating-point leaf of `tree` holds only finite values (one reduction)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def sequence_nll(model: Model, params: Any, tokens_BxT: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy of each sequence over positions 1..T-1 -> nll_B (nats)."""
    logits_BxLxV = model.apply(params, tokens_BxT[:, :-1])
    nll_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, tokens_BxT[:, 1:])
    return nll_BxL.mean(axis=-1)


def make_train_step(
    config: ml_collections.ConfigDict, model: Model, mesh: Mesh, shardings: Any
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """(state, tokens_BxT) -> (state, {loss, grad_norm, lr, finite, nonfinite}); the input state
    is donated.

    With optim.accum_steps = A the batch is split into A micro-batches (row j goes to micro-batch
    j mod A, so every device keeps its own rows), their gradients are averaged in a loop, then
    clipped and applied once. grad_norm is the global norm before clipping; lr is the rate of
    this update. A step whose loss or grad_norm is not finite (`finite` False) is not applied: the
    parameters and optimizer moments stay as they were (as optax.apply_if_finite does), the step
    count advances and `nonfinite` (the state's count of such steps in a row, 0 after a finite
    one) goes up; the loop reads it on the steps it syncs anyway and stops per optim.nonfinite.
    With optim.distill.teacher set, the gradient is that of the cross-entropy plus
    weight * KL(teacher || model) (`gssm_jax.train.distill`); `loss` stays the cross-entropy.
    """
    tx = make_optimizer(config.optim)
    teacher = distill.load_teacher(config, mesh)
    lr_at = schedule(config.optim)
    accum = config.optim.accum_steps
    batch_sharding = NamedSharding(mesh, parallel.batch_spec(config))
    micro_spec = P(None, *parallel.batch_spec(config))

    def loss_fn(params, tokens_BxT):
        """(the loss differentiated, the cross-entropy reported as `loss`)."""
        if teacher is None:
            ce = sequence_nll(model, params, tokens_BxT).mean()
            return ce, ce
        return distill.distilled_loss(model, params, teacher, tokens_BxT)

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def grad_fn(params, tokens_BxT):
        (_, ce), grads = value_and_grad(params, tokens_BxT)
        return ce, grads

    def gradients(params, tokens_BxT):
        if accum == 1:
            return grad_fn(params, tokens_BxT)
        B, T = tokens_BxT.shape
        tokens_AxMxT = tokens_BxT.reshape(B // accum, accum, T).transpose(1, 0, 2)
        tokens_AxMxT = jax.lax.with_sharding_constraint(tokens_AxMxT, micro_spec)

        def body(carry, tokens_MxT):
            loss, grads = grad_fn(params, tokens_MxT)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        zeros = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
        (loss, grads), _ = jax.lax.scan(body, zeros, tokens_AxMxT)
        return jax.tree.map(lambda g: g / accum, (loss, grads))

    def step(state: TrainState, tokens_BxT: jax.Array):
        loss, grads = gradients(state.params, tokens_BxT)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        params, opt_state = jax.tree.map(
            lambda new, old: jnp.where(finite, new, old),
            (params, opt_state),
            (state.params, state.opt_state),
        )
        nonfinite = jnp.where(finite, 0, state.nonfinite + 1).astype(jnp.int32)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": lr_at(state.step),
            "finite": finite,
            "nonfinite": nonfinite,
        }
        new = TrainState(
            step=state.step + 1, params=params, opt_state=opt_state, nonfinite=nonfinite
        )
        return new, metrics

    jitted = jax.jit(
        step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, NamedSharding(mesh, P())),
        donate_argnums=0,
    )
    return parallel.in_mesh(jitted, mesh, config.mesh)


def make_eval_step(
    config: ml_collections.ConfigDict,
    model: Model,
    mesh: Mesh,
    shardings: Any,
    per_sequence: bool = False,
) -> Callable[[Any, jax.Array], Any]:
    """(params, tokens_BxT) -> mean next-token cross-entropy of the batch.

    With per_sequence=True it returns (mean, nll_B), the per-sequence means that pair with the
    per-sequence exact entropies.
    """
    batch_sharding = NamedSharding(mesh, parallel.batch_spec(config))
    replicated = NamedSharding(mesh, P())

    def evaluate(params, tokens_BxT):
        nll_B = sequence_nll(model, params, tokens_BxT)
        return (nll_B.mean(), nll_B) if per_sequence else nll_B.mean()

    out_shardings = (replicated, NamedSharding(mesh, P(batch_sharding.spec[0])))
    jitted = jax.jit(
        evaluate,
        in_shardings=(shardings.params, batch_sharding),
        out_shardings=out_shardings if per_sequence else replicated,
    )
    return parallel.in_mesh(jitted, mesh, config.mesh)
