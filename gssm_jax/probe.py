"""Linear probes of a run's activations for every hidden node of its GSSM.

    python -m gssm_jax.probe --workdir RUN [--step N | --init] [--sequences N] [--positions ...]

Fits one linear softmax probe per (layer, hidden node) on held-out sequences with their true
hidden states and scores it against the truth and the exact filtering posterior's accuracy (the
ceiling of any causal reader). Writes RUN/probe/<step>.json and .png and prints the table.
Library: gssm_jax/probing/. Errors exit 2 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gssm_jax.inference import interrupt
from gssm_jax.inference.rundir import run_cli
from gssm_jax.probing import fit, pipeline, probe_table
from gssm_jax.runtime import cli


def _parser() -> argparse.ArgumentParser:
    p = cli.OneLineParser(prog="python -m gssm_jax.probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", required=True, help="run directory (config.json, checkpoints/)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, default=None, help="checkpoint (default: latest)")
    which.add_argument("--init", action="store_true", help="probe a fresh init of the model")
    p.add_argument("--sequences", type=int, default=4096, help="held-out sequences")
    p.add_argument("--test-fraction", type=float, default=0.25, help="sequences held for scoring")
    p.add_argument("--positions", nargs="+", help="positions t or ranges a:b; default 1..T-2")
    p.add_argument("--layers", nargs="+", help="layers (default: embed and every block output)")
    p.add_argument("--parts", action="store_true", help="also every block's sublayer outputs")
    p.add_argument("--out", default=None, help="output directory (default: RUN/probe)")
    p.add_argument("--data-seed", type=int, default=None, help="stream (default: eval.seed)")
    p.add_argument("--batch", type=int, default=256, help="sequences per forward")
    s = fit.ProbeSettings
    p.add_argument("--steps", type=int, default=s.steps, help="probe steps")
    p.add_argument("--probe-batch", type=int, default=s.batch, help="rows")
    p.add_argument("--lr", type=float, default=s.lr)
    p.add_argument("--weight-decay", type=float, default=s.weight_decay)
    p.add_argument("--seed", type=int, default=s.seed, help="probe minibatches")
    return p


def probe(request: pipeline.ProbeRequest, out: str | None) -> None:
    result = pipeline.run_probe(request)
    written = pipeline.write_outputs(result, out)
    print(probe_table.table(result))
    print(pipeline.summary_line(result, written))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for flag in ("sequences", "batch", "probe_batch", "steps"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction={args.test_fraction}: must be in (0, 1)")
    if not (args.lr > 0 and args.weight_decay >= 0):
        parser.error(f"--lr={args.lr} must be > 0, --weight-decay={args.weight_decay} >= 0")
    names = {f.name for f in dataclasses.fields(pipeline.ProbeRequest)}
    request = pipeline.ProbeRequest(**{k: v for k, v in vars(args).items() if k in names})
    # ConfigError, CheckpointMismatchError and the probe's own checks are all ValueErrors
    return run_cli(probe, request, args.out, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(interrupt.run_main(main))
