"""How hard the graph of a run config is: `python -m gssm_jax.difficulty --config FILE [...]`.

`--alphas-x 1e-3 1e-2 --alphas-z 0.05 0.5` prints the gzip proxy and the normalised entropy for a
grid of alpha_X x alpha_Z values on the graph `config.data.graph` (kernels from
`config.data.graph_seed`, sequences from `config.data.seed`; `--config.KEY=VALUE` overrides any
key); with `--target V` it instead searches the alpha (of X with `--search x`, of every hidden node
with `--search z`) at which the chosen measure reaches V. The measures: gssm_jax/gssm/difficulty.py.
"""

from __future__ import annotations

import math
import sys
import time

from gssm_jax import cli
from gssm_jax import config as config_lib
from gssm_jax.gssm.difficulty import (
    MEASURES,
    ORIGINAL_SETUP,
    Setup,
    measure,
    search_alpha,
    with_alphas,
)
from gssm_jax.gssm.graph import Graph

DEFAULT_CONFIG = config_lib.__file__  # the debug config


def _fmt(v: float | None) -> str:
    return "config" if v is None else f"{v:g}"


def _grid(graph: Graph, setup: Setup, alphas_x, alphas_z, measures=("gzip", "entropy")) -> None:
    label = {"entropy": "entropy" + (f" (MC {setup.mc_draws})" if graph.has_context else "")}
    cells = [(ax, az) for ax in alphas_x for az in alphas_z]
    rows = []
    for k, (ax, az) in enumerate(cells, 1):
        start = time.perf_counter()
        values = measure(with_alphas(graph, ax, az), setup, measures)
        took = time.perf_counter() - start
        shown = ", ".join(f"{label.get(m, m)} {values[m]:.4f}" for m in measures)
        print(
            f"[{k}/{len(cells)}] alpha_X={_fmt(ax)} alpha_Z={_fmt(az)}: {shown} ({took:.1f} s)",
            file=sys.stderr,
            flush=True,
        )
        rows.append((_fmt(ax), _fmt(az), *(f"{values[m]:.4f}" for m in measures)))
    header = ("alpha_X", "alpha_Z", *(label.get(m, m) for m in measures))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def _parser():
    parser = cli.config_parser("python -m gssm_jax.difficulty", __doc__, "configs/debug.py")
    alphas = dict(type=float, nargs="+", default=None)
    parser.add_argument("--alphas-x", **alphas, help="alpha of X (default: as in the config)")
    parser.add_argument(
        "--alphas-z", **alphas, help="alpha of every hidden node (default: as in the config)"
    )
    parser.add_argument("--batch", type=int, default=None, help="sequences measured (default 32)")
    parser.add_argument("--seq-len", type=int, default=None, help="default 1024")
    parser.add_argument(
        "--measures",
        nargs="+",
        choices=MEASURES,
        default=["gzip", "entropy"],
        help="measures of the grid table (zlib_int64_bytes: the original system's scale)",
    )
    parser.add_argument(
        "--original",
        action="store_true",
        help="the original's setup (seeds/004): batch 1024, seq-len 2048, data seed 42, "
        "initial token not measured; --batch/--seq-len still override",
    )
    parser.add_argument("--mc-draws", type=int, default=64, help="kernel draws for context graphs")
    parser.add_argument("--target", type=float, default=None, help="search the alpha reaching this")
    parser.add_argument("--search", choices=("x", "z"), default="x", help="which alpha to search")
    parser.add_argument(
        "--measure", choices=MEASURES, default="entropy", help="measure to search on"
    )
    parser.add_argument("--tol", type=float, default=0.01, help="tolerance of the search")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, config = cli.parse_args(parser, sys.argv[1:] if argv is None else argv, DEFAULT_CONFIG)
    base = ORIGINAL_SETUP if args.original else Setup()
    args.batch = base.batch if args.batch is None else args.batch
    args.seq_len = base.seq_len if args.seq_len is None else args.seq_len
    for flag in ("batch", "mc_draws"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')}={getattr(args, flag)}: must be >= 1")
    if args.seq_len < 2:
        parser.error(f"--seq-len={args.seq_len}: must be >= 2")
    for flag in ("alphas_x", "alphas_z"):
        for a in getattr(args, flag) or ():
            if not (math.isfinite(a) and a > 0):
                parser.error(f"--{flag.replace('_', '-')}: {a} is not a finite alpha > 0")
    try:
        graph = config_lib.graph_of(config)
    except ValueError as e:
        cli.exit_with_error(e)
    setup = Setup(
        graph_seed=config.data.graph_seed,
        data_seed=base.data_seed if args.original else config.data.seed,
        batch=args.batch,
        seq_len=args.seq_len,
        mc_draws=args.mc_draws,
        skip_initial=base.skip_initial,
    )
    nodes = ", ".join(f"{n.name}({n.state_dim}, alpha {n.alpha:g})" for n in graph.hidden)
    print(
        f"graph {nodes} -> {graph.observed.name}({graph.vocab_size}, alpha "
        f"{graph.observed.alpha:g}); {setup.batch} x {setup.seq_len} tokens, graph seed "
        f"{setup.graph_seed}, data seed {setup.data_seed}"
    )
    if args.target is None:
        _grid(graph, setup, args.alphas_x or [None], args.alphas_z or [None], tuple(args.measures))
        return 0
    try:
        result = search_alpha(graph, args.target, args.search, args.measure, setup, tol=args.tol)
    except ValueError as e:
        cli.exit_with_error(e)
    for alpha, value in result.evaluations:
        print(f"  alpha_{args.search.upper()}={alpha:.6g}: {args.measure} {value:.4f}")
    status = "within" if result.converged else "NOT within"
    print(
        f"alpha_{args.search.upper()}={result.alpha:.6g} gives {args.measure} {result.value:.4f}, "
        f"{status} {result.tol} of the target {result.target}"
    )
    return 0 if result.converged else 1


if __name__ == "__main__":
    sys.exit(main())
