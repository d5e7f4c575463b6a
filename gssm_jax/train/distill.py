"""Distillation from a teacher run: loss = cross-entropy + weight * KL(teacher || model) per token.

The teacher is another run directory (`optim.distill.teacher`): its saved config builds its model
and its latest checkpoint gives its parameters, placed on the student's mesh. It must have been
trained on the same graph (same vocabulary and process), or for a text run on text with the same
tokenizer (same vocabulary; the corpus may differ).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from gssm_jax.config import (
    ConfigError,
    config_from_json,
    is_text,
    resolved_graph_spec,
    vocab_size,
)
from gssm_jax.models.registry import Model
from gssm_jax.train import checkpoint
from gssm_jax.train import state as train_state


class Teacher(NamedTuple):
    model: Model
    params: Any
    weight: float


def next_token_kl(teacher_logits_BxLxV: jax.Array, logits_BxLxV: jax.Array) -> jax.Array:
    """Mean over sequences and positions of KL(softmax(teacher) || softmax(model)), in nats."""
    log_p = jax.nn.log_softmax(teacher_logits_BxLxV.astype(jnp.float32), axis=-1)
    log_q = jax.nn.log_softmax(logits_BxLxV.astype(jnp.float32), axis=-1)
    return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1))


def distilled_loss(
    model: Model, params: Any, teacher: Teacher, tokens_BxT: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(cross-entropy + weight * KL(teacher || model), cross-entropy), means over the batch."""
    inputs_BxL = tokens_BxT[:, :-1]
    logits_BxLxV = model.apply(params, inputs_BxL)
    teacher_BxLxV = jax.lax.stop_gradient(teacher.model.apply(teacher.params, inputs_BxL))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, tokens_BxT[:, 1:]).mean()
    return ce + teacher.weight * next_token_kl(teacher_BxLxV, logits_BxLxV), ce


def load_teacher(config: ml_collections.ConfigDict, mesh: Mesh) -> Teacher | None:
    """The teacher of `config.optim.distill` on `mesh`, or None when no teacher is set. Any
    model family can teach.

    Raises ConfigError naming optim.distill.teacher for a run without a checkpoint or one trained
    on another graph (a text run: on GSSM data or with another tokenizer).
    """
    teacher_dir = config.optim.distill.teacher
    if not teacher_dir:
        return None
    key = f"config optim.distill.teacher={teacher_dir!r}"
    t_config = config_from_json(os.path.join(teacher_dir, "config.json"))
    if is_text(config) or is_text(t_config):
        if not (is_text(config) and is_text(t_config)):
            raise ConfigError(f"{key}: a text run and a GSSM run cannot teach each other")
        if t_config.data.text.tokenizer != config.data.text.tokenizer:
            raise ConfigError(
                f"{key}: the teacher's tokenizer {t_config.data.text.tokenizer!r} is not this "
                f"run's {config.data.text.tokenizer!r}"
            )
    elif resolved_graph_spec(t_config) != resolved_graph_spec(config) or (
        t_config.data.graph_seed != config.data.graph_seed
    ):
        raise ConfigError(f"{key}: the teacher was trained on another graph or graph seed")
    with t_config.unlocked():
        t_config.mesh = config.mesh  # the student's devices and rules
        t_config.data.seq_len = config.data.seq_len
    vocab = vocab_size(config)
    model = train_state.model_from_config(t_config, vocab)
    manager = checkpoint.open_read_only(os.path.join(teacher_dir, "checkpoints"))
    step = None if manager is None else manager.latest_step()
    if step is None:
        raise ConfigError(f"{key}: the run has no checkpoint")
    assert manager is not None  # step is None without one
    abstract, _ = train_state.abstract_train_state(t_config, mesh, model)
    state = checkpoint.restore(manager, step, abstract)
    manager.close()
    return Teacher(model, state.params, float(config.optim.distill.weight))
