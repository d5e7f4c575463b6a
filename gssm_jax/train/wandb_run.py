"""Which Weights & Biases run a run directory is, and what has been sent to it: the pure part of
the wandb logging (gssm_jax/train/wandb_sink.py sends; nothing here imports wandb).

DIR/wandb/gssm_jax.json (`SyncState`) keeps a run one wandb run across its starts, resumes and
uploads: the run id (the one stored there, else `stable_run_id`), and per target (mode, entity,
project) the last step sent per stream and the digests of the summary, figures and profile
traces last sent. A record, a summary or a file goes out only when it is new for that target,
which is what makes an upload idempotent. wandb itself writes beside it, under DIR/wandb/
(offline: `offline-run-<time>-<id>/`, one per start, for `wandb sync`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

STATE = "gssm_jax.json"  # under DIR/wandb/
FIGURE_DIRS = ("report", "probe")  # DIR/report/*.png (gssm_jax.report DIR), DIR/probe/*.png


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSONL file; a line cut off by a writer still at work is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in out if isinstance(r, dict)]


# -- which wandb run ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Identity:
    """A run directory's wandb name, group and grid point: a task of a launch.submit root gets
    group = the sweep's name and name = SWEEP/<task id>; any other directory its own name."""

    name: str
    group: str
    grid_point: dict[str, Any]


def identity(run_dir: str | os.PathLike) -> Identity:
    """The Identity of `run_dir`: a task when it is ROOT/runs/<i> beside ROOT/run.sh and
    ROOT/tasks/<i>.json (the sweep's name from ROOT/submit.json, else ROOT's name)."""
    d = Path(run_dir).resolve()
    root = d.parent.parent
    task_file = root / "tasks" / f"{d.name}.json"
    if d.parent.name == "runs" and (root / "run.sh").is_file() and task_file.is_file():
        task = _read_json(task_file) or {}
        sweep = (_read_json(root / "submit.json") or {}).get("name") or root.name
        return Identity(f"{sweep}/{d.name}", sweep, dict(task.get("grid_point") or {}))
    return Identity(d.name, "", {})


def stable_run_id(run_dir: str | os.PathLike, config: dict) -> str:
    """16 hex digits of SHA-256 over the directory's absolute path and its config (log.wandb left
    out): the id of a run whose DIR/wandb/gssm_jax.json is missing, the same on every start."""
    cfg = dict(config)
    if isinstance(cfg.get("log"), dict):
        cfg["log"] = {k: v for k, v in cfg["log"].items() if k != "wandb"}
    text = str(Path(run_dir).resolve()) + "\0" + json.dumps(cfg, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- what was sent ------------------------------------------------------------------------------
@dataclasses.dataclass
class Progress:
    """What one target (mode:entity/project) has received of the run."""

    last: dict[str, int] = dataclasses.field(default_factory=dict)  # stream -> last step sent
    step: int = -1  # the largest step sent (wandb's steps only go forward)
    digests: dict[str, str] = dataclasses.field(
        default_factory=dict
    )  # summary, figures/..., profile

    def wants(self, stream: str, step: int) -> bool:
        """Whether a record of `stream` at `step` is new: above its stream's last step sent and
        not below the largest step sent (a resume from an older checkpoint re-trains steps
        that were sent already; they are not sent twice)."""
        return step > self.last.get(stream, -1) and step >= self.step

    def sent(self, stream: str, step: int) -> None:
        self.last[stream] = step
        self.step = max(self.step, step)


def target(mode: str, entity: str, project: str) -> str:
    """The key of a destination in SyncState: `offline:entity/project` or `online:...`."""
    return f"{mode}:{entity}/{project}"


@dataclasses.dataclass
class SyncState:
    """DIR/wandb/gssm_jax.json: the run's wandb id and each target's Progress."""

    id: str
    targets: dict[str, Progress] = dataclasses.field(default_factory=dict)

    @staticmethod
    def path(run_dir: str | os.PathLike) -> Path:
        return Path(run_dir) / "wandb" / STATE

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> SyncState | None:
        """The saved state, or None when there is none (or it cannot be read)."""
        saved = _read_json(cls.path(run_dir))
        if not isinstance(saved, dict) or not isinstance(saved.get("id"), str):
            return None
        targets = {}
        for key, p in (saved.get("targets") or {}).items():
            targets[key] = Progress(
                {k: int(v) for k, v in p.get("last", {}).items()},
                int(p.get("step", -1)),
                dict(p.get("digests", {})),
            )
        return cls(saved["id"], targets)

    @classmethod
    def of(cls, run_dir: str | os.PathLike, config: dict) -> SyncState:
        """The saved state, or a new one with the stable id."""
        return cls.load(run_dir) or cls(stable_run_id(run_dir, config))

    def progress(self, key: str) -> Progress:
        return self.targets.setdefault(key, Progress())

    def save(self, run_dir: str | os.PathLike) -> None:
        """Written through a temporary file, so a reader never sees half of it."""
        path = self.path(run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True))
        os.replace(tmp, path)


# -- what is sent -------------------------------------------------------------------------------
def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)


def tokens_per_step(config: dict) -> int | None:
    data = config.get("data") or {}
    b, t = data.get("batch_size"), data.get("seq_len")
    return b * t if isinstance(b, int) and isinstance(t, int) else None


def history_row(stream: str, record: dict, per_step: int | None) -> dict[str, Any]:
    """`stream/key: value` of a record's numbers (its step is wandb's own), and `tokens` seen."""
    row: dict[str, Any] = {
        f"{stream}/{k}": v for k, v in record.items() if k != "step" and _number(v)
    }
    if per_step and isinstance(record.get("step"), int):
        row["tokens"] = record["step"] * per_step
    return row


def wandb_config(config: dict, grid_point: dict) -> dict:
    """The run config, with the sweep's grid point as `grid` ({dotted key: value})."""
    return {**config, "grid": dict(grid_point)} if grid_point else dict(config)


def summary_of(final: dict | None, train: list[dict], evals: list[dict], status: str) -> dict:
    """A run's outcome from its files, keyed like the report's runs.csv columns."""
    out: dict[str, Any] = {"status": status}
    steps = [r["step"] for r in train + evals if isinstance(r.get("step"), int)]
    if steps:
        out["step"] = max(steps)
    last_eval = (final or {}).get("eval") or (evals[-1] if evals else {})
    last_train = train[-1] if train else {}
    for prefix, record in (("train", last_train), ("eval", last_eval)):
        for key in ("loss", "entropy", "kl_gap"):
            if _finite(record.get(key)):
                out[f"{prefix}_{key}"] = record[key]
    gaps = [(r["kl_gap"], r["step"]) for r in evals if _finite(r.get("kl_gap")) and "step" in r]
    if gaps:
        out["best_eval_kl_gap"], out["best_eval_step"] = min(gaps)
    return out


def summary_from_dir(run_dir: str | os.PathLike, failed: bool) -> dict:
    """`summary_of` the directory's files: complete when final.json exists, else failed (an
    exception ended the run) or stopped (a signal did; it resumes)."""
    d = Path(run_dir)
    final = _read_json(d / "final.json")
    status = "failed" if failed else "stopped"
    if final is not None:
        status = str(final.get("status", "complete"))
    metrics = d / "metrics"
    return summary_of(final, read_jsonl(metrics / "train.jsonl"), read_jsonl(metrics / "eval.jsonl"), status)  # fmt: skip


def figure_files(run_dir: str | os.PathLike) -> dict[str, Path]:
    """`figures/<folder>/<name>` -> PNG, for the run's own report and probe figures."""
    d = Path(run_dir)
    return {f"figures/{sub}/{p.stem}": p for sub in FIGURE_DIRS for p in sorted((d / sub).glob("*.png"))}  # fmt: skip


def profile_files(run_dir: str | os.PathLike) -> dict[str, Path]:
    """Path under DIR/profile/ -> file, for every file the profile window wrote."""
    base = Path(run_dir) / "profile"
    if not base.is_dir():
        return {}
    return {str(p.relative_to(base)): p for p in sorted(base.rglob("*")) if p.is_file()}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing_digest(files: dict[str, Path]) -> str:
    """Names, sizes and modification times (traces can be large and are never rewritten)."""
    stats = [(name, p.stat().st_size, p.stat().st_mtime_ns) for name, p in files.items()]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def json_digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=repr).encode()).hexdigest()
