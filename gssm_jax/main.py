"""Entry point: `python -m gssm_jax.main [--config FILE] [--workdir DIR] [--config.key=value ...]`.

With no flags it trains the debug config into a fresh folder under ./runs/. Exit codes
(gssm_jax/exitcodes.py): 0 when the run is complete; 2 for a bad flag, config value, config file,
workdir or data set, a resume whose config changes the experiment, or no checkpoint that restores,
each named in one line before any work starts; 75 when a stop signal made it save and leave
early (run the same command again to resume); 130 when a second Ctrl-C stopped it at once.
Without --config, a --workdir holding a config.json (a run, or one `python -m gssm_jax.kron`
wrote) runs that config, with the command line's --config.KEY=VALUE overrides on top.
"""

from __future__ import annotations

import os
import sys
import time

from gssm_jax import cli, cpudevices, hostmem
from gssm_jax import config as config_lib
from gssm_jax.exitcodes import EXIT_BAD_CONFIG, EXIT_OK, EXIT_PREEMPTED
from gssm_jax.train.stopping import StopFlag

__all__ = ["EXIT_BAD_CONFIG", "EXIT_OK", "EXIT_PREEMPTED", "main"]

DEFAULT_CONFIG = config_lib.__file__  # its get_config() is the debug config (= configs/debug.py)


def parse(argv: list[str]) -> tuple[object, object]:
    """(flags, config with overrides); a bad argument exits 2 with one line."""
    parser = cli.config_parser("python -m gssm_jax.main", __doc__, "configs/debug.py")
    parser.add_argument("--workdir", default=None, help="run directory (default: ./runs/<time>)")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a workdir even when the config changes the experiment (graph, seeds, model, "
        "optimiser, batch, data); the changed keys are listed and recorded in config.<n>.json",
    )
    args, config = cli.parse_args(parser, argv, DEFAULT_CONFIG)
    saved = os.path.join(args.workdir or "", "config.json")
    if args.config is None and args.workdir and os.path.isfile(saved):
        config = saved_run_config(saved, argv)
    return args, config


def check_workdir(workdir: str) -> None:
    """ConfigError when `workdir` or a folder above it exists but is not a directory."""
    path = workdir
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if os.path.exists(path) and not os.path.isdir(path):
        what = "is" if path == workdir else f"is under {path!r}, which is"
        raise config_lib.ConfigError(f"--workdir {workdir!r} {what} a file, not a directory")


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


def saved_run_config(path: str, argv: list[str]):
    """A workdir's own `config.json` with the command line's --config.KEY=VALUE overrides on top."""
    try:
        config = config_lib.config_from_json(path)
        for key, text in cli.split_overrides(argv)[1]:
            cli.apply_override(config, key, text)
    except (OSError, ValueError) as e:
        cli.exit_with_error(e)
    return config


def main(argv: list[str]) -> int:
    args, config = parse(argv[1:])
    workdir = os.path.abspath(args.workdir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))
    try:
        config_lib.validate(config)
        check_workdir(workdir)
    except ValueError as e:
        cli.exit_with_error(e)
    # From here on a stop signal is kept for the loop (exit 75, requeue) instead of killing the
    # process, also while JAX starts, joins the other processes and compiles.
    stop = StopFlag()
    stop.install()
    kept = hostmem.apply(config.runtime.keep_freed_memory)  # before JAX starts its threads
    cpudevices.apply(config.runtime.cpu_devices, config.data.batch_size)  # before JAX's client
    try:
        from absl import logging

        logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
        initialize_distributed(config.distributed)

        from gssm_jax.train.loop import START_ERRORS, train_and_evaluate

        print(f"gssm_jax: writing to {workdir} (malloc keeps freed memory: {kept})", flush=True)
        try:
            return train_and_evaluate(config, workdir, stop, args.allow_config_change)
        except START_ERRORS as e:
            cli.exit_with_error(e)
    finally:
        stop.restore()


def run() -> None:
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
