"""How hard the graph of a run config is: `python -m gssm_jax.difficulty --config FILE [...]`.

`--alphas-x 1e-3 1e-2 --alphas-z 0.05 0.5` prints the chosen measures (gzip proxy, normalised
entropy, the original's zlib_int64_bytes) over a grid of alpha_X x alpha_Z on `config.data.graph`
(kernels from `data.graph_seed`, sequences from `data.seed`); with `--target V` it searches the
alpha (of X with `--search x`, of every hidden node with `--search z`) at which `--measure`
reaches V. Library: gssm_jax/gssm/measure.py. Bad flags or config exit 2 with one line.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

from gssm_jax.config import graph_of, require_process, validate
from gssm_jax.gssm import measure
from gssm_jax.runtime import cli


def _parser():
    p = cli.config_parser("python -m gssm_jax.difficulty", __doc__, "configs/debug.py")
    alphas: dict[str, Any] = dict(type=float, nargs="+", default=None)
    p.add_argument("--alphas-x", **alphas, help="alpha of X (default: as in the config)")
    p.add_argument("--alphas-z", **alphas, help="alpha of every hidden node (default: config)")
    p.add_argument("--batch", type=int, default=None, help="sequences measured (default 32)")
    p.add_argument("--seq-len", type=int, default=None, help="default 1024")
    choices: dict[str, Any] = dict(choices=measure.MEASURES)
    p.add_argument("--measures", nargs="+", default=["gzip", "entropy"], **choices)
    p.add_argument(
        "--original",
        action="store_true",
        help="the original's setup: batch 1024, seq-len 2048, data seed 42, initial token not "
        "measured; --batch/--seq-len still override",
    )
    p.add_argument("--mc-draws", type=int, default=64, help="kernel draws for context graphs")
    p.add_argument("--target", type=float, default=None, help="search the alpha reaching this")
    p.add_argument("--search", choices=("x", "z"), default="x", help="which alpha to search")
    p.add_argument("--measure", default="entropy", help="measure to search on", **choices)
    p.add_argument("--tol", type=float, default=0.01, help="tolerance of the search")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, config = cli.parse_args(
        parser, sys.argv[1:] if argv is None else argv, cli.DEFAULT_CONFIG_FILE
    )
    base = measure.ORIGINAL_SETUP if args.original else measure.Setup()
    batch = base.batch if args.batch is None else args.batch
    seq_len = base.seq_len if args.seq_len is None else args.seq_len
    for flag, value, low in (
        ("batch", batch, 1),
        ("mc-draws", args.mc_draws, 1),
        ("seq-len", seq_len, 2),
    ):
        if value < low:
            parser.error(f"--{flag}={value}: must be >= {low}")
    for flag, given in (("alphas-x", args.alphas_x), ("alphas-z", args.alphas_z)):
        for a in (a for a in given or () if not (math.isfinite(a) and a > 0)):
            parser.error(f"--{flag}: {a} is not a finite alpha > 0")
    try:
        validate(config)
        require_process(config, "gssm_jax.difficulty")
        graph = graph_of(config)
        setup = dataclasses.replace(
            base,
            graph_seed=config.data.graph_seed,
            data_seed=base.data_seed if args.original else config.data.seed,
            batch=batch,
            seq_len=seq_len,
            mc_draws=args.mc_draws,
        )
        print(measure.describe(graph, setup))
        if args.target is None:
            grid = (args.alphas_x or [None], args.alphas_z or [None], tuple(args.measures))
            print("\n".join(measure.grid_table(graph, setup, *grid, progress=sys.stderr)))
            return 0
        found = measure.search_alpha(
            graph, args.target, args.search, args.measure, setup, tol=args.tol
        )
    except ValueError as e:
        return cli.report_error(e)
    print("\n".join(found.lines(args.search, args.measure)))
    return 0 if found.converged else 1


if __name__ == "__main__":
    sys.exit(main())
