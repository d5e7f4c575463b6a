"""The report's statistics over seeds (docs/statistics.md): `--where`, `--compare`, `--fit`, and the
seed-band figures every report gets. Each step returns what it wrote as figures (file name,
caption, reason it was not drawn or None) and as tables (name -> DataFrame) for the pages."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gssm_jax.reporting import paired, scaling, stat_figures, stats
from gssm_jax.reporting.runs import ReportError, RunRecord, finite
from gssm_jax.reporting.stat_options import FIT_AXES, Options
from gssm_jax.reporting.stats import SEED_KEYS, StatsError

Figure = tuple[str, str, str | None]


def _matches(value, wanted: str) -> bool:
    value = stats.cell(value)
    if value is None:
        return wanted.lower() in ("", "none", "nan")
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(wanted) == float(value)
        except ValueError:
            return False
    return str(value) == wanted


def where(
    table: pd.DataFrame, runs: list[RunRecord], specs: Sequence[str]
) -> tuple[pd.DataFrame, list[RunRecord]]:
    """The rows (and runs) whose columns match every KEY=VALUE of `specs`."""
    keep = np.ones(len(table), bool)
    for spec in specs:
        key, sep, wanted = spec.partition("=")
        if not sep or not key:
            raise ReportError(f"--where {spec!r}: expected KEY=VALUE")
        if key not in table:
            raise ReportError(
                f"--where {spec}: no column {key!r}; columns: {', '.join(table.columns)}"
            )
        keep &= np.array([_matches(v, wanted) for v in table[key]], bool)
    if not keep.any():
        raise ReportError(f"--where {' '.join(specs)}: no run matches")
    return table[keep].reset_index(drop=True), [r for r, k in zip(runs, keep) if k]


def _one_to_one(table: pd.DataFrame, a: str, b: str) -> bool:
    return b in stats.functions_of(table, a, [b]) and a in stats.functions_of(table, b, [a])


def swept_keys(table: pd.DataFrame, metric: str) -> list[str]:
    """The varying non-seed keys among runs with the metric, one of each set of keys that fix
    each other (model.emb_dim and params: the first)."""
    data = table[np.isfinite(stats.metric_values(table, metric))].reset_index(drop=True)
    out: list[str] = []
    for key in stats.condition_keys(data):
        if data[key].astype(str).str.startswith("{").any() or key == "path":
            continue
        if not any(_one_to_one(data, key, k) for k in out):
            out.append(key)
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _draw(
    name: str, caption: str, out: Path, draw: Callable[..., str | None], *args, **kw
) -> Figure:
    """`draw(*args, path=OUT/NAME, **kw)`: the figure, or why not (a statistics error included)."""
    try:
        reason = draw(*args, path=out / name, **kw)
    except (StatsError, scaling.FitError) as e:
        reason = str(e)
    if reason is not None:
        (out / name).unlink(missing_ok=True)
    return name, caption, reason


def seed_figures(table, runs, metric: str, out: Path, spread: str) -> list[Figure]:
    """`metric` against each swept key (mean over seeds, error bars), and the eval curves of
    each condition with a band over its seeds."""
    figures = [
        _draw(
            f"mean_vs_{_safe(key)}.png",
            f"{metric} against {key}: mean and {spread} over seeds, seed count in the legend",
            out,
            stat_figures.metric_vs_key,
            table,
            key,
            metric,
            spread=spread,
        )
        for key in swept_keys(table, metric)
    ]
    caption = (
        f"held-out kl_gap against tokens seen: mean and {spread} band over seeds per condition"
    )
    figures.append(_draw("curves.png", caption, out, curve_bands, table, runs, spread=spread))
    return figures


def curve_bands(table, runs: list[RunRecord], path: Path, spread: str = "std") -> str | None:
    """Eval kl_gap against tokens, one mean line per condition with a band over its seeds (runs
    of a condition that logged different steps: the steps all have)."""
    import matplotlib.pyplot as plt

    keys = [k for k in swept_keys(table, "eval_kl_gap")]
    groups = stats.conditions(table, keys)
    if not groups or not any(r.eval for r in runs):
        return "no run has an eval record"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = 0
    for colour, (values, rows_i) in zip(stat_figures.colours(len(groups)), groups):
        curves = []
        for i in rows_i:
            row, run = table.iloc[i], runs[i]
            per_step = row["tokens"] / row["step"] if row["tokens"] and row["step"] else None
            points = {r["step"]: finite(r.get("kl_gap")) for r in run.eval if per_step}
            curves.append({s: g for s, g in points.items() if g is not None})
        common = sorted(set.intersection(*(set(c) for c in curves)) if curves else set())
        if not common:
            continue
        y = np.array([[c[s] for s in common] for c in curves])
        t = np.array(common) * per_step
        summary = pd.DataFrame([stats.summarize(col) for col in y.T])
        mean = summary["mean"].to_numpy()
        name = stat_figures.label(keys, values) or "all runs"
        ax.plot(t, mean, color=colour, marker=".", label=f"{name} (n={len(y)})")
        drawn += 1
        if len(y) > 1:
            down, up = stats.error_bars(summary, spread)
            ax.fill_between(t, mean - down, mean + up, color=colour, alpha=0.2, linewidth=0)
    if not drawn:
        plt.close(fig)
        return "no condition has eval steps that all its runs logged"
    ax.set(xscale="log", xlabel="tokens seen", ylabel="eval kl_gap (nats/token)")
    ax.set_title(
        f"held-out KL gap: mean {stat_figures.SPREAD_LABEL[spread]} over seeds", fontsize="medium"
    )
    ax.grid(True, which="both", alpha=0.3)
    if len(groups) <= stat_figures.MAX_LEGEND:
        ax.legend(fontsize="small")
    stat_figures.save(fig, path)
    return None


def compare(table, runs, metric: str, spec: str, out: Path, spread: str):
    """The paired comparison table of `spec` = KEY or KEY=REFERENCE (default: KEY's first value)
    and, per cell of the other keys, the kl_t curves of its values side by side."""
    key, _, reference = spec.partition("=")
    if key not in table:
        raise ReportError(
            f"--compare {key}: no column {key!r}; columns: {', '.join(table.columns)}"
        )
    data = table[np.isfinite(stats.metric_values(table, metric))].reset_index(drop=True)
    try:
        present = sorted({stats.cell(v) for v in data[key]}, key=stats.sort_key)
        first = [v for v in present if reference and _matches(v, reference)]
        if reference and not first:
            raise StatsError(f"no run has {key}={reference} (values: {present})")
        result = paired.compare_groups(
            data, metric, key, [*first, *(v for v in present if v not in first)]
        )
    except StatsError as e:
        raise ReportError(f"--compare {key}: {e}") from None
    within = [c for c in result.columns if c not in paired.COLUMNS]
    curves = table.assign(kl_t=[(r.kl_t or {}).get("kl_t") for r in runs])
    figures = [_draw(f"compare_{_safe(key)}.png", f"mean paired difference of {metric} over {key} (value minus the reference, over the seeds) with its 95% bootstrap interval, per cell", out, paired_figure, result, key, metric)]  # fmt: skip
    named = [
        k for i, k in enumerate(within) if not any(_one_to_one(data, k, j) for j in within[:i])
    ]
    for values, rows_i in stats.conditions(curves, within):
        part = curves.iloc[rows_i]
        shown = [v for k, v in zip(within, values) if k in named]
        name = "kl_t" + "".join(f"_{_safe(str(v))}" for v in shown) + ".png"
        where_ = stat_figures.label(within, values) or "all runs"
        figures.append(
            _draw(
                name,
                f"per-position KL gap by {key}, {where_}: mean and {spread} band over seeds",
                out,
                stat_figures.kl_t_bands,
                stat_figures.curves_by(part, [key]),
                spread=spread,
            )  # fmt: skip
        )
    return result, figures


def paired_figure(result: pd.DataFrame, key: str, metric: str, path: Path) -> str | None:
    import matplotlib.pyplot as plt

    if result.empty:
        return "no pairs"
    within = [c for c in result.columns if c not in paired.COLUMNS]
    labels = [
        stat_figures.label([*within, key], [*(r[w] for w in within), r["value"]])
        for _, r in result.iterrows()
    ]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(result) + 1.5))
    y = np.arange(len(result))
    ax.errorbar(
        result["mean_diff"],
        y,
        xerr=[result["mean_diff"] - result["ci_low"], result["ci_high"] - result["mean_diff"]],
        fmt="o",
        capsize=3,
        color="black",
    )
    ax.axvline(0, color="grey", linewidth=1)
    ax.set_yticks(y, labels, fontsize="small")
    ax.set_xlabel(f"{metric} difference (value - {key}={result['reference'].iloc[0]})")
    ax.set_title("paired difference over seeds, 95% bootstrap interval", fontsize="medium")
    ax.grid(True, axis="x", alpha=0.3)
    stat_figures.save(fig, path)
    return None


def fit_cells(table: pd.DataFrame, metric: str, axes: Sequence[str]):
    """(label, rows, axes) of each fit: per cell of the other condition keys, the runs with every
    axis (finite data) and, for params, the runs without train_sequences (streams) on their own;
    a cell whose runs cross two axes also gets a one-axis fit per slice."""
    data = table[np.isfinite(stats.metric_values(table, metric))].reset_index(drop=True)
    moving = stats.varying(data, [a for a in axes if a in data])  # a constant axis ties nothing
    others = [
        k
        for k in stats.condition_keys(data)
        if k not in (*axes, "path")
        and not any(a in stats.functions_of(data, k, [a]) for a in moving)
    ]
    cells: list[tuple[str, pd.DataFrame, tuple[str, ...]]] = []
    for values, rows_i in stats.conditions(data, others):
        part = data.iloc[rows_i]
        where_ = stat_figures.label(others, values) or "all runs"
        finite_ = {a: np.isfinite(stats.metric_values(part, a)) if a in part else np.zeros(len(part), bool) for a in axes}  # fmt: skip
        every = np.all(list(finite_.values()), axis=0)
        if "params" in axes and len(axes) > 1 and (~every & finite_["params"]).any():
            cells.append((f"{where_}, stream", part[~every & finite_["params"]], ("params",)))
        if every.any():
            both = part[every]
            moving = [a for a in axes if both[a].nunique() > 1]
            cells.append((where_, both, tuple(axes)))
            if len(moving) == 2:
                for a, b in (moving, moving[::-1]):
                    for v, rows_j in stats.conditions(both, [b]):
                        if both.iloc[rows_j][a].nunique() >= 3:
                            cells.append((f"{where_}, {b}={v[0]}", both.iloc[rows_j], (a,)))
    return cells


def fits(table, metric: str, axes: Sequence[str], out: Path, spread: str):
    """The fits of fit_cells as a table (its one-line description, parameters and intervals, or
    the refusal), the fitted curves over the data, iso-KL contours of each two-axis fit, and
    the metric against training compute."""
    from gssm_jax.reporting import scaling_figures

    axes = tuple(axes) or FIT_AXES
    rows, done = [], []
    for where_, part, cell_axes in fit_cells(table, metric, axes):
        row: dict = {"runs": where_, "n": len(part)}
        try:
            fit = scaling.fit_scaling(part, metric, cell_axes)
        except scaling.FitError as e:
            rows.append({**row, "form": " + ".join(cell_axes), "fit": f"refused: {e}"})
            continue
        row["form"] = "kl(" + ", ".join(scaling.SYMBOLS.get(a, a) for a in fit.axes) + ")"
        row["fit"] = scaling.describe_fit(fit)
        for name, value in fit.params.items():
            row[name] = value
            low, high = (fit.intervals or {}).get(name, (np.nan, np.nan))
            row[f"{name}_low"], row[f"{name}_high"] = low, high
        row["rms_log_residual"] = fit.rms_log_residual
        rows.append(row)
        done.append((where_, part, fit))
    result = pd.DataFrame(rows)
    figures = []
    for axis in axes:
        one = [(w, p, f) for w, p, f in done if f.axes == (axis,)]
        caption = f"{metric} against {axis}: mean and {spread} over seeds, fitted kl = A {scaling.SYMBOLS.get(axis, axis)}^-alpha"
        figures.append(_draw(f"fit_{axis}.png", caption, out, fit_figure, one, axis, metric, spread=spread))  # fmt: skip
    for i, (where_, part, fit) in enumerate(f for f in done if len(f[2].axes) == 2):
        figures.append(_draw(f"iso_kl_{i}.png", f"iso-KL lines of the two-axis fit ({where_}) over (params, train_sequences); dots: the runs' means", out, scaling_figures.iso_kl_contours, fit, part))  # fmt: skip
    figures.append(compute_figure(table, metric, out, spread))
    return result, figures


def compute_figure(table, metric: str, out: Path, spread: str) -> Figure:
    from gssm_jax.reporting import scaling_figures

    caption = f"{metric} against training FLOPs (flops_per_token x tokens), mean and {spread} over seeds, per family"
    return _draw("kl_vs_compute.png", caption, out, scaling_figures.kl_vs_compute, table, metric, spread=spread)  # fmt: skip


def fit_figure(fitted, axis: str, metric: str, path: Path, spread: str) -> str | None:
    import matplotlib.pyplot as plt

    if not fitted:
        return f"no one-axis fit over {axis}"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for colour, (where_, part, fit) in zip(stat_figures.colours(len(fitted)), fitted):
        summary = stats.seed_summary(part, metric, keys=[axis])
        x = summary[axis].to_numpy(float)
        ax.errorbar(x, summary["mean"], yerr=stats.error_bars(summary, spread), fmt="o",
                    capsize=3, color=colour, label=f"{where_} ({stat_figures.seed_count(summary['n'])})")  # fmt: skip
        grid = np.geomspace(x.min(), x.max(), 50)
        lo, hi = (fit.intervals or {}).get("alpha", (np.nan, np.nan))
        ax.plot(grid, fit.predict(grid), color=colour, linestyle="--",
                label=f"fit alpha={fit.params['alpha']:.2f} [{lo:.2f}, {hi:.2f}]")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel=axis, ylabel=metric)
    ax.set_title(
        f"{metric} against {axis}, power-law fits (95% bootstrap over seeds)", fontsize="medium"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small")
    stat_figures.save(fig, path)
    return None


def analyse(table, runs, metric: str, options: Options, out: Path):
    """Every statistic the options ask for, over the complete runs: (figures, {table name:
    DataFrame}); writes each table as OUT/NAME.csv."""
    done = np.asarray(table["status"] == "complete", bool)
    table, runs = table[done].reset_index(drop=True), [r for r, d in zip(runs, done) if d]
    if table.empty:
        return [], {}
    seeded = stats.varying(table, stats.seed_columns(table))  # only a grid with seeds gets bands
    figures = seed_figures(table, runs, metric, out, options.spread) if seeded else []
    tables: dict[str, pd.DataFrame] = {}
    keys = [
        k
        for k in stats.condition_keys(table)
        if k != "path" and not table[k].astype(str).str.startswith("{").any()
    ]
    tables["conditions"] = stats.seed_summary(table, metric, keys=keys)
    if options.compare:
        tables["comparison"], more = compare(
            table, runs, metric, options.compare, out, options.spread
        )
        figures += more
    if options.fit is not None:
        tables["fits"], more = fits(table, metric, options.fit, out, options.spread)
        figures += more
    elif seeded and "family" in stats.varying(table, ["family"]):
        figures.append(compute_figure(table, metric, out, options.spread))
    for name, frame in tables.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    return figures, tables


__all__ = ["SEED_KEYS", "Options", "analyse", "where"]
