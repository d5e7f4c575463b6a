"""Sending runs already on disk to Weights & Biases: `python -m gssm_jax.report PATH --wandb`.

Each run (a run directory, or a task of a launch.submit root) goes to its own wandb run through
the trainer's sink (gssm_jax/train/wandb_sink.py), so a run logged live and uploaded later is the
same wandb run, and an upload sends only what that run has not been sent yet: its train and eval
records by step, its config (with the grid point, and the sweep as group), its status and final
numbers (the runs.csv columns) as the summary, its own report figures and its profile traces.
Uploading twice sends nothing the second time and does not start wandb. Runs with nothing on
disk yet (pending tasks) are skipped.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from gssm_jax.reporting.runs import RunRecord, find_runs, load_run
from gssm_jax.reporting.table import run_row
from gssm_jax.train import wandb_run, wandb_sink

# runs.csv columns that are not the run's outcome (where it is on disk, when it was written)
NOT_SUMMARY = ("run", "path", "updated")


class UploadError(RuntimeError):
    """wandb refused or failed (no login, no network, a server error), in one line."""


@dataclasses.dataclass(frozen=True)
class Uploaded:
    """What one run's upload did."""

    run: str
    run_id: str
    sent: dict[str, int]  # records, summary, figures, artifacts

    def describe(self) -> str:
        if not any(self.sent.values()):
            return f"{self.run} (wandb id {self.run_id}): up to date, nothing sent"
        what = ", ".join(f"{n} {k}" for k, n in self.sent.items() if n)
        return f"{self.run} (wandb id {self.run_id}): sent {what}"


def summary_of_row(row: dict[str, Any]) -> dict[str, Any]:
    """A run's runs.csv row as its wandb summary: outcome and facts, no paths or times."""
    out = {}
    for key, value in row.items():
        if key in NOT_SUMMARY or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            continue
        out[key] = value
    return out


def records_by_step(run: RunRecord) -> list[tuple[str, dict]]:
    """(stream, record) of the run's train and eval records by step, train first at a step."""
    tagged = [(r["step"], 0, "train", r) for r in run.train if isinstance(r.get("step"), int)]
    tagged += [(r["step"], 1, "eval", r) for r in run.eval if isinstance(r.get("step"), int)]
    return [(stream, record) for _, _, stream, record in sorted(tagged, key=lambda t: t[:2])]


def upload_run(
    run: RunRecord, mode: str, project: str | None = None, entity: str | None = None
) -> Uploaded | None:
    """Sends what `run` has not sent yet to its wandb run; None for a run with nothing on disk.
    Project and entity default to the run's own log.wandb settings."""
    if not (run.train or run.eval or run.final):
        return None
    config = run.config or {}
    own = (config.get("log") or {}).get("wandb") or {}
    who = wandb_run.identity(run.ref.run_dir)
    sink = wandb_sink.WandbSink(
        run.ref.run_dir,
        config,
        mode,
        project or own.get("project") or "gssm_jax",
        entity=entity or own.get("entity") or "",
        group=own.get("group") or who.group,
        tags=tuple(own.get("tags") or ()),
        name=who.name,
        grid_point=who.grid_point,
        system_stats=False,
        lazy=True,
        errors="raise",
        own_service=False,
    )
    for stream, record in records_by_step(run):
        sink.write(stream, record)
    sink.close(summary=summary_of_row(run_row(run)))
    return Uploaded(who.name, sink.run_id, dict(sink.sent))


def upload_paths(
    paths: list[str],
    mode: str,
    project: str | None = None,
    entity: str | None = None,
    say: Callable[[str], None] = print,
) -> list[Uploaded]:
    """`upload_run` for every run under `paths` (as the report finds them), then wandb's service
    shut down. ReportError for paths without runs; UploadError when wandb fails."""
    wandb_sink.require_wandb(mode, key="--wandb")
    done = []
    try:
        for ref in find_runs(paths):
            try:
                result = upload_run(load_run(ref), mode, project, entity)
            except Exception as e:  # noqa: BLE001 - wandb's own errors, reported in one line
                raise UploadError(
                    f"wandb upload of {ref.name} failed: {type(e).__name__}: {' '.join(str(e).split())}"
                ) from e
            if result is None:
                say(f"wandb: {ref.name}: nothing on disk yet, skipped")
                continue
            say(f"wandb: {result.describe()}")
            done.append(result)
    finally:
        wandb_sink.shutdown()
    return done
