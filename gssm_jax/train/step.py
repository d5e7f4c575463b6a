"""The train and eval steps: pure functions of (state, tokens), jitted with explicit shardings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gssm_jax import parallel
from gssm_jax.models.transformer import Transformer
from gssm_jax.train.optim import make_optimizer, schedule
from gssm_jax.train.state import TrainState


def sequence_nll(model: Transformer, params: Any, tokens_BxT: jax.Array) -> jax.Array:
    """Mean next-token cross-entropy of each sequence over positions 1..T-1 -> nll_B."""
    logits_BxLxV = model.apply({"params": params}, tokens_BxT[:, :-1])
    logp_BxLxV = jax.nn.log_softmax(logits_BxLxV, axis=-1)
    nll_BxL = -jnp.take_along_axis(logp_BxLxV, tokens_BxT[:, 1:, None], axis=-1)[..., 0]
    return nll_BxL.mean(axis=-1)


def _context(config: ml_collections.ConfigDict, mesh: Mesh):
    return jax.set_mesh(mesh), nn.logical_axis_rules(parallel.rules(config.mesh))


def make_train_step(
    config: ml_collections.ConfigDict, model: Transformer, mesh: Mesh, shardings: Any
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict]]:
    tx = make_optimizer(config.optim)
    lr_at = schedule(config.optim)
    accum = config.optim.accum_steps
    batch_sharding = NamedSharding(mesh, parallel.batch_spec(config))
    micro_spec = P(None, *parallel.batch_spec(config))

    def loss_fn(params, tokens_BxT):
        return sequence_nll(model, params, tokens_BxT).mean()

    grad_fn = jax.value_and_grad(loss_fn)

    def gradients(params, tokens_BxT):
        if accum == 1:
            return grad_fn(params, tokens_BxT)
        B, T = tokens_BxT.shape
        # Micro-batch j takes rows j, j+accum, ...: each device keeps its own rows.
        tokens_AxMxT = tokens_BxT.reshape(B // accum, accum, T).transpose(1, 0, 2)
        tokens_AxMxT = jax.lax.with_sharding_constraint(tokens_AxMxT, micro_spec)

        def body(carry, tokens_MxT):
            loss, grads = grad_fn(params, tokens_MxT)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        zeros = (jnp.zeros(()), jax.tree.map(jnp.zeros_like, params))
        (loss, grads), _ = jax.lax.scan(body, zeros, tokens_AxMxT)
        return jax.tree.map(lambda g: g / accum, (loss, grads))

    def step(state: TrainState, tokens_BxT: jax.Array):
        loss, grads = gradients(state.params, tokens_BxT)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": lr_at(state.step)}
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = NamedSharding(mesh, P())
    jitted = jax.jit(
        step,
        in_shardings=(shardings, batch_sharding),
        out_shardings=(shardings, replicated),
        donate_argnums=0,
    )

    def run(state: TrainState, tokens_BxT: jax.Array):
        mesh_ctx, rules_ctx = _context(config, mesh)
        with mesh_ctx, rules_ctx:
            return jitted(state, tokens_BxT)

    return run


def make_eval_step(
    config: ml_collections.ConfigDict, model: Transformer, mesh: Mesh, shardings: Any
) -> Callable[[Any, jax.Array], jax.Array]:
    """(params, tokens_BxT) -> mean next-token cross-entropy of the batch."""
    batch_sharding = NamedSharding(mesh, parallel.batch_spec(config))
    jitted = jax.jit(
        lambda params, tokens: sequence_nll(model, params, tokens).mean(),
        in_shardings=(shardings.params, batch_sharding),
        out_shardings=NamedSharding(mesh, P()),
    )

    def run(params: Any, tokens_BxT: jax.Array) -> jax.Array:
        mesh_ctx, rules_ctx = _context(config, mesh)
        with mesh_ctx, rules_ctx:
            return jitted(params, tokens_BxT)

    return run
