"""Joining a multi-process JAX runtime: explicit coordinator flags, or Slurm's auto-detection.

JAX's heartbeat timeout is HEARTBEAT_TIMEOUT_S (its default is 100 s): the coordination service's
own, slow, verdict on a silent process. `gssm_jax.runtime.peers` watches the other processes
directly and ends this one within a second of a peer's death.
"""

from __future__ import annotations

import os

import ml_collections

from gssm_jax.config import ConfigError
from gssm_jax.runtime import peers

HEARTBEAT_TIMEOUT_S = 30


def under_slurm_multitask() -> bool:
    """True inside an srun step of a job with several tasks."""
    return (
        "SLURM_STEP_ID" in os.environ
        and int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1
    )


def check(dist: ml_collections.ConfigDict) -> None:
    """ConfigError when a coordinator is given without the process count and id."""
    if dist.coordinator and (dist.num_processes is None or dist.process_id is None):
        raise ConfigError(
            "config distributed.coordinator is set: distributed.num_processes and "
            "distributed.process_id are required too"
        )


def initialize(dist: ml_collections.ConfigDict) -> None:
    """Joins the multi-process JAX runtime when coordinator flags are given or under Slurm (gloo
    collectives on CPU), and starts the watch on the other processes (`peers`)."""
    import jax

    check(dist)
    # jax's Config sets its flags as attributes at run time; its type stub declares none of them
    platforms = jax.config.jax_platforms  # type: ignore[attr-defined]
    if platforms in (None, "", "cpu") or "cpu" in str(platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if dist.coordinator:
        jax.distributed.initialize(
            dist.coordinator,
            dist.num_processes,
            dist.process_id,
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    elif under_slurm_multitask():
        jax.distributed.initialize(heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    else:
        return
    from jax._src import distributed as jax_distributed  # its client's key-value store

    state = jax_distributed.global_state
    if jax.process_count() > 1 and state.client is not None:
        peers.start(
            state.client, str(state.coordinator_address), jax.process_index(), jax.process_count()
        )
