"""What a report draws and writes: which keys colour and group the figures, and the report itself
(the library of `python -m gssm_jax.report`)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

from gssm_jax.reporting.runs import ReportError
from gssm_jax.reporting.series import NO_HEATMAP, SEED_KEYS
from gssm_jax.reporting.stat_options import Options

FACTS = ("hidden_nodes", "alpha_x", "alpha_z", "family", "params", "train_sequences", "vocab")


def _candidates(table, keys) -> list[str]:
    """The keys that vary among the runs, leaving out whole-graph JSON values."""
    from gssm_jax.reporting.table import varying

    return [k for k in varying(table, keys) if not table[k].astype(str).str.startswith("{").any()]


def choose(table, exclude=(), prefixes=()) -> str | None:
    """The first varying grid key, else derived fact, that is not excluded and not a seed."""
    from gssm_jax.reporting.table import grid_keys

    for key in _candidates(table, [*grid_keys(table), *FACTS]):
        if key not in (*exclude, *SEED_KEYS) and not any(key.startswith(p) for p in prefixes):
            return key
    return None


def _heatmap_pair(table) -> tuple[str, str] | None:
    """The first two candidate keys (choose's order) that form a grid: among the runs holding
    both, each takes two values or more (keys of two different sweeps never do)."""
    from gssm_jax.reporting.table import grid_keys

    keys = [k for k in _candidates(table, [*grid_keys(table), *FACTS]) if k not in SEED_KEYS]
    for i, kx in enumerate(keys):
        for ky in keys[i + 1 :]:
            both = table[table[kx].notna() & table[ky].notna()]
            if both[kx].nunique() > 1 and both[ky].nunique() > 1:
                return kx, ky
    return None


@dataclasses.dataclass(frozen=True)
class Keys:
    """What the figures plot: the colour key, one group key per scaling plot, the heatmap's keys."""

    color: str
    group_params: str | None
    group_sequences: str | None
    heatmap: tuple[str, str] | None
    metric: str  # best_eval_kl_gap or eval_kl_gap


def choose_keys(table, args: ReportRequest) -> Keys:
    # runs of several families: coloured and grouped by family (a line never joins two families)
    family = "family" if "family" in _candidates(table, ["family"]) else None
    heat: tuple[str, str] | None = (args.heatmap[0], args.heatmap[1]) if args.heatmap else None
    if heat is None and {"alpha_x", "alpha_z"} <= set(_candidates(table, ["alpha_x", "alpha_z"])):
        heat = ("alpha_x", "alpha_z")
    if heat is None:
        heat = _heatmap_pair(table)
    return Keys(
        color=args.color or family or choose(table) or "run",
        group_params=args.group or family or choose(table, ("params",), ("model.",)),
        group_sequences=args.group
        or family
        or choose(table, ("train_sequences", "data.train_sequences")),
        heatmap=heat,
        metric="best_eval_kl_gap" if args.metric == "best" else "eval_kl_gap",
    )


def figure_plan(runs, table, keys: Keys) -> list[tuple[str, str, Callable]]:
    """(file name, caption, path -> None or the reason nothing was drawn) per figure."""
    from gssm_jax.reporting import figures

    which = "best" if keys.metric == "best_eval_kl_gap" else "final"
    heat = keys.heatmap
    return [
        (
            "kl_gap_vs_tokens.png",
            f"held-out kl_gap against tokens seen, colour: {keys.color}",
            lambda p: figures.kl_gap_vs_tokens(runs, table, keys.color, p),
        ),
        (
            "kl_gap_vs_params.png",
            f"{which} eval kl_gap against parameters, colour: {keys.group_params or 'none'}; a "
            "line joins runs equal in every other varying key",
            lambda p: figures.scaling(table, "params", keys.metric, keys.group_params, p),
        ),
        (
            "kl_gap_vs_train_sequences.png",
            f"{which} eval kl_gap against training sequences, colour: "
            f"{keys.group_sequences or 'none'}; a line joins runs equal in every other varying key",
            lambda p: figures.scaling(
                table, "train_sequences", keys.metric, keys.group_sequences, p
            ),
        ),
        (
            "heatmap.png",
            f"{which} eval kl_gap over {heat[0]} x {heat[1]}" if heat else "heatmap",
            lambda p: figures.heatmap(table, *heat, keys.metric, p) if heat else NO_HEATMAP,
        ),
        (
            "kl_t.png",
            f"per-position KL gap, colour: {keys.color}",
            lambda p: figures.kl_t_curves(runs, table, keys.color, p),
        ),
    ]


@dataclasses.dataclass(frozen=True)
class ReportRequest:
    """The runs to report (run directories, `launch.submit` roots or folders of them), where to
    write (default PATH/report of the first), and the keys the figures use (None: chosen)."""

    paths: list[str]
    out: str | None = None
    color: str | None = None
    group: str | None = None
    heatmap: tuple[str, str] | None = None
    metric: str = "best"
    keys: list[str] = dataclasses.field(default_factory=list)
    quiet: bool = False
    stats: Options = Options()  # --where, --compare, --fit, --spread, --page, --notes


def build_report(args: ReportRequest) -> Path:
    """Reads the runs, writes OUT/runs.csv, the figures and OUT/index.html; returns OUT.
    ReportError for paths without runs and for keys that are no column."""
    from gssm_jax.reporting import analysis, interactive, page, results_page
    from gssm_jax.reporting.runs import find_runs, load_run
    from gssm_jax.reporting.table import runs_table

    def say(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    out = Path(args.out) if args.out else Path(args.paths[0]).expanduser() / "report"
    if args.out and (out.is_file() or any(p.is_file() for p in out.parents)):
        blocker = out if out.is_file() else next(p for p in out.parents if p.is_file())
        raise ReportError(f"--out {args.out}: {blocker} is a file, not a directory")
    refs = find_runs(args.paths)
    start = time.perf_counter()
    runs = []
    for i, ref in enumerate(refs, 1):
        runs.append(load_run(ref))
        say(f"[{i}/{len(refs)}] {ref.name}: {runs[-1].status}")
    named = [w.partition("=")[0] for w in args.stats.where] + [
        (args.stats.compare or "").partition("=")[0]
    ]
    wanted = [k for k in (args.color, args.group, *(args.heatmap or ()), *named) if k]
    say(f"table of {len(runs)} runs (parameter counts from each config) ...")
    table = runs_table(runs, [*args.keys, *wanted])
    if args.stats.where:
        table, runs = analysis.where(table, runs, args.stats.where)
    missing = [k for k in wanted if k not in table or table[k].isna().all()]
    if missing:
        raise ReportError(
            f"key {missing[0]!r}: not a column of the table nor a config key of any run; "
            f"columns: {', '.join(c for c in table.columns if c not in missing)}"
        )
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "runs.csv", index=False)
    say(f"wrote {out / 'runs.csv'}")
    drawn = []
    keys = choose_keys(table, args)
    for name, caption, draw in figure_plan(runs, table, keys):
        reason = draw(out / name)
        if reason is None:
            say(f"wrote {out / name}")
        else:
            (out / name).unlink(missing_ok=True)  # a figure from an earlier report would mislead
            say(f"skipped {name}: {reason}")
        drawn.append((name, caption, reason))
    extra, tables = analysis.analyse(table, runs, keys.metric, args.stats, out)
    for name, _, reason in extra:
        say(f"wrote {out / name}" if reason is None else f"skipped {name}: {reason}")
    drawn += extra
    sources = [str(Path(p).expanduser()) for p in args.paths]
    title = f"gssm_jax report: {', '.join(Path(s).name for s in sources)}"
    groups = (keys.group_params, keys.group_sequences)
    charts = interactive.page_figures(
        runs, table, out, keys.color, groups, keys.heatmap, keys.metric
    )
    (out / "index.html").write_text(page.render(title, sources, table, drawn, *charts))
    if args.stats.page:
        heading = title.removeprefix("gssm_jax report: ") if len(sources) < 4 else "Results"
        written = results_page.write(
            Path(args.stats.page), out, heading, table, drawn, tables, keys.metric,
            args.stats.compare, args.stats.notes,
        )  # fmt: skip
        say(f"wrote {written}")
    counts = table["status"].value_counts().to_dict()
    took = time.perf_counter() - start
    say(f"wrote {out / 'index.html'} ({len(runs)} runs: {counts}; {took:.1f} s)")
    return out
