"""Kronecker surgery on a run, and the table of a surgery sweep.

    python -m gssm_jax.kron --from RUN --out NEWRUN [--step N] [--init vanloan|prune|random]
        [--terms r] [--factor m2xn2] [--steps K] [--seed s] [--config.KEY=VALUE ...]
    python -m gssm_jax.kron --table SWEEP_DIR --from DENSE_RUN

Replaces every SwiGLU MLP matrix of RUN's checkpoint (any family with an MLP) by a sum of r
Kronecker products and writes NEWRUN (factorised checkpoint, fresh optimizer moments, RUN's data
position, config with model.mlp='kronecker' and optim.steps = N + K, kron.json), which
`python -m gssm_jax.main --workdir NEWRUN` continues. `--config.KEY=VALUE` overrides apply to
NEWRUN's config. `--table` prints the Markdown table of a `launch/kron_sweep.sh` folder.
Library: gssm_jax/train/surgery.py. Errors exit 2 with one line, before anything is written.
"""

from __future__ import annotations

import sys

from gssm_jax.config import ConfigError
from gssm_jax.runtime import cli


def parse_args(argv: list[str]):
    p = cli.OneLineParser(prog="gssm_jax.kron", description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", required=True, help="source run directory")
    p.add_argument("--out", help="new run directory to write (must not exist or be empty)")
    p.add_argument("--table", metavar="SWEEP_DIR", help="print the table of a kron_sweep.sh folder")
    p.add_argument("--step", type=int, help="checkpoint step of RUN (default: the latest)")
    p.add_argument("--init", default="vanloan", help="vanloan | prune | random")
    p.add_argument("--terms", type=int, default=1, help="Kronecker terms r per matrix")
    p.add_argument("--factor", default="", help="second factor m2xn2 of the gate/up matrices")
    p.add_argument("--steps", type=int, help="fine-tuning steps (default: RUN's optim.steps)")
    p.add_argument("--seed", type=int, default=0, help="seed of --init random")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        rest, overrides = cli.split_overrides(sys.argv[1:] if argv is None else argv)
    except ConfigError as e:
        return cli.report_error(e)
    a = parse_args(rest)
    from absl import logging

    from gssm_jax.inference.rundir import USER_ERRORS
    from gssm_jax.train import surgery

    logging.set_verbosity(logging.ERROR)  # Orbax's notes on read-only managers
    try:
        if a.table:
            from gssm_jax.reporting.kron_table import table_lines

            print("\n".join(table_lines(a.table, a.source)))
            return 0
        args = (a.source, a.out, a.step, a.init, a.terms, a.factor, a.steps, a.seed, overrides)
        report = surgery.surgery(*args)
    except (surgery.SurgeryError, *USER_ERRORS) as e:
        return cli.report_error(e)
    surgery.print_report(report, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
