"""A finished (or running) training run read back from its directory, without writing to it.

`open_run(workdir)` gives the run's resolved config (from `config.json`), its graph and kernel tables
(None for a text run, which has no true process),
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
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from jax.sharding import Mesh, NamedSharding

from gssm_jax.config import (
    ConfigError,
    config_from_dict,
    config_from_json,
    graph_of,
    is_text,
    validate,
    vocab_size,
)
from gssm_jax.gssm.graph import Graph
from gssm_jax.gssm.kernels import Tables, draw_kernels
from gssm_jax.inference import interrupt
from gssm_jax.models.registry import Model
from gssm_jax.runtime import cli, parallel
from gssm_jax.runtime.exitcodes import EXIT_OK
from gssm_jax.train import checkpoint
from gssm_jax.train import state as train_state

CONFIG_FILE = "config.json"
CHECKPOINTS = "checkpoints"


class RunError(ConfigError):
    """A run directory that cannot be read: no config, no checkpoint, a missing step."""


# What the run-reading CLIs report as `error: ...` and exit 2 (run-directory, data-set and prompt
# errors are ConfigErrors).
USER_ERRORS = (ConfigError, checkpoint.CheckpointMismatchError)


def run_cli(command: Callable[..., Any], *args: Any, errors: tuple = USER_ERRORS) -> int:
    """`command(*args)` of a run-reading command, with Orbax's warning that a read-only manager is
    read-only muted. An `errors` error (a user's) is one line on stderr and EXIT_BAD_CONFIG;
    Ctrl-C is one line and EXIT_INTERRUPTED (`interrupt`: whatever was written is complete, files
    are written to a temporary name and renamed)."""
    logging.set_verbosity(logging.ERROR)
    try:
        command(*args)
    except errors as e:
        return cli.report_error(e)
    except KeyboardInterrupt:
        return interrupt.say_interrupted()
    return interrupt.say_interrupted() if interrupt.interrupted() else EXIT_OK


def for_this_host(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of run config `c` set up for reading on this host: one process, every local device
    on the data axis, `auto` attention (a run trained on 4 GPUs is read back on whatever this host
    has)."""
    local = config_from_dict(json.loads(c.to_json_best_effort()))
    local.mesh.data, local.mesh.model = -1, 1
    local.model.transformer.attention = "auto"
    local.distributed.coordinator = ""
    return local


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The run's resolved config from `workdir/config.json` (keys it lacks from today's defaults),
    `for_this_host`."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise RunError(f"--workdir {workdir}: no {CONFIG_FILE} (not a gssm_jax run directory)")
    try:
        c = for_this_host(config_from_json(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"run config {path}: unreadable ({e})") from e
    try:
        validate(c)
    except ValueError as e:
        raise RunError(f"run config {path}: {e}") from e
    return c


@dataclasses.dataclass
class RunDir:
    """What a run directory holds, opened read-only."""

    workdir: str
    config: ml_collections.ConfigDict
    graph: Graph | None  # None: a text run
    tables: Tables | None  # float64 NumPy, as training drew them (None: a text run)
    mesh: Mesh
    model: Model
    manager: ocp.CheckpointManager | None  # None: no checkpoints/ directory (nothing trained yet)

    @property
    def is_text(self) -> bool:
        """A run on real text (`data.source="text"`): no graph, no exact entropy."""
        return is_text(self.config)

    @property
    def process(self) -> tuple[Graph, Tables]:
        """(graph, tables) of a GSSM run; RunError for a text run, which has no true process."""
        if self.graph is None or self.tables is None:
            raise RunError(f"run {self.workdir} trains on text (data.source='text'): no process")
        return self.graph, self.tables

    @property
    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps()) if self.manager else []

    def step_or_latest(self, step: int | None) -> int:
        if self.manager is None:
            raise RunError(
                f"run {self.workdir} has no {CHECKPOINTS}/ directory (nothing trained yet)"
            )
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

    def init_params(self) -> Any:
        """A fresh initialisation of the model from the run's seed (what step 0 trained from)."""
        key = jax.random.key(self.config.seed)
        return train_state.create_train_state(self.config, self.mesh, self.model, key)[0].params

    def in_mesh(self, fn: Callable) -> Callable:
        """`fn` called (and so traced) with the run's mesh and logical-axis rules in context."""
        return parallel.in_mesh(fn, self.mesh, self.config.mesh)

    def sharding(self, *logical_names: str | None) -> NamedSharding:
        return parallel.logical_sharding(logical_names, self.mesh, self.config.mesh)


def open_run(workdir: str) -> RunDir:
    """Opens `workdir` read-only: config, graph, tables, mesh, model, checkpoint manager (None
    without a checkpoints/ directory: asking it for a step is then a RunError)."""
    workdir = os.path.abspath(workdir)
    if not os.path.isdir(workdir):
        what = "is a file, not a directory" if os.path.exists(workdir) else "no such directory"
        raise RunError(f"--workdir {workdir}: {what}")
    c = load_config(workdir)
    graph = None if is_text(c) else graph_of(c)
    mesh = parallel.make_mesh(c.mesh)
    model = train_state.model_from_config(c, vocab_size(c))
    tables = None if graph is None else draw_kernels(graph, c.data.graph_seed)
    manager = checkpoint.open_read_only(os.path.join(workdir, CHECKPOINTS))
    return RunDir(workdir, c, graph, tables, mesh, model, manager)
