"""The train state (one pytree) and its creation directly in its shardings."""

from __future__ import annotations

from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import Mesh

from gssm_jax import parallel
from gssm_jax.models.transformer import ModelConfig, Transformer
from gssm_jax.train.optim import make_optimizer


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def model_from_config(config: ml_collections.ConfigDict, vocab_size: int) -> Transformer:
    m = config.model
    return Transformer(
        ModelConfig(
            vocab_size=vocab_size,
            emb_dim=m.emb_dim,
            nb_layers=m.nb_layers,
            nb_heads=m.nb_heads,
            hidden_dim=m.hidden_dim,
            rope_theta=m.rope_theta,
            norm_eps=m.norm_eps,
            weight_tying=m.weight_tying,
            init_std=m.init_std,
            dtype=m.dtype,
            remat=m.remat,
        )
    )


def _boxed_init(config: ml_collections.ConfigDict, model: Transformer):
    tx = make_optimizer(config.optim)

    def init(rng: jax.Array) -> TrainState:
        tokens_1xL = jnp.zeros((1, config.data.seq_len - 1), jnp.int32)
        params = model.init(rng, tokens_1xL)["params"]
        return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))

    return init


def state_shardings(config: ml_collections.ConfigDict, mesh: Mesh, model: Transformer) -> Any:
    """NamedShardings of every leaf of the train state, from the logical names of the params."""
    boxed = jax.eval_shape(_boxed_init(config, model), jax.random.key(0))
    logical = nn.get_partition_spec(boxed)
    return nn.logical_to_mesh_sharding(logical, mesh, parallel.rules(config.mesh))


def abstract_train_state(config: ml_collections.ConfigDict, mesh: Mesh, model: Transformer):
    """(ShapeDtypeStructs carrying shardings, shardings): the restore target of a checkpoint."""
    shardings = state_shardings(config, mesh, model)
    shapes = nn.unbox(jax.eval_shape(_boxed_init(config, model), jax.random.key(0)))
    abstract = jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
    )
    return abstract, shardings


def create_train_state(
    config: ml_collections.ConfigDict, mesh: Mesh, model: Transformer, rng: jax.Array
) -> tuple[TrainState, Any]:
    """A fresh state, each array created on its own devices (never gathered on one host)."""
    shardings = state_shardings(config, mesh, model)
    init = _boxed_init(config, model)
    with jax.set_mesh(mesh), nn.logical_axis_rules(parallel.rules(config.mesh)):
        state = jax.jit(lambda r: nn.unbox(init(r)), out_shardings=shardings)(rng)
    return state, shardings
