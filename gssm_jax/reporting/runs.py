"""Finding runs and reading them: one row of numbers and the eval curve per run directory.

A PATH is a run directory (`gssm_jax.main --workdir`), a `launch.submit` root (its `tasks/<i>.json`
give each run's grid point and resolved config, `stdout/<i>.out` its attempts and exit codes), or a
folder holding either kind somewhere below it. Runs still being written are read as far as they go.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import re
from pathlib import Path
from typing import Any

from gssm_jax.runtime.exitcodes import EXIT_PREEMPTED

STATUSES = ("complete", "running", "stopped", "failed", "pending")

# `[run.sh 2026-11-30 09:00:00] task 3: exit 1` / `... task 3: attempt 2, ...` / `... task 3: job 12, attempt 1, ...`
_EVENT = re.compile(
    r"^\[run\.sh (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] task (?P<task>\d+): "
    r"(?:(?P<exit>exit (?P<rc>-?\d+))|(?P<start>(?:job \S+, )?attempt \d+))"
)


class ReportError(ValueError):
    """A PATH that holds no runs, or cannot be read."""


@dataclasses.dataclass(frozen=True)
class RunRef:
    """Where one run lives: its workdir, and the launcher's task record and log when it has them."""

    name: str
    run_dir: Path
    task: dict | None = None
    log: Path | None = None


@dataclasses.dataclass
class RunRecord:
    """What the report knows about one run."""

    ref: RunRef
    config: dict | None
    train: list[dict]
    eval: list[dict]
    final: dict | None
    kl_t: dict | None  # the newest evals/<step>.json: {"step": int, "kl_t": [...]}
    status: str
    exit_code: int | None
    wall_time_s: float | None
    updated: float | None  # newest modification time of the run's files (epoch seconds)


def _is_submit_root(path: Path) -> bool:
    return (path / "run.sh").is_file() and (path / "tasks").is_dir()


def _is_run_dir(path: Path) -> bool:
    return any((path / f).exists() for f in ("config.json", "final.json", "metrics"))


def _task_refs(root: Path) -> list[RunRef]:
    ids = sorted(int(p.stem) for p in (root / "tasks").glob("*.json") if p.stem.isdigit())
    refs = []
    for i in ids:
        try:
            task = json.loads((root / "tasks" / f"{i}.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{root}/tasks/{i}.json: cannot be read ({e})") from None
        refs.append(
            RunRef(f"{root.name}/{i}", root / "runs" / str(i), task, root / "stdout" / f"{i}.out")
        )
    return refs


def find_runs(paths: list[str]) -> list[RunRef]:
    """Every run under `paths`, in the order given (a submit root's runs by task id)."""
    refs: list[RunRef] = []
    for text in paths:
        path = Path(text).expanduser()
        if not path.is_dir():
            what = "is a file, not a directory" if path.exists() else "no such directory"
            raise ReportError(f"PATH {text!r}: {what}")
        found = _walk(path.resolve())
        if not found:
            raise ReportError(
                f"PATH {text!r}: holds no run directory (config.json, metrics/) and no "
                "launch.submit root (run.sh, tasks/)"
            )
        refs.extend(found)
    unique: dict[Path, RunRef] = {}
    for ref in refs:  # a run reached through two PATHs counts once
        unique.setdefault(ref.run_dir, ref)
    return list(unique.values())


def _walk(path: Path) -> list[RunRef]:
    if _is_submit_root(path):
        return _task_refs(path)
    if _is_run_dir(path):
        return [RunRef(path.name, path)]
    out: list[RunRef] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if child.name not in ("code", "checkpoints", "tensorboard"):
            out.extend(_walk(child))
    return out


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a line cut off by a writer still at work is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def newest_kl_t(run_dir: Path) -> dict | None:
    """The `evals/<step>.json` of the largest step holding a `kl_t` list, with its step."""
    folder = run_dir / "evals"
    steps = (
        sorted((int(p.stem), p) for p in folder.glob("*.json") if p.stem.isdigit())
        if folder.is_dir()
        else []
    )
    for step, path in reversed(steps):
        record = _read_json(path)
        if isinstance(record, dict) and isinstance(record.get("kl_t"), list) and record["kl_t"]:
            return {"step": step, "kl_t": [float(v) for v in record["kl_t"]]}
    return None


def _events(log: Path | None, task_id: int | None) -> list[tuple[float, str, int | None]]:
    """(time, 'start' | 'exit', exit code) of the launcher's lines about this task."""
    if log is None or not log.is_file():
        return []
    out: list[tuple[float, str, int | None]] = []
    for line in log.read_text(errors="replace").splitlines():
        m = _EVENT.match(line)
        if m and (task_id is None or int(m.group("task")) == task_id):
            when = datetime.datetime.strptime(m.group("time"), "%Y-%m-%d %H:%M:%S").timestamp()
            if m.group("exit"):
                out.append((when, "exit", int(m.group("rc"))))
            else:
                out.append((when, "start", None))
    return out


def _attempt_time(events: list, now: float | None) -> float | None:
    """Seconds between each attempt's start and its exit (up to `now` for one still running;
    `now` is None only when there is no log file, so no events)."""
    total, start = 0.0, None
    for when, kind, _ in events:
        if kind == "start":
            start = when
        elif start is not None:
            total, start = total + when - start, None
    if start is not None:
        assert now is not None  # the events came from a log file, which has an mtime
        total += max(0.0, now - start)
    return total if events else None


def _newest_mtime(run_dir: Path, log: Path | None) -> float | None:
    paths = [
        run_dir / "metrics" / "train.jsonl",
        run_dir / "metrics" / "eval.jsonl",
        run_dir / "final.json",
    ]
    if log is not None:
        paths.append(log)
    times = [p.stat().st_mtime for p in paths if p.is_file()]
    return max(times) if times else None


def status_of(final: dict | None, events: list, has_metrics: bool) -> tuple[str, int | None]:
    """(status, last exit code): complete when final.json exists; else the launcher's last word
    (an exit: failed, or stopped for a checkpointed stop; a start: running); else running when
    metrics are being written, pending when nothing is."""
    last_exit = next((rc for _, kind, rc in reversed(events) if kind == "exit"), None)
    if final is not None:  # "complete", or "diverged" (optim.nonfinite stopped it)
        return str(final.get("status", "complete")), last_exit
    if events:
        _, kind, rc = events[-1]
        if kind == "start":
            return "running", last_exit
        return ("stopped" if rc == EXIT_PREEMPTED else "complete" if rc == 0 else "failed"), rc
    return ("running" if has_metrics else "pending"), None


def load_run(ref: RunRef, now: float | None = None) -> RunRecord:
    """Reads one run; never raises on a run that is incomplete, failed or still being written."""
    d = ref.run_dir
    config = _read_json(d / "config.json")
    if config is None and ref.task is not None:
        config = ref.task.get("config")
    train = read_jsonl(d / "metrics" / "train.jsonl")
    evals = read_jsonl(d / "metrics" / "eval.jsonl")
    final = _read_json(d / "final.json")
    task_id = ref.task.get("task_id") if ref.task else None
    events = _events(ref.log, task_id)
    updated = _newest_mtime(d, ref.log)
    status, rc = status_of(final, events, bool(train or evals))
    # An attempt still open counts up to the run's last sign of life (its newest file).
    wall = _attempt_time(events, updated if now is None else now)
    return RunRecord(ref, config, train, evals, final, newest_kl_t(d), status, rc, wall, updated)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: leaf} of a nested dict; the data graph stays one value."""
    if not isinstance(tree, dict) or prefix == "data.graph.":
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
