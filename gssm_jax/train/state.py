"""The train state (one pytree) and its creation directly in its shardings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from gssm_jax.config import ConfigError, checked_family_config
from gssm_jax.models.registry import Model, build
from gssm_jax.runtime import parallel
from gssm_jax.train.optim import make_optimizer

# Initialisation runs once, but XLA:CPU spends ~10 s optimising jax.random's threefry code at the
# default LLVM level; level 1 compiles it in ~2 s and gives bit-identical parameters here.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: the update count, the parameters, the AdamW moments and the
    number of non-finite steps in a row up to this one (`train.step`; checkpointed with the rest,
    so a resume keeps counting)."""

    step: jax.Array
    params: Any
    opt_state: Any
    nonfinite: jax.Array = dataclasses.field(default_factory=lambda: jnp.zeros((), jnp.int32))


def model_from_config(config: ml_collections.ConfigDict, vocab_size: int) -> Model:
    """The model of `config.model` (its family's dataclass, see `gssm_jax.models.registry`) for a
    vocabulary of `vocab_size` tokens.

    Raises ConfigError for a bad family field, and for model.transformer.attention='cudnn' on a backend
    without cuDNN (checked here, once JAX's backend is up, rather than in `config.validate`, which
    must not start it).
    """
    cfg = checked_family_config(config, vocab_size)
    backend = jax.default_backend()
    if getattr(cfg, "attention", None) == "cudnn" and backend != "gpu":
        raise ConfigError(
            f"config model.transformer.attention='cudnn' needs a GPU backend, this run has {backend!r} "
            "(use 'auto' or 'xla')"
        )
    return build(cfg)


def _boxed_init(config: ml_collections.ConfigDict, model: Model) -> Callable:
    """rng -> TrainState whose params (and AdamW moments) are still boxed with logical names."""
    tx = make_optimizer(config.optim)

    def init(rng: jax.Array) -> TrainState:
        tokens_1xL = jnp.zeros((1, config.data.seq_len - 1), jnp.int32)
        params = model.init(rng, tokens_1xL)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            nonfinite=jnp.zeros((), jnp.int32),
        )

    return init


def state_shardings(config: ml_collections.ConfigDict, mesh: Mesh, model: Model) -> Any:
    """NamedShardings of every leaf of the train state, from the logical names of the params.

    The AdamW moments mirror the boxed params, so they inherit the same logical names; the step
    and the optimizer's counters are replicated.
    """
    boxed = jax.eval_shape(_boxed_init(config, model), jax.random.key(0))
    return parallel.tree_shardings(nn.get_partition_spec(boxed), mesh, config.mesh)


def abstract_train_state(
    config: ml_collections.ConfigDict, mesh: Mesh, model: Model
) -> tuple[TrainState, Any]:
    """(ShapeDtypeStructs carrying shardings, shardings): the restore target of a checkpoint."""
    shardings = state_shardings(config, mesh, model)
    shapes = nn.unbox(jax.eval_shape(_boxed_init(config, model), jax.random.key(0)))
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    return abstract, shardings


def init_train_state(
    config: ml_collections.ConfigDict, mesh: Mesh, model: Model, shardings: Any, rng: jax.Array
) -> TrainState:
    """A fresh state in `shardings` (`state_shardings`), each array created on its own devices by
    one jit."""
    init = _boxed_init(config, model)
    with parallel.mesh_context(mesh, config.mesh):
        return jax.jit(
            lambda r: nn.unbox(init(r)),
            out_shardings=shardings,
            compiler_options=INIT_COMPILER_OPTIONS,
        )(rng)


def create_train_state(
    config: ml_collections.ConfigDict, mesh: Mesh, model: Model, rng: jax.Array
) -> tuple[TrainState, Any]:
    """(state, shardings): a fresh state, each array created on its own devices by one jit."""
    shardings = state_shardings(config, mesh, model)
    return init_train_state(config, mesh, model, shardings, rng), shardings
