"""Train: `python -m gssm_jax.main [--config FILE] [--workdir DIR] [--config.KEY=VALUE ...]`.

With no flags it trains the debug config into a fresh folder under ./runs/. Exit codes
(gssm_jax/runtime/exitcodes.py, docs/running.md): 0 when the run is complete; 2 for a bad flag,
config value, config file, workdir or data set, a resume whose config changes the experiment, or
no checkpoint that restores, each named in one line before any work starts; 65 when the loss
diverged (optim.nonfinite), and for a resume of a diverged run; 69 when another process of a
multi-process run died; 74 when a checkpoint or metrics write failed (a full disk, say); 75 when
a stop signal made it save and leave early (run the same command again to resume); 130 when a
second Ctrl-C stopped it at once. Without --config, a --workdir holding a config.json (a run, or one that
`python -m gssm_jax.kron` wrote) runs that config, with the command line's overrides on top.
"""

from __future__ import annotations

import os
import sys
import time

from gssm_jax.config import validate
from gssm_jax.runtime import cli, cpudevices, hostmem, peers
from gssm_jax.runtime.exitcodes import EXIT_DIVERGED, EXIT_WRITE_FAILED
from gssm_jax.runtime.writes import WriteError, cause_of, path_of
from gssm_jax.train.stopping import StopFlag
from gssm_jax.train.workdir import DivergedRunError, check_workdir


def parse(argv: list[str]):
    """(flags, config with overrides); a bad argument exits 2 with one line."""
    parser = cli.config_parser("python -m gssm_jax.main", __doc__, "configs/debug.py")
    parser.add_argument("--workdir", default=None, help="run directory (default: ./runs/<time>)")
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a workdir even when the config changes the experiment (graph, seeds, model, "
        "optimiser, batch, data); the changed keys are listed and recorded in config.<n>.json",
    )
    args, config = cli.parse_args(parser, argv, cli.DEFAULT_CONFIG_FILE)
    saved = os.path.join(args.workdir or "", "config.json")
    if args.config is None and args.workdir and os.path.isfile(saved):
        config = cli.saved_run_config(saved, argv)
    return args, config


def main(argv: list[str]) -> int:
    args, config = parse(argv[1:])
    workdir = os.path.abspath(args.workdir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")))
    try:
        validate(config)
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
        from gssm_jax.train.loop import START_ERRORS, train_and_evaluate

        try:
            return train_and_evaluate(config, workdir, stop, args.allow_config_change, kept)
        except START_ERRORS as e:
            return cli.report_error(e)
        except DivergedRunError as e:
            print(f"gssm_jax: {e}", file=sys.stderr, flush=True)
            return EXIT_DIVERGED
        except OSError as e:  # a write of the run's start (config.json, folders): the disk
            cause = cause_of(e)
            if cause is None:
                raise
            path = e.path if isinstance(e, WriteError) else path_of(e, workdir)
            print(f"gssm_jax: cannot write {path}: {cause}", file=sys.stderr, flush=True)
            return EXIT_WRITE_FAILED
    finally:
        stop.restore()


def run() -> None:
    code = main(sys.argv)
    peers.farewell(code)  # the other processes of a multi-process run: how this one ends
    if code == EXIT_WRITE_FAILED:
        # Orbax's failed save leaves coroutines and threads whose teardown prints tracebacks at
        # interpreter exit; the run has said what failed, so it leaves without that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
