"""A finished (or running) training run read back from its directory, without writing to it.

`open_run(workdir)` gives the run's resolved config (from `config.json`), its graph and kernel tables,
its mesh, its model (`gssm_jax.models.registry.Model`: apply, prefill, decode), and its checkpoints through a read-only Orbax manager, so the
evaluation and generation CLIs use exactly what training used. Every problem with the directory is
a `RunError` (a ConfigError: the CLIs print it as one line and exit 2).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding

from gssm_jax import checkpoint, parallel
from gssm_jax.config import ConfigError, default_config, graph_of, validate
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, draw_kernels
from gssm_jax.models.registry import Model
from gssm_jax.train import state as train_state

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"


class RunError(ConfigError):
    """A run directory that cannot be read: no config, no checkpoint, a missing step."""


def _merged(defaults: dict, saved: dict) -> dict:
    """`saved` over `defaults`, section by section; `data.graph` is taken whole from `saved`."""
    out = dict(defaults)
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "graph":
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's resolved config from `workdir/config.json`, keys it lacks from today's defaults."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"--workdir {workdir}: no {CONFIG_FILE} (not a gssm_jax run directory)")
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise RunError(f"run config {path}: unreadable ({e})") from e
    c = ml_collections.ConfigDict(_merged(default_config().to_dict(), saved))
    try:
        validate(c)
    except ValueError as e:
        raise RunError(f"run config {path}: {e}") from e
    return c


@dataclasses.dataclass
class Run:
    """What a run directory holds, opened read-only."""

    workdir: str
    config: ml_collections.ConfigDict
    graph: Graph
    tables: Tables  # float64 NumPy, as training drew them
    mesh: Mesh
    model: Model
    manager: ocp.CheckpointManager

    @property
    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def step_or_latest(self, step: int | None) -> int:
        steps = self.steps
        if not steps:
            raise RunError(f"run {self.workdir} has no checkpoint in {self.manager.directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            kept = ", ".join(map(str, steps))
            raise RunError(f"run {self.workdir} has no checkpoint at --step {step} (kept: {kept})")
        return step

    @functools.cached_property
    def _abstract_state(self) -> tuple[Any, Any]:
        return train_state.abstract_train_state(self.config, self.mesh, self.model)

    @property
    def param_shardings(self) -> Any:
        """NamedShardings of the params under the run's mesh rules."""
        return self._abstract_state[1].params

    def check_compatible(self, step: int) -> None:
        """Raises CheckpointMismatchError when `step`'s arrays do not fit the configured model."""
        checkpoint.check_compatible(self.manager, step, self._abstract_state[0])

    def restore_params(self, step: int) -> Any:
        """The params at `step`, placed per the run's mesh rules (checked against the model)."""
        return checkpoint.restore(self.manager, step, self._abstract_state[0]).params

    def in_mesh(self, fn: Callable) -> Callable:
        """`fn` called (and so traced) with the run's mesh and logical-axis rules in context."""

        def call(*args):
            with ExitStack() as stack:
                stack.enter_context(jax.set_mesh(self.mesh))
                stack.enter_context(nn.logical_axis_rules(parallel.rules(self.config.mesh)))
                return fn(*args)

        return call

    def sharding(self, *logical_names: str | None) -> NamedSharding:
        return parallel.logical_sharding(logical_names, self.mesh, self.config.mesh)


def open_run(workdir: str) -> Run:
    """Opens `workdir` read-only: config, graph, tables, mesh, model, checkpoint manager."""
    workdir = os.path.abspath(workdir)
    if not os.path.isdir(workdir):
        raise RunError(f"--workdir {workdir}: no such directory")
    c = load_config(workdir)
    graph = graph_of(c)
    ckpt_dir = os.path.join(workdir, CHECKPOINTS)
    if not os.path.isdir(ckpt_dir):
        raise RunError(f"run {workdir} has no {CHECKPOINTS}/ directory (nothing trained yet)")
    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, graph.vocab_size)
    tables = draw_kernels(graph, c.data.graph_seed)
    return Run(workdir, c, graph, tables, mesh, model, checkpoint.open_read_only(ckpt_dir))
