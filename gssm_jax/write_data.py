"""Write the train and test sets of a dataset grid: `python -m gssm_jax.write_data --config FILE`.

`--config.KEY=VALUE` overrides any key of the grid config (e.g. `--config.n_train=1000`); `--root`
its output folder. `--task-id I --task-count N` (or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT)
writes every N-th grid entry; re-running skips finished sets and rewrites interrupted ones.
Library: gssm_jax/data/set_writer.py (format and layout there). Errors exit 2 with one line.
"""

from __future__ import annotations

import sys

from gssm_jax.data import set_grid, set_writer
from gssm_jax.runtime import cli


def main(argv: list[str] | None = None) -> int:
    parser = cli.config_parser("python -m gssm_jax.write_data", __doc__, None)
    parser.add_argument("--root", default=None, help="overrides the config's root")
    parser.add_argument("--task-id", type=int, default=None)
    parser.add_argument("--task-count", type=int, default=None)
    args, c = cli.parse_args(parser, sys.argv[1:] if argv is None else argv, None)
    try:
        if args.root is not None:
            c.root = args.root
        set_writer.write_grid(c, *set_writer.array_task(args.task_id, args.task_count))
    except (set_grid.GridError, set_writer.WriteError) as e:
        return cli.report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
