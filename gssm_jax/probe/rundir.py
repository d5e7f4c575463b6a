"""Reading a run directory for probing: its config, its graph and kernels, its model and params.

Nothing here writes into the run: checkpoints are opened read-only. `make_model` is the one place
the model is built, so a model registry can replace it alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from gssm_jax import checkpoint, parallel
from gssm_jax.config import default_config, graph_of, validate
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, draw_kernels
from gssm_jax.train import state as train_state


class RunDirError(ValueError):
    """A run directory that cannot be probed: no config, no checkpoint, an unknown step."""


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's resolved config (`config.json`) over today's defaults, validated; set up for
    reading on this host: one process, every local device on the data axis, `auto` attention."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise RunDirError(f"--workdir {workdir!r}: no config.json (not a gssm_jax run directory)")
    with open(path) as f:
        saved = json.load(f)
    config = default_config()
    try:
        graph = saved["data"].pop("graph")  # replaces the default graph, node for node
        config.update(saved)
    except (KeyError, AttributeError, TypeError) as e:
        raise RunDirError(f"{path}: does not fit this version's config schema ({e})") from None
    with config.unlocked():
        config.data.graph = ml_collections.ConfigDict(graph)
        config.mesh.data, config.mesh.model = -1, 1
        config.model.attention = "auto"
        config.distributed.coordinator = ""
    validate(config)
    return config


def graph_and_kernels(config: ml_collections.ConfigDict) -> tuple[Graph, Tables]:
    graph = graph_of(config)
    return graph, draw_kernels(graph, config.data.graph_seed)


def make_model(config: ml_collections.ConfigDict, vocab_size: int) -> Any:
    """The run's model, as the training loop builds it (restore and init take this object)."""
    return train_state.model_from_config(config, vocab_size)


def flax_module(model: Any) -> nn.Module:
    """The Flax module whose activations are captured: the model itself, or the module behind a
    model-registry wrapper (`.module`)."""
    return model if isinstance(model, nn.Module) else model.module


def checkpoint_steps(workdir: str) -> list[int]:
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def restore_params(
    workdir: str, config: ml_collections.ConfigDict, model: Any, step: int | None
) -> tuple[Any, int]:
    """(params, step) of checkpoint `step` (default: the latest); raises RunDirError if none."""
    steps = checkpoint_steps(workdir)
    if not steps:
        raise RunDirError(f"--workdir {workdir!r}: no checkpoint under checkpoints/")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise RunDirError(f"--step {step}: no such checkpoint in {workdir!r} (has {steps})")
    manager = checkpoint.open_read_only(os.path.join(workdir, "checkpoints"))
    mesh = parallel.make_mesh(config.mesh)
    abstract, _ = train_state.abstract_train_state(config, mesh, model)
    try:
        return checkpoint.restore(manager, step, abstract).params, step
    finally:
        manager.close()


def init_params(config: ml_collections.ConfigDict, model: Any) -> Any:
    """A fresh initialisation of the run's model from the run's seed (what step 0 trained from)."""
    mesh = parallel.make_mesh(config.mesh)
    state, _ = train_state.create_train_state(config, mesh, model, jax.random.key(config.seed))
    return state.params
