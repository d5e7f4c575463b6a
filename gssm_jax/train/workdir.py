"""What a run directory says about its config, kept true across attempts.

`config.json` is the config the run was started with and is never rewritten. A resume compares the
new config with it: keys that change the experiment (graph, seeds, model, optimiser, batch, data:
everything not in HARMLESS) are a ConfigChangeError naming them unless `--allow-config-change`; the
others (log and eval periods, eval batches, profiling, checkpointing, runtime, `optim.steps` to
extend a run) are allowed. A resume with any change records its config as `config.<n>.json`
(n = 1, 2, ...) beside the first.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from gssm_jax.config import ConfigError, as_dict, config_from_dict

CONFIG = "config.json"
# Dotted keys (or prefixes ending in ".") a resume may change without changing the experiment.
HARMLESS = (
    "log.",
    "eval.period",
    "eval.batches",
    "profile.",
    "checkpoint.",
    "runtime.",
    "distributed.",
    "mesh.",
    "slurm.",
    "data.worker_threads",
    "data.prefetch",
    "optim.steps",
    "optim.nonfinite",
    "optim.nonfinite_patience",
)


class ConfigChangeError(ConfigError):
    """A resume whose config changes the experiment of the run in the directory."""


class DivergedRunError(ValueError):
    """A resume of a run that stopped diverged (final.json's status), without a changed config."""


FINAL = "final.json"


def write_json(path: str, value: Any) -> None:
    """Writes `value` as JSON to `path` through a temporary file, so a reader never sees half."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


def diverged(workdir: str) -> dict | None:
    """final.json's `diverged` entry when the run in `workdir` stopped diverged, else None."""
    path = os.path.join(workdir, FINAL)
    try:
        with open(path) as f:
            final = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(final, dict) or final.get("status") != "diverged":
        return None
    return final.get("diverged") or {}


def check_not_diverged(workdir: str, allow: bool) -> None:
    """DivergedRunError when `workdir` holds a diverged run and `allow` is False: resuming it with
    the same config would retrain the same steps into the same divergence."""
    info = diverged(workdir)
    if info is None or allow:
        return
    good = info.get("last_checkpoint")
    change = "change optim (e.g. --config.optim.lr) and pass --allow-config-change"
    if good is None:
        resume, then = "no checkpoint to resume from", f"{change} to train it again from step 0"
    else:
        resume, then = f"its last good checkpoint is step {good}", f"{change} to resume from there"
    raise DivergedRunError(
        f"{workdir} diverged at step {info.get('step')} ({info.get('why')}; {resume}); "
        f"use a new --workdir, or {then}"
    )
    raise DivergedRunError(
        f"{workdir} diverged at step {info.get('step')} ({info.get('why')}; {resume}); "
        "use a new --workdir, or change optim (e.g. --config.optim.lr) and pass "
        "--allow-config-change to resume from that checkpoint"
    )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def check_workdir(workdir: str) -> None:
    """ConfigError when `workdir` or a folder above it exists but is not a directory."""
    path = workdir
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if os.path.exists(path) and not os.path.isdir(path):
        what = "is" if path == workdir else f"is under {path!r}, which is"
        raise ConfigError(f"--workdir {workdir!r} {what} a file, not a directory")


def is_harmless(key: str) -> bool:
    return any(key.startswith(h) if h.endswith(".") else key == h for h in HARMLESS)


def changes(saved: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, saved value, new value) of every leaf that differs, in key order."""
    a, b = _flat(saved), _flat(new)
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        old, now = a.get(key, missing), b.get(key, missing)
        if old != now:
            out.append((key, None if old is missing else old, None if now is missing else now))
    return out


def describe(changed: list[tuple[str, Any, Any]]) -> str:
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changed)


def saved_config(workdir: str) -> dict | None:
    """The config.json of `workdir` in today's schema (migrated, keys it lacks at their
    defaults), or None when there is none."""
    path = os.path.join(workdir, CONFIG)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return as_dict(config_from_dict(json.load(f)))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable ({e}); use a new --workdir") from None


def check_resume(
    workdir: str, config: ml_collections.ConfigDict, allow: bool
) -> list[tuple[str, Any, Any]]:
    """The changes from the saved config; ConfigChangeError if one changes the experiment."""
    saved = saved_config(workdir)
    if saved is None:
        return []
    changed = changes(saved, as_dict(config))
    experiment = [ch for ch in changed if not is_harmless(ch[0])]
    if experiment and not allow:
        raise ConfigChangeError(
            f"{os.path.join(workdir, CONFIG)}: this config changes the run's experiment "
            f"({describe(experiment)}); use a new --workdir, or --allow-config-change to resume "
            "anyway"
        )
    return changed


def record_config(
    workdir: str, config: ml_collections.ConfigDict, changed: list[tuple[str, Any, Any]]
) -> str | None:
    """Writes config.json on the first start, config.<n>.json on a resume with changes."""
    path = os.path.join(workdir, CONFIG)
    if os.path.exists(path):
        if not changed:
            return None
        n = 1
        while os.path.exists(os.path.join(workdir, f"config.{n}.json")):
            n += 1
        path = os.path.join(workdir, f"config.{n}.json")
    tmp = f"{path}.tmp-{os.getpid()}"  # other processes may read config.json as it appears
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)
    return path
