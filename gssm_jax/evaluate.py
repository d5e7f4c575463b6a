"""Evaluate kept checkpoints of a run on held-out data, without touching what the run wrote.

    python -m gssm_jax.evaluate --workdir RUN [--step N | --all] [--data stream | PATH] [--batches K]

Writes RUN/evals/<step>.json (loss, exact entropy, kl_gap, the per-position curve kl_t) for the
step (default the latest) or every kept checkpoint, on the run's held-out stream or a set written
by `gssm_jax.write_data`. Library: gssm_jax/inference/evaluation.py. Errors exit 2 with one line.
"""

from __future__ import annotations

import sys

from gssm_jax.inference import interrupt


def parse_args(argv: list[str] | None):
    from gssm_jax.runtime import cli  # after `interrupt` is in place (it loads in ~0.3 s)

    p = cli.OneLineParser(prog="gssm_jax.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="run directory (holds config.json)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    which.add_argument("--all", action="store_true", help="every kept checkpoint")
    p.add_argument("--data", default="stream", help="'stream' (held-out stream) or a set's path")
    p.add_argument("--batches", type=cli.positive_int, help="default: the run's eval.batches")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from gssm_jax.inference.evaluation import evaluate_run  # JAX: after the flags are checked
    from gssm_jax.inference.rundir import run_cli

    return run_cli(evaluate_run, a.workdir, a.step, a.all, a.data, a.batches)


if __name__ == "__main__":
    sys.exit(interrupt.run_main(main))
