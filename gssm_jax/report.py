"""Many runs turned into a table and figures: `python -m gssm_jax.report PATH... [--out DIR]`.

PATH is a run directory, a `launch.submit` root, or a folder holding them. DIR (default
PATH/report) gets `runs.csv` (one row per run), PNG figures (KL gap against tokens, parameters and
training sequences, a heatmap over two keys, per-position KL curves where `gssm_jax.evaluate`
wrote them) and `index.html` showing both (interactive plotly charts, a sortable table). `--wandb [online|offline]`
also sends every run to Weights & Biases, only what it has not sent yet (docs/dashboards.md).
Needs the `report` extra (matplotlib, pandas, plotly): `pip install -e ".[report]"`, and for
`--wandb` the `wandb` extra. Library: gssm_jax/reporting/. Errors exit 2 with one line (a failed
upload exits 1).
"""

from __future__ import annotations

import sys

from gssm_jax.reporting import stat_options
from gssm_jax.runtime import cli


def parse_args(argv: list[str]):
    p = cli.OneLineParser(prog="python -m gssm_jax.report", description=__doc__.split("\n")[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="run directory, submit root, folder")
    p.add_argument("--out", help="output folder (default: PATH/report for the first PATH)")
    p.add_argument("--color", help="key colouring the curves (default: the first varying grid key)")
    p.add_argument(
        "--group",
        help="key giving one line per value in the scaling plots (default: "
        "the first varying key other than the x axis's own and the seeds)",
    )
    p.add_argument(
        "--heatmap",
        nargs=2,
        metavar=("X", "Y"),
        help="keys of the heatmap (default: alpha_x alpha_z when both vary)",
    )
    p.add_argument(
        "--metric",
        choices=("best", "final"),
        default="best",
        help="eval kl_gap of the "
        "scaling plots and heatmap: the best seen or the last (default best)",
    )
    p.add_argument(
        "--keys",
        nargs="+",
        default=[],
        metavar="KEY",
        help="more config keys as columns (e.g. optim.lr), usable by --color/--group/--heatmap",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    stat_options.add_arguments(p)  # --where --compare --fit --spread --page --notes
    w = p.add_argument_group("Weights & Biases (the wandb extra: pip install -e '.[wandb]')")
    w.add_argument("--wandb", nargs="?", const="online", choices=("online", "offline"),
                   help="also send the runs to wandb (offline: into DIR/wandb/ for `wandb sync`)")  # fmt: skip
    w.add_argument("--wandb-project", help="project (default: each run's log.wandb.project)")
    w.add_argument("--wandb-entity", help="entity (default: each run's log.wandb.entity)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import matplotlib  # noqa: F401
        import pandas  # noqa: F401
        import plotly  # noqa: F401
    except ImportError as e:
        return cli.report_error(
            ImportError(
                f"the report needs matplotlib, pandas, plotly ({e}): pip install -e '.[report]'"
            )
        )
    from gssm_jax.config import ConfigError
    from gssm_jax.reporting.plan import ReportError, ReportRequest, build_report
    from gssm_jax.reporting.upload import UploadError, upload_paths
    from gssm_jax.train.wandb_sink import require_wandb

    try:
        require_wandb(a.wandb or "disabled", key="--wandb")
    except ConfigError as e:
        return cli.report_error(e)

    heat = tuple(a.heatmap) if a.heatmap else None
    opts = stat_options.Options(a.where, a.compare, a.fit, a.spread, a.page, a.notes)
    request = ReportRequest(a.paths, a.out, a.color, a.group, heat, a.metric, a.keys, a.quiet, opts)
    try:
        build_report(request)
        if a.wandb:
            say = (lambda m: None) if a.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
            upload_paths(a.paths, a.wandb, a.wandb_project, a.wandb_entity, say=say)
    except ReportError as e:
        return cli.report_error(e)
    except UploadError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
