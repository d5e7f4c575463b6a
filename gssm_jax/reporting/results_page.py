"""`report --page FILE`: a markdown results page (docs/results/ style) of one report: how it was run
(machine, date, commit, wall time), the notes, the statistics tables and every figure. The page's
figures and CSVs are copied to FILE's folder/STEM/, so the page and its numbers travel together
and every number on the page comes from the tables written beside it."""

from __future__ import annotations

import datetime
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from gssm_jax.reporting import stats

REPO = Path(__file__).resolve().parents[2]


def fmt(value) -> str:
    """A table cell: floats in 4 significant digits, missing as empty."""
    value = stats.cell(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame, columns: list[str] | None = None) -> str:
    columns = [c for c in (columns or list(frame.columns)) if c in frame]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def machine() -> str:
    """`MODEL NAME, N cores` (lscpu), and the accelerator JAX would use is not asked: the runs
    say theirs."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        names = [
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        ]
        model = names[0] if names else model
    except (OSError, subprocess.CalledProcessError):
        pass
    import os

    return f"{model} ({os.cpu_count()} cores, {platform.system()})"


def commit() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "gssm_jax", "configs", "launch"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (with uncommitted changes to the code)" if dirty else "")


def wall_time(table: pd.DataFrame) -> str:
    """From the first run's config.json to the last update, and the summed training steps."""
    starts = []
    for path in table["path"]:
        config = Path(str(path)) / "config.json"
        if config.exists():
            starts.append(config.stat().st_mtime)
    updated = pd.to_datetime(table["updated"], errors="coerce").dropna()
    train = pd.to_numeric(table["train_time_s"], errors="coerce").sum()
    text = f"training steps {train / 60:.1f} min summed over the runs"
    if starts and len(updated):
        first = datetime.datetime.fromtimestamp(min(starts))
        span = (updated.max().to_pydatetime() - first).total_seconds()
        text = f"{span / 60:.0f} min from the first run's start to the last run's end; " + text
    return text


def sentences(comparison: pd.DataFrame, metric: str, key: str) -> list[str]:
    """One plain sentence per compared pair of groups, as strong as the seeds allow."""
    within = [c for c in comparison.columns if c not in _paired_columns()]
    out = []
    for _, r in comparison.iterrows():
        where = ", ".join(f"{w}={fmt(r[w])}" for w in within) or "all runs"
        n = int(r["n_pairs"])
        lower = r["mean_diff"] < 0
        sign_ok = int(r["agree"]) == n
        zero_out = r["ci_low"] > 0 or r["ci_high"] < 0
        what = (
            f"{where}: {key}={fmt(r['value'])} minus {key}={fmt(r['reference'])} = "
            f"{r['mean_diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] over {n} graph seeds "
            f"(signs {r['signs']})"
        )
        if sign_ok and zero_out:
            verdict = f"{key}={fmt(r['value'])} has the {'lower' if lower else 'higher'} {metric} on every seed"
        else:
            verdict = "not resolved by these seeds (they disagree or the interval includes 0)"
        out.append(f"- {what}: {verdict}.")
    return out


def _paired_columns() -> tuple[str, ...]:
    from gssm_jax.reporting.paired import COLUMNS

    return COLUMNS


def write(
    page: Path,
    out: Path,
    title: str,
    table: pd.DataFrame,
    figures: list[tuple[str, str, str | None]],
    tables: dict[str, pd.DataFrame],
    metric: str,
    compare_key: str | None,
    notes: str | None,
) -> Path:
    """Writes `page` and copies runs.csv, the tables' CSVs and the drawn figures to PAGE_DIR/STEM/."""
    assets = page.parent / page.stem
    assets.mkdir(parents=True, exist_ok=True)
    for name in ["runs.csv", *(f"{t}.csv" for t in tables)]:
        shutil.copyfile(out / name, assets / name)
    drawn = [(n, c) for n, c, reason in figures if reason is None]
    for name, _ in drawn:
        shutil.copyfile(out / name, assets / name)
    counts = ", ".join(f"{n} {s}" for s, n in table["status"].value_counts().items())
    shown = [_shown(a) for a in sys.argv[1:]]
    runs = sum(a == "RUN" for a in shown)
    shown = [a for i, a in enumerate(shown) if a != "RUN" or "RUN" not in shown[:i]]
    shown = [f"RUN_DIR... ({runs})" if a == "RUN" else a for a in shown]
    command = "python -m gssm_jax.report " + " ".join(shown)
    text = Path(notes).read_text().strip() if notes else ""
    parts = [] if text.startswith("# ") else [f"# {title}", ""]
    if text:
        parts += [text, ""]
    which = (
        "the best eval of each run" if metric.startswith("best") else "the last eval of each run"
    )
    parts += [
        "## How it was run",
        "",
        f"- {len(table)} runs ({counts}); metric `{metric}` (nats/token), {which}; statistics over the complete runs.",
        f"- Machine: {machine()}. Date: {datetime.date.today().isoformat()}. Commit: {commit()}.",
        f"- Wall time: {wall_time(table)}.",
        f"- Tables: [runs.csv]({page.stem}/runs.csv) (one row per run)"
        + "".join(f", [{t}.csv]({page.stem}/{t}.csv)" for t in tables)
        + ".",
        "",
    ]
    if "comparison" in tables:
        comparison = tables["comparison"]
        parts += ["## Paired comparison", "", markdown_table(comparison.drop(columns=["confidence", "resamples"], errors="ignore")), ""]  # fmt: skip
        parts += ["95% percentile bootstrap of the mean paired difference (10,000 resamples of the pairs).", ""]  # fmt: skip
        parts += [*sentences(comparison, metric, (compare_key or "value").partition("=")[0]), ""]
    if "fits" in tables:
        fits = tables["fits"]
        shown = ["runs", "form", "n", *(f"{p}{e}" for p in ("alpha", "beta") for e in ("", "_low", "_high")), "fit"]  # fmt: skip
        parts += ["## Scaling fits", "", markdown_table(fits, shown), ""]
        parts += ["`alpha` (`beta`): the exponent of `N^-alpha` (`D^-beta`), a negative one a gap that grows along its axis; `_low`, `_high`: its 95% bootstrap interval over the graph seeds; `fit`: the law in one line, each bracket the interval of the exponent's alpha.", ""]  # fmt: skip
    parts += ["## Mean and spread over seeds", "", markdown_table(tables["conditions"]), ""]
    parts += ["## Figures", ""]
    for name, caption in drawn:
        parts += [f"![{caption}]({page.stem}/{name})", "", f"*{caption}*", ""]
    missing = [(n, c, r) for n, c, r in figures if r is not None]
    if missing:
        parts += ["Not drawn:", ""] + [f"- {n}: {r}" for n, _, r in missing] + [""]
    parts += ["## Command", "", "The report's command line (RUN_DIR...: the run directories):", ""]
    parts += ["```text", command, "```", ""]
    page.write_text("\n".join(parts))
    return page


def _shown(arg: str) -> str:
    """An argument as the page shows it: RUN for a run directory, a path inside the repository
    relative to it, OUT for another absolute path."""
    path = Path(arg)
    if not path.is_absolute():
        return arg if arg and " " not in arg else repr(arg)
    if (path / "config.json").exists():
        return "RUN"
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return "OUT"


__all__ = ["markdown_table", "np", "write"]
