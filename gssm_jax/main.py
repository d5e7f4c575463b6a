"""Entry point: `python -m gssm_jax.main [--config FILE] [--workdir DIR] [--config.key=value ...]`.

With no flags it trains the debug config into a fresh folder under ./runs/. Without --config, a
--workdir that holds a config.json (a run, or one `python -m gssm_jax.kron` wrote) runs that config,
with the command line's --config.key=value overrides on top. Exit codes: 0 when the
run is complete, 75 (EXIT_PREEMPTED) when a stop signal made it save and leave early: run the same
command again to resume. Bad config values exit with an error naming the key before any work starts.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from gssm_jax import config as config_lib
from gssm_jax import hostmem
from gssm_jax.exitcodes import EXIT_BAD_CONFIG, EXIT_OK, EXIT_PREEMPTED
from gssm_jax.train.stopping import StopFlag

__all__ = ["EXIT_BAD_CONFIG", "EXIT_OK", "EXIT_PREEMPTED", "main"]

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    default=config_lib.__file__,
    help_string="ml_collections config file",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (default: ./runs/<time>)")


def under_slurm_multitask() -> bool:
    """True inside an srun step of a job with several tasks."""
    return (
        "SLURM_STEP_ID" in os.environ
        and int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1
    )


def initialize_distributed(dist) -> None:
    """Joins the multi-process JAX runtime when coordinator flags are given or under Slurm."""
    import jax

    if jax.config.jax_platforms in (None, "", "cpu") or "cpu" in str(jax.config.jax_platforms):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if dist.coordinator:
        if dist.num_processes is None or dist.process_id is None:
            raise config_lib.ConfigError(
                "config distributed.coordinator is set: distributed.num_processes and "
                "distributed.process_id are required too"
            )
        jax.distributed.initialize(dist.coordinator, dist.num_processes, dist.process_id)
    elif under_slurm_multitask():
        jax.distributed.initialize()


def saved_run_config(workdir: str):
    """Without --config, a workdir's own config.json (e.g. one `python -m gssm_jax.kron` wrote)
    with this command line's --config.key=value overrides on top; else None."""
    path = os.path.join(workdir, "config.json")
    if flags.FLAGS["config"].present or not os.path.isfile(path):
        return None
    config = config_lib.config_from_json(path)
    for key, value in config_flags.get_override_values(flags.FLAGS["config"]).items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    config = _CONFIG.value
    workdir = _WORKDIR.value or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    try:
        config = saved_run_config(workdir) or config
        config_lib.validate(config)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    workdir = os.path.abspath(workdir)
    # From here on a stop signal is kept for the loop (exit 75, requeue) instead of killing the
    # process, also while JAX starts, joins the other processes and compiles.
    stop = StopFlag()
    stop.install()
    kept = hostmem.apply(config.runtime.keep_freed_memory)  # before JAX starts its threads
    try:
        initialize_distributed(config.distributed)

        from gssm_jax.checkpoint import CheckpointMismatchError
        from gssm_jax.train.loop import train_and_evaluate

        print(f"gssm_jax: writing to {workdir} (malloc keeps freed memory: {kept})", flush=True)
        try:
            return train_and_evaluate(config, workdir, stop)
        except (config_lib.ConfigError, CheckpointMismatchError) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_BAD_CONFIG
    finally:
        stop.restore()


def run() -> None:
    app.run(main)


if __name__ == "__main__":
    run()
